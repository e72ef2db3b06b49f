"""The attack engine: ``run`` checks its arguments, resolves the target, calls the backend and
caches the result; ``AttackResult`` holds the per-sample bookkeeping; ``BPDA`` wraps a
non-differentiable step so every gradient attack runs through it."""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from decoylab import config, costprobe
from decoylab.attacks import art_backend
from decoylab.attacks.primitives import ExtraLoss
from decoylab.attacks.registry import FAST_MODULES, REGISTRY, AttackEntry, checked_settings, lookup

BACKENDS = ("fast", "art")
TARGET_MODES = ("random", "least_likely")


def art_version() -> str:
    from importlib.metadata import version

    return version("adversarial-robustness-toolbox")


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
        batch_size: int | None = None, num_classes: int | None = None, cache=None, extra_loss: ExtraLoss = None,
        extra_loss_key: dict[str, Any] | None = None, **params: Any) -> AttackResult:
    """Run attack ``name`` on ``model`` (any ``nn.Module`` returning logits) for inputs in [0, 1].

    ``preset`` names settings from a paper table (see ``catalogue()``); ``params`` override it.
    Arguments are checked before any gradient is computed. With a ``decoylab.cache.Cache``,
    the result is stored under a key made of the attack, its settings, the seed, the
    target, the inputs and the model's architecture and weights, so a re-run does not re-attack.
    ``extra_loss(x_adv, labels)`` returns one penalty per sample that gradient attacks also minimise
    (``labels``: the true classes, or the targets of a targeted run)
    (the adaptive-attack hook). A function cannot be keyed, so runs with it are cached only when
    ``extra_loss_key`` describes the term: everything it depends on beyond the attacked model
    (its kind, weight, the defense's secrets and weights, the code that computes it), which the
    caller vouches for. ``num_classes``, when given, is checked against the width of the model's output.
    """
    entry = lookup(name)
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not allowed; allowed: {', '.join(BACKENDS)}")
    if backend not in entry.backends:
        raise ValueError(f"attack {name!r} has no {backend!r} backend; it has {', '.join(entry.backends)}")
    settings = checked_settings(name, preset, **params)
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    if len(x) == 0:
        raise ValueError("x is empty: there is nothing to attack (was a subset of correctly classified inputs empty?)")
    if not torch.isfinite(x).all():
        raise ValueError(f"x holds {int((~torch.isfinite(x)).sum())} NaN or infinite values; attacks need finite "
                         "images in [0, 1]")
    if float(x.min()) < -1e-6 or float(x.max()) > 1 + 1e-6:
        raise ValueError(f"x spans [{float(x.min()):.4g}, {float(x.max()):.4g}]; attacks need images in [0, 1] "
                         "(their budgets and clipping assume it: divide 8-bit pixels by 255)")
    if entry.targeting == "never" and targeted:
        raise ValueError(f"attack {name!r} cannot be targeted")
    if entry.targeting == "always" and not targeted:
        raise ValueError(f"attack {name!r} is targeted only; pass targeted=True (and a target, default 'random')")
    if entry.targeting == "least_likely":
        if targeted and target not in (None, "least_likely"):
            raise ValueError(f"attack {name!r} always targets the least likely class; leave target unset")
        targeted, target = True, "least_likely"
    if target is not None and not targeted:
        raise ValueError("a target was given but targeted=False; pass targeted=True")
    if extra_loss is not None and not entry.uses_gradient_loss:
        hooks = [n for n, e in REGISTRY.items() if e.uses_gradient_loss]
        raise ValueError(f"attack {name!r} has no loss to add extra_loss to; attacks with the hook: {', '.join(hooks)}")
    if extra_loss is not None and backend == "art":
        raise ValueError("extra_loss needs backend='fast': ART's attacks have no hook for an extra loss")
    if extra_loss_key is not None and (extra_loss is None or not isinstance(extra_loss_key, dict)):
        raise ValueError("extra_loss_key is not allowed here: give it as a dict, and only together with extra_loss")
    settings = {**settings, **entry.fixed}

    model.eval()
    weights = next(model.parameters(), None)
    device = weights.device if weights is not None else x.device
    x, y = x.to(device), y.to(device)
    if batch_size is None:  # small on CPU, large on a GPU (config.batch_size says why)
        batch_size = config.batch_size(device)
    elif isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not allowed; give an integer >= 1 or None (the device's default)")
    with torch.no_grad():
        probe = model(x[:2])
    expected = num_classes
    if probe.dim() != 2 or probe.shape[0] != len(x[:2]) or probe.shape[1] < 2 or \
            (expected is not None and probe.shape[1] != expected):
        raise ValueError(f"the model must return logits shaped (N, {expected or 'num_classes'}); it returned "
                         f"{tuple(probe.shape)} for {len(x[:2])} inputs")
    num_classes = probe.shape[1]
    if int(y.max()) >= num_classes or int(y.min()) < 0:
        raise ValueError(f"labels range over [{int(y.min())}, {int(y.max())}] but the model has {num_classes} classes")
    tgt = _resolve_target(model, x, y, target if target is not None else "random", num_classes, seed) \
        if targeted else None
    if cache is not None and (extra_loss is None or extra_loss_key is not None):
        from decoylab.cache import code_version, model_identity

        implementation = code_version(*FAST_MODULES) if backend == "fast" else f"{art_version()}:{code_version(art_backend)}"
        parts = {"attack": name, "backend": backend, "implementation": implementation, "settings": settings,
                 "seed": seed, "targeted": targeted, "target": tgt, "x": x, "y": y, **model_identity(model)}
        if extra_loss_key is not None:
            parts["extra_loss"] = extra_loss_key
        stored = cache.get_or_build("adversarial", parts, lambda: vars(_attack(
            entry, backend, settings, model, x, y, tgt, targeted, seed, batch_size, num_classes, extra_loss)))
        return AttackResult(**stored)
    return _attack(entry, backend, settings, model, x, y, tgt, targeted, seed, batch_size, num_classes, extra_loss)


def _attack(entry: AttackEntry, backend: str, settings: dict[str, Any], model: nn.Module, x: torch.Tensor,
            y: torch.Tensor, tgt: torch.Tensor | None, targeted: bool, seed: int, batch_size: int,
            num_classes: int, extra_loss) -> AttackResult:
    device = x.device
    labels = tgt.to(device) if targeted else y
    attack = entry.backends[backend]
    context = _context_taken(attack, targeted=targeted, seed=seed, batch_size=batch_size, num_classes=num_classes,
                             extra_loss=extra_loss)
    probe_points = costprobe.attack_points(batch_size) if costprobe.log_path() is not None else None
    probe_key = f"{entry.name}|{sorted(settings.items())}|{targeted}|{model!r}|{tuple(x.shape[1:])}|{batch_size}" \
        if probe_points is not None else ""
    if probe_points is not None and len(x) > probe_points and costprobe.timed_before(probe_key) is not None:
        costprobe.record("attack", entry.name, costprobe.timed_before(probe_key), len(x), "inputs", 0.0, 0)
        x_adv, steps = x.clone(), 0
    elif probe_points is not None and len(x) > probe_points:
        # the cost probe (decoylab.costprobe): attack the first inputs only, return the others unchanged
        start = time.perf_counter()
        x_adv, steps = attack(model, x[:probe_points], labels[:probe_points], **context, **settings)
        seconds = time.perf_counter() - start
        costprobe.record("attack", entry.name, seconds / probe_points, len(x), "inputs", seconds, probe_points)
        costprobe.remember(probe_key, seconds / probe_points)
        x_adv = torch.cat([x_adv.to(device), x[probe_points:]])
    else:
        x_adv, steps = attack(model, x, labels, **context, **settings)
    x_adv = x_adv.to(device).clamp(0, 1)
    with torch.no_grad():
        pred = torch.cat([model(b) for b in x_adv.split(batch_size)]).argmax(1)
    success = (pred == labels) if targeted else (pred != y)
    delta = (x_adv - x).flatten(1)
    return AttackResult(x_adv=x_adv.detach().cpu(), success=success.cpu(),
                        target=None if tgt is None else tgt.cpu(),
                        l0=(delta.abs() > 1e-6).sum(1).cpu(), l2=delta.norm(dim=1).cpu(),
                        linf=delta.abs().amax(1).cpu(), grad_steps=steps)


def _context_taken(attack: Callable, **context: Any) -> dict[str, Any]:
    """The items of ``run``'s context (targeted, seed, batch size, number of classes, extra loss) that
    the backend function ``attack`` names in its signature: a deterministic attack takes no seed, an
    untargeted-only one no ``targeted``. The settings are not filtered: every setting an entry declares
    is a keyword of each of its backends (tests/test_attacks.py checks), and one that is not fails
    loudly (a TypeError), never silently."""
    takes = inspect.signature(attack).parameters
    if context["targeted"] and "targeted" not in takes:
        raise ValueError(f"{attack.__module__}.{attack.__name__} cannot be targeted")
    if context["extra_loss"] is not None and "extra_loss" not in takes:
        raise ValueError(f"{attack.__module__}.{attack.__name__} has no loss to add extra_loss to")
    return {key: value for key, value in context.items() if key in takes}


class BPDA(nn.Module):
    """Backward Pass Differentiable Approximation (Athalye et al. 2018, §4.1): ``model(step(x))``
    where ``step`` need not be differentiable (quantisation, JPEG, a detector's hard decision).
    The forward pass uses ``step(x)``; the backward pass differentiates ``approximation(x)``
    instead — the identity by default — via ``approx + (step − approx).detach()``, so every
    gradient attack of the registry runs on the wrapped model unchanged."""

    def __init__(self, model: nn.Module, step: Callable[[torch.Tensor], torch.Tensor],
                 approximation: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        if not callable(step):
            raise ValueError(f"step={step!r} is not allowed; pass the non-differentiable function to wrap")
        if approximation is not None and not callable(approximation):
            raise ValueError(f"approximation={approximation!r} is not allowed; pass a differentiable function or None")
        self.model = model
        self.step = step
        self.approximation = approximation

    def extra_repr(self) -> str:
        # Part of the attack cache's key: two different steps around one model are different models.
        def name(f):
            return "identity" if f is None else f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"
        return f"step={name(self.step)}, approximation={name(self.approximation)}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        smooth = x if self.approximation is None else self.approximation(x)
        with torch.no_grad():
            hard = self.step(x)
        return self.model(smooth + (hard - smooth).detach())
