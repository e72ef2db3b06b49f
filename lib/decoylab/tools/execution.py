"""Execute one notebook with papermill and write its ``results.json``: the unit of work that the local
process pool (``tools.runner``) and Ray (``tools.executor``) both run."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import decoylab
from decoylab.fileio import atomic_write_text
from decoylab.results import CLAIMS_PARTIAL_FILE, PARTIAL_FILE

RESULTS_FILE = "results.json"


@dataclass
class Task:
    name: str
    notebook: Path
    params_file: Path
    params: dict[str, Any]
    out_dir: Path
    params_hash: str
    effective: dict[str, Any]  # the notebook's defaults with the preset's values on top


def environment() -> dict[str, Any]:
    """Versions, device and git commit, recorded with every result."""
    import numpy
    import torch

    versions = {"python": platform.python_version(), "decoylab": decoylab.__version__,
                "torch": torch.__version__, "numpy": numpy.__version__}
    for module in ("torchvision", "art", "sklearn", "papermill"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # an optional package that is missing or broken is just not listed
            versions[module] = None
    device = "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    from decoylab import config

    return {"versions": versions, "device": device, "platform": platform.platform(), "git_commit": _git_commit(),
            "data_root": str(config.data_root())}  # which data sets were read (decoylab run --data-root)


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=here, capture_output=True, text=True,
                              timeout=10)
        commit = head.stdout.strip() if head.returncode == 0 else ""
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("-dirty" if dirty else "")) or None


def running_cell(executed: Path) -> int | None:
    """The execution count of the cell a dead kernel was running, from papermill's marks in the notebook it was
    writing (None if it had not reached a cell: the kernel died at startup)."""
    try:
        cells = json.loads(executed.read_text()).get("cells", [])
    except (OSError, ValueError):
        return None
    count = 0
    for cell in cells:
        state = cell.get("metadata", {}).get("papermill", {}).get("status")
        if cell.get("cell_type") == "code" and state in ("completed", "running"):
            count += 1
            if state == "running":
                return count
    return None


def execute(task: Task, preset: str, env: dict[str, Any]) -> dict[str, Any]:
    """Execute one notebook (in a worker process) and write its ``results.json`` atomically."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    os.environ["DECOYLAB_BATCH"] = "1"
    os.environ["DECOYLAB_RUN_DIR"] = str(task.out_dir)
    task.out_dir.mkdir(parents=True, exist_ok=True)
    partial, claims_partial = task.out_dir / PARTIAL_FILE, task.out_dir / CLAIMS_PARTIAL_FILE
    # A run that dies before the end must leave no "ok" behind: the next run then redoes this notebook
    (task.out_dir / RESULTS_FILE).unlink(missing_ok=True)
    partial.unlink(missing_ok=True)
    claims_partial.unlink(missing_ok=True)
    running = task.out_dir / f".{task.name}.running.ipynb"
    # The kernel inherits this worker's stderr: send its warnings to a log beside the notebook
    # so the runner's own output stays one line per notebook.
    kernel_log = open(task.out_dir / "kernel.log", "w")
    os.dup2(kernel_log.fileno(), 2)
    status, error = "ok", None
    start = time.perf_counter()
    try:
        papermill.execute_notebook(str(task.notebook), str(running), parameters=task.params,
                                   cwd=str(task.out_dir), progress_bar=False, log_output=False)
    except PapermillExecutionError as err:
        status = "failed"
        error = {"cell": err.exec_count, "ename": err.ename, "evalue": err.evalue}
    except Exception as err:  # kernel died, notebook unreadable, ...: still report, never crash the run
        status = "failed"
        error = {"cell": running_cell(running), "ename": type(err).__name__, "evalue": str(err)}
    seconds = time.perf_counter() - start
    if running.exists():  # replace the previous executed notebook only once this one is complete
        os.replace(running, task.out_dir / f"{task.name}.ipynb")
    results = json.loads(partial.read_text()) if partial.exists() else {}
    claims = json.loads(claims_partial.read_text()) if claims_partial.exists() else {}
    if status == "ok" and not (results or claims):
        # every notebook records its numbers; a kernel that "finished" with none recorded (killed, restarted,
        # its files removed) is not a result, so the next run must redo it rather than skip an empty "ok"
        status = "failed"
        error = {"cell": None, "ename": "NoResults",
                 "evalue": f"the notebook finished but no results were read from {partial.name}"}
    doc = {"notebook": task.name, "preset": preset, "status": status, "seconds": round(seconds, 2),
           "params": task.effective, "preset_params": task.params, "params_file": str(task.params_file),
           "params_hash": task.params_hash, "environment": {**env, "seed": task.effective.get("SEED")}, "error": error, "results": results,
           "claims": claims}
    atomic_write_text(task.out_dir / RESULTS_FILE, json.dumps(doc, indent=1))
    partial.unlink(missing_ok=True)
    claims_partial.unlink(missing_ok=True)
    return doc
