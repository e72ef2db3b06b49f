"""The one interface every defense implements (shared/DESIGN.md, "One interface for every defense").

- ``fit(train_set)`` builds the protected model (trains or wraps) and returns the defense;
- ``attacked_model`` is the ``nn.Module`` a white-box attacker differentiates;
- ``score(x)`` is one float per input, higher = more suspicious;
- ``calibrate(x_clean, fpr)`` sets the threshold on clean inputs; ``detect(x)`` applies it.

So the comparison notebook, the ROC helper and the adaptive-attack harness treat all defenses alike.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from decoylab import metrics


class NotFittedError(RuntimeError):
    """A defense was used before ``fit`` (or a detector before it was trained/calibrated)."""


class Defense(ABC):
    name: str = "defense"

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
