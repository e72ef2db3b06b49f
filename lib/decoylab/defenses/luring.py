"""Luring (Bernhard, Moellic, Dutertre, "Luring of Transferable Adversarial Perturbations in the
Black-Box Paradigm", 2021): a decoy component P pasted in front of a trained, frozen target
model M, so that adversarial examples crafted on the augmented model T = M∘P do not transfer to M
(the *luring effect*, §2.3).

- ``luring_loss`` — eq. 2 / Algorithm 1 as the authors' code computes it, on the logits z of M∘P
  with a, b the top-1 and top-2 classes of M on the clean input:
  ``mean(max(0, max_{j≠a} z_j − z_a)) + λ·(−mean(z_a − z_b))``. P is trained without labels.
- The baselines of §3.1: ``"stack"`` (M∘P retrained as a whole with cross-entropy on the
  labels, starting from a new P and the trained M), ``"auto"`` (P an autoencoder trained with binary cross-entropy
  reconstruction), ``"ce"`` (P trained so that M∘P's softmax matches M's) — the paper's C_E.
- ``Luring`` — the shared defense interface: ``attacked_model`` is M∘P (what the attacker
  queries), ``target`` is M (hidden), ``score(x)`` is a soft disagreement between M and M∘P
  that is zero exactly when they agree (the paper's detector, M(x) ≠ M∘P(x), is ``score > 0``);
  ``control()`` is the C_E baseline. The paper's metrics and tables are in ``decoylab.experiments.luring``.

Every approach trains P (or M∘P) through the shared loop and cache, keeping the epoch with the
best M∘P accuracy on a held-out validation split (the authors' checkpoint choice).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from decoylab import models, params, train
from decoylab.defenses.base import AdaptiveAttack, NotFittedError, TrainedDefense
from decoylab.specs import common as common_specs
from decoylab.specs import luring as specs

APPROACHES = specs.APPROACHES
APPROACH_LABELS = {"stack": "Stack", "auto": "Auto", "ce": "C_E", "luring": "Luring"}
SCORE_KINDS = specs.SCORE_KINDS
# How P starts: "random" (Algorithm 1, line 2) or "auto" — from the Auto baseline's trained
# autoencoder, a warm start that lets CPU presets train P in a few epochs instead of 64.
COMPONENT_INITS = specs.COMPONENT_INITS
# The defense's settings per data set of the paper: λ of eq. 2 (Appendix C: 1 for MNIST and SVHN,
# 0.15 for CIFAR-10) and the architectures of Appendices A-B (target M, component P).
PAPER_WEIGHT = {"mnist": 1.0, "svhn": 1.0, "cifar10": 0.15}
PAPER_ARCHITECTURES = {"mnist": ("luring_mnist", "luring_p_mnist"), "svhn": ("luring_vgg", "luring_p_svhn"),
                       "cifar10": ("luring_vgg_wide", "luring_p_cifar10")}


def paper_dataset(name: str) -> str | None:
    """The paper's data set a kit data set stands for (mnist5k and fashion are MNIST-like), whose λ and
    architectures (``PAPER_WEIGHT``, ``PAPER_ARCHITECTURES``) apply to it; None when none does."""
    if name in PAPER_WEIGHT:
        return name
    return "mnist" if name in ("mnist5k", "fashion_mnist", "fashion") else None


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


def luring_agreement_loss(luring: "Luring", weight: float):
    """Extra loss for a Luring-aware attacker on M∘P: make M fail too (−CE of M on the labels) and
    keep M∘P's and M's outputs alike (KL), so the disagreement detector sees nothing."""
    target = luring.target

    def loss(adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        log_m = F.log_softmax(target(adv), 1)
        log_mp = F.log_softmax(luring.model(adv), 1)
        agreement = (log_mp.exp() * (log_mp - log_m)).sum(1)
        return weight * (agreement - F.nll_loss(log_m, labels, reduction="none"))
    return loss


def same_target_loss(target: nn.Module, weight: float):
    """Extra loss for Luring's level-3 attacker, whose attack on M∘P is targeted: weight × M's cross-entropy to
    the same target, so that M follows M∘P to that class (the engine subtracts it from the attack's objective)."""
    def loss(adv: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return weight * F.cross_entropy(target(adv), targets, reduction="none")
    return loss


class Luring(TrainedDefense):
    """One augmented model M∘P of the Luring paper (``approach`` = luring, or a §3.1 baseline)
    around a target M trained (or loaded from the cache) on the same data.

    ``Luring(approach, weight=λ, target_name=..., component_name=..., target_config=...,
    train_config=... (P's training), stack_config=..., auto_config=... (Auto's P; default P's),
    target_data="fit" | "all")``; ``fit(train_set)``."""
    name = "luring"
    control_description = "the C_E baseline: the same M and P trained to mimic M, no luring loss"

    def __init__(self, approach: str = "luring", *, weight: float = 1.0, target_name: str = "luring_mnist",
                 component_name: str = "luring_p_mnist", target_config: train.TrainConfig | None = None,
                 train_config: train.TrainConfig | None = None, stack_config: train.TrainConfig | None = None,
                 auto_config: train.TrainConfig | None = None,
                 validation_fraction: float = 0.1, score_kind: str = "margin", component_init: str = "random",
                 target_data: str = "fit", seed: int = 0, cache=None, device: str | None = None, log: Callable[[str], None] | None = print):
        params.check_each(approach=(approach, specs.APPROACH), weight=(weight, specs.WEIGHT),
                          target_name=(target_name, common_specs.MODEL), component_name=(component_name, specs.COMPONENT),
                          validation_fraction=(validation_fraction, specs.VALIDATION_FRACTION),
                          score_kind=(score_kind, specs.SCORE_KIND), component_init=(component_init, specs.COMPONENT_INIT),
                          target_data=(target_data, specs.TARGET_DATA_CHOICE))
        super().__init__(model_name=target_name, train_config=train_config, seed=seed, cache=cache, device=device,
                         log=log)
        self.approach = approach
        self.weight = float(weight)
        self.component_name = component_name
        self.target_config = target_config or train.TrainConfig(epochs=5, batch_size=28)
        self.stack_config = stack_config or self.target_config
        self.auto_config = auto_config or self.train_config
        self.validation_fraction = validation_fraction
        self.score_kind = score_kind
        self.component_init = component_init
        self.target_data = target_data
        self.target: nn.Module | None = None
        self.history: train.TrainHistory | None = None  # P's training: loss and validation accuracy per epoch
        self.steps_per_epoch = self.validation_images = self.target_validation_accuracy = None
        self.input_shape: tuple[int, ...] | None = None
        self.num_classes: int | None = None

    @property
    def label(self) -> str:
        return APPROACH_LABELS[self.approach]

    def twin(self, approach: str) -> "Luring":
        """The same target, data split and settings with another approach (a §3.1 baseline), unfitted."""
        params.check("approach", approach, specs.APPROACH)
        twin = copy.copy(self)  # the settings were checked when this defense was made
        twin.approach = approach
        twin.model = twin.target = twin.history = twin.input_shape = twin.num_classes = None
        twin.threshold = twin.calibrated_fpr = None
        return twin

    def control(self) -> "Luring":
        """The C_E baseline (§3.1): the same M and P trained to mimic M, without the luring loss; unfitted."""
        return self.twin("ce")

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
        self.input_shape, self.num_classes = shape, k
        fit_idx, val_idx = self._split(len(x), y)
        # "fit": M, like P, never sees the validation split (the authors' code trains M on what is left after
        # holding it out), so that P's checkpoint is chosen on images new to both; "all": M is the network
        # trained on every training image (the comparison's shared base network)
        seen = fit_idx if self.target_data == "fit" else slice(None)
        self.target = train.train_or_load(self.model_name, x[seen], y[seen], k, self.target_config,
                                          seed=self.seed, cache=self.cache, device=self.device, log=self.log)
        self.target.requires_grad_(False)
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
            cfg = self.auto_config if self.approach == "auto" else self.train_config
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
        # The validation accuracy after every epoch is kept beside the weights: how far P's training went
        # (notebook 30's training curves) is known on a cache hit too.
        if histories:
            self.history = histories[0]
            cache.save("training_histories", parts, dataclasses.asdict(self.history))
        else:
            stored = cache.load("training_histories", parts)
            self.history = train.TrainHistory(**stored) if stored else None
        self.steps_per_epoch = math.ceil(len(fit_idx) / cfg.batch_size)
        self.validation_images = len(val_idx)
        self.target_validation_accuracy = train.accuracy(self.target, x_val, y_val)
        if self.log is not None:
            where = (f"trained in {self.history.seconds:.1f} s, kept epoch {self.history.best_epoch}"
                     if histories else "loaded from cache")
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

    def adaptive_attacks(self, *, x_shadow: torch.Tensor, y_shadow: torch.Tensor, attack: tuple[str, dict[str, Any]],
                         seed: int = 0, cache=None) -> list[AdaptiveAttack]:
        """Level 0 is the paper's threat model (M hidden); an attacker who knows M attacks it directly; one
        who knows M and P adds ``luring_agreement_loss`` so that M fails too and the detector sees nothing; at
        level 3 it targets the detector's decision: targeted on M∘P at the class both already rank highest after
        the true one (by log p_M + log p_(M∘P)), with weight × M's cross-entropy to that class as its term, so
        that M and M∘P end on the same wrong class, where the disagreement score is zero."""
        augmented, target = self._require()
        # M is part of M∘P, the attacked model, except in Stack (whose M∘P holds a retrained copy of M).
        depends_on = {"target": target.state_dict()} if self.approach == "stack" else {}

        def closest_shared_class(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            z = F.log_softmax(train.predict(target, x), 1) + F.log_softmax(train.predict(augmented, x), 1)
            z[torch.arange(len(y)), y.to(z.device)] = float("-inf")
            return z.argmax(1).to(y.device)

        return [AdaptiveAttack("0 · the paper's setting: white-box on M∘P, M hidden", augmented),
                AdaptiveAttack("1 · knows M: attacks M directly", target),
                AdaptiveAttack("2 · knows M and P: M∘P with an agreement term", augmented,
                               loss_for=lambda w: luring_agreement_loss(self, w),
                               loss_key_for=self.term_key("luring_agreement", **depends_on)),
                AdaptiveAttack("3 · knows M and P: drives both to one wrong class (targeted)", augmented,
                               loss_for=lambda w: same_target_loss(target, w),
                               loss_key_for=self.term_key("luring_same_target", **depends_on),
                               targets_for=closest_shared_class,
                               note="targeted at the class M and M∘P jointly rank highest after the true one")]

    def save(self, path) -> Path:
        """M∘P's weights (P and M), the approach, λ, the score and the shapes, in one file written atomically."""
        augmented, target = self._require()
        payload = {"approach": self.approach, "weight": self.weight, "component_name": self.component_name,
                   "score_kind": self.score_kind, "validation_fraction": self.validation_fraction,
                   "component_init": self.component_init, "target_data": self.target_data,
                   "input_shape": list(self.input_shape),
                   "num_classes": self.num_classes}
        if augmented.target is not target:  # Stack retrains its copy of M; the hidden M is saved beside it
            payload["target_state_dict"] = target.state_dict()
        return self._save(path, payload)

    @classmethod
    def load(cls, path, *, cache=None, device: str | None = None, log: Callable[[str], None] | None = print) -> "Luring":
        """The defense ``save`` wrote, ready to score and attack (no training)."""
        from decoylab import config

        stored = torch.load(Path(path), map_location="cpu", weights_only=True)
        defense = cls(stored["approach"], weight=stored["weight"], target_name=stored["model_name"],
                      component_name=stored["component_name"], validation_fraction=stored["validation_fraction"],
                      score_kind=stored["score_kind"], component_init=stored["component_init"],
                      target_data=stored.get("target_data", "all"), seed=stored["seed"],
                      cache=cache, device=device, log=log)
        shape, k = tuple(stored["input_shape"]), stored["num_classes"]
        augmented = Augmented(models.build_component(stored["component_name"], shape), models.build(stored["model_name"], shape, k),
                              frozen_target="target_state_dict" not in stored)
        augmented.load_state_dict(stored["state_dict"])
        target = augmented.target
        if "target_state_dict" in stored:
            target = models.build(stored["model_name"], shape, k)
            target.load_state_dict(stored["target_state_dict"])
        where = config.device(device)
        defense.model = augmented.to(where).eval().requires_grad_(False)
        defense.target = target.to(where).eval().requires_grad_(False)
        defense.input_shape, defense.num_classes = shape, k
        return defense
