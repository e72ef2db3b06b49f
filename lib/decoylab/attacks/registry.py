"""The registry of attacks, assembled from the family modules' entry lists, and the questions asked
of it: which attacks exist, which settings one takes, what it runs with."""
from __future__ import annotations

from typing import Any

from decoylab import params
from decoylab.attacks import cw, deepfool, jsma, linf, primitives, query
from decoylab.attacks.entry import AttackEntry

__all__ = ["AttackEntry", "FAST_MODULES", "REGISTRY", "accepted", "catalogue", "catalogue_entry", "checked_settings",
           "lookup", "names"]

#: The code of the fast backend: the cache key of a fast attack hashes these files.
FAST_MODULES = (primitives, linf, cw, deepfool, jsma, query)


def _assemble(*families) -> dict[str, AttackEntry]:
    registry: dict[str, AttackEntry] = {}
    for family in families:
        for item in family.ENTRIES:
            if item.name in registry:
                raise ValueError(f"attack {item.name!r} is registered twice (again in {family.__name__})")
            registry[item.name] = item
    return registry


REGISTRY: dict[str, AttackEntry] = _assemble(linf, cw, deepfool, jsma, query)


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def lookup(name: str) -> AttackEntry:
    """The registry entry of attack ``name``; an unknown name raises a ValueError listing the known ones."""
    if name not in REGISTRY:
        raise ValueError(f"attack={name!r} is not known; allowed: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def accepted(name: str, **candidates: Any) -> dict[str, Any]:
    """The subset of ``candidates`` that attack ``name`` takes, so one notebook parameter set
    (EPS, STEPS, STEP_SIZE, ...) can drive any attack."""
    takes = lookup(name).defaults
    return {k: v for k, v in candidates.items() if k in takes}


def catalogue() -> list[dict[str, Any]]:
    """One row per attack: norm, targeting, parameters with defaults and what each allows, presets."""
    return [{"name": e.name, "norm": e.norm, "targeting": e.targeting, "defaults": dict(e.defaults),
             "ranges": {k: spec.allowed for k, spec in e.specs.items()}, "backends": tuple(e.backends),
             "presets": dict(e.presets), "adaptive_hook": e.uses_gradient_loss} for e in REGISTRY.values()]


def catalogue_entry(name: str) -> dict[str, Any]:
    """One attack's row of ``catalogue()``."""
    lookup(name)  # validates the name
    return next(row for row in catalogue() if row["name"] == name)


def checked_settings(name: str, preset: str | None = None, **settings: Any) -> dict[str, Any]:
    """The settings ``run(name, ..., preset=preset, **settings)`` attacks with: the defaults, then the
    preset, then ``settings``. An unknown attack, preset or parameter, or a value its spec does not
    allow, raises a ValueError (``params.ParameterError``) naming the attack and the parameter."""
    found = lookup(name)
    if preset is not None and preset not in found.presets:
        raise ValueError(f"preset={preset!r} is not known for {name!r}; allowed: {', '.join(found.presets) or 'none'}")
    merged = {**found.defaults, **(found.presets[preset] if preset else {}), **settings}
    return params.check_all(merged, found.specs, where=f"attack {name!r}")
