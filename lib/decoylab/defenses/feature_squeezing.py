"""Feature squeezing (Xu, Evans, Qi, *Feature Squeezing: Detecting Adversarial Examples in Deep Neural
Networks*, NDSS 2018): the baseline detector the Attractors paper compares
with (Table III, "FS"), measured here rather than quoted.

score(x) = max over squeezers s of ‖softmax(C(x)) − softmax(C(s(x)))‖₁ (their eq. for the joint
detector); the squeezers are ART 1.20's ``FeatureSqueezing`` (colour-depth reduction) and
``SpatialSmoothing`` (median filter) — the paper's best MNIST configuration is 1-bit depth and a
2×2 median, for CIFAR-10 5-bit depth and a 2×2 median (their non-local means filter is left out).

Nothing is trained and nothing is secret: the squeezer settings (``bit_depth``, ``median_window``) are the
detector's whole state, so there is no ``save``/``load``; rebuild it with the same settings around the
classifier (whose weights its own training saves). For the same reason it has no control (``control()``
returns None: a detector on the undefended model is itself the baseline) and faces only the oblivious attack
(``adaptive_attacks``, the base default: no secret for an attacker to learn).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from decoylab import params
from decoylab.defenses.base import Defense
from decoylab.specs.compare import MEDIAN_WINDOW, SQUEEZE_BIT_DEPTH

# Xu et al. 2018, Table 5 (best joint detectors), without non-local means.
PAPER_SQUEEZERS = {"mnist": {"bit_depth": 1, "median_window": 2}, "cifar10": {"bit_depth": 5, "median_window": 2}}


class FeatureSqueezingDetector(Defense):
    """The detection-only baseline over an undefended classifier C (nothing is trained)."""
    name = "feature_squeezing"
    control_description = "none: a detector on the undefended model is itself the baseline; see the clean-vs-clean column"

    def __init__(self, classifier: nn.Module, *, bit_depth: int = 1, median_window: int = 2, batch_size: int = 512):
        super().__init__()
        params.check("bit_depth", bit_depth, SQUEEZE_BIT_DEPTH)
        params.check("median_window", median_window, MEDIAN_WINDOW)
        self.classifier, self.bit_depth, self.median_window = classifier.eval(), bit_depth, median_window
        self.batch_size = batch_size

    @classmethod
    def for_dataset(cls, classifier: nn.Module, dataset: str, **kwargs) -> "FeatureSqueezingDetector":
        """The paper's squeezers for an MNIST-like (one channel) or a CIFAR-like data set."""
        return cls(classifier, **PAPER_SQUEEZERS["cifar10" if dataset in ("cifar10", "svhn") else "mnist"], **kwargs)

    def fit(self, train_set) -> "FeatureSqueezingDetector":
        return self  # feature squeezing has nothing to train; only its threshold is calibrated

    @property
    def attacked_model(self) -> nn.Module:
        return self.classifier

    def control(self) -> None:
        """None: without the squeezers there is no detector left to compare (``control_description``)."""
        return None

    def squeezed(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x through each squeezer (ART's preprocessors; cast back to float32, ART returns float64
        under numpy 2)."""
        from art.defences.preprocessor import FeatureSqueezing, SpatialSmoothing

        array = x.detach().cpu().numpy().astype(np.float32)
        depth = FeatureSqueezing(clip_values=(0.0, 1.0), bit_depth=self.bit_depth)(array)[0]
        median = SpatialSmoothing(window_size=self.median_window, channels_first=True,
                                  clip_values=(0.0, 1.0))(array)[0]
        return [torch.from_numpy(np.asarray(s, dtype=np.float32)) for s in (depth, median)]

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        device = next(self.classifier.parameters()).device
        out = []
        for xb in x.split(self.batch_size):
            reference = F.softmax(self.classifier(xb.to(device)), 1)
            gaps = [(reference - F.softmax(self.classifier(s.to(device)), 1)).abs().sum(1) for s in self.squeezed(xb)]
            out.append(torch.stack(gaps, 1).amax(1).cpu())
        return torch.cat(out)
