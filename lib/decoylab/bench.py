"""``decoylab bench``: wall time and peak memory of a preset, cold and fully cached.

Peak memory is the largest resident set of any process in the run's tree (runner,
workers, kernels), as Linux reports it through ``wait4``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _timed_run(args: list[str], env: dict[str, str]) -> tuple[int, float, float]:
    """(exit code, seconds, peak RSS in MiB of the largest process in the tree)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "decoylab", "run", *args], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main(preset: str, notebooks: list[str] | None, jobs: int, notebooks_dir: str, params_dir: str) -> int:
    with tempfile.TemporaryDirectory(prefix="decoylab-bench-") as tmp:
        env = {**os.environ, "DECOYLAB_CACHE": str(Path(tmp) / "cache")}
        runs = Path(tmp) / "runs"
        args = ["--preset", preset, "--jobs", str(jobs), "--notebooks-dir", notebooks_dir,
                "--params-dir", params_dir, "--runs-dir", str(runs)]
        if notebooks:
            args += ["--notebooks", *notebooks]
        rc1, cold_s, cold_mem = _timed_run(args, env)
        cold = json.loads((runs / preset / "summary.json").read_text())["notebooks"] if rc1 != 2 else {}
        rc2, warm_s, warm_mem = _timed_run(args + ["--force"], env)
        warm = json.loads((runs / preset / "summary.json").read_text())["notebooks"] if rc2 != 2 else {}
    print(f"\nbenchmark: preset {preset!r}, {os.cpu_count()} CPU cores, jobs {jobs}")
    print(f"{'notebook':<28}{'first run s':>14}{'cached s':>12}")
    for name in cold:
        print(f"{name:<28}{cold[name]['seconds'] or 0:>14.1f}{(warm.get(name) or {}).get('seconds') or 0:>12.1f}")
    print(f"{'whole preset (wall)':<28}{cold_s:>14.1f}{warm_s:>12.1f}")
    print(f"{'peak memory MiB':<28}{cold_mem:>14.0f}{warm_mem:>12.0f}")
    print(f"cached re-run / first run: {warm_s / cold_s:.0%}")
    return rc1 or rc2
