"""What every parameter may be, as data: ``Spec`` objects (``decoylab.params``) per notebook.

Nothing here imports torch, so the runner checks a preset in well under a second. The library's
constructors check their arguments against the same objects (``params.check``)."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from decoylab.specs.base import Spec, choice, problems
from decoylab.specs import attractors, common, compare, fingerprints, honeymodels, luring

TOUR = {**common.SHARED, **common.TRAINING, "ATTACK": choice(common.ATTACKS),
        "ATTACK_BACKEND": common.ATTACK_BACKEND, "EPS": common.UNIT, "STEPS": common.COUNT, "STEP_SIZE": common.UNIT,
        "N_ATTACK": common.COUNT}

#: Notebook name -> {PARAMETER: Spec}: every parameter of its ``parameters`` cell, nothing else.
NOTEBOOKS: dict[str, dict[str, Spec]] = {
    "00_tour": TOUR,
    "TEMPLATE": {k: common.SHARED[k] for k in ("DATASET", "N_TRAIN", "SEED", "INTERACTIVE")},
    **honeymodels.NOTEBOOKS, **attractors.NOTEBOOKS, **luring.NOTEBOOKS, **fingerprints.NOTEBOOKS, **compare.NOTEBOOKS,
}
RULES: dict[str, list[Callable[[Mapping[str, Any]], list[str]]]] = {
    **compare.RULES, **attractors.RULES, **luring.RULES, "00_tour": [common.attack_on_its_backend]}


def for_notebook(name: str) -> dict[str, Spec]:
    """The specs of notebook ``name``'s parameters; a ``KeyError`` names the notebooks that have some."""
    try:
        return NOTEBOOKS[name]
    except KeyError:
        raise KeyError(f"notebook {name!r} declares no parameter specs; known: {', '.join(NOTEBOOKS)}") from None


def notebook_problems(name: str, values: Mapping[str, Any], effective: Mapping[str, Any] | None = None) -> list[str]:
    """Every problem with ``values`` for notebook ``name``: unknown names, wrong types, out-of-range values,
    and, on ``effective`` (the notebook's defaults with ``values`` on top), the rules that tie several together."""
    found = problems(values, for_notebook(name))
    if not found:
        checked = effective if effective is not None else values
        rules = [*RULES.get(name, []), *([common.sizes_fit_the_dataset] if "N_TRAIN" in for_notebook(name) else [])]
        for rule in rules:
            found += rule(checked)
    return found
