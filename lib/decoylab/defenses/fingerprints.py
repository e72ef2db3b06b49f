"""Neural Fingerprinting (Dathathri, Zheng, Murray, Yue, "Detecting Adversarial Examples via Neural
Fingerprinting", 2018): secret input directions Δxⁱ and the change in normalised logits Δy^{i,j} the
network is trained to show along them (§2, Algorithm 1).

- ``Fingerprints`` — §2.3 and §3.1 (and §3.3's random signs): N input directions, one output
  fingerprint per direction and class; the variants of the authors' released code are options:
  Δx positive-only (its MNIST script) or symmetric (the text, its CIFAR-10 script), the code's or the text's signs.
- ``fingerprint_loss`` — eq. 13 (as printed) added to cross-entropy (eq. 14) through
  the shared training loop.
- ``distances`` — eq. 9–11 for every class at once: D(x, f, ξ^{·,j}) for j = 1..K from one
  batched forward pass over the (N + 1)·B inputs x, x + Δx¹, …, x + Δxᴺ.
- ``NeuralFingerprinting`` — the shared defense interface: ``score(x) = min_j D_j`` (Algorithm 1
  rejects when it exceeds τ), ``calibrate`` sets τ on clean inputs at a chosen FPR; its ``control()``
  is the same net trained without fingerprints; ``adaptive_attacks`` are §3.4's and the kit's.

The authors' code feeds inputs on [-0.5, 0.5], the kit on [0, 1]: the same width, so ε and attack
budgets carry over unchanged; ``input_offset=-0.5`` trains and reads the net on the authors' range
(``ShiftedInputs``). Where a convolution pads, the shift changes what the padding means; where none does
(``nfp_mnist``), it is a shift of the first layer's bias, and only the training's path differs (notebook 41,
section 3c). Fingerprinted probes x + Δx are not clipped to the data range
(the authors' code does not clip either); they are the defender's queries, not images.

Table 1, the sweeps of Figs. 3–4 and the adaptive-attack harness are in ``decoylab.experiments.fingerprints``.
"""
from __future__ import annotations

import copy
import math
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from decoylab import params, train
from decoylab.defenses.base import AdaptiveAttack, TrainedDefense
from decoylab.specs import fingerprints as specs

DX_MODES, DY_SIGNS = specs.DX_MODES, specs.DY_SIGNS
# The authors' MNIST values: off-class entries 1/(3·√2) ≈ 0.2357 and the true class 0.7, so that
# ‖Δy‖₂ ≈ 1 for 10 classes. For K classes the off-class value is scaled to keep that norm.
TRUE_CLASS_VALUE = 0.7
OFF_CLASS_VALUE_10 = 1 / (3 * math.sqrt(2))



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
        params.check("n", n, specs.N_FINGERPRINTS)
        params.check("eps", eps, specs.FP_EPS)
        params.check("dx_mode", dx_mode, specs.DX_MODE)
        params.check("dy_sign", dy_sign, specs.DY_SIGN)
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


class ShiftedInputs(nn.Module):
    """``net(x + offset)``: a net trained on inputs in [offset, 1 + offset], read through the kit's [0, 1] images,
    so that attacks, probes and thresholds stay on the kit's scale (offset −0.5: the authors' [−0.5, 0.5])."""

    def __init__(self, net: nn.Module, offset: float):
        super().__init__()
        self.net, self.offset = net, float(offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + self.offset)

    def extra_repr(self) -> str:  # in the repr, so cached attacks on two offsets never share a key
        return f"offset={self.offset:g}"


class NeuralFingerprinting(TrainedDefense):
    """A classifier trained with fingerprints (eq. 14) and its detector (Algorithm 1).

    ``NeuralFingerprinting.create(..., weight=...)``; ``control()`` is the same net trained without
    fingerprints, whose fingerprint distances the detector also reads."""
    name = "fingerprints"
    control_description = "the same probes on the net trained without fingerprints"

    def __init__(self, fingerprints: Fingerprints, *, weight: float = 1.0, model_name: str = "nfp_mnist",
                 train_config: train.TrainConfig | None = None, seed: int = 0, cache=None, device: str | None = None,
                 trained_with_fingerprints: bool = True, input_offset: float = 0.0,
                 log: Callable[[str], None] | None = print):
        params.check("weight", weight, specs.WEIGHT)
        params.check("input_offset", input_offset, specs.INPUT_OFFSET)
        super().__init__(model_name=model_name, train_config=train_config, seed=seed, cache=cache, device=device,
                         log=log)
        self.fingerprints = fingerprints
        self.weight = float(weight)
        self.trained_with_fingerprints = trained_with_fingerprints
        self.input_offset = float(input_offset)

    @classmethod
    def create(cls, shape: tuple[int, ...], num_classes: int, *, n: int, eps: float, dx_mode: str = "positive",
               dy_sign: str = "code", random_sign: bool = False, fingerprint_seed: int | None = None,
               weight: float = 1.0, **kwargs) -> "NeuralFingerprinting":
        """Draw the fingerprints (CSPRNG unless ``fingerprint_seed``) and make the (unfitted) defense;
        ``Fingerprints.generate`` checks N, ε and the variants, the constructor the weight, before any training."""
        fp = Fingerprints.generate(shape, num_classes, n, eps, dx_mode=dx_mode, dy_sign=dy_sign,
                                   random_sign=random_sign, seed=fingerprint_seed)
        return cls(fp, weight=weight, **kwargs)

    def control(self) -> "NeuralFingerprinting":
        """The same architecture, training, seed and fingerprints, trained on cross-entropy alone; unfitted."""
        twin = copy.copy(self)  # the settings were checked when this defense was made
        twin.trained_with_fingerprints = False
        twin.model = twin.threshold = twin.calibrated_fpr = None
        return twin

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
        # The net learns on the shifted images (the key holds them); the defense reads it through the shift.
        net = train.train_or_load(self.model_name, train_set.x + self.input_offset, train_set.y,
                                  train_set.info.num_classes, self.train_config, seed=self.seed, cache=self.cache,
                                  device=self.device, log=self.log, **extra)
        self.model = ShiftedInputs(net, self.input_offset).eval() if self.input_offset else net
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
        params.check("tau", tau, specs.TAU)
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

    def adaptive_attacks(self, *, x_shadow: torch.Tensor, y_shadow: torch.Tensor, attack: tuple[str, dict[str, Any]],
                         seed: int = 0, cache=None) -> list[AdaptiveAttack]:
        """Beyond the oblivious attacker, two who know the fingerprints and the weights (§3.4): the paper's
        Adaptive-CW-L2 term (L_fp of the true labels, eq. 29) and the kit's, min_j D_j, the score itself.
        Once calibrated, a fourth hinges min_j D_j at τ_aim (``decision_attack``: the attacker's own threshold,
        from ``x_shadow``, at or below τ) and a fifth targets the closest other class (``closest_class_attack``)."""
        fingerprints = {"dx": self.fingerprints.dx, "dy": self.fingerprints.dy}
        levels = [self.oblivious_attack(),
                  AdaptiveAttack("1 · the paper's adaptive term (L_fp of the true labels)", self.attacked_model,
                                 loss_for=lambda w: self.adaptive_loss("attack_labels", w),
                                 loss_key_for=self.term_key("fingerprints_attack_labels", **fingerprints)),
                  AdaptiveAttack("2 · minimises min over classes of D", self.attacked_model,
                                 loss_for=lambda w: self.adaptive_loss("min_class", w),
                                 loss_key_for=self.term_key("fingerprints_min_class", **fingerprints))]
        decision = self.decision_attack(levels[2], 3, x_shadow)
        if decision is None:
            return levels
        return levels + [decision, self.closest_class_attack(4, x_shadow, fingerprints)]

    def closest_class_attack(self, level: int, x_shadow: torch.Tensor, fingerprints: dict) -> AdaptiveAttack:
        """Targeted at the other class whose fingerprints the clean image already matches best (argmin over j ≠ y
        of D_j(x)), with ``weight`` × max(0, D_t(x′) − τ_aim) for that class t: x′ that the network calls t and
        whose response matches t's fingerprints within τ_aim ≤ τ passes Algorithm 1. One class's distance is a
        smooth target where min_j D_j switches between classes (the kit's attack; the paper's §3.4 attacker uses
        the true labels). τ_aim: ``decision_aim`` on the attacker's ``x_shadow``."""
        aim, aim_fpr = self.decision_aim(x_shadow)
        model, fp = self.attacked_model, self.fingerprints

        def closest_other_class(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            d = self.distances(x)
            d[torch.arange(len(y)), y.to(d.device)] = float("inf")
            return d.argmin(1).to(y.device)

        def loss_for(weight: float):
            return lambda adv, targets: weight * torch.relu(
                distances(model, fp, adv).gather(1, targets.view(-1, 1)).squeeze(1) - aim)

        key = self.term_key("fingerprints_closest_class_hinged", **fingerprints)
        return AdaptiveAttack(f"{level} · targets the closest other class, its D only above the threshold",
                              model, loss_for=loss_for, loss_key_for=lambda w: {**key(w), "hinged_at": aim},
                              targets_for=closest_other_class,
                              note=f"term hinged at D {aim:.3g} (the attacker's own threshold at {aim_fpr:g} FPR; "
                                   f"deployed {float(self.threshold):.3g})")

    def save(self, path: str | Path) -> Path:
        """Weights, fingerprints, shapes and settings in one file, written to a temporary file and renamed."""
        fp = self.fingerprints
        return self._save(path, {"fingerprints": fp.to_dict(), "input_shape": list(fp.dx.shape[1:]),
                                 "num_classes": fp.num_classes, "weight": self.weight,
                                 "trained_with_fingerprints": self.trained_with_fingerprints,
                                 "input_offset": self.input_offset, "train_config": asdict(self.train_config), "threshold": self.threshold,
                                 "calibrated_fpr": self.calibrated_fpr})

    @classmethod
    def load(cls, path: str | Path, *, cache=None, device: str | None = None,
             log: Callable[[str], None] | None = print) -> "NeuralFingerprinting":
        """The defense ``save`` wrote, ready to score and attack (no training)."""
        stored = torch.load(Path(path), weights_only=True, map_location="cpu")
        config = stored["train_config"]
        nfp = cls(Fingerprints.from_dict(stored["fingerprints"]), weight=stored["weight"],
                  model_name=stored["model_name"], seed=stored["seed"],
                  train_config=train.TrainConfig(**{**config, "milestones": tuple(config["milestones"])}),
                  trained_with_fingerprints=stored["trained_with_fingerprints"],
                  input_offset=stored.get("input_offset", 0.0), cache=cache, device=device, log=log)
        if nfp.input_offset:  # the stored weights are the shifted net's
            stored = {**stored, "state_dict": {k.removeprefix("net."): v for k, v in stored["state_dict"].items()}}
        nfp._restore_model(stored, tuple(stored["input_shape"]), stored["num_classes"])
        if nfp.input_offset:
            nfp.model = ShiftedInputs(nfp.model, nfp.input_offset).eval()
        nfp.threshold, nfp.calibrated_fpr = stored["threshold"], stored["calibrated_fpr"]
        return nfp
