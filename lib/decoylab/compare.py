"""Every defense through the shared interface (``decoylab.defenses.base.Defense``) on the same attacks.

Notebook 41 overlays the ROC curves of all the kit's defenses, each beside its control; the
comparison notebook (90) builds on the same helpers. A defense whose detector learns from
adversarial examples (HoneyModels) gets them from a separate set of images, so every ROC curve
is measured on images no detector has seen.
"""
from __future__ import annotations

from typing import Any

import torch

from decoylab import attacks, metrics
from decoylab.defenses.base import Defense

AttackSpecs = dict[str, tuple[str, dict[str, Any]]]


def attack_sets(model, x: torch.Tensor, y: torch.Tensor, specs: AttackSpecs, *, seed: int = 0, cache=None):
    """``{label: AttackResult}`` for every ``(registry name, settings)`` in ``specs``."""
    return {label: attacks.run(name, model, x, y, seed=seed, cache=cache, **settings)
            for label, (name, settings) in specs.items()}


def prepare(defense: Defense, x_fit: torch.Tensor, y_fit: torch.Tensor, specs: AttackSpecs, *, seed: int = 0,
            cache=None) -> Defense:
    """Train a defense's detector where it learns from adversarial examples (``fit_detector``:
    HoneyModels), on ``x_fit`` and the same attacks; defenses with a fixed score are left as they are."""
    if hasattr(defense, "fit_detector"):
        adv = attack_sets(defense.attacked_model, x_fit, y_fit, specs, seed=seed, cache=cache)
        defense.fit_detector(x_fit, {label: (r.x_adv, r.success) for label, r in adv.items()}, seed=seed)
    return defense


def roc_entries(defense: Defense, x: torch.Tensor, y: torch.Tensor, specs: AttackSpecs, *, seed: int = 0,
                cache=None) -> dict[str, dict[str, Any]]:
    """Per attack crafted on ``defense.attacked_model``: the ROC curve and AUC of ``defense.score``
    on clean ``x`` vs the *successful* adversarial examples, and the attack's success rate."""
    adv = attack_sets(defense.attacked_model, x, y, specs, seed=seed, cache=cache)
    clean = defense.score(x)
    out = {}
    for label, r in adv.items():
        flagged = defense.score(r.x_adv[r.success]) if r.success.any() else torch.zeros(0)
        truth = [0] * len(clean) + [1] * len(flagged)
        scores = torch.cat([clean, flagged])
        out[label] = {"roc": metrics.roc(truth, scores) if len(flagged) else None,
                      "auc": metrics.auc(truth, scores), "success": r.success_rate}
    return out
