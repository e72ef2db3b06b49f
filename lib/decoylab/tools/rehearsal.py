"""``decoylab bench --rehearsal`` (``make rehearsal``): the MNIST ``paper`` preset on CPU without a download.

Full Fashion-MNIST (60,000 + 10,000 images in MNIST's own idx format; Debian's ``dataset-fashion-mnist`` installs
them) is staged where the kit looks for MNIST's raw files (``<out>/data/mnist/MNIST/raw``), then each notebook of
the preset runs on its own, from an empty cache of its own (``<out>/cache/<notebook>``, emptied at the start of its
run), so that its wall time and peak resident memory are its own: a run of the whole preset shares trained
networks between notebooks (notebook 41 reuses notebook 40's) and costs less than the sum. Each run's row is
merged into ``<out>/rehearsal.json`` (or ``estimate.json``) by notebook, so notebooks can be rehearsed one
invocation at a time. The numbers are what the
paper preset costs at MNIST's size on this machine; the results are Fashion-MNIST's, not MNIST's, and are not
verdicts.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from decoylab import fileio
from decoylab.data import DEBIAN_FASHION_MNIST

#: MNIST's four raw files; Fashion-MNIST ships the same names in the same format.
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class RehearsalError(Exception):
    """The source folder lacks a file, or the output folder cannot be written."""


def stage_as_mnist(source: Path, data_root: Path) -> Path:
    """Copy the four idx files (plain or ``.gz``) from ``source`` to ``data_root/mnist/MNIST/raw``; return that
    folder. Raises ``RehearsalError`` naming every missing file before copying any."""
    found, missing = {}, []
    for name in IDX_FILES:
        candidates = [source / name, source / f"{name}.gz"]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            missing.append(name)
        found[name] = hit
    if missing:
        raise RehearsalError(f"--source {source}: missing {', '.join(missing)} (plain or .gz); on Debian "
                             "`apt install dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist")
    raw = data_root / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for hit in found.values():
        shutil.copyfile(hit, raw / hit.name)
    return raw


def markdown_table(rows: list[dict]) -> str:
    lines = ["| notebook | exit | wall s | peak memory MiB |", "|---|---|---|---|"]
    lines += [f"| `{r['notebook']}` | {r['exit_code']} | {r['seconds']:.0f} | {r['peak_rss_mib']:.0f} |" for r in rows]
    return "\n".join(lines)


def parts_table(rows: list[dict]) -> str:
    """The probed parts of one notebook, alike parts (same kind, what and unit cost's unit) summed."""
    merged: dict[tuple, list] = {}
    for r in rows:
        key = (r["kind"], r["what"], r["unit"])
        calls, count, seconds = merged.get(key, (0, 0, 0.0))
        merged[key] = (calls + 1, count + r["count"], seconds + r["seconds_per_unit"] * r["count"])
    lines = [f"    {'part':<44}{'calls':>6}{'units':>10}  {'unit':<8}{'s per unit':>11}{'estimate min':>14}"]
    for (kind, what, unit), (calls, count, seconds) in sorted(merged.items(), key=lambda kv: -kv[1][2]):
        lines.append(f"    {kind + ' ' + what:<44.44}{calls:>6}{count:>10}  {unit:<8}{seconds / max(count, 1):>11.4f}"
                     f"{seconds / 60:>14.1f}")
    return "\n".join(lines)


def estimate_table(rows: list[dict]) -> str:
    """One row per notebook; the peak memory is the probed run's, which holds the full data and one attacked
    batch at a time as the full run does."""
    lines = ["| notebook | exit | probed run s | outside the probes s | training h | attacks h | estimate h | "
             "peak memory MiB |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| `{r['notebook']}` | {r['exit_code']} | {r['seconds']:.0f} | {r['outside_probes']:.0f} | "
              f"{r['training'] / 3600:.2f} | {r['attacks'] / 3600:.2f} | {r['total'] / 3600:.2f} | "
              f"{r['peak_rss_mib']:.0f} |" for r in rows]
    return "\n".join(lines)


def main(source: str | None = None, out: str = "rehearsal", notebooks: list[str] | None = None,
         preset: str = "paper", notebooks_dir: str = "notebooks", params_dir: str = "params",
         estimate: bool = False, probe_points: int | None = None, probe_once: bool = False) -> int:
    """Run each notebook of ``preset`` at full size (``estimate``: under the cost probe, see ``decoylab.costprobe``)."""
    from decoylab import costprobe
    from decoylab.tools import bench, runner

    out_dir = Path(out)
    if probe_points is not None and (not estimate or isinstance(probe_points, bool) or probe_points < 1):
        print(f"error: --probe-points {probe_points!r} is not allowed: an integer >= 1, and only with --estimate")
        return 2
    if probe_once and not estimate:
        print("error: --probe-once is allowed only with --estimate")
        return 2
    kind = "estimate" if estimate else "rehearsal"
    runs_dir = out_dir / ("probe-runs" if estimate else "runs")
    try:
        tasks = runner.plan(preset, notebooks, Path(notebooks_dir), Path(params_dir), runs_dir)
        data_root = out_dir / "data"
        stage_as_mnist(Path(source) if source else DEBIAN_FASHION_MNIST, data_root)
    except (runner.RunnerError, RehearsalError) as err:
        print(f"error: {err}")
        return 2
    # the probe's runs keep their own caches: their networks are barely trained
    caches = out_dir / ("probe-cache" if estimate else "cache")
    env = {**os.environ, "DECOYLAB_DATA": str(data_root.resolve())}
    if probe_points is not None:
        env[costprobe.ATTACK_POINTS_ENV] = str(probe_points)
    if probe_once:
        env[costprobe.ONCE_ENV] = "1"
    table_file = out_dir / f"{kind}.json"
    rows = _earlier_rows(table_file, preset)
    print(f"{kind}: preset {preset!r} on Fashion-MNIST staged as MNIST, {os.cpu_count()} CPU cores, "
          f"one notebook at a time; files in {out_dir}")
    for task in runner.start_order(tasks):
        args = ["--preset", preset, "--notebooks", task.name, "--notebooks-dir", notebooks_dir, "--params-dir",
                params_dir, "--runs-dir", str(runs_dir)]
        # Emptied first: an earlier invocation's networks and attacks would be read back, untimed (a second
        # estimate of notebook 20 in one --out found the first's and timed only the attacks not yet cached).
        shutil.rmtree(caches / task.name, ignore_errors=True)
        env["DECOYLAB_CACHE"] = str((caches / task.name).resolve())
        if estimate:
            log = (out_dir / "probe" / f"{task.name}.jsonl").resolve()
            log.parent.mkdir(parents=True, exist_ok=True)
            log.unlink(missing_ok=True)
            env[costprobe.ENV] = str(log)
            args.append("--force")
        rc, seconds, peak = bench._timed_run(args, env)
        row = {"notebook": task.name, "exit_code": rc, "seconds": round(seconds, 1), "peak_rss_mib": round(peak)}
        if estimate:
            parts = costprobe.read(log)
            row.update({k: round(v, 1) for k, v in costprobe.estimate(seconds, parts).items()})
            print(f"  {task.name}: exit {rc}, probed run {seconds:.0f} s, estimate {row['total'] / 3600:.2f} h")
            print(parts_table(parts))
        else:
            print(f"  {task.name}: exit {rc}, {seconds:.0f} s, peak {peak:.0f} MiB")
        rows = sorted([r for r in rows if r["notebook"] != task.name] + [row], key=lambda r: r["notebook"])
        fileio.atomic_write_text(table_file, json.dumps({"preset": preset, "cpu_cores": os.cpu_count(),
                                                         "notebooks": rows}, indent=1))
    print("\n" + (estimate_table(rows) if estimate else markdown_table(rows)))
    print(f"\nwritten: {table_file} (put the table in docs/benchmarks.md with the command)")
    return 0 if all(r["exit_code"] == 0 for r in rows) else 1


def _earlier_rows(table_file: Path, preset: str) -> list[dict]:
    """Rows an earlier invocation wrote for the same preset (others are set aside: they measured something else)."""
    try:
        earlier = json.loads(table_file.read_text())
    except (OSError, ValueError):
        return []
    return list(earlier.get("notebooks", [])) if earlier.get("preset") == preset else []
