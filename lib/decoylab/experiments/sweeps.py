"""What the papers' sweeps share: one point is one trained defense, measured, built once and cached.

HoneyModels' Fig. 4 and Neural Fingerprinting's Figs. 3-4 both train a defense per setting, measure it on
the test split and attack it; ``cached_point`` holds the caching that makes such a sweep resume where it
stopped and a re-run only read."""
from __future__ import annotations

from types import ModuleType
from typing import Any, Callable, Mapping, Sequence

from decoylab import models, train
from decoylab.attacks.registry import FAST_MODULES
from decoylab.cache import Cache, code_version


def cached_point(kind: str, settings: Mapping[str, Any], build: Callable[[Cache], dict[str, float]], *, train_set,
                 test_set, code: Sequence[ModuleType] = (), cache: Cache | None = None) -> dict[str, float]:
    """``build(cache)`` on a miss, stored under ``kind``. The key holds ``settings``, the training images and
    labels, the test images and the source of the code that computes the point: ``code`` (the paper's modules)
    besides the training loop, the architectures and the attack engine, so editing any of them rebuilds it."""
    cache = cache or Cache()
    parts = {"code": code_version(*code, train, models, *FAST_MODULES), **settings, "x": train_set.x, "y": train_set.y,
             "test_x": test_set.x}
    return cache.get_or_build(kind, parts, lambda: build(cache))
