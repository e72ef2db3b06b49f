"""Detection metrics shared by every defense: ROC/AUC, TPR at a fixed FPR, ACC/FPR/TPR, cosine.

Labels follow one convention everywhere: 1 = adversarial (positive), 0 = clean.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


@dataclass(frozen=True)
class Rates:
    """Accuracy, false-positive rate (clean flagged) and true-positive rate (adversarial flagged)."""
    acc: float
    fpr: float
    tpr: float
    n_clean: int
    n_adversarial: int

    def as_dict(self) -> dict[str, float]:
        return {"acc": self.acc, "fpr": self.fpr, "tpr": self.tpr}


def rates(is_adversarial, flagged) -> Rates:
    """ACC, FPR and TPR of binary decisions ``flagged`` against the truth ``is_adversarial``."""
    truth, flagged = _np(is_adversarial).astype(bool), _np(flagged).astype(bool)
    if truth.shape != flagged.shape:
        raise ValueError(f"is_adversarial {truth.shape} and flagged {flagged.shape} must have the same shape")
    n_adv, n_clean = int(truth.sum()), int((~truth).sum())
    return Rates(acc=float((truth == flagged).mean()) if len(truth) else float("nan"),
                 fpr=float(flagged[~truth].mean()) if n_clean else float("nan"),
                 tpr=float(flagged[truth].mean()) if n_adv else float("nan"), n_clean=n_clean, n_adversarial=n_adv)


def auc(is_adversarial, scores) -> float:
    """Area under the ROC curve (higher score = more suspicious); NaN when one class is missing or there is no
    input at all (e.g. no pre-test point that the net classifies correctly and the attack fools)."""
    truth = _np(is_adversarial).astype(int)
    if truth.size == 0 or truth.min() == truth.max():
        return float("nan")
    return float(roc_auc_score(truth, _np(scores)))


def roc(is_adversarial, scores) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) arrays of the ROC curve."""
    fpr, tpr, _ = roc_curve(_np(is_adversarial).astype(int), _np(scores))
    return fpr, tpr


def threshold_at_fpr(clean_scores, fpr: float) -> float:
    """The score above which at most a fraction ``fpr`` of ``clean_scores`` lies."""
    if not 0 < fpr < 1:
        raise ValueError(f"fpr={fpr!r} is not allowed; fpr must be in (0, 1)")
    scores = np.sort(_np(clean_scores).astype(np.float64))
    if len(scores) == 0:
        raise ValueError("clean_scores is empty; calibration needs clean inputs")
    # The k-th largest clean score with k = floor(fpr * n): flagging "score > it" flags at most k.
    k = int(np.floor(fpr * len(scores)))
    return float(scores[len(scores) - 1 - k]) if k < len(scores) else float(scores[0])


def tpr_at_fpr(clean_scores, adversarial_scores, fpr: float) -> float:
    """TPR when the threshold is set on the clean scores at false-positive rate ``fpr``."""
    return float((_np(adversarial_scores) > threshold_at_fpr(clean_scores, fpr)).mean())


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of two (N, d) tensors; 0 where either row is all zeros
    (an attack that left every key feature untouched reconstructed nothing)."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    denom = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(denom > 0, (a * b).sum(1) / denom.clamp_min(1e-300), torch.zeros_like(denom)).float()
