"""Named results of a notebook, each beside the paper's value for the same quantity.

In a headless run the runner sets ``DECOYLAB_RUN_DIR``; every ``record`` then rewrites
``results.partial.json`` there (atomically), and the runner turns it into ``results.json``
with the run's status, time, parameters and environment. In JupyterLab the results stay
in memory: ``table()`` shows them.
"""
from __future__ import annotations

import io
import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

from decoylab.fileio import atomic_write_bytes, atomic_write_text

PARTIAL_FILE = "results.partial.json"
CLAIMS_PARTIAL_FILE = "claims.partial.json"  # beside it: the runner puts it under results.json's "claims"
FIGURES_DIR = "figures"
_RESULTS: dict[str, dict[str, Any]] = {}
_CLAIMS: dict[str, dict[str, Any]] = {}
_VERDICTS: dict[str, Any] = {}


def run_dir() -> Path | None:
    """The output folder of the current headless run, or None in an interactive session."""
    value = os.environ.get("DECOYLAB_RUN_DIR")
    return Path(value) if value else None


def _plain(value: Any, what: str) -> Any:
    """Turn numpy/torch scalars into Python numbers; refuse what JSON cannot hold."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, what) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, what) for k, v in value.items()}
    raise TypeError(f"{what}: a result must be a number, string, bool, list or dict, got {type(value).__name__}")


#: How a kit number relates to the paper's: what the scorecard's "settings" column says.
MATCH_LABELS = ("same dataset and settings", "different dataset", "different settings")


def settings_match(dataset: str, paper_dataset: str | None, same_settings: bool,
                   differences: str | list[str] | tuple[str, ...] = ()) -> str:
    """The scorecard's label for a result on ``dataset`` beside a paper value measured on
    ``paper_dataset``: a different data set first (e.g. mnist5k for MNIST), then the other settings;
    ``differences`` (words, e.g. "4000 training images (the paper: 60000)") follow the label after a colon,
    so that the column names every way the run differs, not only the data set."""
    if dataset != paper_dataset:
        label = MATCH_LABELS[1]
    else:
        label = MATCH_LABELS[0] if same_settings else MATCH_LABELS[2]
    words = differences if isinstance(differences, str) else "; ".join(differences)
    return f"{label}: {words}" if words and label != MATCH_LABELS[0] else label


def match_label(match: str | None) -> str | None:
    """The label part of a ``settings_match`` text (before the differences), or None if it has none."""
    if match is None:
        return None
    return next((label for label in MATCH_LABELS if match == label or match.startswith(label + ": ")), None)


def _evidence(name: str, value: Any, n: int | None, interval: Any, proportion: bool,
              auc_against: int | None) -> dict[str, Any]:
    """``n`` and a 95 % interval beside a recorded value: Wilson's for a proportion of ``n``, Hanley and McNeil's
    for an AUC of ``n`` positives against ``auc_against`` negatives, else the given one."""
    if n is None:
        if proportion or interval is not None or auc_against is not None:
            raise ValueError(f"result {name!r}: an interval or a proportion needs the n it rests on")
        return {}
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 0:
        raise ValueError(f"result {name!r}: n={n!r} must be a count (an integer >= 0)")
    if proportion and interval is None and isinstance(value, numbers.Real) and math.isfinite(value) and n > 0:
        from decoylab.stats import wilson

        interval = wilson(round(float(value) * int(n)), int(n))
    if auc_against is not None and interval is None:
        from decoylab.stats import hanley_mcneil

        interval = hanley_mcneil(float(value), int(n), int(auc_against))
    return {"n": int(n), "interval": _plain(list(interval), name) if interval is not None else None}


def record(name: str, value: Any, paper: Any = None, source: str | None = None, note: str | None = None,
           match: str | None = None, *, n: int | None = None, interval: Any = None, proportion: bool = False,
           auc_against: int | None = None) -> None:
    """Record result ``name``. ``paper`` is the paper's number for the same quantity (from
    ``decoylab.paper_values``), ``source`` names its table or figure and ``match`` says whether the
    settings match (``settings_match``: one of ``MATCH_LABELS``, then every difference); ``note`` says what else
    the reader needs. ``n`` is the count the value rests on (images, successful adversarial examples) and
    ``interval`` its 95 % interval; ``proportion=True`` computes Wilson's interval for a rate of ``n``;
    ``auc_against`` (the negatives an AUC of ``n`` positives was measured against) Hanley and McNeil's, for an AUC
    whose scores are not at hand to bootstrap."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r}: a result needs a non-empty string name")
    if paper is not None and not source:
        raise ValueError(f"result {name!r}: a paper value needs its source (table or figure)")
    if paper is not None and match_label(match) is None:
        raise ValueError(f"result {name!r}: match={match!r} is not allowed; beside a paper value it must be one of "
                         f"{', '.join(MATCH_LABELS)}, optionally followed by ': ' and the differences "
                         f"(see results.settings_match)")
    evidence = _evidence(name, value, n, interval, proportion, auc_against)
    _RESULTS[name] = {"value": _plain(value, name), "paper": _plain(paper, name), "source": source, "note": note,
                      "match": match if paper is not None else None, **evidence}
    folder = run_dir()
    if folder is not None:
        atomic_write_text(folder / PARTIAL_FILE, json.dumps(_RESULTS, indent=1))


def recorded() -> dict[str, dict[str, Any]]:
    return {k: dict(v) for k, v in _RESULTS.items()}


def record_claim(claim, measurement, *, undecided: str | None = None):
    """Judge ``claim`` (a ``decoylab.claims.Claim``) on ``measurement`` and record the verdict under the run's
    separate ``claims`` key (``claims.partial.json`` in a headless run); return the ``Verdict``.
    ``undecided``: why this run cannot decide the claim whatever its interval says (e.g. "attack too weak: ...",
    "not measured: ..."); the verdict is then inconclusive with that reason."""
    from dataclasses import replace

    from decoylab.claims import INCONCLUSIVE, Verdict

    def unmeasured(x) -> bool:
        return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isnan(x)

    # unmeasured: results.json and the report carry None, not "nan"
    if unmeasured(measurement.value):
        measurement = replace(measurement, value=None)
    if measurement.interval is not None and any(map(unmeasured, measurement.interval)):
        measurement = replace(measurement, interval=None)
    verdict = Verdict(INCONCLUSIVE, undecided, claim, measurement) if undecided else claim.judge(measurement)
    _CLAIMS[claim.id] = _plain(verdict.as_dict(), claim.id)
    _VERDICTS[claim.id] = verdict
    folder = run_dir()
    if folder is not None:
        atomic_write_text(folder / CLAIMS_PARTIAL_FILE, json.dumps(_CLAIMS, indent=1))
    return verdict


def recorded_claims() -> dict[str, dict[str, Any]]:
    return {k: dict(v) for k, v in _CLAIMS.items()}


def verdicts() -> list:
    """The ``Verdict`` of every claim recorded so far (for ``claims.summary_markdown``), in recording order."""
    return list(_VERDICTS.values())


def clear() -> None:
    _RESULTS.clear()
    _CLAIMS.clear()
    _VERDICTS.clear()


def table():
    """The recorded results as a pandas DataFrame (value, paper, difference, settings, source, note)."""
    import pandas as pd

    rows = []
    for name, r in _RESULTS.items():
        diff = (r["value"] - r["paper"]) if _both_numbers(r["value"], r["paper"]) else None
        rows.append({"result": name, "value": r["value"], "paper": r["paper"], "difference": diff,
                     "settings": r.get("match"), "source": r["source"], "note": r["note"]})
    return pd.DataFrame(rows).set_index("result") if rows else pd.DataFrame()


def _both_numbers(a: Any, b: Any) -> bool:
    return all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (a, b))


def save_figure(fig, name: str):
    """Save ``fig`` as ``figures/<name>.png`` in a headless run's folder; return it for display."""
    folder = run_dir()
    if folder is not None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
        atomic_write_bytes(folder / FIGURES_DIR / f"{name}.png", buffer.getvalue())
    return fig
