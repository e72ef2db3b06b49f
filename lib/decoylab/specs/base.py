"""The machinery of the one parameter system: ``Spec`` (what a value may be), its constructors and checks.

Torch-free and import-free inside the kit, so ``decoylab.specs`` (the data) and ``decoylab.params`` (the
notebooks' entry point) both build on it without importing each other in a circle."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping


class ParameterError(ValueError):
    """One or more parameters are unknown, of the wrong type, or out of range."""


@dataclass(frozen=True)
class Spec:
    types: tuple[type, ...]
    check: Callable[[Any], bool]
    allowed: str  # what is allowed, in words, for the error message

    def accepts(self, value: Any) -> bool:
        return _is(value, self.types) and self.check(value)


def _is(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # True is an int in Python, but never a valid count or rate
    if isinstance(value, float) and not math.isfinite(value):
        return False  # inf and nan are never a valid setting
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

    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    span = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    return Spec((int, float, type(None)) if optional else (int, float), ok,
                f"a number in {span}" + (" or null" if optional else ""))


def choice(options: Iterable[str], *, optional: bool = False) -> Spec:
    options = tuple(options)
    return Spec((str, type(None)) if optional else (str,), lambda v: (optional and v is None) or v in options,
                "one of " + ", ".join(options) + (" or null" if optional else ""))


def boolean() -> Spec:
    return Spec((bool,), lambda v: True, "true or false")


def text(optional: bool = False, what: str = "a text") -> Spec:
    return Spec((str, type(None)) if optional else (str,), lambda v: True, what + (" or null" if optional else ""))


def list_of(item: Spec, *, non_empty: bool = True, optional: bool = False, extra: Callable[[list], bool] | None = None,
            extra_allowed: str = "") -> Spec:
    """A list whose every element satisfies ``item`` (a sweep grid); ``extra`` adds a rule on the whole list."""
    def ok(v):
        if v is None:
            return optional
        return ((len(v) > 0 or not non_empty) and all(item.accepts(e) for e in v)
                and (extra is None or extra(v)))

    words = ("a non-empty list" if non_empty else "a list (possibly empty)") + f", each element {item.allowed}"
    return Spec((list, tuple, type(None)) if optional else (list, tuple), ok,
                words + (f", {extra_allowed}" if extra_allowed else "") + (" or null" if optional else ""))


def non_empty_list(item: Spec) -> Spec:
    return list_of(item)


def problem(name: str, value: Any, spec: Spec) -> str | None:
    """The line that says why ``value`` is not allowed for ``name``, or None when it is."""
    if spec.accepts(value):
        return None
    return f"{name}={value!r} is not allowed; {name} must be {spec.allowed}"


def check(name: str, value: Any, spec: Spec) -> Any:
    """``value`` when ``spec`` accepts it; otherwise a ``ParameterError`` naming ``name`` and what is allowed."""
    found = problem(name, value, spec)
    if found:
        raise ParameterError(found)
    return value


def check_each(**named: tuple[Any, Spec]) -> None:
    """``check_each(eps=(eps, EPS), steps=(steps, COUNT))``: every argument against its spec, one error listing
    every problem (a constructor's checks in one call)."""
    found = [line for name, (value, spec) in named.items() if (line := problem(name, value, spec))]
    if found:
        raise ParameterError("; ".join(found) if len(found) == 1 else "invalid arguments:\n  " + "\n  ".join(found))


def check_all(values: Mapping[str, Any], specs: Mapping[str, Spec], where: str = "") -> dict[str, Any]:
    """Check every entry of ``values`` against ``specs``; unknown names are errors. One error lists every problem."""
    found = problems(values, specs)
    if found:
        raise ParameterError((f"{where}: " if where else "") + "invalid parameters:\n  " + "\n  ".join(found))
    return dict(values)


def problems(values: Mapping[str, Any], specs: Mapping[str, Spec]) -> list[str]:
    """Every problem with ``values`` against ``specs``, as readable lines; an unknown name is a problem."""
    found = []
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            found.append(f"unknown parameter {name!r}; allowed: {', '.join(specs)}")
            continue
        line = problem(name, value, spec)
        if line:
            found.append(line)
    return found


def notebook_parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The UPPER_CASE literal values of a notebook namespace (what the parameters cell set)."""
    literal = (bool, int, float, str, list, tuple, dict, type(None))
    return {k: v for k, v in namespace.items()
            if k.isupper() and not k.startswith("_") and isinstance(v, literal)}
