"""Attack registry, target selection and per-sample bookkeeping shared by both backends."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from decoylab.attacks import art_backend, fast

BACKENDS = ("fast", "art")
TARGET_MODES = ("random", "least_likely")


@dataclass(frozen=True)
class AttackEntry:
    name: str
    norm: str
    can_target: bool
    defaults: dict[str, Any]
    ranges: dict[str, str]
    backends: dict[str, Callable]
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)


REGISTRY: dict[str, AttackEntry] = {
    "fgsm": AttackEntry(
        "fgsm", "linf", True, {"eps": 0.3}, {"eps": "(0, 1]"},
        {"fast": fast.fgsm, "art": art_backend.fgsm},
        presets={"deepsec_mnist": {"eps": 0.3}, "deepsec_cifar10": {"eps": 0.1}}),
    "pgd": AttackEntry(
        "pgd", "linf", True, {"eps": 0.3, "step_size": 0.01, "steps": 40, "random_start": True},
        {"eps": "(0, 1]", "step_size": "(0, 1]", "steps": ">= 1"},
        {"fast": fast.pgd, "art": art_backend.pgd},
        presets={"honeymodels": {"eps": 0.3, "step_size": 0.1, "steps": 5},
                 "deepsec_mnist": {"eps": 0.3, "step_size": 0.05, "steps": 15}}),
}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def catalogue() -> list[dict[str, Any]]:
    """One row per attack: norm, targeting, parameters with defaults and ranges, presets."""
    return [{"name": e.name, "norm": e.norm, "can_target": e.can_target, "defaults": dict(e.defaults),
             "ranges": dict(e.ranges), "backends": tuple(e.backends), "presets": dict(e.presets)}
            for e in REGISTRY.values()]


@dataclass
class AttackResult:
    """Adversarial batch and per-sample information (norms over the flattened perturbation)."""
    x_adv: torch.Tensor
    success: torch.Tensor  # bool per sample: misclassified (untargeted) or target reached
    target: torch.Tensor | None
    l0: torch.Tensor
    l2: torch.Tensor
    linf: torch.Tensor
    grad_steps: int

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if len(self.success) else 0.0


def _check_number(name: str, value: Any, low: float, high: float | None, low_open: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        span = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'}]"
        raise ValueError(f"{name}={value!r} is not allowed; {name} must be a number in {span}")


def _resolve_target(model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: Any, num_classes: int,
                    seed: int) -> torch.Tensor:
    if isinstance(target, torch.Tensor):
        if target.shape != y.shape:
            raise ValueError(f"target has shape {tuple(target.shape)}; it must match y's {tuple(y.shape)}")
        return target.to(torch.int64)
    if target == "random":
        # A uniformly random class different from the label: y + U{1..K-1} mod K.
        g = torch.Generator().manual_seed(seed)
        shift = torch.randint(1, num_classes, y.shape, generator=g)
        return (y.cpu() + shift) % num_classes
    if target == "least_likely":
        with torch.no_grad():
            return model(x).argmin(1).cpu()
    raise ValueError(f"target={target!r} is not allowed; use a tensor of classes, 'random' or 'least_likely'")


def run(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, targeted: bool = False,
        target: Any = None, backend: str = "fast", preset: str | None = None, seed: int = 0,
        batch_size: int = 256, cache=None, **params: Any) -> AttackResult:
    """Run attack ``name`` on ``model`` (any ``nn.Module`` returning logits) for inputs in [0, 1].

    ``preset`` names settings from a paper table (see ``catalogue()``); ``params`` override it.
    Arguments are checked before any gradient is computed. With a ``decoylab.cache.Cache``,
    the result is stored under a key made of the attack, its settings, the seed, the
    target, the inputs and the model's architecture and weights, so a re-run does not re-attack.
    """
    if name not in REGISTRY:
        raise ValueError(f"attack={name!r} is not known; allowed: {', '.join(REGISTRY)}")
    entry = REGISTRY[name]
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not allowed; allowed: {', '.join(BACKENDS)}")
    if backend not in entry.backends:
        raise ValueError(f"attack {name!r} has no {backend!r} backend; it has {', '.join(entry.backends)}")
    if preset is not None and preset not in entry.presets:
        raise ValueError(f"preset={preset!r} is not known for {name!r}; allowed: {', '.join(entry.presets) or 'none'}")
    unknown = set(params) - set(entry.defaults)
    if unknown:
        raise ValueError(f"{name} has no parameter(s) {sorted(unknown)}; allowed: {', '.join(entry.defaults)}")
    settings = {**entry.defaults, **(entry.presets.get(preset, {}) if preset else {}), **params}
    _check_number("eps", settings["eps"], 0, 1)
    if "step_size" in settings:
        _check_number("step_size", settings["step_size"], 0, 1)
    if "steps" in settings and (not isinstance(settings["steps"], int) or settings["steps"] < 1):
        raise ValueError(f"steps={settings['steps']!r} is not allowed; steps must be an integer >= 1")
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    if targeted and not entry.can_target:
        raise ValueError(f"attack {name!r} cannot be targeted")
    if target is not None and not targeted:
        raise ValueError("a target was given but targeted=False; pass targeted=True")

    model.eval()
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    with torch.no_grad():
        num_classes = model(x[:1]).shape[1]
    tgt = _resolve_target(model, x, y, target if target is not None else "random", num_classes, seed) \
        if targeted else None
    if cache is not None:
        parts = {"attack": name, "backend": backend, "settings": settings, "seed": seed, "targeted": targeted,
                 "target": tgt, "x": x, "y": y, "architecture": repr(model), "weights": model.state_dict()}
        stored = cache.get_or_build("adversarial", parts, lambda: vars(_attack(
            entry, backend, settings, model, x, y, tgt, targeted, seed, batch_size, num_classes)))
        return AttackResult(**stored)
    return _attack(entry, backend, settings, model, x, y, tgt, targeted, seed, batch_size, num_classes)


def _attack(entry: AttackEntry, backend: str, settings: dict[str, Any], model: nn.Module, x: torch.Tensor,
            y: torch.Tensor, tgt: torch.Tensor | None, targeted: bool, seed: int, batch_size: int,
            num_classes: int) -> AttackResult:
    device = x.device
    labels = tgt.to(device) if targeted else y
    x_adv, steps = entry.backends[backend](model, x, labels, targeted=targeted, seed=seed,
                                           batch_size=batch_size, num_classes=num_classes, **settings)
    x_adv = x_adv.to(device).clamp(0, 1)
    with torch.no_grad():
        pred = torch.cat([model(b) for b in x_adv.split(batch_size)]).argmax(1)
    success = (pred == labels) if targeted else (pred != y)
    delta = (x_adv - x).flatten(1)
    return AttackResult(x_adv=x_adv.detach().cpu(), success=success.cpu(),
                        target=None if tgt is None else tgt.cpu(),
                        l0=(delta.abs() > 1e-6).sum(1).cpu(), l2=delta.norm(dim=1).cpu(),
                        linf=delta.abs().amax(1).cpu(), grad_steps=steps)
