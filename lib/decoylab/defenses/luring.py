"""Luring (Bernhard, Moellic, Dutertre; shared/papers/002): a decoy component P pasted in front of
a trained, frozen target model M, so that adversarial examples crafted on the augmented model
T = M∘P do not transfer to M (the *luring effect*, §2.3).

- ``luring_loss`` — eq. 2 / Algorithm 1 as the authors' code computes it, on the logits z of M∘P
  with a, b the top-1 and top-2 classes of M on the clean input:
  ``mean(max(0, max_{j≠a} z_j − z_a)) + λ·(−mean(z_a − z_b))``. P is trained without labels.
- The baselines of §3.1: ``"stack"`` (M∘P retrained as a whole with cross-entropy on the
  labels, starting from a new P and the trained M), ``"auto"`` (P an autoencoder trained with binary cross-entropy
  reconstruction), ``"ce"`` (P trained so that M∘P's softmax matches M's) — the paper's C_E.
- ``Luring`` — the shared defense interface: ``attacked_model`` is M∘P (what the attacker
  queries), ``target`` is M (hidden), ``score(x)`` is a soft disagreement between M and M∘P
  that is zero exactly when they agree (the paper's detector, M(x) ≠ M∘P(x), is ``score > 0``),
  ``transfer_metrics`` gives DR, IAR (eq. 3), AC_MoP, AC_M and DAC (eq. 4).

Every approach trains P (or M∘P) through the shared loop and cache, keeping the epoch with the
best M∘P accuracy on a held-out validation split (the authors' checkpoint choice).
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from decoylab import models, paper_values, params, train
from decoylab.defenses.base import NotFittedError, TrainedDefense

APPROACHES = ("stack", "auto", "ce", "luring")
APPROACH_LABELS = {"stack": "Stack", "auto": "Auto", "ce": "C_E", "luring": "Luring"}
# Luring keeps the kit's colour for the defense (plots.DEFENSE_COLORS); the baselines get neutral ones.
APPROACH_COLORS = {"Stack": "#8c564b", "Auto": "#ff7f0e", "C_E": "#1f77b4", "Luring": "#2ca02c"}
SCORE_KINDS = ("margin", "kl")
# How P starts: "random" (Algorithm 1, line 2) or "auto" — from the Auto baseline's trained
# autoencoder, a warm start that lets CPU presets train P in a few epochs instead of 64.
COMPONENT_INITS = ("random", "auto")
# λ of eq. 2 per data set (Appendix C: 1 for MNIST and SVHN, 0.15 for CIFAR-10).
PAPER_WEIGHT = {"mnist": 1.0, "svhn": 1.0, "cifar10": 0.15}
# The architectures of Appendices A-B per data set: (target M, component P).
PAPER_ARCHITECTURES = {"mnist": ("luring_mnist", "luring_p_mnist"), "svhn": ("luring_vgg", "luring_p_svhn"),
                       "cifar10": ("luring_vgg_wide", "luring_p_cifar10")}

# L∞ budgets on [0, 1] images: the data range bounds them.
# Tables 1/14's budgets when they differ from Fig. 2's (null: the same list).


def check_settings(*, approach: str | None = None, weight: float | None = None, eps: float | None = None,
                   score_kind: str | None = None, component_init: str | None = None,
                   validation_fraction: float | None = None) -> None:
    """Bad input gets one clear error naming the parameter, before any training."""
    if approach is not None and approach not in APPROACHES:
        raise ValueError(f"approach={approach!r} is not known; allowed: {', '.join(APPROACHES)}")
    if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0):
        raise ValueError(f"weight (the luring coefficient λ)={weight!r} is not allowed; it must be a number > 0")
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps <= 1):
        raise ValueError(f"eps={eps!r} is outside the data range; an L∞ budget on [0, 1] images must be in (0, 1]")
    if score_kind is not None and score_kind not in SCORE_KINDS:
        raise ValueError(f"score_kind={score_kind!r} is not known; allowed: {', '.join(SCORE_KINDS)}")
    if component_init is not None and component_init not in COMPONENT_INITS:
        raise ValueError(f"component_init={component_init!r} is not known; allowed: {', '.join(COMPONENT_INITS)}")
    if validation_fraction is not None and not 0 < validation_fraction <= 0.5:
        raise ValueError(f"validation_fraction={validation_fraction!r} is not allowed; it must be in (0, 0.5]")


class Augmented(nn.Module):
    """M∘P: the component P followed by the target M. With ``frozen_target`` M stays in eval mode
    and gets no gradient while P trains (Algorithm 1: "M ... its parameters are frozen")."""

    def __init__(self, component: nn.Module, target: nn.Module, frozen_target: bool = True):
        super().__init__()
        self.component = component
        self.target = target
        self.frozen_target = frozen_target
        if frozen_target:
            self.target.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.target(self.component(x))

    def train(self, mode: bool = True) -> "Augmented":
        super().train(mode)
        if self.frozen_target:
            self.target.eval()
        return self


def _top2(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    top = logits.topk(2, dim=1).indices
    return top[:, 0], top[:, 1]


def luring_terms(z: torch.Tensor, target_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two terms of eq. 2 per input, as the authors' code: ``hinge`` = max(0, max_{j≠a} z_j − z_a)
    and ``gap`` = −(z_a − z_b), with a, b the top-1 and top-2 classes of M (``target_logits``)."""
    a, b = _top2(target_logits)
    z_a = z.gather(1, a[:, None]).squeeze(1)
    z_b = z.gather(1, b[:, None]).squeeze(1)
    others = z.masked_fill(F.one_hot(a, z.shape[1]).bool(), float("-inf")).amax(1)
    return (others - z_a).clamp_min(0), -(z_a - z_b)


def luring_loss(weight: float) -> train.LossFn:
    """Eq. 2 averaged over the batch (Algorithm 1, line 9): hinge + λ·gap. Uses no labels: the
    loop's label slot carries M's logits on x, computed once before training (M is frozen and in
    eval mode, so they never change; one forward pass of M per step saved)."""
    def loss(augmented: Augmented, x: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
        hinge, gap = luring_terms(augmented(x), target_logits)
        return hinge.mean() + weight * gap.mean()
    return loss


def mimic_loss(augmented: Augmented, x: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """C_E (§3.1): cross-entropy between M's softmax and M∘P's (P learns to mimic M's decision);
    ``target_logits`` are M's logits on x, precomputed like ``luring_loss``'s."""
    p_target = F.softmax(target_logits, 1)
    return -(p_target * F.log_softmax(augmented(x), 1)).sum(1).mean()


def reconstruction_loss(augmented: Augmented, x: torch.Tensor, _labels: torch.Tensor) -> torch.Tensor:
    """Auto (§3.1): binary cross-entropy between P(x) and x; M plays no part."""
    return F.binary_cross_entropy(augmented.component(x).clamp(1e-6, 1 - 1e-6), x)


def stack_loss(augmented: Augmented, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Stack (§3.1): the whole M∘P architecture trained with cross-entropy on the true labels."""
    return F.cross_entropy(augmented(x), labels)


def transfer_metrics(pred_augmented: torch.Tensor, pred_target: torch.Tensor, y: torch.Tensor,
                     successful: torch.Tensor | None = None) -> dict[str, float]:
    """The Luring metrics from predictions on an adversarial set X' crafted on M∘P.

    - DR (eq. 3): among x' that fool M∘P, the share where M and M∘P disagree;
    - IAR (eq. 3): among x' that fool M∘P, the share M still classifies correctly;
    - AC_MoP, AC_M: accuracy of M∘P and of M on X' (§4.1, transferability scenario);
    - DAC (eq. 4): 1 − the share of x' where M and M∘P agree and M is wrong (detected or harmless).

    ``successful`` restricts DR and IAR to a subset (§3.2 keeps x' that fool all four augmented
    models); by default it is "fools this M∘P". NaN when no x' qualifies."""
    pred_augmented, pred_target, y = pred_augmented.cpu(), pred_target.cpu(), y.cpu()
    fooled = pred_augmented != y
    if successful is not None:
        fooled = fooled & successful.cpu()
    n_fooled = int(fooled.sum())
    rate = (lambda m: float((m & fooled).sum()) / n_fooled) if n_fooled else (lambda m: float("nan"))
    agree_wrong = (pred_augmented == pred_target) & (pred_target != y)
    return {"DR": rate(pred_augmented != pred_target), "IAR": rate(pred_target == y),
            "AC_MoP": float((pred_augmented == y).float().mean()), "AC_M": float((pred_target == y).float().mean()),
            "DAC": 1.0 - float(agree_wrong.float().mean()), "n": len(y), "n_fooled": n_fooled}


class Luring(TrainedDefense):
    """One augmented model M∘P of the Luring paper (``approach`` = luring, or a §3.1 baseline)
    around a target M trained (or loaded from the cache) on the same data.

    ``Luring(approach, weight=λ, target_name=..., component_name=..., target_config=...,
    train_config=... (P's training), stack_config=...)``; ``fit(train_set)``."""
    name = "luring"

    def __init__(self, approach: str = "luring", *, weight: float = 1.0, target_name: str = "luring_mnist",
                 component_name: str = "luring_p_mnist", target_config: train.TrainConfig | None = None,
                 train_config: train.TrainConfig | None = None, stack_config: train.TrainConfig | None = None,
                 validation_fraction: float = 0.1, score_kind: str = "margin", component_init: str = "random",
                 seed: int = 0, cache=None, device: str | None = None, log: Callable[[str], None] | None = print):
        check_settings(approach=approach, weight=weight, score_kind=score_kind, component_init=component_init,
                       validation_fraction=validation_fraction)
        models.check_name(target_name, "target_name")
        if component_name not in models.COMPONENTS:
            raise ValueError(f"component_name={component_name!r} is not known; allowed: {', '.join(models.COMPONENTS)}")
        super().__init__(model_name=target_name, train_config=train_config, seed=seed, cache=cache, device=device,
                         log=log)
        self.approach = approach
        self.weight = float(weight)
        self.component_name = component_name
        self.target_config = target_config or train.TrainConfig(epochs=5, batch_size=28)
        self.stack_config = stack_config or self.target_config
        self.validation_fraction = validation_fraction
        self.score_kind = score_kind
        self.component_init = component_init
        self.target: nn.Module | None = None
        self.history: train.TrainHistory | None = None

    @property
    def label(self) -> str:
        return APPROACH_LABELS[self.approach]

    def twin(self, approach: str) -> "Luring":
        """The same target, data split and settings with another approach (a §3.1 baseline)."""
        return Luring(approach, weight=self.weight, target_name=self.model_name, component_name=self.component_name,
                      target_config=self.target_config, train_config=self.train_config, stack_config=self.stack_config,
                      validation_fraction=self.validation_fraction, score_kind=self.score_kind,
                      component_init=self.component_init, seed=self.seed, cache=self.cache, device=self.device,
                      log=self.log)

    def _split(self, n: int, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from decoylab.data import stratified_indices

        val = torch.from_numpy(stratified_indices(y.cpu().numpy(), max(1, int(n * self.validation_fraction)),
                                                  self.seed)).long()
        keep = torch.ones(n, dtype=torch.bool)
        keep[val] = False
        return keep.nonzero().flatten(), val

    def fit(self, train_set) -> "Luring":
        from decoylab.cache import Cache, code_version

        x, y, k = train_set.x, train_set.y, train_set.info.num_classes
        shape = tuple(x.shape[1:])
        # Built first: it also fails early on a shape the component cannot take.
        component = models.build_component(self.component_name, shape, self.seed + 1)
        self.target = train.train_or_load(self.model_name, x, y, k, self.target_config, seed=self.seed,
                                          cache=self.cache, device=self.device, log=self.log)
        self.target.requires_grad_(False)
        fit_idx, val_idx = self._split(len(x), y)
        dev = next(self.target.parameters()).device
        x_val, y_val = x[val_idx].to(dev), y[val_idx].to(dev)
        start = "random"
        if self.component_init == "auto" and self.approach != "auto":
            donor = self.twin("auto").fit(train_set)  # cached: the Auto baseline's P
            component.load_state_dict(donor.attacked_model.component.state_dict())
            start = donor.attacked_model.component.state_dict()
        if self.approach == "stack":
            # "M∘P is retrained as a whole": a new P in front of a copy of the trained M, every
            # weight trained on the labels (trained from scratch instead, M∘P stayed at chance
            # level within a CPU budget).
            retrained = copy.deepcopy(self.target).requires_grad_(True)
            augmented = Augmented(component, retrained, frozen_target=False)
            cfg, loss = self.stack_config, stack_loss
            training_targets = lambda: y[fit_idx]  # noqa: E731
        else:
            augmented = Augmented(component, self.target)
            # No labels: the loop's label slot carries M's logits (what the luring and C_E losses read),
            # computed only when P is trained (not on a cache hit).
            training_targets = lambda: train.predict(self.target, x[fit_idx]).to(dev)  # noqa: E731
            cfg = self.train_config
            loss = {"luring": luring_loss(self.weight), "ce": mimic_loss, "auto": reconstruction_loss}[self.approach]
        parts = {"approach": self.approach, "weight": self.weight if self.approach == "luring" else None,
                 "component": self.component_name, "target": self.model_name,
                 "target_weights": self.target.state_dict(), "x": x, "y": y, "split": self.validation_fraction,
                 "component_init": start, "train": cfg, "seed": self.seed, "code": code_version(models, train, sys.modules[__name__])}
        histories = []

        def run(m: Augmented) -> None:
            histories.append(train.fit(m, x[fit_idx], training_targets(), cfg, loss_fn=loss, seed=self.seed,
                                       device=self.device, log=self.log, select=lambda mm: train.accuracy(mm, x_val, y_val)))

        cache = self.cache or Cache()
        self.model = cache.model(augmented.to(dev), parts, run).to(dev)
        self.model.requires_grad_(False)
        self.history = histories[0] if histories else None
        if self.log is not None:
            where = (f"trained in {self.history.seconds:.1f} s, kept epoch {self.history.best_epoch}"
                     if self.history else "loaded from cache")
            self.log(f"{self.label} M∘P ({self.component_name} + {self.model_name}): {where}")
        return self

    def _require(self) -> tuple[nn.Module, nn.Module]:
        if self.model is None or self.target is None:
            raise NotFittedError(f"{type(self).__name__}: call fit(train_set) first")
        return self.model, self.target

    def predictions(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(M∘P(x), M(x)) as class indices."""
        augmented, target = self._require()
        return train.predict(augmented, x).argmax(1), train.predict(target, x).argmax(1)

    def accuracy_and_agreement(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Table 8: test accuracy of M∘P and agreement with M on the ground truth (both right)."""
        pa, pt = self.predictions(x)
        y = y.cpu()
        return {"test": float((pa == y).float().mean()), "agree": float(((pa == y) & (pt == y)).float().mean())}

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Soft disagreement between M and M∘P (higher = more suspicious).

        ``"margin"`` (default): log p_M(M(x)) − log p_M(T(x)) with T(x) = argmax M∘P(x) — how much
        less M believes M∘P's answer than its own; exactly 0 when they agree, so ``score > 0`` is
        the paper's detector (§4.1). ``"kl"``: KL(p_M ‖ p_{M∘P}), nonzero everywhere."""
        augmented, target = self._require()
        za, zt = train.predict(augmented, x), train.predict(target, x)
        log_pt = F.log_softmax(zt, 1)
        if self.score_kind == "kl":
            return (log_pt.exp() * (log_pt - F.log_softmax(za, 1))).sum(1)
        return log_pt.amax(1) - log_pt.gather(1, za.argmax(1, keepdim=True)).squeeze(1)

    def detect_disagreement(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's detector (§4.1, detection scenario): flag x when M(x) ≠ M∘P(x)."""
        pa, pt = self.predictions(x)
        return pa != pt

    def transfer_metrics(self, x_adv: torch.Tensor, y: torch.Tensor,
                         successful: torch.Tensor | None = None) -> dict[str, float]:
        """DR, IAR (eq. 3), AC_MoP, AC_M, DAC (eq. 4) of adversarial inputs crafted on M∘P."""
        pa, pt = self.predictions(x_adv)
        return transfer_metrics(pa, pt, y, successful)

    def save(self, path) -> Path:
        """M∘P's weights (P and M), the approach and λ, in one file written atomically."""
        self._require()
        return self._save(path, {"approach": self.approach, "weight": self.weight,
                                 "component_name": self.component_name})

    @classmethod
    def load(cls, path, input_shape: tuple[int, ...], num_classes: int, **kwargs) -> "Luring":
        """The defense ``save`` wrote, ready to score and attack (no training)."""
        stored = torch.load(Path(path), map_location="cpu", weights_only=False)
        defense = cls(stored["approach"], weight=stored["weight"], target_name=stored["model_name"],
                      component_name=stored["component_name"], seed=stored["seed"], **kwargs)
        augmented = Augmented(models.build_component(stored["component_name"], tuple(input_shape)),
                              models.build(stored["model_name"], tuple(input_shape), num_classes))
        augmented.load_state_dict(stored["state_dict"])
        defense.model = augmented.eval().requires_grad_(False)
        defense.target = augmented.target
        return defense


def paper_dataset(name: str) -> str | None:
    """The paper's data set a kit data set stands for (mnist5k and fashion are MNIST-like)."""
    if name in PAPER_WEIGHT:
        return name
    return "mnist" if name in ("mnist5k", "fashion_mnist", "fashion") else None


def attack_preset(dataset: str) -> str:
    """The attack engine's ``luring_*`` preset for a data set."""
    return {"svhn": "luring_svhn", "cifar10": "luring_cifar10"}.get(dataset, "luring_mnist")


# The paper's numbers, quoted (shared/papers/002). Table 8: (test accuracy, agreement) per model.
PAPER_TABLE_8 = paper_values.values("luring", "table_8")
# Table 14 (MNIST), Table 1 (SVHN, CIFAR-10): (AC_MoP, AC_M, DAC) per (attack, eps, approach).
PAPER_DEFENSE_TABLE = {dataset: {(attack, eps, approach): row for attack, by_eps in table.items() for eps, by_approach in by_eps.items()
                              for approach, row in by_approach.items()}
                      for dataset, table in paper_values.values("luring", "defense_table").items()}
PAPER_DEFENSE_SOURCE = paper_values.source("luring", "defense_table")
PAPER_EPS = {"mnist": (0.2, 0.3, 0.4), "svhn": (0.03, 0.06, 0.08), "cifar10": (0.02, 0.03, 0.04)}
# Table 9: mean (L2, L∞) of CW-L2 on M ("target") and on each M∘P.
PAPER_TABLE_9 = paper_values.values("luring", "table_9")
MIM_W_VARIANTS = ("mim", "dim", "mim_ti", "dim_ti")


def worst_case(rows: list[dict[str, float]]) -> dict[str, float]:
    """MIM-W (§4.2): of several attacks' metric rows, the one best for the attacker — lowest DAC,
    then lowest AC_M (Appendix F: "parameters leading to the lowest AC_M and DAC values")."""
    return min(rows, key=lambda r: (r["DAC"], r["AC_M"]))


# ----- experiments of the notebook (§3.2-3.3, §4.2, Appendix D) -----

def run_attack(defense_model: nn.Module, attack: str, x: torch.Tensor, y: torch.Tensor, eps: float | None, preset: str,
               overrides: dict | None, cache, seed: int):
    """``attacks.run`` with a ``luring_*`` preset, a notebook's per-attack ``overrides`` and the budget
    ``eps`` (checked against the data range first)."""
    from decoylab import attacks

    settings = dict((overrides or {}).get(attack, {}))
    if eps is not None:
        check_settings(eps=eps)
        settings["eps"] = eps
    return attacks.run(attack, defense_model, x, y, preset=preset, cache=cache, seed=seed, **settings)


def characterise(defenses: dict[str, Luring], x: torch.Tensor, y: torch.Tensor, attack_names, eps_list, *,
                 preset: str = "luring_mnist", overrides: dict | None = None, cache=None, seed: int = 0,
                 log: Callable[[str], None] | None = None) -> list[dict]:
    """Fig. 2: DR and IAR (eq. 3) per attack, ε and approach, for x' crafted on each M∘P and kept
    only when it fools all the augmented models (§3.2). One row per (attack, ε, approach)."""
    rows = []
    for attack in attack_names:
        for eps in eps_list:
            runs = {name: run_attack(d.attacked_model, attack, x, y, eps, preset, overrides, cache, seed)
                    for name, d in defenses.items()}
            fools_all = torch.stack([r.success for r in runs.values()]).all(0)
            for name, d in defenses.items():
                m = d.transfer_metrics(runs[name].x_adv, y, successful=fools_all)
                rows.append({"attack": attack, "eps": eps, "approach": name, "DR": m["DR"], "IAR": m["IAR"],
                             "kept": int(fools_all.sum()), "success_on_MoP": runs[name].success_rate})
            if log is not None:
                log(f"{attack} eps={eps}: {int(fools_all.sum())}/{len(y)} fool every M∘P")
    return rows


def defense_table(defenses: dict[str, Luring], x: torch.Tensor, y: torch.Tensor, eps_list, *,
                  attack_names=("spsa", "eco", "mim_w"), preset: str = "luring_mnist", overrides: dict | None = None,
                  cache=None, seed: int = 0, paper: str | None = None) -> list[dict]:
    """Tables 1 and 14: AC_MoP, AC_M and DAC per attack, ε and approach, with the paper's value
    beside each where it has one. ``"mim_w"`` runs MIM, DIM, MIM-TI and DIM-TI and keeps the one
    best for the attacker (§4.2), naming it in ``variant``."""
    rows = []
    quoted = PAPER_DEFENSE_TABLE.get(paper or "", {})
    for attack in attack_names:
        variants = MIM_W_VARIANTS if attack == "mim_w" else (attack,)
        for eps in eps_list:
            for name, d in defenses.items():
                measured = []
                for variant in variants:
                    res = run_attack(d.attacked_model, variant, x, y, eps, preset, overrides, cache, seed)
                    measured.append({**d.transfer_metrics(res.x_adv, y), "variant": variant})
                best = worst_case(measured)
                ref = quoted.get((attack, round(float(eps), 4), name))
                rows.append({"attack": attack, "eps": eps, "approach": name, "variant": best["variant"],
                             "AC_MoP": best["AC_MoP"], "AC_M": best["AC_M"], "DAC": best["DAC"],
                             "paper_AC_MoP": ref[0] if ref else None, "paper_AC_M": ref[1] if ref else None,
                             "paper_DAC": ref[2] if ref else None})
    return rows


def distortion_table(defenses: dict[str, Luring], target: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                     preset: str = "luring_mnist", overrides: dict | None = None, cache=None, seed: int = 0) -> list[dict]:
    """Table 9: mean L2 and L∞ of CW-L2's successful adversarial examples on M and on each M∘P."""
    rows = []
    for name, model in {"target": target, **{k: d.attacked_model for k, d in defenses.items()}}.items():
        res = run_attack(model, "cw2", x, y, None, preset, overrides, cache, seed)
        ok = res.success
        rows.append({"model": name, "success": res.success_rate,
                     "mean_l2": float(res.l2[ok].mean()) if ok.any() else float("nan"),
                     "mean_linf": float(res.linf[ok].mean()) if ok.any() else float("nan")})
    return rows


def component_saliency(defense: Luring, x: torch.Tensor) -> torch.Tensor:
    """Fig. 3 (right): ∇x Σ_d P(x)_d — how strongly each input pixel moves P's whole output
    (the column sums of P's Jacobian, one backward pass)."""
    augmented, _ = defense._require()
    x = x.detach().clone().to(next(augmented.parameters()).device).requires_grad_(True)
    (grad,) = torch.autograd.grad(augmented.component(x).sum(), x)
    return grad.detach().cpu()


def loss_saliency(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fig. 3 (right, top): the gradient of the cross-entropy loss with respect to the input."""
    from decoylab.attacks.fast import _objective_grad

    dev = next(model.parameters()).device
    return _objective_grad(model, x.to(dev), y.to(dev), False, None).cpu()


def opposite_sign_counts(target: nn.Module, augmented: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Appendix D.3, eq. 5: Ω_c per input and class, the number of pixels d whose logit gradients
    ∂h_c/∂x_d under M and under M∘P have opposite signs. Returns (N, K) counts."""
    dev = next((p.device for p in target.parameters()), x.device)
    x = x.detach().to(dev)
    k = train.predict(target, x[:1]).shape[1]
    counts = []
    for c in range(k):
        grads = []
        for model in (target, augmented):
            xi = x.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(model(xi)[:, c].sum(), xi)
            grads.append(g.flatten(1))
        counts.append(((grads[0] * grads[1]) < 0).sum(1).cpu())
    return torch.stack(counts, 1)
