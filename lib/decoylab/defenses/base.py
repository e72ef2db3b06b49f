"""The one interface every defense implements.

- ``fit(train_set)`` builds the protected model (trains or wraps) and returns the defense;
- ``attacked_model`` is the ``nn.Module`` a white-box attacker differentiates;
- ``score(x)`` is one float per input, higher = more suspicious;
- ``calibrate(x_clean, fpr)`` sets the threshold on clean inputs; ``detect(x)`` applies it;
- ``control()`` is the same pipeline without the defense (fit it like the defense), the comparison every
  detection claim is judged against; ``control_description`` says what it is, in words;
- ``adaptive_attacks(...)`` lists the defense-aware attacks it is known to face, by attacker knowledge;
- ``save(path)`` / ``load(path)``: weights and secrets in one file, read back with ``weights_only=True``.

So the comparison notebook, the ROC helper and the adaptive-attack harness treat all defenses alike.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from decoylab import metrics


class NotFittedError(RuntimeError):
    """A defense was used before ``fit`` (or a detector before it was trained/calibrated)."""


@dataclass
class AdaptiveAttack:
    """One point of a security curve: what the attacker knows, and how it attacks."""
    knowledge: str
    model: nn.Module  # what the attack engine differentiates
    loss_for: Callable[[float], Any] | None = None  # weight -> extra_loss for the engine's hook (None: no term)
    loss_key_for: Callable[[float], dict] | None = None  # weight -> what that term depends on (the attack cache)
    success_model: nn.Module | None = None  # where success is judged (default: the deployed classifier)
    note: str = ""
    #: (x, y) -> one class per image: the attack is then targeted at it (success is still judged as y missed)
    targets_for: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None


class Defense(ABC):
    name: str = "defense"
    #: What ``control()`` is, in words, for tables ("the same detector pipeline on the benign model").
    control_description: str = ""

    def __init__(self) -> None:
        self.threshold: float | None = None
        self.calibrated_fpr: float | None = None

    @abstractmethod
    def fit(self, train_set) -> "Defense":
        """Build the protected model from a ``decoylab.data.Dataset``."""

    @property
    @abstractmethod
    def attacked_model(self) -> nn.Module:
        """What a white-box attacker differentiates."""

    @abstractmethod
    def score(self, x: torch.Tensor) -> torch.Tensor:
        """One suspicion score per input (higher = more likely adversarial)."""

    def calibrate(self, x_clean: torch.Tensor, fpr: float) -> float:
        """Set the detection threshold so that a fraction ``fpr`` of ``x_clean`` is flagged."""
        self.threshold = metrics.threshold_at_fpr(self.score(x_clean), fpr)
        self.calibrated_fpr = fpr
        return self.threshold

    def detect(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean per input: flagged as adversarial (needs ``calibrate`` first)."""
        if self.threshold is None:
            raise NotFittedError(f"{self.name}: call calibrate(x_clean, fpr) before detect(x)")
        return self.score(x) > self.threshold

    @abstractmethod
    def control(self) -> "Defense | None":
        """The same pipeline without the defense (call ``fit`` on it as on the defense), or None where the
        defense is itself the baseline (``control_description`` says why)."""

    def adaptive_attacks(self, *, x_shadow: torch.Tensor, y_shadow: torch.Tensor, attack: tuple[str, dict[str, Any]],
                         seed: int = 0, cache=None) -> list[AdaptiveAttack]:
        """The attacks this defense is known to face, by what the attacker knows (level 0 = oblivious).
        ``x_shadow, y_shadow``: the attacker's own data; ``attack``: (registry name, settings) it uses."""
        return [self.oblivious_attack()]

    def oblivious_attack(self) -> AdaptiveAttack:
        return AdaptiveAttack("0 · oblivious (white-box on the deployed model)", self.attacked_model)

    def decision_aim(self, x_shadow: torch.Tensor) -> tuple[float, float]:
        """(τ_aim, its FPR): the threshold an attacker sets on its own clean images ``x_shadow`` at twice the
        deployed FPR (halfway to 1 where twice would reach 1: a threshold needs some clean images above it), at
        most the deployed threshold. Needs ``calibrate``."""
        if self.threshold is None or self.calibrated_fpr is None:
            raise NotFittedError(f"{self.name}: call calibrate(x_clean, fpr) before aiming at its threshold")
        aim_fpr = min(2 * self.calibrated_fpr, (1 + self.calibrated_fpr) / 2)
        return min(float(self.threshold), metrics.threshold_at_fpr(self.score(x_shadow), aim_fpr)), aim_fpr

    def decision_attack(self, step: AdaptiveAttack, level: int, x_shadow: torch.Tensor) -> AdaptiveAttack | None:
        """``step``, whose term is ``weight`` × this defense's own score, turned on the detector's decision: the
        term is hinged, ``weight`` × max(0, score − τ_aim), so once an example's score is below τ_aim (at or under
        the deployed threshold) the whole gradient goes to misclassifying it (Carlini & Wagner, *Adversarial
        Examples Are Not Easily Detected*, AISec 2017, §5: attack the detector's decision, not its score; Tramèr
        et al., *On Adaptive Attacks to
        Adversarial Example Defenses*, NeurIPS 2020, §4). τ_aim is the threshold the attacker calibrates on its
        own clean images ``x_shadow`` at twice the deployed FPR (halfway to 1 from 0.5 on), at most the deployed
        threshold: a margin, so PGD's last step does not carry the example back over. CW returns the smallest
        misclassified example it met whatever the term, so there the hinge lowers the score without aiming at the
        threshold. None before ``calibrate``."""
        import sys

        from decoylab.cache import code_version

        if self.threshold is None or self.calibrated_fpr is None or step.loss_for is None:
            return None
        aim, aim_fpr = self.decision_aim(x_shadow)
        knowledge = step.knowledge.split(" · ", 1)[-1]
        hinge_code = code_version(sys.modules[__name__])

        def loss_for(weight: float):
            term = step.loss_for(weight)
            return lambda adv, labels: torch.relu(term(adv, labels) - weight * aim)

        def loss_key_for(weight: float) -> dict:  # the term's own key, the aim and the hinge's code
            return {**step.loss_key_for(weight), "hinged_at": aim, "hinge_code": hinge_code}

        return AdaptiveAttack(f"{level} · {knowledge}, only above the threshold (the detector's decision)",
                              step.model, loss_for=loss_for,
                              loss_key_for=loss_key_for if step.loss_key_for is not None else None,
                              success_model=step.success_model,
                              note=f"term hinged at score {aim:.3g} (the attacker's own threshold at "
                                   f"{aim_fpr:g} FPR; deployed {float(self.threshold):.3g})")

    def term_key(self, term: str, **depends_on) -> Callable[[float], dict]:
        """weight -> what a defense-aware term computes from (besides the attacked model), for the attack cache:
        the term's name, its weight, the code of this defense's module and ``depends_on``."""
        import sys

        from decoylab.cache import code_version

        code = code_version(sys.modules[type(self).__module__])
        return lambda weight: {"term": term, "weight": weight, "code": code, **depends_on}


class TrainedDefense(Defense):
    """A defense built by training one of the kit's architectures through the shared loop and cache.

    Holds what determines the trained weights besides the data and the secret (architecture,
    training settings, seed) and where they go (cache, device, log); guards ``attacked_model``
    before ``fit``; saves weights and secret in one file written atomically."""

    def __init__(self, *, model_name: str, train_config=None, seed: int = 0, cache=None,
                 device: str | None = None, log=print):
        from decoylab import train

        super().__init__()
        self.model_name = model_name
        self.train_config = train_config or train.TrainConfig()
        self.seed = seed
        self.cache = cache
        self.device = device
        self.log = log
        self.model: nn.Module | None = None

    @property
    def attacked_model(self) -> nn.Module:
        if self.model is None:
            raise NotFittedError(f"{type(self).__name__}: call fit(train_set) first")
        return self.model

    def _save(self, path, payload: dict) -> Path:
        """``payload`` plus the weights, architecture and seed, to a temporary file renamed to ``path``."""
        import io

        from decoylab.fileio import atomic_write_bytes

        buffer = io.BytesIO()
        torch.save({"state_dict": self.attacked_model.state_dict(), "model_name": self.model_name,
                    "seed": self.seed, **payload}, buffer)
        atomic_write_bytes(Path(path), buffer.getvalue())
        return Path(path)

    def _restore_model(self, stored: dict, input_shape: tuple[int, ...], num_classes: int) -> None:
        """Rebuild the architecture and load the weights written by ``_save``."""
        from decoylab import models

        self.model = models.build(stored["model_name"], input_shape, num_classes, seed=stored["seed"])
        self.model.load_state_dict(stored["state_dict"])
        self.model.eval()
