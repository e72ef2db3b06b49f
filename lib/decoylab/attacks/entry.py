"""What a registered attack is (``AttackEntry``) and the parameter specs the families share.

Torch-free data: each family module (``linf``, ``cw``, ``deepfool``, ``jsma``, ``query``) lists its
entries next to its code, and ``registry`` assembles them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from decoylab.params import Spec, boolean, number
from decoylab.specs.common import COUNT, RATE, UNIT

EPS = UNIT  # a budget or a step on the [0, 1] pixel scale: (0, 1]
NONNEG = number(0)  # a confidence, a momentum, an overshoot: 0 allowed
PROB = number(0, 1)
FLAG = boolean()

__all__ = ["AttackEntry", "COUNT", "EPS", "FLAG", "LURING_PRESETS", "NONNEG", "PROB", "RATE"]

# The Luring paper's presets, one per data set (Appendices D.1 and F); many attacks have all three.
LURING_PRESETS = ("luring_mnist", "luring_svhn", "luring_cifar10")


@dataclass(frozen=True)
class AttackEntry:
    name: str
    norm: str  # "linf", "l2", "l1" or "l0"
    targeting: str  # "optional", "never", "always" or "least_likely" (the LLC family)
    defaults: dict[str, Any]
    specs: dict[str, Spec]  # what each setting may be; the same keys as ``defaults``
    backends: dict[str, Callable]
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)  # settings a variant pins (e.g. BIM-a's early stop)
    uses_gradient_loss: bool = True  # accepts ``extra_loss`` (the adaptive hook)

    def __post_init__(self):
        if set(self.specs) != set(self.defaults):
            raise ValueError(f"attack {self.name!r}: specs {sorted(self.specs)} and defaults "
                             f"{sorted(self.defaults)} must name the same settings")
