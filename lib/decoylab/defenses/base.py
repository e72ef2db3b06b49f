"""The one interface every defense implements (shared/DESIGN.md, "One interface for every defense").

- ``fit(train_set)`` builds the protected model (trains or wraps) and returns the defense;
- ``attacked_model`` is the ``nn.Module`` a white-box attacker differentiates;
- ``score(x)`` is one float per input, higher = more suspicious;
- ``calibrate(x_clean, fpr)`` sets the threshold on clean inputs; ``detect(x)`` applies it.

So the comparison notebook, the ROC helper and the adaptive-attack harness treat all defenses alike.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

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
