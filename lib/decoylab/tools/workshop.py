"""``decoylab workshop``: notebooks ready for a room of participants, their caches already built.

1. Every notebook is written to ``workshop/<name>.ipynb`` with the preset's parameters filled in
   (papermill's ``prepare_only``: nothing executed, outputs empty) and widgets on, so a participant
   opens it in JupyterLab and runs it at the preset's scale, not at the paper's.
2. Unless ``prebuild=False``, the preset is run once headless (``decoylab run``): every model and
   adversarial set lands in the cache under the same keys the participants' runs will ask for, so
   their cells load instead of train.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from decoylab.tools import runner
from decoylab.fileio import atomic_write_text


def prepare(preset: str = "quick", out_dir: str | Path = "workshop", notebooks: list[str] | None = None,
            notebooks_dir: str | Path = "notebooks", params_dir: str | Path = "params", prebuild: bool = True,
            jobs: int = 1, log: Callable[[str], None] = print) -> int:
    """Write the parameterised notebooks, then (optionally) pre-build the caches; return an exit code
    (0 ready, 1 a pre-build notebook failed, 2 bad input — nothing written)."""
    import nbformat
    import papermill

    out_dir = Path(out_dir)
    try:
        tasks = runner.plan(preset, notebooks, Path(notebooks_dir), Path(params_dir), out_dir / ".prebuild")
    except runner.RunnerError as err:
        log(f"error: {err}")
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        nb = papermill.execute_notebook(str(task.notebook), None, parameters={**task.params, "INTERACTIVE": True},
                                        prepare_only=True, progress_bar=False, log_output=False)
        for cell in nb.cells:  # papermill's bookkeeping is noise for a participant
            cell.metadata.pop("papermill", None)
        nb.metadata.pop("papermill", None)
        atomic_write_text(out_dir / f"{task.name}.ipynb", nbformat.writes(nb))
    atomic_write_text(out_dir / "README.md", _readme(preset, [t.name for t in tasks]))
    log(f"wrote {len(tasks)} notebook(s) with the {preset!r} preset to {out_dir}/")
    if not prebuild:
        return 0
    log("pre-building the caches (each notebook runs once headless; later runs load what it trained)")
    code = runner.run(preset=preset, notebooks=[t.name for t in tasks], jobs=jobs, notebooks_dir=notebooks_dir,
                      params_dir=params_dir, runs_dir=out_dir / ".prebuild", log=log)
    state = {"preset": preset, "notebooks": [t.name for t in tasks], "prebuild_exit_code": code}
    atomic_write_text(out_dir / ".prebuild" / "state.json", json.dumps(state, indent=1))
    log("ready: serve it with `make lab-room` (see the README's 'Teaching a workshop')" if code == 0 else
        "some notebooks failed to pre-build (see above); participants will train those themselves")
    return code


def _readme(preset: str, names: list[str]) -> str:
    return (f"# Workshop notebooks ({preset} preset)\n\nWritten by `decoylab workshop --preset {preset}`; do not edit "
            "the originals in `notebooks/` during a session. Open them in order; notebooks/README.md gives the "
            "3-hour path.\n\n" + "\n".join(f"- `{n}.ipynb`" for n in names) + "\n")
