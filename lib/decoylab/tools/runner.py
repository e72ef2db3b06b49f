"""Run notebooks headless with papermill from YAML presets: ``decoylab run``.

For each selected notebook ``notebooks/<nb>.ipynb`` and preset ``params/<preset>/<nb>.yaml``:

1. every YAML is checked against the notebook's own parameters (papermill's
   ``inspect_notebook``: names and declared types) and the library's ranges
   (``decoylab.params``); any problem stops the run before a notebook starts or a file
   under ``runs/`` is touched;
2. each notebook runs in its own process (or, with ``executor="ray"``, a Ray task: see
   ``decoylab.tools.executor``) into ``runs/<preset>/<nb>/<nb>.ipynb`` with its
   figures and ``results.json``; one that already completed with the same parameters and
   the same notebook source is skipped unless ``force``;
3. ``runs/<preset>/summary.json``, ``report.md`` and ``report.html`` gather every run.
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

import yaml

import decoylab
from decoylab import config, specs
from decoylab.fileio import unwritable_reason
from decoylab.tools import report
from decoylab.tools.execution import RESULTS_FILE, Task, environment, execute
from decoylab.tools.processes import die_with_parent, kill_tree

PRESETS_HINT = "tiny (tests, seconds), quick (2-core CPU, minutes, embedded data), paper (the papers' settings, GPU)"
SKIPPED_NOTEBOOKS = ("TEMPLATE",)


class RunnerError(Exception):
    """A problem found before anything ran (bad preset, unknown notebook, bad parameters)."""


LOCK_FILE = ".run.lock"
INTERRUPTED = 130  # the exit code of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT)


@contextlib.contextmanager
def owned(folder: Path):
    """Hold ``folder`` (a preset's runs folder) for this run alone: an exclusive ``flock`` on its lock file, which
    names the holder's pid. A second run on the same folder gets a ``RunnerError`` naming that pid instead of
    sharing (and deleting) the first one's partial results. The kernel releases the lock when the holder dies."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): runs are not guarded
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunnerError(f"{folder} is in use by another decoylab run (pid {holder}); wait for it to finish, "
                              "or give this run its own --runs-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Interrupted(Exception):
    """Ctrl-C or SIGTERM reached the runner."""


def _raise_interrupted(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


def _defaults(declared: dict[str, Any]) -> dict[str, Any]:
    """The notebook's own default values (papermill gives their source text)."""
    values = {}
    for name, p in declared.items():
        try:
            values[name] = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            values[name] = p["default"]
    return values


# --------------------------------------------------------------------------- planning

def discover(notebooks_dir: Path) -> dict[str, Path]:
    """Runnable notebooks by name (file stem); TEMPLATE and names starting with '_' are skipped."""
    return {p.stem: p for p in sorted(notebooks_dir.glob("*.ipynb"))
            if p.stem not in SKIPPED_NOTEBOOKS and not p.stem.startswith(("_", "."))}


def select(available: dict[str, Path], wanted: list[str] | None) -> list[str]:
    """Names to run: all, or each wanted name matched exactly or by a unique prefix ("10")."""
    if not wanted:
        return list(available)
    chosen = []
    for w in wanted:
        w = Path(w).stem
        matches = [w] if w in available else [n for n in available if n.startswith(w)]
        if len(matches) != 1:
            why = "matches several" if matches else "matches none"
            raise RunnerError(f"--notebooks {w!r} {why} of the notebooks: {', '.join(available) or '(none)'}")
        if matches[0] not in chosen:
            chosen.append(matches[0])
    return chosen


def _type_problem(key: str, value: Any, type_name: str | None) -> str | None:
    """Compare a YAML value with the annotation papermill read from the parameters cell."""
    if not type_name or type_name == "None":
        return None
    text = type_name.replace(" ", "")
    if text.startswith("Optional[") and text.endswith("]"):
        text = text[len("Optional["):-1] + "|None"
    accepted: list[type] = []
    for alt in text.split("|"):
        base = alt.split("[")[0].lower()
        mapping = {"int": [int], "float": [int, float], "str": [str], "bool": [bool], "list": [list],
                   "tuple": [list], "dict": [dict], "none": [type(None)]}
        if base not in mapping:
            return None  # an annotation we cannot check here; the library's specs still apply
        accepted += mapping[base]
    ok = any(isinstance(value, t) and not (isinstance(value, bool) and t is not bool) for t in accepted)
    if ok:
        return None
    hint = ""
    if isinstance(value, str):
        try:
            float(value)
            hint = " (YAML reads 1e-3 as text: write 1.0e-3)"
        except ValueError:
            pass
    return f"{key}={value!r} is a {type(value).__name__}; the notebook declares {key}: {type_name}{hint}"


def check_params(name: str, params_file: Path, values: dict[str, Any], declared: dict[str, Any]) -> list[str]:
    """Every problem with one preset file against the notebook's ``declared`` parameters
    (papermill's ``inspect_notebook``), each line naming the file and the key."""
    if not declared:
        return [f"{params_file}: notebook {name!r} has no cell tagged 'parameters'"]
    found = []
    for key, value in values.items():
        if key not in declared:
            found.append(f"{params_file}: unknown key {key!r}; {name} accepts: {', '.join(declared)}")
            continue
        problem = _type_problem(key, value, declared[key].get("inferred_type_name"))
        if problem:
            found.append(f"{params_file}: {problem}")
    if found:
        return found
    if name not in specs.NOTEBOOKS:
        return [f"{params_file}: notebook {name!r} declares no parameter specs; add its parameters to "
                f"decoylab.specs (NOTEBOOKS)"]
    known = {k: v for k, v in values.items() if k in declared}
    return [f"{params_file}: {p}" for p in specs.notebook_problems(name, known, {**_defaults(declared), **known})]


#: A preset file is a handful of parameters; anything larger is not one (and is not read into memory).
MAX_PRESET_BYTES = 1 << 20


def _load_yaml(path: Path) -> dict[str, Any]:
    """A preset file's ``{PARAMETER: value}``, or a ``RunnerError`` naming the file and what is wrong with it."""
    try:
        if not path.is_file():
            raise RunnerError(f"{path}: is not a file; a preset holds one YAML file per notebook")
        if path.stat().st_size > MAX_PRESET_BYTES:
            raise RunnerError(f"{path}: is {path.stat().st_size} bytes; a preset file is a few parameters "
                              f"(at most {MAX_PRESET_BYTES} bytes)")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise RunnerError(f"{path}: is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from err
    except OSError as err:
        raise RunnerError(f"{path}: cannot be read ({err.strerror or err})") from err
    try:
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader)):
            # an alias repeats a node; nested ones expand exponentially when the parameters are serialised
            raise RunnerError(f"{path}: uses YAML anchors/aliases (*name); write each value out")
        values = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RunnerError(f"{path}: not valid YAML ({err})") from err
    if values is None or values == {}:
        # an empty file would silently run the notebook's own defaults (the paper's settings, hours on a CPU)
        raise RunnerError(f"{path}: is empty (or only comments): it would run the notebook's own defaults; write the "
                          "parameters this preset sets, or leave the notebook out with --notebooks")
    if not isinstance(values, dict):
        raise RunnerError(f"{path}: must be a mapping of PARAMETER: value, got {type(values).__name__}")
    for key, value in values.items():
        if not isinstance(key, str):
            raise RunnerError(f"{path}: parameter names are words, got {key!r} ({type(key).__name__})")
        try:
            json.dumps(value, allow_nan=True)
        except (TypeError, ValueError) as err:
            # papermill hands parameters to the kernel as JSON: dates, sets or binary cannot cross
            raise RunnerError(f"{path}: {key}: {value!r} is not a number, string, list or mapping ({err})") from err
    return values


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Presets every notebook has a file in; other folders are data-set variants covering some notebooks.
CORE_PRESETS = ("tiny", "quick", "paper")


def plan(preset: str, notebooks: list[str] | None, notebooks_dir: Path, params_dir: Path,
         runs_dir: Path) -> list[Task]:
    """Check everything; return the tasks or raise ``RunnerError`` listing every problem."""
    presets = sorted(p.name for p in params_dir.iterdir() if p.is_dir()) if params_dir.is_dir() else []
    if preset not in presets:
        raise RunnerError(f"--preset {preset!r} has no folder {params_dir / preset}; "
                          f"available presets: {', '.join(presets) or '(none)'}")
    available = discover(notebooks_dir)
    if not available:
        raise RunnerError(f"no notebooks in {notebooks_dir}")
    if notebooks is None and preset not in CORE_PRESETS:
        # A data-set variant (paper-cifar10, paper-svhn) covers only the notebooks it has a file for.
        available = {k: v for k, v in available.items() if (params_dir / preset / f"{k}.yaml").exists()}
        if not available:
            raise RunnerError(f"--preset {preset!r} has no file for any notebook in {params_dir / preset}")
    names = select(available, notebooks)
    tasks, problems = [], []
    for name in names:
        params_file = params_dir / preset / f"{name}.yaml"
        if not params_file.exists():
            having = sorted(p.parent.name for p in params_dir.glob(f"*/{name}.yaml"))
            rule = ("every notebook needs a file in each of " + ", ".join(CORE_PRESETS)) if preset in CORE_PRESETS \
                else f"this preset does not cover {name}; presets that do: {', '.join(having)}"
            problems.append(f"{params_file}: missing; {rule}")
            continue
        try:
            values = _load_yaml(params_file)
        except RunnerError as err:
            problems.append(str(err))
            continue
        declared = _declared(available[name])
        problems += check_params(name, params_file, values, declared)
        # Batch runs never show widgets, whatever the preset says.
        run_params = {**values, "INTERACTIVE": False} if "INTERACTIVE" in declared else values
        digest = hashlib.sha256(json.dumps(
            {"params": run_params, "notebook": _sha256_file(available[name]), "kit": decoylab.__version__},
            sort_keys=True).encode()).hexdigest()
        tasks.append(Task(name, available[name], params_file, run_params, (runs_dir / preset / name).resolve(), digest,
                          {**_defaults(declared), **run_params}))
    if problems:
        raise RunnerError("invalid parameters, nothing was run:\n  " + "\n  ".join(problems))
    return tasks


def _declared(notebook: Path) -> dict[str, Any]:
    import papermill

    return papermill.inspect_notebook(str(notebook))


def _completed(task: Task) -> bool:
    path = task.out_dir / RESULTS_FILE
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return doc.get("status") == "ok" and doc.get("params_hash") == task.params_hash


#: Notebooks that read another's cache entries (its trained defenses and adversarial sets): alone, each
#: builds them itself (12 in ≈ 78 s, 90 in ≈ 112 s on the quick preset); after the builder, it loads them.
READS_CACHE_OF = {"12_mmd_bootstrap": "10_honeymodels", "90_defense_comparison": "41_roc_curves"}


def start_order(tasks: list[Task]) -> list[Task]:
    """The builders of ``READS_CACHE_OF`` first, their readers last, the rest by name in between: with
    ``--jobs N`` a reader then rarely starts beside its builder, where it would wait on the builder's
    cache locks with its core idle (``decoylab bench --jobs 2``: 594.5 s in name order)."""
    builders = set(READS_CACHE_OF.values())
    return sorted(tasks, key=lambda t: 0 if t.name in builders else 2 if t.name in READS_CACHE_OF else 1)


def run(preset: str = "quick", notebooks: list[str] | None = None, jobs: int = 1, force: bool = False,
        notebooks_dir: str | Path = "notebooks", params_dir: str | Path = "params", runs_dir: str | Path = "runs",
        log: Callable[[str], None] = print, executor: str = "local", ray_address: str | None = None,
        data_root: str | Path | None = None, _ray_data_root: str | None = None) -> int:
    """Run the preset; return the exit code (0 all ok, 1 a notebook failed, 2 bad input or the runs folder in use
    by another run, 130 interrupted by Ctrl-C or SIGTERM: queued notebooks cancelled, running ones killed with
    their kernels, the report written from what finished).

    ``executor="local"`` runs ``jobs`` notebooks at a time in local processes; ``"ray"`` sends each to
    a Ray task (``decoylab.tools.executor``) on the cluster at ``ray_address`` (None: a local Ray instance).
    ``data_root``: a folder of data sets filled offline (``<data_root>/<name>/``), given to every kernel as
    ``$DECOYLAB_DATA``; None keeps the environment's."""
    from decoylab.tools import executor as executors

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        log(f"error: --jobs {jobs!r} is not allowed; --jobs must be an integer >= 1")
        return 2
    if data_root is not None:
        data_root = Path(data_root).expanduser()
        if not data_root.is_dir():
            log(f"error: --data-root {str(data_root)!r} is not a folder; give the folder that holds one subfolder per "
                "data set (mnist/ with MNIST's raw idx files, cifar10/cifar-10-batches-py/, svhn/train_32x32.mat and "
                "test_32x32.mat), or leave it out to download")
            return 2
        previous_data = os.environ.get("DECOYLAB_DATA")
        os.environ["DECOYLAB_DATA"] = str(data_root.resolve())  # the kernels (and a local Ray's workers) inherit it
        try:
            return run(preset=preset, notebooks=notebooks, jobs=jobs, force=force, notebooks_dir=notebooks_dir,
                       params_dir=params_dir, runs_dir=runs_dir, log=log, executor=executor, ray_address=ray_address,
                       data_root=None, _ray_data_root=str(data_root.resolve()))
        finally:  # the option is this run's, not the calling process's from now on
            if previous_data is None:
                os.environ.pop("DECOYLAB_DATA", None)
            else:
                os.environ["DECOYLAB_DATA"] = previous_data
    notebooks_dir, params_dir, runs_dir = Path(notebooks_dir), Path(params_dir), Path(runs_dir)
    try:
        executors.check(executor, ray_address)
        tasks = plan(preset, notebooks, notebooks_dir, params_dir, runs_dir)
    except (RunnerError, executors.ExecutorError) as err:
        log(f"error: {err}")
        return 2
    # a kernel would only find out after training, and lose what it built
    unwritable = (unwritable_reason(config.cache_root())
                  or unwritable_reason(runs_dir, variable="--runs-dir", what="runs folder"))
    if unwritable:
        log(f"error: {unwritable}")
        return 2

    preset_dir = runs_dir / preset
    # Ctrl-C and SIGTERM stop the run promptly (only the main thread may set handlers; elsewhere they stay)
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
    failed = interrupted = 0
    try:
        with owned(preset_dir):
            for sig in previous:
                signal.signal(sig, _raise_interrupted)
            failed = _run_tasks(tasks, preset, jobs, force, executor, ray_address, log, data_root=_ray_data_root)
    except RunnerError as err:
        log(f"error: {err}")
        return 2
    except (Interrupted, KeyboardInterrupt) as err:
        interrupted = 1
        log(f"interrupted ({err or 'SIGINT'}): running notebooks stopped, queued ones cancelled; their results are "
            "not recorded, and the next run redoes them")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if preset_dir.is_dir():
        paths = report.write(preset_dir, log=log)
        log(f"summary: {paths['summary']}; report: {paths['markdown']} and {paths['html']}")
    if failed:
        log(f"{failed} notebook(s) failed")
    return INTERRUPTED if interrupted else 1 if failed else 0


def _run_tasks(tasks, preset, jobs, force, executor, ray_address, log, data_root=None) -> int:
    """Run every task not already completed; log one line per notebook; return how many failed."""
    from decoylab.tools import executor as executors

    todo = start_order([t for t in tasks if force or not _completed(t)])
    for t in todo:
        log(f"debug: {t.name}: parameters from {t.params_file}, outputs to {t.out_dir}")
    for t in tasks:
        if t not in todo:
            log(f"{t.name}: skipped (completed with the same parameters; --force reruns it)")
    failed = 0
    if todo:
        env = environment()
        where = f"{jobs} at a time" if executor == "local" else f"on Ray ({ray_address or 'a local instance'})"
        log(f"running {len(todo)} notebook(s) with preset {preset!r} on {env['device']}, {where}")
        finished = _local(todo, preset, env, jobs) if executor == "local" else \
            executors.run_on_ray(todo, preset, env, ray_address, data_root=data_root)
        for i, (t, doc) in enumerate(finished, 1):
            if doc["status"] == "ok":
                log(f"[{i}/{len(todo)}] {t.name}: ok in {doc['seconds']:.1f} s")
            else:
                failed += 1
                e = doc["error"]
                where = f"cell {e['cell']}" if e.get("cell") is not None else "startup"
                log(f"[{i}/{len(todo)}] {t.name}: FAILED at {where}: {e['ename']}: {e['evalue']} "
                    f"(see {t.out_dir / (t.name + '.ipynb')})")
    return failed


def _share_cores(workers: int) -> None:
    """In each worker: give the notebook's kernel (which inherits this environment) its share of the
    cores, so N notebooks at a time do not each start a thread per core and oversubscribe them.
    A thread count the user has set is kept. Each worker leads its own process group, so the runner alone
    receives Ctrl-C; ``_stop`` kills the worker's group and those of the processes below it (the kernel's)."""
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    if workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))


def _stop(pool: ProcessPoolExecutor, futures) -> None:
    """Cancel the queued notebooks and kill the running ones: each worker's process group, and the process group
    of everything below it (the kernel leads its own session: its data loaders, local Ray, subprocesses)."""
    for future in futures:
        future.cancel()
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        kill_tree(process.pid)
    pool.shutdown(wait=False, cancel_futures=True)


def _local(todo: list[Task], preset: str, env: dict[str, Any], jobs: int):
    """Yield ``(task, results document)`` as each notebook finishes in the local process pool; on an
    interruption, stop every worker and kernel before passing it on (``_stop``)."""
    workers = min(jobs, len(todo))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_share_cores,
                               initargs=(workers,))
    futures = {}
    try:
        futures = {pool.submit(execute, t, preset, env): t for t in todo}
        for future in as_completed(futures):
            try:
                doc = future.result()
            except Exception as err:  # the worker itself died
                doc = {"status": "failed", "seconds": None, "error": {"cell": None, "ename": type(err).__name__,
                                                                      "evalue": str(err)}}
            yield futures[future], doc
    except BaseException:
        _stop(pool, futures)
        raise
    pool.shutdown(wait=True)
