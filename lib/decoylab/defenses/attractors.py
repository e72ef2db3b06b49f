"""Injected Attractors (Zhang, Chang, Lee; shared/papers/001): a QIM watermark decoder W summed into
the classifier C, so that an attacker following the combined model's gradients walks toward a
watermarked point (an *attractor*) the forensic analyser can see.

- ``QIMDecoder`` — §V-E as a differentiable module: pixels on [0, 255], one interval size δᵢ per
  pixel (drawn from ``intervals``), codewords of bit 0 at 0.5δ, 2.5δ, … and of bit 1 at 1.5δ,
  3.5δ, …; q = distance to the nearest codeword of the message bit; Q(x, m) = Σ αᵢ qᵢ; the
  correlation wₖ = S(closeness) with S of eq. 3; n secret messages of ℓ bits.
- ``CombinedModel`` — eq. 2: M(x) = (C(x) + W(x)) / |C(x) + W(x)|₁ with C's softmax as C(x).
- ``Attractors`` — the shared defense interface: ``attacked_model`` is M, ``score`` folds the
  detector F_d's conditions C1 (max w > U), C2 (min w < L), C3 (stdev w > σ₀) of §V-C into one
  number, ``calibrate`` sets U, L, σ₀ at a chosen FPR, ``recover`` is F_r = argmin W (§V-D),
  ``integrated_model`` is M_(d,r) of §III-B.
- ``TrapdoorConstruction`` — the counter-example of §IV-C, eq. 1: D·W_ω + (1 − D)·C with an
  additive-watermark decoder W_ω and trapdoor detector D, built analytically.
- ``nearest_attractor``, ``attractor_cosines``, ``local_density_cosines``, ``branch_gradients`` —
  the measurements of Figs. 5–7.
"""
from __future__ import annotations

import math
import secrets
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from decoylab import metrics, paper_values, params, train
from decoylab.defenses.base import NotFittedError, TrainedDefense

PIXEL_LEVELS = 255.0  # §VI-B: "we represent the pixel as values from [0, 255]"
# The kit's choices where §V-E gives none (written out in notebook 20):
DEFAULT_INTERVALS = (3.0, 128.0)  # §VI-B
DEFAULT_WEIGHTS = (1.0, 3.0)  # "more weightage on larger interval size" (§VI-F5): 3:1
DEFAULT_A0, DEFAULT_A1 = 1.0, 0.5  # closeness 0.5 (a random image) maps to 0, closeness 1 to tanh(1)
DEFAULT_STRENGTH = 0.5  # A2: large enough for W's gradient to dominate C's, small enough for accuracy
# Both codewords of a pixel must lie in [0, 255]: 1.5·δ ≤ 255.
MAX_INTERVAL = PIXEL_LEVELS / 1.5
CODEWORDS = ("lattice", "in_range")



def check_settings(*, intervals: Any = None, weights: Any = None, strength: Any = None, a0: Any = None,
                   a1: Any = None, fpr: Any = None, codewords: Any = None) -> None:
    """Raise one ValueError naming every bad setting and what is allowed (before any computation)."""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    problems = []
    if intervals is not None:
        if not isinstance(intervals, (list, tuple)) or not intervals or \
                not all(number(d) and 0 < d <= MAX_INTERVAL for d in intervals):
            problems.append(f"intervals={intervals!r} is not allowed; give one or more interval sizes δ in "
                            f"(0, {MAX_INTERVAL:g}] on the [0, 255] pixel scale (both codewords must fit)")
    if weights is not None:
        if not isinstance(weights, (list, tuple)) or not all(number(a) and a >= 0 for a in weights) or \
                not sum(weights) > 0:
            problems.append(f"weights={weights!r} is not allowed; the weights α must be numbers >= 0 with a "
                            f"positive sum")
        elif intervals is not None and isinstance(intervals, (list, tuple)) and len(weights) != len(intervals):
            problems.append(f"weights={weights!r} is not allowed; give one weight per interval size "
                            f"({len(intervals)})")
    if strength is not None and not (number(strength) and strength > 0):
        problems.append(f"strength={strength!r} is not allowed; the attractor strength A2 must be > 0")
    if a0 is not None and not (number(a0) and a0 > 0):
        problems.append(f"a0={a0!r} is not allowed; A0 must be > 0")
    if a1 is not None and not (number(a1) and a1 >= 0):
        problems.append(f"a1={a1!r} is not allowed; A1 must be >= 0")
    if number(a0) and number(a1) and a0 >= 1 + a1:
        problems.append(f"a0={a0!r}, a1={a1!r} are not allowed; eq. 3's denominator 1 + A1 − A0·r must stay "
                        f"positive for closeness r in [0, 1], so A0 < 1 + A1")
    if codewords is not None and codewords not in CODEWORDS:
        problems.append(f"codewords={codewords!r} is not allowed; allowed: {', '.join(CODEWORDS)}")
    if fpr is not None and not (number(fpr) and 0 < fpr < 1):
        problems.append(f"fpr={fpr!r} is not allowed; the false-positive rate must be in (0, 1)")
    if problems:
        raise ValueError("; ".join(problems))


class QIMDecoder(nn.Module):
    """W_φ of §V-E for inputs in [0, 1] (scaled to [0, 255] inside): one correlation per message.

    ``interval_of_pixel`` picks δᵢ per pixel from ``intervals`` (equal shares, seeded); αᵢ is the
    weight of that interval size. Distances are measured in units of δᵢ (see ``bit_distances``)
    and Q(x, m) = Σ αᵢ qᵢ / Σ αᵢ; the closeness r = 1 − Q is 1 on an exactly watermarked image and
    about 0.5 on a random one; wₖ = S(r) = A2·tanh((A0·r − A1) / (1 + A1 − A0·r)) (eq. 3)."""

    def __init__(self, messages: torch.Tensor, interval_of_pixel: torch.Tensor, intervals: Sequence[float],
                 weights: Sequence[float], strength: float = DEFAULT_STRENGTH, a0: float = DEFAULT_A0,
                 a1: float = DEFAULT_A1, codewords: str = "lattice"):
        super().__init__()
        check_settings(intervals=list(intervals), weights=list(weights), strength=strength, a0=a0, a1=a1,
                       codewords=codewords)
        self.codewords = codewords
        self.register_buffer("messages", messages.float())  # (n, ℓ) bits
        self.register_buffer("interval_of_pixel", interval_of_pixel.long())  # (ℓ,) index into intervals
        self.register_buffer("delta", torch.tensor(intervals, dtype=torch.float32)[interval_of_pixel])
        alpha = torch.tensor(weights, dtype=torch.float32)[interval_of_pixel]
        self.register_buffer("alpha", alpha / alpha.sum())
        self.intervals, self.weights = tuple(float(d) for d in intervals), tuple(float(a) for a in weights)
        self.strength, self.a0, self.a1 = float(strength), float(a0), float(a1)

    def extra_repr(self) -> str:
        # The settings that change the output but are not buffers: repr(model) is part of the attack
        # cache's key, so M with another A2 must not find the adversarial set of this one.
        return (f"intervals={self.intervals}, weights={self.weights}, strength={self.strength!r}, "
                f"a0={self.a0!r}, a1={self.a1!r}, codewords={self.codewords!r}")

    @classmethod
    def generate(cls, num_classes: int, num_pixels: int, *, intervals: Sequence[float] = DEFAULT_INTERVALS,
                 weights: Sequence[float] = DEFAULT_WEIGHTS, strength: float = DEFAULT_STRENGTH,
                 a0: float = DEFAULT_A0, a1: float = DEFAULT_A1, codewords: str = "lattice",
                 seed: int | None = None) -> "QIMDecoder":
        """n random ℓ-bit messages and a random interval per pixel, from ``seed`` or the OS CSPRNG."""
        check_settings(intervals=list(intervals), weights=list(weights), strength=strength, a0=a0, a1=a1,
                       codewords=codewords)
        g = torch.Generator().manual_seed(secrets.randbits(63) if seed is None else seed)
        messages = torch.randint(0, 2, (num_classes, num_pixels), generator=g)
        share = torch.arange(num_pixels) % len(intervals)
        interval_of_pixel = share[torch.randperm(num_pixels, generator=g)]
        return cls(messages, interval_of_pixel, intervals, weights, strength, a0, a1, codewords)

    def _nearest_codeword(self, x: torch.Tensor, bits: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """(u − 2k, 2k) for the nearest codeword (2k + 0.5 + b)·δ of bit b inside [0, 255], in units of δ."""
        u = x.flatten(1) * PIXEL_LEVELS / self.delta - 0.5 - bits  # codewords of bit b at u = 2k, k = 0, 1, ...
        highest = torch.floor((PIXEL_LEVELS / self.delta - 0.5 - bits) / 2)
        k = torch.round(u / 2).clamp(min=0.0).minimum(highest)
        return u - 2 * k, k

    def bit_distances(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Distance, in units of δᵢ, of every pixel to the nearest codeword of bit 0 and of bit 1.

        ``codewords="lattice"`` (default): standard QIM (Chen & Wornell 2001), the codewords of bit b
        are the whole coset δ·(2ℤ + 0.5 + b), so q ∈ [0, 1] and black or white pixels sit half-way
        between the two bits' codewords. ``"in_range"``: only §V-E's listed codewords 0.5δ, 2.5δ, …
        and 1.5δ, 3.5δ, … inside [0, 255], so a black pixel is 0.5 from bit 0 and 1.5 from bit 1."""
        if self.codewords == "in_range":
            return self._nearest_codeword(x, 0.0)[0].abs(), self._nearest_codeword(x, 1.0)[0].abs()
        u = x.flatten(1) * PIXEL_LEVELS / self.delta - 0.5
        return (u - 2 * torch.round(u / 2)).abs(), (u - 1 - 2 * torch.round((u - 1) / 2)).abs()

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """Q(x, mₖ) for every message k: (N, n)."""
        d0, d1 = self.bit_distances(x)
        return (d0 * self.alpha) @ (1 - self.messages).T + (d1 * self.alpha) @ self.messages.T

    def correlation_of_closeness(self, closeness: torch.Tensor) -> torch.Tensor:
        """S of eq. 3 applied to r = 1 − Q."""
        scaled = self.a0 * closeness
        return self.strength * torch.tanh((scaled - self.a1) / (1 + self.a1 - scaled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.correlation_of_closeness(1 - self.distance(x))

    def watermarked(self, x: torch.Tensor, message: torch.Tensor) -> torch.Tensor:
        """The nearest image to ``x`` that carries message index ``message`` (one per row) exactly:
        every pixel moved to the nearest codeword of its bit that lies in [0, 255] (Q = 0)."""
        bits = self.messages[message]  # (N, ℓ)
        k = self._nearest_codeword(x, bits)[1]
        pixels = (2 * k + 0.5 + bits) * self.delta
        return (pixels / PIXEL_LEVELS).view_as(x)


class CombinedModel(nn.Module):
    """M_(ψ,φ) of eq. 2: (C(x) + W(x)) / |C(x) + W(x)|₁ with C(x) the classifier's softmax. The output is
    what the attacker sees and differentiates; the attack engine treats it as the logits."""

    def __init__(self, classifier: nn.Module, decoder: QIMDecoder):
        super().__init__()
        self.classifier, self.decoder = classifier, decoder

    def combine(self, soft_labels: torch.Tensor, correlations: torch.Tensor) -> torch.Tensor:
        total = soft_labels + correlations
        return total / total.abs().sum(1, keepdim=True).clamp_min(1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine(F.softmax(self.classifier(x), 1), self.decoder(x))


class IntegratedModel(nn.Module):
    """M_(d,r) of §III-B: M's prediction, replaced by F_r = argmin W when F_d flags the input. The
    decision is piecewise constant, so its gradient is M's: flagged rows get a constant +2 on the
    recovered class (M's outputs lie in [−1, 1], so that class becomes the argmax)."""

    def __init__(self, defense: "Attractors"):
        super().__init__()
        self.defense = defense
        self.combined = defense.attacked_model
        # Buffers, so the calibration is part of the state (and of the attack cache's key).
        self.register_buffer("threshold", torch.tensor(float(defense.threshold)))
        self.register_buffer("reference", defense.reference.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.combined(x)
        with torch.no_grad():
            correlations = self.combined.decoder(x)
            flagged = self.defense.flags(correlations)
            recovered = F.one_hot(correlations.argmin(1), out.shape[1]).to(out.dtype)
        return out + 2 * recovered * flagged[:, None].to(out.dtype)


def quantise_8bit(x: torch.Tensor) -> torch.Tensor:
    """What a deployed image model receives: pixels rounded to 1/255 (the step BPDA differentiates through)."""
    return torch.round(x * PIXEL_LEVELS) / PIXEL_LEVELS


CONDITIONS = ("C1 max w > U", "C2 min w < L", "C3 stdev w > σ0")


class Attractors(TrainedDefense):
    """The shared interface over C (trained through the kit's loop and cache, or given) and W.

    ``score(x)`` is the largest of the three conditions' standardised statistics,
    z₁ = (max w − μ₁)/s₁, z₂ = (μ₂ − min w)/s₂, z₃ = (stdev w − μ₃)/s₃, with μ, s measured on clean
    inputs by ``calibrate``; flagging ``score > t`` is exactly F_d with U = μ₁ + t·s₁,
    L = μ₂ − t·s₂, σ₀ = μ₃ + t·s₃, so one threshold at a chosen FPR sets all three."""
    name = "attractors"

    def __init__(self, *, intervals: Sequence[float] = DEFAULT_INTERVALS, weights: Sequence[float] = DEFAULT_WEIGHTS,
                 strength: float = DEFAULT_STRENGTH, a0: float = DEFAULT_A0, a1: float = DEFAULT_A1,
                 codewords: str = "lattice", key_seed: int | None = None, model_name: str = "deepsec_mnist",
                 **kwargs):
        check_settings(intervals=list(intervals), weights=list(weights), strength=strength, a0=a0, a1=a1,
                       codewords=codewords)
        super().__init__(model_name=model_name, **kwargs)
        self.codewords = codewords
        self.intervals, self.weights = tuple(intervals), tuple(weights)
        self.strength, self.a0, self.a1, self.key_seed = strength, a0, a1, key_seed
        self.classifier: nn.Module | None = None
        self.decoder: QIMDecoder | None = None
        self.reference: torch.Tensor | None = None  # (2, 3): mean and spread of the three statistics

    def fit(self, train_set) -> "Attractors":
        """Train C on ``train_set`` (or load it from the cache) and wrap it with a new W."""
        classifier = train.train_or_load(self.model_name, train_set.x, train_set.y, train_set.info.num_classes,
                                         self.train_config, seed=self.seed, cache=self.cache, device=self.device,
                                         log=self.log)
        return self.protect(classifier, tuple(train_set.x.shape[1:]), train_set.info.num_classes)

    def protect(self, classifier: nn.Module, input_shape: tuple[int, ...], num_classes: int) -> "Attractors":
        """Wrap an already trained C — no retraining (§I: "no re-training is required")."""
        self.classifier = classifier.eval()
        self.decoder = QIMDecoder.generate(num_classes, math.prod(input_shape), intervals=self.intervals,
                                           weights=self.weights, strength=self.strength, a0=self.a0, a1=self.a1,
                                           codewords=self.codewords, seed=self.key_seed)
        device = next(classifier.parameters()).device
        self.model = CombinedModel(self.classifier, self.decoder.to(device)).eval()
        return self

    def _require(self) -> CombinedModel:
        if self.model is None:
            raise NotFittedError("Attractors: call fit(train_set) or protect(classifier, ...) first")
        return self.model

    @torch.no_grad()
    def correlations(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """W(x): one correlation per message, (N, n)."""
        model = self._require()
        device = model.decoder.messages.device
        return torch.cat([model.decoder(b.to(device)).cpu() for b in x.split(batch_size)])

    @staticmethod
    def statistics(correlations: torch.Tensor) -> torch.Tensor:
        """(N, 3): max w, min w, stdev w — what conditions C1, C2, C3 test."""
        return torch.stack([correlations.amax(1), correlations.amin(1), correlations.std(1)], 1)

    def _z(self, correlations: torch.Tensor) -> torch.Tensor:
        if self.reference is None:
            raise NotFittedError("Attractors: call calibrate(x_clean, fpr) before scoring")
        stats = self.statistics(correlations)
        mean, spread = self.reference.to(stats.device)
        z = (stats - mean) / spread
        z[:, 1] = -z[:, 1]  # C2 looks for unusually *low* minima
        return z

    def score_correlations(self, correlations: torch.Tensor) -> torch.Tensor:
        return self._z(correlations).amax(1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_correlations(self.correlations(x))

    def adaptive_loss(self, weight: float = 1.0):
        """A per-sample penalty for the attack engine's ``extra_loss(x_adv, labels)`` hook: ``weight`` ×
        the detector's score (the largest standardised C1/C2/C3 statistic) computed *with* gradients
        through W, so an attacker who knows the decomposition can keep W's output looking clean."""
        model = self._require()
        if self.reference is None:
            raise NotFittedError("Attractors: call calibrate(x_clean, fpr) before building the adaptive loss")
        return lambda adv, labels: weight * self.score_correlations(model.decoder(adv))

    def calibrate(self, x_clean: torch.Tensor, fpr: float) -> float:
        """Measure the clean statistics on ``x_clean``, then set one threshold so that a fraction ``fpr``
        of them is flagged; returns it (``thresholds`` gives U, L, σ₀)."""
        check_settings(fpr=fpr)
        stats = self.statistics(self.correlations(x_clean))
        self.reference = torch.stack([stats.mean(0), stats.std(0).clamp_min(1e-12)])
        return super().calibrate(x_clean, fpr)

    @property
    def thresholds(self) -> dict[str, float]:
        """U, L and σ₀ of §V-C at the calibrated threshold."""
        if self.threshold is None or self.reference is None:
            raise NotFittedError("Attractors: call calibrate(x_clean, fpr) first")
        mean, spread = self.reference
        t = self.threshold
        return {"U": float(mean[0] + t * spread[0]), "L": float(mean[1] - t * spread[1]),
                "sigma0": float(mean[2] + t * spread[2])}

    def flags(self, correlations: torch.Tensor) -> torch.Tensor:
        """F_d on given correlations (needs ``calibrate``)."""
        if self.threshold is None:
            raise NotFittedError("Attractors: call calibrate(x_clean, fpr) before detecting")
        return self.score_correlations(correlations) > self.threshold

    def conditions(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3) booleans: which of C1, C2, C3 fire on each input."""
        if self.threshold is None:
            raise NotFittedError("Attractors: call calibrate(x_clean, fpr) first")
        return self._z(self.correlations(x)) > self.threshold

    def recover(self, x: torch.Tensor) -> torch.Tensor:
        """F_r of §V-D: argmin W(x), the class whose watermark the attack suppressed."""
        return self.correlations(x).argmin(1)

    def integrated_model(self) -> IntegratedModel:
        """M_(d,r) as a module (needs ``calibrate``)."""
        if self.threshold is None:
            raise NotFittedError("Attractors: call calibrate(x_clean, fpr) before building M_(d,r)")
        return IntegratedModel(self).eval()

    def served_model(self) -> nn.Module:
        """M behind the 8-bit quantisation a deployed model receives, with BPDA's identity backward
        pass — what the BPDA attack differentiates."""
        from decoylab.attacks import BPDA

        return BPDA(self._require(), quantise_8bit)

    def save(self, path) -> Path:
        """C's weights, the secret messages and interval map, and the detector's reference, atomically."""
        decoder = self._require().decoder
        self.model = self.classifier  # TrainedDefense._save stores attacked_model's weights: C's here
        try:
            return self._save(path, {"messages": decoder.messages.cpu(), "interval_of_pixel":
                                     decoder.interval_of_pixel.cpu(), "intervals": decoder.intervals,
                                     "weights": decoder.weights, "strength": decoder.strength, "a0": decoder.a0,
                                     "a1": decoder.a1, "codewords": decoder.codewords, "reference": self.reference, "threshold": self.threshold,
                                     "calibrated_fpr": self.calibrated_fpr})
        finally:
            self.model = CombinedModel(self.classifier, decoder).eval()

    @classmethod
    def load(cls, path, input_shape: tuple[int, ...], num_classes: int, **kwargs) -> "Attractors":
        """The defense ``save`` wrote: same C, same secret, same thresholds."""
        stored = torch.load(Path(path), map_location="cpu", weights_only=False)
        defense = cls(intervals=stored["intervals"], weights=stored["weights"], strength=stored["strength"],
                      a0=stored["a0"], a1=stored["a1"], codewords=stored["codewords"],
                      model_name=stored["model_name"], seed=stored["seed"],
                      **kwargs)
        defense._restore_model(stored, input_shape, num_classes)
        defense.classifier = defense.model
        defense.decoder = QIMDecoder(stored["messages"], stored["interval_of_pixel"], stored["intervals"],
                                     stored["weights"], stored["strength"], stored["a0"], stored["a1"],
                                     stored["codewords"])
        defense.model = CombinedModel(defense.classifier, defense.decoder).eval()
        defense.reference, defense.threshold = stored["reference"], stored["threshold"]
        defense.calibrated_fpr = stored["calibrated_fpr"]
        return defense


# ----- §IV-C: a trapdoored model that meets the training goals but does not steer gradients -----

class TrapdoorConstruction(nn.Module):
    """Eq. 1: M̃(x) = D_κ(x)·W_ω(x) + (1 − D_κ(x))·C_π(x), all three analytic but C.

    W_ω decodes an *additive* watermark: trapdoor k adds ``amplitude`` on the pixels where a secret
    ±1 pattern ωₖ is +1; the correlation cₖ(x) = ⟨ωₖ, x⟩/ℓ, W_ω = softmax(gain·c). D_κ =
    sigmoid(gain·(max c − threshold)) says whether a trapdoor is present (``calibrate`` sets the threshold). The output is a
    probability vector; ``forward`` returns its log, so the attack engine's cross-entropy is M̃'s
    negative log-likelihood."""

    def __init__(self, classifier: nn.Module, num_classes: int, input_shape: tuple[int, ...], *,
                 amplitude: float = 0.3, gain: float = 400.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.classifier, self.amplitude, self.gain = classifier.eval(), float(amplitude), float(gain)
        patterns = torch.randint(0, 2, (num_classes, math.prod(input_shape)), generator=g).float() * 2 - 1
        self.register_buffer("patterns", patterns)
        self.input_shape = tuple(input_shape)
        self.threshold = self.amplitude / 4  # until ``calibrate`` places it between clean and trapdoored inputs

    @torch.no_grad()
    def calibrate(self, x_clean: torch.Tensor, seed: int = 0) -> float:
        """Place D's threshold midway between clean inputs (99th percentile of max correlation) and
        trapdoored ones (their 1st percentile) — the "accurate detector" eq. 1 assumes; small images
        have noisy correlations, so a fixed threshold would fire on clean ones."""
        device = self.patterns.device
        x_clean = x_clean.to(device)
        labels = torch.randint(0, self.patterns.shape[0], (len(x_clean),),
                               generator=torch.Generator().manual_seed(seed)).to(device)
        clean = self.correlation(x_clean).amax(1)
        marked = self.correlation(self.trapdoored(x_clean, labels)).amax(1)
        self.threshold = float((clean.quantile(0.99) + marked.quantile(0.01)) / 2)
        return self.threshold

    def extra_repr(self) -> str:
        # Part of the attack cache's key (see QIMDecoder.extra_repr): the calibrated threshold moves D.
        return f"amplitude={self.amplitude!r}, gain={self.gain!r}, threshold={self.threshold!r}"

    def correlation(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.patterns.T / self.patterns.shape[1]

    def trapdoored(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """x + Δ_t: the trapdoor of class ``label`` (one per row) added and clipped."""
        delta = self.amplitude * (self.patterns[label] > 0).float()
        return (x + delta.view(-1, *self.input_shape)).clamp(0, 1)

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(D, W_ω, C_π) at x."""
        correlation = self.correlation(x)
        detector = torch.sigmoid(self.gain * (correlation.amax(1) - self.threshold))
        return detector, F.softmax(self.gain * correlation, 1), F.softmax(self.classifier(x), 1)

    def branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """N1 = D·W_ω and N2 = (1 − D)·C_π (Fig. 6)."""
        detector, watermark, soft = self.parts(x)
        return detector[:, None] * watermark, (1 - detector[:, None]) * soft

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n1, n2 = self.branches(x)
        return torch.log((n1 + n2).clamp_min(1e-12))


# ----- Figs. 5-7: which branch drives the gradient, and does it point to an attractor? -----

def _loss_gradient(model_output, x: torch.Tensor, y: torch.Tensor, retain_graph: bool = False) -> torch.Tensor:
    (grad,) = torch.autograd.grad(F.cross_entropy(model_output, y, reduction="sum"), x, retain_graph=retain_graph)
    return grad


def branch_gradients(model: CombinedModel | TrapdoorConstruction, x: torch.Tensor, y: torch.Tensor,
                     batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Per input: the 1-norms of the two summed signals and of the loss gradient that flows through
    each (the other held constant) — Fig. 5 (W vs C) and Fig. 6 (N1 = D·W_ω vs N2 = (1 − D)·C_π).
    By the chain rule the two gradients add up to the whole model's."""
    out: dict[str, list] = {k: [] for k in ("signal_1", "signal_2", "gradient_1", "gradient_2")}
    device = next(model.parameters()).device
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        xb, yb = xb.to(device).requires_grad_(True), yb.to(device)
        if isinstance(model, CombinedModel):
            first, second = model.decoder(xb), F.softmax(model.classifier(xb), 1)
            through_first = model.combine(second.detach(), first)
            through_second = model.combine(second, first.detach())
        else:
            first, second = model.branches(xb)
            through_first = torch.log((first + second.detach()).clamp_min(1e-12))
            through_second = torch.log((first.detach() + second).clamp_min(1e-12))
        out["signal_1"].append(first.detach().abs().sum(1).cpu())
        out["signal_2"].append(second.detach().abs().sum(1).cpu())
        for key, output in (("gradient_1", through_first), ("gradient_2", through_second)):
            grad = _loss_gradient(output, xb, yb, retain_graph=key == "gradient_1")  # both share the forward pass
            out[key].append(grad.flatten(1).abs().sum(1).cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def nearest_attractor(decoder: QIMDecoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each input, the nearest point (L2) whose decoding is *exactly* one of the messages (Q = 0),
    and that message's class t: per message, every pixel moves to its bit's nearest codeword in
    [0, 255]; the message whose watermarked image is closest wins."""
    best, best_dist, label = x.clone(), torch.full((len(x),), float("inf"), device=x.device), \
        torch.zeros(len(x), dtype=torch.long, device=x.device)
    for t in range(decoder.messages.shape[0]):
        candidate = decoder.watermarked(x, torch.full((len(x),), t, dtype=torch.long, device=x.device))
        dist = (candidate - x).flatten(1).norm(dim=1)
        closer = dist < best_dist
        best[closer], best_dist[closer], label[closer] = candidate[closer], dist[closer], t
    return best, label


def attractor_cosines(model: nn.Module, decoder: QIMDecoder, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Fig. 7a: cos(x_w − x, −∇ₓ J(x, y_t)) with x_w the nearest attractor and t its message, for
    ``model`` (C's logits or M): does a step that raises class t move toward t's attractor?"""
    device = next(model.parameters()).device
    out = []
    for xb in x.split(batch_size):
        xb = xb.to(device)
        target, t = nearest_attractor(decoder, xb)
        xb = xb.clone().requires_grad_(True)
        descent = -_loss_gradient(model(xb), xb, t)
        out.append(metrics.cosine(target - xb.detach(), descent).cpu())
    return torch.cat(out)


def cosines_by_interval(model: nn.Module, decoder: QIMDecoder, x: torch.Tensor,
                        batch_size: int = 256) -> dict[str, dict[str, torch.Tensor]]:
    """Fig. 7a taken apart: the cosine between x_w − x (the exact nearest attractor, message t) and
    (a) ``model``'s descent direction −∇ₓ J(x, t), as in ``attractor_cosines``, and (b) W's own pull
    toward message t, −∇ₓ Q(x, m_t), each over all pixels and over the pixels of each interval size
    alone. The intervals move pixels by very different amounts (δ = 3 vs 128 on [0, 255]) while Q's
    gradient is largest where δ is smallest, so a direction can agree within every interval size and
    still have a small cosine over all pixels."""
    device = next(model.parameters()).device
    groups = {"all pixels": None, **{f"δ = {d:g} pixels": decoder.interval_of_pixel == i
                                     for i, d in enumerate(decoder.intervals)}}
    out = {kind: {g: [] for g in groups} for kind in ("model loss gradient", "W alone (−∇Q)")}
    for xb in x.split(batch_size):
        xb = xb.to(device)
        target, t = nearest_attractor(decoder, xb)
        toward = (target - xb).flatten(1)
        xg = xb.clone().requires_grad_(True)
        descent = -_loss_gradient(model(xg), xg, t).flatten(1)
        xq = xb.clone().requires_grad_(True)
        (pull,) = torch.autograd.grad(-decoder.distance(xq).gather(1, t[:, None]).sum(), xq)
        for kind, direction in (("model loss gradient", descent), ("W alone (−∇Q)", pull.flatten(1))):
            for name, mask in groups.items():
                a, b = (toward, direction) if mask is None else (toward[:, mask], direction[:, mask])
                out[kind][name].append(metrics.cosine(a, b).detach().cpu())
    return {kind: {g: torch.cat(v) for g, v in by_group.items()} for kind, by_group in out.items()}


@torch.no_grad()
def local_density_cosines(model: nn.Module, decoder: QIMDecoder, x: torch.Tensor, *, radius: float,
                          samples: int, seed: int = 0, cache=None) -> torch.Tensor:
    """Fig. 7b: cos(x_w − x, ∇ₓ H_δ(x, y_t)) with H_δ the fraction of points on the sphere of radius
    δ around x classified t (§IV-B b). Its gradient is estimated from the same ``samples`` sphere
    points: ∇H ≈ (d/δ)·mean((1[pred = t] − H)·u) — the gradient of the ball-smoothed indicator, the
    baseline H subtracted to cut variance; the factor d/δ does not change the cosine. Where every
    sample has the same class the estimate is 0 and so is the cosine.

    It costs ``samples`` forward passes per image, so with a ``decoylab.cache.Cache`` the result is
    stored, keyed by the model, the decoder, the images and the settings."""
    if cache is not None:
        from decoylab.cache import code_version, model_identity

        parts = {"measure": "local_density_cosines", "code": code_version(sys.modules[__name__]), **model_identity(model),
                 "decoder": model_identity(decoder), "x": x, "radius": radius, "samples": samples, "seed": seed}
        return cache.get_or_build("measurements", parts, lambda: local_density_cosines(
            model, decoder, x, radius=radius, samples=samples, seed=seed))
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    out = []
    for xb in x.split(max(1, 4096 // samples)):
        xb = xb.to(device)
        target, t = nearest_attractor(decoder, xb)
        u = torch.randn(len(xb), samples, xb[0].numel(), generator=g).to(device)
        u = u / u.norm(dim=2, keepdim=True)
        probes = (xb.flatten(1)[:, None] + radius * u).clamp(0, 1).view(-1, *xb.shape[1:])
        # In the default batches, not all probes at once: on a CPU that is about twice as fast.
        hit = (train.predict(model, probes).argmax(1).to(device).view(len(xb), samples) == t[:, None]).float()
        gradient = ((hit - hit.mean(1, keepdim=True))[:, :, None] * u).mean(1)
        out.append(metrics.cosine(target - xb, gradient).cpu())
    return torch.cat(out)


# ----- Tables I and III-VI: every attack on C, on M and on M_(d,r), with F_d, F_r and the FS baseline -----

# Attack key -> (the paper's row label, UA/TA, the attack engine's name, target).
TABLE_I_ATTACKS = {
    "fgsm": ("FGSM", "UA", "fgsm", None), "rfgsm": ("RFGSM", "UA", "rfgsm", None), "bim": ("BIM", "UA", "bim", None),
    "pgd": ("PGD", "UA", "pgd", None), "umifgsm": ("UMIFGSM", "UA", "mim", None), "uap": ("UAP", "UA", "uap", None),
    "deepfool": ("DeepFool", "UA", "deepfool", None), "optmargin": ("OM", "UA", "optmargin", None),
    "bpda": ("BPDA", "UA", "pgd", None), "spsa": ("SPSA", "UA", "spsa", None),
    "llc": ("LLC", "TA", "llc", None), "rllc": ("RLLC", "TA", "rllc", None), "illc": ("ILLC", "TA", "illc", None),
    "tmifgsm": ("TMIFGSM", "TA", "tmifgsm", "random"), "jsma": ("JSMA", "TA", "jsma", "random"),
    "blb": ("BLB", "TA", "blb", "random"), "cw2": ("CW2", "TA", "cw2", "random"), "ead": ("EAD", "TA", "ead", "random")}
_ITERATION_KEYS = ("steps", "max_iter")


def paper_dataset(name: str) -> str | None:
    """The paper's data set a kit data set stands for (mnist5k, fashion and digits are MNIST-like)."""
    if name in ("mnist", "cifar10"):
        return name
    return "mnist" if name in ("mnist5k", "fashion_mnist", "fashion", "digits") else None


def attack_settings(key: str, dataset: str, *, iteration_cap: int | None = None,
                    binary_steps_cap: int | None = None, samples_cap: int | None = None,
                    initial_const: float | None = None) -> tuple[str, dict[str, Any], str]:
    """(engine attack, ``attacks.run`` keyword arguments, which settings) for one Table I attack:
    Table VII's DEEPSEC settings (BPDA and SPSA: Table VIII's). CPU presets cap iterations,
    binary-search steps and samples (SPSA's probes, OptMargin's noise copies), and may start the
    C&W family (CW2, EAD, OM) at a larger constant c, since a capped search never grows c from
    Table VII's 0.001 — the third item then says "capped" instead of "Table VII" / "Table VIII"."""
    from decoylab.attacks import core

    if key not in TABLE_I_ATTACKS:
        raise ValueError(f"attack={key!r} is not one of Table I's; allowed: {', '.join(TABLE_I_ATTACKS)}")
    _, kind, engine, target = TABLE_I_ATTACKS[key]
    preset = "trapdoor" if key in ("bpda", "spsa") else f"deepsec_{paper_dataset(dataset) or 'mnist'}"
    entry = core.REGISTRY[engine]
    settings = {**entry.defaults, **entry.presets.get(preset, {})}
    capped = False
    for name in _ITERATION_KEYS:
        if iteration_cap is not None and name in settings and settings[name] > iteration_cap:
            settings[name], capped = iteration_cap, True
    if binary_steps_cap is not None and settings.get("binary_search_steps", 0) > binary_steps_cap:
        settings["binary_search_steps"], capped = binary_steps_cap, True
    for name in ("samples", "noise_count"):
        if samples_cap is not None and settings.get(name, 0) > samples_cap:
            # SPSA evaluates antithetic pairs: keep its sample count even.
            settings[name], capped = samples_cap - (samples_cap % 2 if name == "samples" else 0), True
    if initial_const is not None and engine in ("cw2", "ead", "optmargin"):
        settings["initial_const"], capped = initial_const, True
    kwargs: dict[str, Any] = dict(settings)
    if target is not None:
        kwargs.update(targeted=True, target=target)
    source = "capped" if capped else ("Table VIII" if preset == "trapdoor" else "Table VII")
    return engine, kwargs, source


def _mean(values: torch.Tensor) -> float:
    return float(values.float().mean()) if len(values) else float("nan")


def evaluate_attacks(defense: Attractors, baseline, keys: Sequence[str], x: torch.Tensor, y: torch.Tensor, *,
                     x_calibration: torch.Tensor, x_clean: torch.Tensor, dataset: str, fprs: Sequence[float] = (0.05,
                     0.005), iteration_cap: int | None = None, binary_steps_cap: int | None = None,
                     samples_cap: int | None = None, initial_const: float | None = None,
                     integrated: bool = True, seed: int = 0, cache=None, log=print):
    """One row per attack of Table I: success on C and on M, F_d's detection rate (TPR) on M's
    successful examples at each FPR (thresholds set on ``x_calibration``), F_r's recovery rate on
    the detected ones, overall success = success × (1 − detection), AUC against ``x_clean``; the
    control — the same F_d on C's successful examples, which never saw W; the
    feature-squeezing ``baseline`` on C's successful examples (Table III's FS columns, measured);
    with ``integrated``, the attack's success on M_(d,r) (Table V) and mean L2 of successful
    examples on C, M and M_(d,r) (Table VI)."""
    import pandas as pd

    from decoylab import attacks

    fprs = list(fprs)
    for fpr in fprs:
        check_settings(fpr=fpr)
    settings = {key: attack_settings(key, dataset, iteration_cap=iteration_cap, binary_steps_cap=binary_steps_cap,
                                     samples_cap=samples_cap, initial_const=initial_const)
                for key in keys}  # every name checked before any attack runs
    defense.calibrate(x_calibration, fprs[0])
    calibration = defense.score(x_calibration)
    clean = defense.score(x_clean)
    cuts = [metrics.threshold_at_fpr(calibration, fpr) for fpr in fprs]
    fs_calibration, fs_clean = baseline.score(x_calibration), baseline.score(x_clean)
    fs_cut = metrics.threshold_at_fpr(fs_calibration, fprs[0])
    combined, served = defense.attacked_model, defense.served_model()
    merged = defense.integrated_model() if integrated else None
    rows = []
    for key in keys:
        engine, kwargs, source = settings[key]
        label, kind = TABLE_I_ATTACKS[key][:2]
        if log:
            log(f"{label}: {engine} {source}")
        on_c = attacks.run(engine, defense.classifier, x, y, seed=seed, cache=cache, **kwargs)
        on_m = attacks.run(engine, served if key == "bpda" else combined, x, y, seed=seed, cache=cache, **kwargs)
        hit = on_m.success
        scores = defense.score(on_m.x_adv[hit]) if hit.any() else torch.zeros(0)
        detected = scores > cuts[0]
        recovered = defense.recover(on_m.x_adv[hit][detected]) == y[hit][detected] if detected.any() \
            else torch.zeros(0, dtype=torch.bool)
        fs_scores = baseline.score(on_c.x_adv[on_c.success]) if on_c.success.any() else torch.zeros(0)
        truth = torch.cat([torch.zeros(len(clean)), torch.ones(len(scores))])
        fs_truth = torch.cat([torch.zeros(len(fs_clean)), torch.ones(len(fs_scores))])
        row = {"attack": label, "kind": kind, "settings": source, "success_C": on_c.success_rate,
               "success_M": on_m.success_rate, "detection": _mean(detected), "recovery": _mean(recovered),
               "overall": on_m.success_rate * (1 - _mean(detected)) if hit.any() else 0.0,
               "auc": metrics.auc(truth, torch.cat([clean, scores])),
               "fs_tpr": _mean(fs_scores > fs_cut), "fs_auc": metrics.auc(fs_truth, torch.cat([fs_clean, fs_scores])),
               "fs_overall": on_c.success_rate * (1 - _mean(fs_scores > fs_cut)) if on_c.success.any() else 0.0,
               "l2_C": _mean(on_c.l2[on_c.success]), "l2_M": _mean(on_m.l2[hit])}
        # The control: the same F_d on examples crafted on C alone (no attractors to follow).
        control = defense.score(on_c.x_adv[on_c.success]) if on_c.success.any() else torch.zeros(0)
        row["control_detection"] = _mean(control > cuts[0])
        row["control_auc"] = metrics.auc(torch.cat([torch.zeros(len(clean)), torch.ones(len(control))]),
                                         torch.cat([clean, control]))
        for fpr, cut in zip(fprs, cuts):
            flagged = _mean(scores > cut)
            row[f"tpr@{fpr:g}"] = flagged
            row[f"overall@{fpr:g}"] = on_m.success_rate * (1 - flagged) if hit.any() else 0.0
        if merged is not None:
            from decoylab.attacks import BPDA

            target = BPDA(merged, quantise_8bit) if key == "bpda" else merged
            on_dr = attacks.run(engine, target, x, y, seed=seed, cache=cache, **kwargs)
            row.update(success_integrated=on_dr.success_rate, l2_integrated=_mean(on_dr.l2[on_dr.success]))
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["fpr_measured"] = {f"{fpr:g}": _mean(clean > cut) for fpr, cut in zip(fprs, cuts)}
    table.attrs["fs_fpr_measured"] = _mean(fs_clean > fs_cut)
    table.attrs["thresholds"] = defense.thresholds
    return table


# ----- The paper's numbers, quoted (shared/papers/001); fractions, None where the paper has none -----

# Table I: (success on C, success on M, detection by F_d, recovery by F_r, overall success); None = no adversarial found
PAPER_TABLE_I = paper_values.values("attractors", "table_1")

# Table III: (TPR, FPR, AUC, overall success) per detector (LID, FS, MagNet quoted from DEEPSEC by the paper)
PAPER_TABLE_III = paper_values.values("attractors", "table_3")

# Table IV: (TPR at 5 % FPR, overall at 5 %, TPR at 0.5 % FPR, overall at 0.5 %)
PAPER_TABLE_IV = paper_values.values("attractors", "table_4")

# Table V: (success on C, success on the integrated M_(d,r))
PAPER_TABLE_V = paper_values.values("attractors", "table_5")

# Table II: clean accuracy of C and of M; Table VI: mean L2 of successful unbounded attacks on CIFAR-10.
PAPER_TABLE_II = paper_values.values("attractors", "table_2")
PAPER_TABLE_VI = paper_values.values("attractors", "table_6")
