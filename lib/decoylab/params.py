"""One parameter system: a ``Spec`` says what a value may be, and every check goes through it.

The same ``Spec`` objects serve three callers:

- a notebook's settings cell: ``params.validate(globals(), "10_honeymodels")`` checks every UPPER_CASE
  literal of the ``parameters`` cell against that notebook's specs (``decoylab.specs.for_notebook``);
- the runner, which checks a YAML preset against the same specs before anything runs, without
  importing torch (this module and ``decoylab.specs`` import nothing heavy);
- the library's constructors and ``attacks.run``: ``params.check("eps", eps, specs.EPS)``.

An unknown name is an error everywhere, never skipped.
"""
from __future__ import annotations

from typing import Any, Mapping

from decoylab import specs
from decoylab.specs.base import (ParameterError, Spec, boolean, check, check_all, check_each, choice, integer, list_of,
                                 non_empty_list, notebook_parameters, number, problem, problems, text)

__all__ = ["ParameterError", "Spec", "boolean", "check", "check_all", "check_each", "choice", "integer", "list_of", "non_empty_list",
           "notebook_parameters", "number", "problem", "problems", "text", "validate"]


def validate(namespace: Mapping[str, Any], notebook: str) -> dict[str, Any]:
    """Check a notebook's parameters (pass ``globals()`` and the notebook's name) against its specs;
    raise one error naming every problem, before any compute."""
    values = notebook_parameters(namespace)
    found = specs.notebook_problems(notebook, values)
    if found:
        raise ParameterError(f"{notebook}: invalid parameters:\n  " + "\n  ".join(found))
    return values
