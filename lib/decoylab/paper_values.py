"""The four papers' numbers, read from ``paper_values.yaml`` — the one place the kit quotes them.

Each entry names its table or figure (``source``), says what it measures (``what``) and holds the
values as printed, keyed by the paper's data set. The defense modules' ``PAPER_*`` constants come
from here, so a typo fixed in the data file is fixed everywhere.
"""
from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import yaml


@functools.cache
def load() -> dict[str, Any]:
    return yaml.safe_load(resources.files("decoylab").joinpath("paper_values.yaml").read_text("utf-8"))


def _frozen(value: Any) -> Any:
    """Lists as tuples (a paper's row is not to be edited in place)."""
    if isinstance(value, dict):
        return {k: _frozen(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def entry(paper: str, name: str) -> dict[str, Any]:
    """The whole entry (source, what, columns, settings, values) of ``paper``'s table or figure ``name``."""
    papers = load()
    if paper not in papers:
        raise KeyError(f"paper={paper!r} is not known; allowed: {', '.join(papers)}")
    tables = {k: v for k, v in papers[paper].items() if isinstance(v, dict)}
    if name not in tables:
        raise KeyError(f"{paper} has no entry {name!r}; allowed: {', '.join(tables)}")
    return tables[name]


def values(paper: str, name: str) -> Any:
    return _frozen(entry(paper, name)["values"])


def settings(paper: str, name: str) -> dict[str, Any]:
    return dict(entry(paper, name).get("settings") or {})


def source(paper: str, name: str) -> Any:
    return entry(paper, name)["source"]


def value_at(paper: str, path) -> Any:
    """One printed number: ``path`` is [entry, key, ...] into the entry's values (a row's column by index)."""
    found = entry(paper, path[0])["values"]
    for step in path[1:]:
        try:
            found = found[step]
        except (KeyError, IndexError, TypeError):
            raise KeyError(f"{paper}: {list(path)} names no value (no {step!r} there)") from None
    return _frozen(found)


def claims(paper: str) -> list[dict[str, Any]]:
    """The claims declared for ``paper`` (its ``claims:`` list; ``decoylab.claims.declared`` builds the checks)."""
    if paper not in load():
        raise KeyError(f"paper={paper!r} is not known; allowed: {', '.join(load())}")
    return [dict(c) for c in load()[paper].get("claims") or []]
