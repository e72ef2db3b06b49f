"""The cost probe behind ``decoylab bench --rehearsal --estimate``: what a preset's notebook would cost at full size,
measured on a short run of it.

When ``DECOYLAB_COST_PROBE`` names a file, ``train.fit`` runs only a few hundred optimiser steps at most and ``attacks.run`` attacks only the first few inputs (the others are returned unchanged); each writes one JSON line
to the file: what ran, the seconds per unit measured (a training step, an attacked input, a validation pass) and
how many units the full call would have run. Everything else in the notebook (data loading, predictions, statistics,
figures) runs at full size and is timed by the wall clock, so a notebook's estimate is its probed run's wall time,
less the probed seconds, plus the sum of unit cost times full count. The networks are trained briefly, so
the results of a probed run mean nothing, and their cache keys are marked so that they never meet a real run's
entries. Where a cost depends on the network's quality (attacks that stop early once they succeed, the number of
correctly classified inputs found) the estimate inherits the briefly trained network's behaviour; docs/benchmarks.md
compares estimates with full runs.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

ENV = "DECOYLAB_COST_PROBE"
#: A probed training runs at least MIN_STEPS optimiser steps after WARMUP_STEPS untimed ones (allocator, kernels),
#: then goes on until MAX_STEPS or TRAIN_SECONDS: the networks that the notebook attacks next must be trained enough
#: for attacks that stop early on success to cost what they cost on a trained network (with 20 steps, HoneyModels'
#: JSMA and CW-L2 ran to their limits on networks at 65 % accuracy and the estimate of notebook 10 was 4x its run).
WARMUP_STEPS = 3
MIN_STEPS = 20
MAX_STEPS = 400
TRAIN_SECONDS = 45.0
#: Inputs attacked per attack call; by default one batch of the device (``config.batch_size``): per input, a smaller
#: batch costs more (notebook 10's attacks on 32 inputs estimated 276 s where the full run took 173 s; on 128, 186 s).
ATTACK_POINTS_ENV = "DECOYLAB_COST_PROBE_POINTS"
#: Set (``--probe-once``): an attack call whose attack, settings, targeting, network architecture, input shape and
#: batch were already timed in this process is not run again; its unit cost is reused and its inputs come back
#: unchanged. For sweeps that attack many networks of one architecture (notebook 41: each CW-L2 at 1000 x 9
#: iterations costs minutes even on one batch).
ONCE_ENV = "DECOYLAB_COST_PROBE_ONCE"
_timed_attacks: dict[str, float] = {}


def log_path() -> Path | None:
    """The probe's log file when the probe is on, else None."""
    value = os.environ.get(ENV, "")
    return Path(value) if value else None


def attack_points(batch_size: int) -> int:
    """Inputs each attack call is timed on: ``DECOYLAB_COST_PROBE_POINTS``, else ``batch_size`` (the call's)."""
    value = os.environ.get(ATTACK_POINTS_ENV, "")
    return int(value) if value else batch_size


def timed_before(key: str) -> float | None:
    """With ``--probe-once``: the seconds per input measured before for an attack call described by ``key``."""
    return _timed_attacks.get(key) if os.environ.get(ONCE_ENV, "") not in ("", "0") else None


def remember(key: str, seconds_per_unit: float) -> None:
    _timed_attacks[key] = seconds_per_unit


def record(kind: str, what: str, seconds_per_unit: float, count: int, unit: str, seconds_probed: float,
           units_timed: int) -> None:
    """Append one measured part: ``count`` units of ``unit`` at ``seconds_per_unit`` each (timed over
    ``units_timed`` of them) would run in full; ``seconds_probed`` is what the probe itself took (subtracted from
    the run's wall time)."""
    path = log_path()
    if path is None:
        return
    row = {"kind": kind, "what": what, "seconds_per_unit": seconds_per_unit, "count": int(count), "unit": unit,
           "seconds_probed": seconds_probed, "units_timed": int(units_timed)}
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def read(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def estimate(wall_seconds: float, rows: list[dict]) -> dict:
    """The full-size estimate of one notebook from its probed run: the wall time outside the probes (run at full
    size) plus each part's unit cost times its full count."""
    probed = sum(r["seconds_probed"] for r in rows)
    parts = sum(r["seconds_per_unit"] * r["count"] for r in rows)
    training = sum(r["seconds_per_unit"] * r["count"] for r in rows if r["kind"] in ("train", "validation"))
    return {"wall_probed_run": wall_seconds, "outside_probes": max(wall_seconds - probed, 0.0),
            "training": training, "attacks": parts - training,
            "total": max(wall_seconds - probed, 0.0) + parts}
