"""Neural Fingerprinting (Dathathri et al., shared/papers/004): secret input directions Δxⁱ and the
change in normalised logits Δy^{i,j} the network is trained to show along them (§2, Algorithm 1).

- ``Fingerprints`` — §2.3 and §3.1 (and §3.3's random signs): N input directions, one output
  fingerprint per direction and class; the variants of the authors' code are options
  (shared/REFERENCE-NOTES.md): Δx positive-only or symmetric, the code's or the text's signs.
- ``fingerprint_loss`` — eq. 13 (as printed) added to cross-entropy (eq. 14) through
  the shared training loop.
- ``distances`` — eq. 9–11 for every class at once: D(x, f, ξ^{·,j}) for j = 1..K from one
  batched forward pass over the (N + 1)·B inputs x, x + Δx¹, …, x + Δxᴺ.
- ``NeuralFingerprinting`` — the shared defense interface: ``score(x) = min_j D_j`` (Algorithm 1
  rejects when it exceeds τ), ``calibrate`` sets τ on clean inputs at a chosen FPR.

The paper's inputs lie on [-0.5, 0.5], the kit's on [0, 1]: the same width, so ε and attack
budgets carry over unchanged. Fingerprinted probes x + Δx are not clipped to the data range
(the authors' code does not clip either); they are the defender's queries, not images.
"""
from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from decoylab import metrics, paper_values, params, train
from decoylab.defenses.base import TrainedDefense

DX_MODES = ("positive", "symmetric")
DY_SIGNS = ("code", "paper")
# The authors' MNIST values: off-class entries 1/(3·√2) ≈ 0.2357 and the true class 0.7, so that
# ‖Δy‖₂ ≈ 1 for 10 classes. For K classes the off-class value is scaled to keep that norm.
TRUE_CLASS_VALUE = 0.7
OFF_CLASS_VALUE_10 = 1 / (3 * math.sqrt(2))



def check_settings(*, n: Any = None, eps: Any = None, tau: Any = None, dx_mode: Any = None, dy_sign: Any = None,
                   weight: Any = None) -> None:
    """Raise one ValueError naming every bad setting and what is allowed (before any training)."""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    problems = []
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        problems.append(f"n={n!r} is not allowed; the number of fingerprints N must be an integer >= 1")
    if eps is not None and not (number(eps) and 0 < eps <= 1):
        problems.append(f"eps={eps!r} is not allowed; the fingerprint scale ε must be in (0, 1] (pixels on [0, 1])")
    if tau is not None and not (number(tau) and tau >= 0):
        problems.append(f"tau={tau!r} is not allowed; the threshold τ must be a number >= 0")
    if dx_mode is not None and dx_mode not in DX_MODES:
        problems.append(f"dx_mode={dx_mode!r} is not allowed; allowed: {', '.join(DX_MODES)}")
    if dy_sign is not None and dy_sign not in DY_SIGNS:
        problems.append(f"dy_sign={dy_sign!r} is not allowed; allowed: {', '.join(DY_SIGNS)}")
    if weight is not None and not (number(weight) and weight > 0):
        problems.append(f"weight={weight!r} is not allowed; the fingerprint-loss weight α must be > 0")
    if problems:
        raise ValueError("; ".join(problems))


@dataclass
class Fingerprints:
    """The secret ξ^{i,j} = (Δxⁱ, Δy^{i,j}) of eq. 7.

    ``dx`` is (N, C, H, W); ``dy`` is (N, K, K) with ``dy[i, j]`` the expected change of the
    normalised logits along Δxⁱ for an input of class j.
    """
    dx: torch.Tensor
    dy: torch.Tensor
    eps: float
    dx_mode: str
    dy_sign: str
    random_sign: bool
    seeded: bool

    @classmethod
    def generate(cls, shape: tuple[int, ...], num_classes: int, n: int, eps: float, *, dx_mode: str = "positive",
                 dy_sign: str = "code", random_sign: bool = False, seed: int | None = None) -> "Fingerprints":
        """Draw N directions and their output fingerprints (§3.1; §3.3 with ``random_sign``).

        ``dx_mode``: "positive" draws each pixel uniformly in [0, ε) (the authors' MNIST code),
        "symmetric" in [-ε, ε] (the paper's text, the code's CIFAR-10). ``dy_sign``: "code" puts
        -0.7 on the true class and +0.2357 elsewhere (the final code), "paper" the opposite (the
        text, §3.1). ``random_sign`` multiplies Δy^{·,i} by a fair ±1 per direction (eq. 28).
        Without ``seed`` the draw comes from the operating system's CSPRNG."""
        check_settings(n=n, eps=eps, dx_mode=dx_mode, dy_sign=dy_sign)
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes} is not allowed; fingerprints need at least 2 classes")
        g = torch.Generator().manual_seed(seed if seed is not None else secrets.randbits(63))
        u = torch.rand((n, *shape), generator=g)
        dx = u * eps if dx_mode == "positive" else (2 * u - 1) * eps
        off = OFF_CLASS_VALUE_10 * math.sqrt(9 / (num_classes - 1))
        pattern = torch.full((num_classes, num_classes), off)
        pattern.fill_diagonal_(-TRUE_CLASS_VALUE)
        if dy_sign == "paper":
            pattern = -pattern
        dy = pattern.expand(n, num_classes, num_classes).clone()
        if random_sign:
            dy *= (torch.randint(0, 2, (n, 1, 1), generator=g) * 2 - 1).float()
        return cls(dx, dy, float(eps), dx_mode, dy_sign, bool(random_sign), seed is not None)

    @property
    def n(self) -> int:
        return len(self.dx)

    @property
    def num_classes(self) -> int:
        return self.dy.shape[1]

    def to_dict(self) -> dict[str, Any]:
        return {"dx": self.dx, "dy": self.dy, "eps": self.eps, "dx_mode": self.dx_mode, "dy_sign": self.dy_sign,
                "random_sign": self.random_sign, "seeded": self.seeded}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Fingerprints":
        return cls(**d)


def normalised_logits(logits: torch.Tensor) -> torch.Tensor:
    """φ(x) = h(x) / ‖h(x)‖₂ (eq. 11)."""
    return logits / logits.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def fingerprint_changes(model: nn.Module, fp: Fingerprints, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """F(x, Δxⁱ) = φ(x + Δxⁱ) − φ(x) (eq. 10) for every i, from one forward pass over
    x, x + Δx¹, …, x + Δxᴺ stacked. Returns (changes (B, N, K), logits of x (B, K)); differentiable."""
    dx = fp.dx.to(x.device, x.dtype)
    probes = torch.cat([x, (x.unsqueeze(0) + dx.unsqueeze(1)).flatten(0, 1)])  # (N + 1)·B inputs
    logits = model(probes)
    phi = normalised_logits(logits).view(fp.n + 1, len(x), -1)
    return (phi[1:] - phi[:1]).transpose(0, 1), logits[:len(x)]


def distances(model: nn.Module, fp: Fingerprints, x: torch.Tensor) -> torch.Tensor:
    """D(x, f, ξ^{·,j}) = (1/N) Σᵢ ‖F(x, Δxⁱ) − Δy^{i,j}‖₂ (eq. 9) for every class j: (B, K).

    Differentiable, so an adaptive attacker can descend it (notebook 40, §6)."""
    changes, _ = fingerprint_changes(model, fp, x)
    dy = fp.dy.to(x.device, x.dtype)  # (N, K_j, K)
    return (changes.unsqueeze(2) - dy.unsqueeze(0)).norm(dim=-1).mean(1)


def fingerprint_loss(model: nn.Module, fp: Fingerprints, x: torch.Tensor, y: torch.Tensor,
                     changes: torch.Tensor | None = None) -> torch.Tensor:
    """L_fp of eq. 13 for the classes ``y``, one value per input: (1/N) Σᵢ ‖F(x, Δxⁱ) − Δy^{i,y}‖₂².

    As printed, the squared norm summed over the K outputs. The authors' code takes the mean over
    the K outputs instead (eq. 13 divided by K), which at α = 1 barely trains the fingerprints on
    a few thousand images (notebook 40, "Choices the paper leaves open")."""
    if changes is None:
        changes, _ = fingerprint_changes(model, fp, x)
    target = fp.dy.to(x.device, x.dtype)[:, y].transpose(0, 1)  # (B, N, K): Δy^{i, y_b}
    return (changes - target).pow(2).sum(2).mean(1)


def training_loss(fp: Fingerprints, weight: float = 1.0) -> train.LossFn:
    """Eq. 14: cross-entropy + α·L_fp, from one forward pass over the clean and fingerprinted batch
    (so batch normalisation sees both, as every fingerprinted query at test time does)."""
    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        changes, logits = fingerprint_changes(model, fp, x)
        return F.cross_entropy(logits, y) + weight * fingerprint_loss(model, fp, x, y, changes).mean()

    return loss


@torch.no_grad()
def all_distances(model: nn.Module, fp: Fingerprints, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """``distances`` over a whole set in chunks of at most ``batch_size`` forward inputs; on the CPU."""
    model.eval()
    dev = next(model.parameters()).device
    chunk = max(1, batch_size // (fp.n + 1))
    return torch.cat([distances(model, fp, xb.to(dev)).cpu() for xb in x.split(chunk)]) if len(x) else \
        torch.zeros(0, fp.num_classes)


class NeuralFingerprinting(TrainedDefense):
    """A classifier trained with fingerprints (eq. 14) and its detector (Algorithm 1).

    ``NeuralFingerprinting.create(..., weight=...)``; ``plain_twin()`` is the same net trained
    without fingerprints — the control whose fingerprint distances the detector also reads."""
    name = "neural_fingerprinting"

    def __init__(self, fingerprints: Fingerprints, *, weight: float = 1.0, model_name: str = "nfp_mnist",
                 train_config: train.TrainConfig | None = None, seed: int = 0, cache=None, device: str | None = None,
                 trained_with_fingerprints: bool = True, log: Callable[[str], None] | None = print):
        check_settings(weight=weight)
        super().__init__(model_name=model_name, train_config=train_config, seed=seed, cache=cache, device=device,
                         log=log)
        self.fingerprints = fingerprints
        self.weight = float(weight)
        self.trained_with_fingerprints = trained_with_fingerprints

    @classmethod
    def create(cls, shape: tuple[int, ...], num_classes: int, *, n: int, eps: float, dx_mode: str = "positive",
               dy_sign: str = "code", random_sign: bool = False, fingerprint_seed: int | None = None,
               weight: float = 1.0, **kwargs) -> "NeuralFingerprinting":
        """Check every setting, then draw the fingerprints (CSPRNG unless ``fingerprint_seed``)."""
        check_settings(n=n, eps=eps, dx_mode=dx_mode, dy_sign=dy_sign, weight=weight)
        fp = Fingerprints.generate(shape, num_classes, n, eps, dx_mode=dx_mode, dy_sign=dy_sign,
                                   random_sign=random_sign, seed=fingerprint_seed)
        return cls(fp, weight=weight, **kwargs)

    def plain_twin(self) -> "NeuralFingerprinting":
        """The control: same architecture, training, seed and fingerprints, trained on cross-entropy alone."""
        return NeuralFingerprinting(self.fingerprints, weight=self.weight, model_name=self.model_name,
                                    train_config=self.train_config, seed=self.seed, cache=self.cache,
                                    device=self.device, trained_with_fingerprints=False, log=self.log)

    def fit(self, train_set) -> "NeuralFingerprinting":
        shape = tuple(train_set.x.shape[1:])
        if shape != tuple(self.fingerprints.dx.shape[1:]):
            raise ValueError(f"the fingerprints are for inputs shaped {tuple(self.fingerprints.dx.shape[1:])}; "
                             f"the training set has {shape}")
        if train_set.info.num_classes != self.fingerprints.num_classes:
            raise ValueError(f"the fingerprints are for {self.fingerprints.num_classes} classes; the training set "
                             f"has {train_set.info.num_classes}")
        if self.trained_with_fingerprints:
            extra = {"loss_fn": training_loss(self.fingerprints, self.weight),
                     "loss_key": {"fingerprint_loss": self.weight, **self.fingerprints.to_dict()}}
        else:
            extra = {}
        self.model = train.train_or_load(self.model_name, train_set.x, train_set.y, train_set.info.num_classes,
                                         self.train_config, seed=self.seed, cache=self.cache, device=self.device,
                                         log=self.log, **extra)
        return self

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """D_j(x) for every class j (eq. 9), (B, K), no gradient."""
        return all_distances(self.attacked_model, self.fingerprints, x)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """min_j D_j(x): Algorithm 1 accepts x when some class's fingerprints match within τ."""
        return self.distances(x).amin(1)

    def fingerprint_class(self, x: torch.Tensor) -> torch.Tensor:
        """argmin_j D_j(x): the class whose fingerprints x matches best."""
        return self.distances(x).argmin(1)

    def detect_at(self, x: torch.Tensor, tau: float) -> torch.Tensor:
        """Algorithm 1 with an explicit τ: reject (True) when no class has D_j ≤ τ."""
        check_settings(tau=tau)
        return self.score(x) > tau

    def adaptive_loss(self, kind: str = "min_class", weight: float = 1.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """A per-sample penalty for the attack engine's ``extra_loss(x_adv, labels)`` hook (§3.4).

        ``"attack_labels"``: the paper's Adaptive-CW-L2 term (eq. 29), L_fp for the labels the
        attack works with — the true labels y* in an untargeted attack, which pulls x' toward the
        fingerprints of the very class it is leaving. ``"min_class"``: the kit's attack, min_j D_j —
        exactly the quantity Algorithm 1 thresholds, whatever class it ends up matching."""
        model, fp = self.attacked_model, self.fingerprints
        if kind == "attack_labels":
            return lambda adv, labels: weight * fingerprint_loss(model, fp, adv, labels)
        if kind == "min_class":
            return lambda adv, labels: weight * distances(model, fp, adv).amin(1)
        raise ValueError(f"kind={kind!r} is not allowed; allowed: attack_labels, min_class")

    def save(self, path: str | Path) -> Path:
        """Weights, fingerprints and settings in one file, written to a temporary file and renamed."""
        return self._save(path, {"fingerprints": self.fingerprints.to_dict(), "weight": self.weight,
                                 "trained_with_fingerprints": self.trained_with_fingerprints,
                                 "threshold": self.threshold, "calibrated_fpr": self.calibrated_fpr})

    @classmethod
    def load(cls, path: str | Path, **kwargs) -> "NeuralFingerprinting":
        stored = torch.load(path, weights_only=True, map_location="cpu")
        fp = Fingerprints.from_dict(stored["fingerprints"])
        nfp = cls(fp, weight=stored["weight"], model_name=stored["model_name"], seed=stored["seed"],
                  trained_with_fingerprints=stored["trained_with_fingerprints"], **kwargs)
        nfp._restore_model(stored, tuple(fp.dx.shape[1:]), fp.num_classes)
        nfp.threshold, nfp.calibrated_fpr = stored["threshold"], stored["calibrated_fpr"]
        return nfp


# Table 1's five attacks by the kit's registry names, each run with the `nfp_mnist` preset
# (shared/REFERENCE-NOTES.md: eps 0.4 and BIM step 0.01 on MNIST; JSMA θ 1, γ 0.1, random targets).
PAPER_ATTACKS = {"FGM": ("fgsm", {}), "JSMA": ("jsma", {"targeted": True, "target": "random"}),
                 "BIM-a": ("bim_a", {}), "BIM-b": ("bim", {}), "CW-L2": ("cw2", {})}

# Table 1 (NeuralFP, blackbox-attack, AUC-ROC, 1328 pre-test points each), quoted as printed, as
# fractions; and the LID baseline rows the paper quotes (not re-measured by the kit).
PAPER_TABLE_1 = paper_values.values("fingerprints", "table_1")
PAPER_TABLE_1_LID_BLACKBOX = paper_values.values("fingerprints", "table_1_lid_blackbox")
PAPER_TABLE_1_SETTINGS = paper_values.settings("fingerprints", "table_1")
# §3.4: AUC-ROC against Adaptive-CW-L2 on CIFAR-10 with N = 30, ε = 0.006 (1024 pre-test points).
PAPER_ADAPTIVE_AUC = paper_values.values("fingerprints", "adaptive_auc")
# §3.1: test accuracy with fingerprints, as fractions.
PAPER_ACCURACY = paper_values.values("fingerprints", "accuracy")


def paper_dataset(dataset: str) -> str:
    """The dataset whose Table 1 row a kit run is shown beside: itself, or MNIST for MNIST-like
    stand-ins (mnist5k, fashion_mnist, digits)."""
    return dataset if dataset in PAPER_TABLE_1 else "mnist"


def attack_preset(dataset: str) -> str:
    """The attack presets of the authors' code for a dataset: ``nfp_cifar10`` (ε 0.05, BIM step 0.005)
    for CIFAR-10 and SVHN-like colour images, ``nfp_mnist`` (ε 0.4, BIM step 0.01) otherwise."""
    return "nfp_cifar10" if dataset in ("cifar10", "svhn") else "nfp_mnist"


def run_paper_attacks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, attack_names=None, seed: int = 0,
                      cache=None, overrides: dict[str, dict[str, Any]] | None = None,
                      preset: str = "nfp_mnist") -> dict[str, Any]:
    """Table 1's attacks (``PAPER_ATTACKS``, or the subset ``attack_names``) with ``preset``
    (``attack_preset(dataset)``); ``overrides`` maps an attack label to settings that replace the
    preset's (quick runs)."""
    from decoylab import attacks

    overrides = overrides or {}
    names = list(PAPER_ATTACKS) if attack_names is None else list(attack_names)
    unknown = [n for n in names if n not in PAPER_ATTACKS]
    if unknown:
        raise ValueError(f"attacks {unknown} are not Table 1's; allowed: {', '.join(PAPER_ATTACKS)}")
    out = {}
    for label in names:
        name, kw = PAPER_ATTACKS[label]
        out[label] = attacks.run(name, model, x, y, preset=preset, seed=seed, cache=cache,
                                 **kw, **overrides.get(label, {}))
    return out


def auc_row(clean_scores: torch.Tensor, adversarial_scores: torch.Tensor, *, correct: torch.Tensor,
            success: torch.Tensor, fpr: float = 0.05) -> dict[str, float]:
    """The detection numbers of one attack, from scores of the pre-test points and their adversarial
    versions (aligned): AUC over all points (the code's raw AUC), over correctly classified clean points
    only (what §3 describes: misclassified pre-test points discarded), over successful adversarial
    examples only, and the TPR at ``fpr`` with τ calibrated on the clean scores."""
    def area(keep_clean, keep_adv):
        c, a = clean_scores[keep_clean], adversarial_scores[keep_adv]
        return metrics.auc([0] * len(c) + [1] * len(a), torch.cat([c, a]))

    everyone = torch.ones_like(correct, dtype=torch.bool)
    return {"success": float(success[correct].float().mean()) if correct.any() else float("nan"),
            "auc_all": area(everyone, everyone), "auc_correct": area(correct, correct),
            "auc_successful": area(correct, correct & success),
            f"tpr_at_{fpr:g}": metrics.tpr_at_fpr(clean_scores[correct], adversarial_scores[correct], fpr)}




def sweep_point(train_set, test_set, *, n: int, eps: float, fingerprint_seed: int | None = 0,
                dx_mode: str = "positive", dy_sign: str = "code", random_sign: bool = False, weight: float = 1.0,
                model_name: str = "nfp_mnist", train_config: train.TrainConfig | None = None, seed: int = 0,
                n_pretest: int = 100, attack_names=tuple(PAPER_ATTACKS), overrides: dict | None = None,
                preset: str = "nfp_mnist", cache=None) -> dict[str, float]:
    """One point of Fig. 3 / Fig. 4: train (or load) the fingerprinted net for (N, ε, fingerprint set),
    then its test accuracy and, per attack, the success rate and the AUC on correctly classified
    pre-test points. The point itself is cached (its key holds the code), so a sweep resumes."""
    import sys

    from decoylab import models
    from decoylab.attacks import fast
    from decoylab.cache import Cache, code_version
    from decoylab.data import stratified_indices

    check_settings(n=n, eps=eps, dx_mode=dx_mode, dy_sign=dy_sign, weight=weight)
    cache = cache or Cache()
    parts = {"code": code_version(sys.modules[__name__], train, models, fast), "n": n, "eps": eps,
             "fingerprint_seed": fingerprint_seed, "dx_mode": dx_mode, "dy_sign": dy_sign, "random_sign": random_sign,
             "weight": weight, "model": model_name, "train": train_config or train.TrainConfig(), "seed": seed,
             "n_pretest": n_pretest, "attacks": list(attack_names), "overrides": overrides or {}, "preset": preset,
             "x": train_set.x, "y": train_set.y, "test_x": test_set.x}

    def build() -> dict[str, float]:
        nfp = NeuralFingerprinting.create(tuple(train_set.x.shape[1:]), train_set.info.num_classes, n=n, eps=eps,
                                          dx_mode=dx_mode, dy_sign=dy_sign, random_sign=random_sign,
                                          fingerprint_seed=fingerprint_seed, weight=weight, model_name=model_name,
                                          train_config=train_config, seed=seed, cache=cache, log=None).fit(train_set)
        pretest = torch.from_numpy(stratified_indices(test_set.y, min(n_pretest, len(test_set.y)), seed))
        x, y = test_set.x[pretest], test_set.y[pretest]
        correct = train.predict(nfp.model, x).argmax(1) == y
        clean = nfp.score(x)
        point = {"accuracy": train.accuracy(nfp.model, test_set.x, test_set.y)}
        for label, r in run_paper_attacks(nfp.model, x, y, attack_names=attack_names, seed=seed, cache=cache,
                                          overrides=overrides, preset=preset).items():
            row = auc_row(clean, nfp.score(r.x_adv), correct=correct, success=r.success)
            point[f"{label}_success"], point[f"{label}_auc"] = row["success"], row["auc_correct"]
        return point

    return cache.get_or_build("fingerprints_sweep", parts, build)


def run_adaptive_attacks(nfp: NeuralFingerprinting, x: torch.Tensor, y: torch.Tensor, *, weight: float,
                         cw_settings: dict[str, Any] | None = None, preset: str = "nfp_mnist", seed: int = 0,
                         cache=None) -> dict[str, Any]:
    """§3.4 side by side, all CW-L2 (``preset``, ``cw_settings`` override it) on the same images:
    without an extra term, the paper's Adaptive-CW-L2 (L_fp of the true labels, weight 1, eq. 29) and the
    kit's attack (``weight`` × min_j D_j). With a ``cache`` the three results are stored under the
    fingerprints, the weights, the images and the code, so a re-run does not re-attack."""
    import sys

    from decoylab import attacks
    from decoylab.attacks import fast
    from decoylab.cache import code_version

    check_settings(weight=weight)
    cw_settings = dict(cw_settings or {})
    runs = {"cw": None, "paper_adaptive": ("attack_labels", 1.0), "kit_adaptive": ("min_class", float(weight))}

    def build() -> dict[str, dict[str, Any]]:
        out = {}
        for label, hook in runs.items():
            extra = nfp.adaptive_loss(*hook) if hook else None
            out[label] = vars(attacks.run("cw2", nfp.attacked_model, x, y, preset=preset, seed=seed,
                                          extra_loss=extra, **cw_settings))
        return out

    if cache is None:
        stored = build()
    else:
        parts = {"code": code_version(sys.modules[__name__], fast), "fingerprints": nfp.fingerprints.to_dict(),
                 "weights": nfp.attacked_model.state_dict(), "architecture": repr(nfp.attacked_model), "x": x, "y": y,
                 "runs": runs, "cw_settings": cw_settings, "preset": preset, "seed": seed}
        stored = cache.get_or_build("adversarial_adaptive", parts, build)
    return {label: attacks.core.AttackResult(**r) for label, r in stored.items()}
