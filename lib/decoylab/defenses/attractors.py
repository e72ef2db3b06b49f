"""Injected Attractors (J. Zhang, E.-C. Chang, H. K. Lee, "Detection and Recovery of Adversarial Attacks with
Injected Attractors"): a QIM watermark decoder W summed into the classifier C, so that an attacker following
the combined model's gradients walks toward a watermarked point (an *attractor*) the forensic analyser can see.

- ``QIMDecoder`` — §V-E as a differentiable module: pixels on [0, 255], one interval size δᵢ per
  pixel (drawn from ``intervals``), codewords of bit 0 at 0.5δ, 2.5δ, … and of bit 1 at 1.5δ,
  3.5δ, …; q = distance, in pixel values, to the nearest codeword of the message bit; Q(x, m) = Σ αᵢ qᵢ;
  the correlation wₖ = S(closeness) with S of eq. 3; n secret messages of ℓ bits. Its attractors
  (``watermarked``) are the local maxima of wₜ inside the pixel box, where W's gradient leads.
- ``CombinedModel`` — eq. 2: M(x) = (C(x) + W(x)) / |C(x) + W(x)|₁ with C's softmax as C(x).
- ``Attractors`` — the shared defense interface: ``attacked_model`` is M, ``score`` folds the
  detector F_d's conditions C1 (max w > U), C2 (min w < L), C3 (stdev w > σ₀) of §V-C into one
  number, ``calibrate`` sets U, L, σ₀ at a chosen FPR, ``recover`` is F_r = argmin W (§V-D),
  ``integrated_model`` is M_(d,r) of §III-B; ``control()`` is F_d on examples crafted on C alone.

The paper's tables and the measurements of Figs. 5–7 are in ``decoylab.experiments.attractors`` and
``decoylab.experiments.attractor_gradients``.
"""
from __future__ import annotations

import math
import secrets
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from decoylab import config, models, params, train
from decoylab.defenses.base import AdaptiveAttack, Defense, NotFittedError, TrainedDefense
from decoylab.specs import attractors as spec
from decoylab.specs.attractors import CODEWORDS, DISTANCE_UNITS, MAX_INTERVAL, PIXEL_LEVELS  # noqa: F401 (API)
from decoylab.specs.common import FPR

# The kit's choices where §V-E gives none (written out in notebook 20):
DEFAULT_INTERVALS = (3.0, 128.0)  # §VI-B
DEFAULT_WEIGHTS = (1.0, 3.0)  # "more weightage on larger interval size" (§VI-F5): 3:1
DEFAULT_A0, DEFAULT_A1 = 1.0, 0.5  # closeness 0.5 maps to 0, closeness 1 (a watermarked image) to A2·tanh(1)
DEFAULT_STRENGTH = 0.5  # A2: large enough for W's gradient to dominate C's, small enough for accuracy


def check_decoder_settings(intervals, weights, strength, a0, a1, codewords, distance_unit="pixel") -> None:
    """W's settings against ``decoylab.specs.attractors``, and the two rules that tie them together;
    a ``params.ParameterError`` names the first bad one before anything is built."""
    params.check_each(intervals=(intervals, spec.INTERVALS), weights=(weights, spec.INTERVAL_WEIGHTS),
                      strength=(strength, spec.STRENGTH), a0=(a0, spec.A0), a1=(a1, spec.A1),
                      codewords=(codewords, spec.CODEWORD_SET), distance_unit=(distance_unit, spec.DISTANCE_UNIT))
    if len(weights) != len(intervals):
        raise params.ParameterError(f"weights={weights!r} is not allowed; give one weight per interval size "
                                    f"({len(intervals)})")
    if a0 >= 1 + a1:
        raise params.ParameterError(f"a0={a0!r}, a1={a1!r} are not allowed; eq. 3's denominator 1 + A1 − A0·r "
                                    f"must stay positive for closeness r in [0, 1], so A0 < 1 + A1")


class QIMDecoder(nn.Module):
    """W_φ of §V-E for inputs in [0, 1] (scaled to [0, 255] inside): one correlation per message.

    ``interval_of_pixel`` picks δᵢ per pixel from ``intervals`` (equal shares, seeded); αᵢ is the
    weight of that interval size. ``distance_unit="pixel"`` (default): qᵢ is the distance in pixel
    values, as §V-E defines it, divided by the largest interval so that Q(x, m) = Σ αᵢ qᵢ / Σ αᵢ lies
    in [0, 1] for the lattice (eq. 3's A0, A1 scale "the distances … in the range [0, 1]"); the
    largest intervals then carry W's output and gradient. ``"interval"``: qᵢ in units of the pixel's
    own δᵢ, so a 1-level change moves q 40× more on a δ = 3 pixel than on a δ = 128 one and the small
    intervals carry the gradient (the kit's reading before issue 30: a large attack step scrambles those
    pixels and recovery fails; notebook 20, section 3c). The closeness r = 1 − Q is 1 on an exactly
    watermarked image; wₖ = S(r) = A2·tanh((A0·r − A1) / (1 + A1 − A0·r)) (eq. 3).
    The settings are checked where they enter (``generate``, ``Attractors``), not here."""

    def __init__(self, messages: torch.Tensor, interval_of_pixel: torch.Tensor, intervals: Sequence[float],
                 weights: Sequence[float], strength: float = DEFAULT_STRENGTH, a0: float = DEFAULT_A0,
                 a1: float = DEFAULT_A1, codewords: str = "lattice", distance_unit: str = "pixel"):
        super().__init__()
        self.codewords, self.distance_unit = codewords, distance_unit
        self.register_buffer("messages", messages.float())  # (n, ℓ) bits
        self.register_buffer("interval_of_pixel", interval_of_pixel.long())  # (ℓ,) index into intervals
        self.register_buffer("delta", torch.tensor(intervals, dtype=torch.float32)[interval_of_pixel])
        alpha = torch.tensor(weights, dtype=torch.float32)[interval_of_pixel]
        self.register_buffer("alpha", alpha / alpha.sum())
        # Per-pixel weight of the distance in δ units (bit_distances) in the decoder's unit, computed once: the
        # forward pass runs at every attack step. Not saved: it follows from the buffers and ``distance_unit``.
        scale = self.delta / self.delta.max() if distance_unit == "pixel" else torch.ones_like(self.delta)
        self.register_buffer("distance_weight", self.alpha * scale, persistent=False)
        self.intervals, self.weights = tuple(float(d) for d in intervals), tuple(float(a) for a in weights)
        self.strength, self.a0, self.a1 = float(strength), float(a0), float(a1)

    def extra_repr(self) -> str:
        # The settings that change the output but are not buffers: repr(model) is part of the attack
        # cache's key, so M with another A2 must not find the adversarial set of this one.
        return (f"intervals={self.intervals}, weights={self.weights}, strength={self.strength!r}, "
                f"a0={self.a0!r}, a1={self.a1!r}, codewords={self.codewords!r}, distance_unit={self.distance_unit!r}")

    @classmethod
    def generate(cls, num_classes: int, num_pixels: int, *, intervals: Sequence[float] = DEFAULT_INTERVALS,
                 weights: Sequence[float] = DEFAULT_WEIGHTS, strength: float = DEFAULT_STRENGTH,
                 a0: float = DEFAULT_A0, a1: float = DEFAULT_A1, codewords: str = "lattice",
                 distance_unit: str = "pixel", seed: int | None = None) -> "QIMDecoder":
        """n random ℓ-bit messages and a random interval per pixel, from ``seed`` or the OS CSPRNG."""
        check_decoder_settings(intervals, weights, strength, a0, a1, codewords, distance_unit)
        return cls._draw(num_classes, num_pixels, intervals, weights, strength, a0, a1, codewords, seed,
                         distance_unit)

    @classmethod
    def _draw(cls, num_classes, num_pixels, intervals, weights, strength, a0, a1, codewords, seed,
              distance_unit="pixel") -> "QIMDecoder":
        g = torch.Generator().manual_seed(secrets.randbits(63) if seed is None else seed)
        messages = torch.randint(0, 2, (num_classes, num_pixels), generator=g)
        share = torch.arange(num_pixels) % len(intervals)
        interval_of_pixel = share[torch.randperm(num_pixels, generator=g)]
        return cls(messages, interval_of_pixel, intervals, weights, strength, a0, a1, codewords, distance_unit)

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
        """Q(x, mₖ) for every message k: (N, n), in the decoder's ``distance_unit``."""
        d0, d1 = self.bit_distances(x)
        return (d0 * self.distance_weight) @ (1 - self.messages).T + (d1 * self.distance_weight) @ self.messages.T

    def correlation_of_closeness(self, closeness: torch.Tensor) -> torch.Tensor:
        """S of eq. 3 applied to r = 1 − Q."""
        scaled = self.a0 * closeness
        return self.strength * torch.tanh((scaled - self.a1) / (1 + self.a1 - scaled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.correlation_of_closeness(1 - self.distance(x))

    def watermarked(self, x: torch.Tensor, message: torch.Tensor) -> torch.Tensor:
        """The attractor of message index ``message`` (one per row) that W's gradient leads ``x`` to: the
        local maximum of w_message inside the pixel box [0, 255]. Every pixel moves to the nearest
        codeword of its bit — for ``"in_range"`` the nearest inside [0, 255] (Q = 0 there); for the
        lattice the nearest of the whole coset, clipped to [0, 255] (a black or white pixel whose nearest
        codeword lies outside stays put: W's gradient points out of the box there, so no attack step can
        follow it inward, and the paper's "local maximums of W" are these box-constrained ones)."""
        bits = self.messages[message]  # (N, ℓ)
        if self.codewords == "in_range":
            k = self._nearest_codeword(x, bits)[1]
        else:  # the same rounding as bit_distances, so that the attractor and the gradient agree at ties
            k = torch.round((x.flatten(1) * PIXEL_LEVELS / self.delta - 0.5 - bits) / 2)
        pixels = ((2 * k + 0.5 + bits) * self.delta).clamp(0.0, PIXEL_LEVELS)
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
    control_description = "F_d on examples crafted on C alone (gradients never pass through W)"

    def __init__(self, *, intervals: Sequence[float] = DEFAULT_INTERVALS, weights: Sequence[float] = DEFAULT_WEIGHTS,
                 strength: float = DEFAULT_STRENGTH, a0: float = DEFAULT_A0, a1: float = DEFAULT_A1,
                 codewords: str = "lattice", distance_unit: str = "pixel", key_seed: int | None = None,
                 model_name: str = "deepsec_mnist", **kwargs):
        check_decoder_settings(intervals, weights, strength, a0, a1, codewords, distance_unit)
        params.check("key_seed", key_seed, spec.KEY_SEED)
        super().__init__(model_name=model_name, **kwargs)
        self.codewords, self.distance_unit = codewords, distance_unit
        self.intervals, self.weights = tuple(intervals), tuple(weights)
        self.strength, self.a0, self.a1, self.key_seed = strength, a0, a1, key_seed
        self.classifier: nn.Module | None = None
        self.decoder: QIMDecoder | None = None
        self.reference: torch.Tensor | None = None  # (2, 3): mean and spread of the three statistics
        self.input_shape: tuple[int, ...] | None = None
        self.num_classes: int | None = None

    def fit(self, train_set) -> "Attractors":
        """Train C on ``train_set`` (or load it from the cache) and wrap it with a new W."""
        classifier = train.train_or_load(self.model_name, train_set.x, train_set.y, train_set.info.num_classes,
                                         self.train_config, seed=self.seed, cache=self.cache, device=self.device,
                                         log=self.log)
        return self.protect(classifier, tuple(train_set.x.shape[1:]), train_set.info.num_classes)

    def protect(self, classifier: nn.Module, input_shape: tuple[int, ...], num_classes: int) -> "Attractors":
        """Wrap an already trained C — no retraining (§I: "no re-training is required")."""
        self.classifier = classifier.eval()
        self.input_shape, self.num_classes = tuple(int(s) for s in input_shape), int(num_classes)
        self.decoder = QIMDecoder._draw(num_classes, math.prod(input_shape), self.intervals, self.weights,
                                        self.strength, self.a0, self.a1, self.codewords, self.key_seed,
                                        self.distance_unit)
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
        params.check("fpr", fpr, FPR)
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

    def control(self) -> "ClassifierOnlyControl":
        """F_d scoring examples crafted on C alone: the attacker's gradients never pass through W, so
        whatever F_d still flags there it flags without any attractor to follow."""
        return ClassifierOnlyControl(self)

    def adaptive_attacks(self, *, x_shadow: torch.Tensor, y_shadow: torch.Tensor, attack: tuple[str, dict[str, Any]],
                         seed: int = 0, cache=None) -> list[AdaptiveAttack]:
        """Level 1 keeps the detector and recovery inside the model (M_(d,r) behind 8-bit input, BPDA);
        levels 2 and 3 know the decomposition (§VII-A) and attack C alone, level 3 also keeps F_d's
        statistics clean through ``adaptive_loss``; level 4 hinges that term at the threshold (``decision_attack``).
        Needs ``calibrate`` (M_(d,r) and the loss use it)."""
        from decoylab.attacks import BPDA
        from decoylab.cache import model_identity

        served = BPDA(self.integrated_model(), quantise_8bit)
        levels = [self.oblivious_attack(),
                AdaptiveAttack("1 · BPDA on the integrated model M_(d,r) behind 8-bit input", served,
                               success_model=served, note="success judged on M_(d,r) (recovery included)"),
                AdaptiveAttack("2 · knows the decomposition: attacks C alone", self.classifier),
                AdaptiveAttack("3 · attacks C and keeps W's statistics clean", self.classifier,
                               loss_for=self.adaptive_loss,
                               loss_key_for=self.term_key("attractors_detector_score",
                                                          combined=model_identity(self.model),
                                                          reference=self.reference))]
        decision = self.decision_attack(levels[3], 4, x_shadow)  # calibrated above, so never None here
        return levels + ([decision] if decision is not None else [])

    def save(self, path) -> Path:
        """M's weights (C's and W's buffers: the secret messages and interval map), W's settings, the input
        shape, the number of classes and the calibration, in one file written atomically."""
        self._require()
        settings = {"intervals": list(self.intervals), "weights": list(self.weights), "strength": float(self.strength),
                    "a0": float(self.a0), "a1": float(self.a1), "codewords": self.codewords,
                    "distance_unit": self.distance_unit,
                    "input_shape": list(self.input_shape), "num_classes": self.num_classes}
        if self.reference is not None:
            settings["reference"] = self.reference.cpu()
        if self.threshold is not None:
            settings.update(threshold=float(self.threshold), calibrated_fpr=float(self.calibrated_fpr))
        return self._save(path, settings)

    @classmethod
    def load(cls, path, *, cache=None, device=None, log=print) -> "Attractors":
        """The defense ``save`` wrote: same C, same secret, same thresholds."""
        stored = torch.load(Path(path), map_location="cpu", weights_only=True)
        defense = cls(intervals=stored["intervals"], weights=stored["weights"], strength=stored["strength"],
                      a0=stored["a0"], a1=stored["a1"], codewords=stored["codewords"],
                      distance_unit=stored.get("distance_unit", "interval"), model_name=stored["model_name"],
                      seed=stored["seed"], cache=cache, device=device, log=log)
        shape, num_classes = tuple(stored["input_shape"]), int(stored["num_classes"])
        state = stored["state_dict"]
        defense.classifier = models.build(stored["model_name"], shape, num_classes, seed=stored["seed"])
        defense.decoder = QIMDecoder(state["decoder.messages"], state["decoder.interval_of_pixel"], defense.intervals,
                                     defense.weights, defense.strength, defense.a0, defense.a1, defense.codewords,
                                     defense.distance_unit)
        defense.model = CombinedModel(defense.classifier, defense.decoder)
        defense.model.load_state_dict(state)
        defense.model.to(config.device(device)).eval()
        defense.input_shape, defense.num_classes = shape, num_classes
        defense.reference = stored.get("reference")
        defense.threshold, defense.calibrated_fpr = stored.get("threshold"), stored.get("calibrated_fpr")
        return defense


class ClassifierOnlyControl(Defense):
    """The Attractors' control: the defense's F_d scores, but the attacker differentiates C alone, so its
    gradients never pass through W. Built by ``Attractors.control()``; it follows the defense (the same C,
    W and calibration), so ``fit`` has nothing to do."""
    name = "F_d, crafted on C"
    control_description = "none: this is the Attractors' control"

    def __init__(self, defense: Attractors):
        super().__init__()
        self.defense = defense

    def fit(self, train_set) -> "ClassifierOnlyControl":
        return self

    @property
    def attacked_model(self) -> nn.Module:
        if self.defense.classifier is None:
            raise NotFittedError("Attractors: call fit(train_set) or protect(classifier, ...) first")
        return self.defense.classifier

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.defense.score(x)

    def control(self) -> None:
        return None
