"""The library's ranges for notebook parameters, checked before any compute.

A notebook's ``parameters`` cell holds UPPER_CASE literals; the next cell calls
``params.validate(globals())``. The runner checks YAML presets against the same specs
(and against the notebook's own declared names and types) before anything runs, so a
bad preset fails in a second instead of after an hour of training.

Defense modules add their own parameters with ``register``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from decoylab import attacks, config, data, models


class ParameterError(ValueError):
    """One or more parameters are unknown, of the wrong type, or out of range."""


@dataclass(frozen=True)
class Spec:
    types: tuple[type, ...]
    check: Callable[[Any], bool]
    allowed: str  # what is allowed, in words, for the error message


def _is(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # True is an int in Python, but never a valid count or rate
    return isinstance(value, types)


def integer(low: int | None = None, high: int | None = None, optional: bool = False) -> Spec:
    lo, hi = ("" if low is None else f" >= {low}"), ("" if high is None else f" <= {high}")
    return Spec((int, type(None)) if optional else (int,),
                lambda v: v is None or ((low is None or v >= low) and (high is None or v <= high)),
                f"an integer{lo}{' and' if lo and hi else ''}{hi}" + (" or null" if optional else ""))


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False, optional: bool = False) -> Spec:
    def ok(v):
        return v is None or ((low is None or (v > low if low_open else v >= low))
                             and (high is None or (v < high if high_open else v <= high)))

    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    span = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    return Spec((int, float, type(None)) if optional else (int, float), ok,
                f"a number in {span}" + (" or null" if optional else ""))


def choice(options: Iterable[str]) -> Spec:
    options = tuple(options)
    return Spec((str,), lambda v: v in options, "one of " + ", ".join(options))


def non_empty_list(item: Spec) -> Spec:
    """A non-empty list whose every element satisfies ``item`` (a sweep grid)."""
    return Spec((list,), lambda v: len(v) > 0 and all(_is(e, item.types) and item.check(e) for e in v),
                f"a non-empty list, each element {item.allowed}")


def boolean() -> Spec:
    return Spec((bool,), lambda v: True, "true or false")


SPECS: dict[str, Spec] = {
    "DATASET": choice(data.names()),
    "DATA_ROOT": Spec((str, type(None)), lambda v: True, "a folder path or null ($DECOYLAB_DATA)"),
    "MODEL": choice(models.names()),
    "DEVICE": choice(config.DEVICES),
    "INTERACTIVE": boolean(),
    "SEED": integer(0),
    "N_TRAIN": integer(1, optional=True),
    "N_TEST": integer(1, optional=True),
    "N_ATTACK": integer(1),
    "EPOCHS": integer(1),
    "BATCH_SIZE": integer(1),
    "LR": number(0, low_open=True),
    "EPS": number(0, 1, low_open=True),
    "STEP_SIZE": number(0, 1, low_open=True),
    "STEPS": integer(1),
    "FPR": number(0, 1, low_open=True, high_open=True),
    "ATTACK": choice(attacks.names()),
    "ATTACK_BACKEND": choice(attacks.core.BACKENDS),
}


def register(name: str, spec: Spec) -> None:
    """Declare the range of a parameter (used by defense modules for their own knobs)."""
    if not name.isupper():
        raise ValueError(f"parameter names are UPPER_CASE, got {name!r}")
    SPECS[name] = spec


def problems(values: Mapping[str, Any]) -> list[str]:
    """Every problem with ``values`` against the library's specs, as readable lines."""
    import decoylab.compare  # noqa: F401  (the comparison's parameters, notebooks 41 and 90)
    import decoylab.defenses  # noqa: F401  (the defense modules register their parameters on import)

    found = []
    for name, value in values.items():
        spec = SPECS.get(name)
        if spec is None:
            continue
        if not _is(value, spec.types) or not spec.check(value):
            found.append(f"{name}={value!r} is not allowed; {name} must be {spec.allowed}")
    return found


def notebook_parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The UPPER_CASE literal values of a notebook namespace (what the parameters cell set)."""
    literal = (bool, int, float, str, list, tuple, dict, type(None))
    return {k: v for k, v in namespace.items()
            if k.isupper() and not k.startswith("_") and isinstance(v, literal)}


def validate(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Check a notebook's parameters (pass ``globals()``); raise one error naming every problem."""
    values = notebook_parameters(namespace)
    found = problems(values)
    if found:
        raise ParameterError("invalid parameters:\n  " + "\n  ".join(found))
    return values
