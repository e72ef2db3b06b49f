"""The runner on two small synthetic notebooks: one that records a result, one that fails."""
import json
import os
from pathlib import Path

import nbformat
import pytest

from decoylab.tools import runner
from decoylab.tools.cli import main as cli_main

pytestmark = pytest.mark.slow


def _notebook(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("SEED: int = 0  # seed\nEPS: float = 0.1  # budget\nINTERACTIVE: bool = True  # widgets")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "from decoylab import params, results\nfrom decoylab.specs import common\n"
        "P = params.check_all(params.notebook_parameters(globals()), "
        "{'SEED': common.SEED, 'EPS': common.UNIT, 'INTERACTIVE': params.boolean()})"),
                nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture()
def kit(tmp_path, monkeypatch):
    from decoylab import params, specs
    from decoylab.specs import common

    synthetic = {"SEED": common.SEED, "EPS": common.UNIT, "INTERACTIVE": params.boolean()}
    monkeypatch.setattr(specs, "NOTEBOOKS", {**specs.NOTEBOOKS, "01_good": synthetic, "02_bad": synthetic})
    nbs, prm = tmp_path / "notebooks", tmp_path / "params" / "tiny"
    nbs.mkdir()
    prm.mkdir(parents=True)
    _notebook(nbs / "01_good.ipynb", "results.record('twice_eps', 2 * EPS, paper=0.2, source='Table 1', "
                                     "match='different dataset')")
    _notebook(nbs / "02_bad.ipynb", "raise RuntimeError('boom on purpose')")
    _notebook(nbs / "TEMPLATE.ipynb", "raise RuntimeError('the template must never run')")
    (prm / "01_good.yaml").write_text("EPS: 0.25\n")
    (prm / "02_bad.yaml").write_text("SEED: 1\n")
    dirs = {"notebooks_dir": nbs, "params_dir": tmp_path / "params", "runs_dir": tmp_path / "runs"}
    return tmp_path, dirs


def _run(dirs, **kw):
    lines = []
    code = runner.run(preset="tiny", log=lines.append, **dirs, **kw)
    return code, "\n".join(lines)


@pytest.mark.parametrize("yaml_text,needle", [
    ("EPSILON: 0.25\n", "unknown key 'EPSILON'"),
    ("EPS: fast\n", "EPS='fast' is a str"),
    ("EPS: 1e-3\n", "write 1.0e-3"),
    ("EPS: 2.0\n", "EPS=2.0 is not allowed; EPS must be a number in (0, 1]"),
    ("SEED: -3\n", "SEED=-3 is not allowed"),
    ("- EPS\n", "must be a mapping"),
    ("# only a comment\n", "is empty (or only comments): it would run the notebook's own defaults"),
    ("", "is empty"),
    ("EPS: 2020-01-01\n", "EPS: datetime.date(2020, 1, 1) is not a number, string, list or mapping"),
    ("EPS: 0.25\n3: 1\n", "parameter names are words, got 3 (int)"),
    ("a: &x [1, 1]\nb: &y [*x, *x]\nEPS: [*y, *y]\n", "uses YAML anchors/aliases"),
    (b"EPS: 0.25 # \xff\n", "is not UTF-8 text"),
])
def test_bad_parameters_stop_everything_before_any_notebook(kit, yaml_text, needle):
    tmp, dirs = kit
    target = tmp / "params" / "tiny" / "01_good.yaml"
    target.write_bytes(yaml_text) if isinstance(yaml_text, bytes) else target.write_text(yaml_text)
    code, log = _run(dirs)
    assert code == 2
    assert needle in log and "01_good.yaml" in log
    assert not (tmp / "runs").exists()  # nothing written


def test_a_preset_entry_that_is_a_folder_is_named(kit):
    tmp, dirs = kit
    target = tmp / "params" / "tiny" / "01_good.yaml"
    target.unlink()
    target.mkdir()
    code, log = _run(dirs)
    assert code == 2 and "01_good.yaml: is not a file" in log


def test_a_notebook_that_records_nothing_is_not_recorded_ok_and_is_redone(kit):
    tmp, dirs = kit
    _notebook(dirs["notebooks_dir"] / "01_good.ipynb", "x = 1  # finishes, records no result")
    code, log = _run(dirs, notebooks=["01_good"])
    doc = json.loads((tmp / "runs/tiny/01_good/results.json").read_text())
    assert code == 1 and doc["status"] == "failed" and doc["error"]["ename"] == "NoResults"
    assert "01_good: FAILED" in log
    code, log = _run(dirs, notebooks=["01_good"])  # not skipped as done
    assert code == 1 and "skipped" not in log


def test_a_cache_or_runs_folder_that_cannot_be_written_stops_the_run_before_any_notebook(kit, monkeypatch):
    tmp, dirs = kit
    blocker = tmp / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DECOYLAB_CACHE", str(blocker / "cache"))
    code, log = _run(dirs)
    assert code == 2 and f"cannot write the cache folder {blocker / 'cache'}" in log and "set DECOYLAB_CACHE" in log
    assert not (tmp / "runs").exists()
    monkeypatch.setenv("DECOYLAB_CACHE", str(tmp / "cache"))
    code, log = _run({**dirs, "runs_dir": blocker / "runs"})
    assert code == 2 and "cannot write the runs folder" in log and "--runs-dir" in log


def test_a_data_root_that_is_not_a_folder_stops_the_run_before_any_notebook(kit):
    tmp, dirs = kit
    code, log = _run(dirs, data_root=tmp / "no-such-folder")
    assert code == 2 and "--data-root" in log and "no-such-folder" in log and "mnist/" in log
    assert not (tmp / "runs").exists()


def test_data_root_reaches_the_kernels_which_read_the_data_sets_from_it(kit, monkeypatch):
    """`decoylab run --data-root DIR`: a folder filled offline (here MNIST's raw idx files, written by the test)
    is where the notebooks' data.load reads, with no download."""
    from standins import write_mnist_raw

    tmp, dirs = kit
    write_mnist_raw(tmp / "offline", n_train=30, n_test=20)
    monkeypatch.setenv("DECOYLAB_DATA", str(tmp / "elsewhere"))  # the option wins over the environment
    monkeypatch.setenv("DECOYLAB_CACHE", str(tmp / "cache"))
    _notebook(dirs["notebooks_dir"] / "01_good.ipynb",
              "import os\nfrom decoylab import data\ntest = data.load('mnist', 'test')\n"
              "results.record('test_images', len(test.y))\n"
              "results.record('data_root_is_the_option', float(os.environ['DECOYLAB_DATA'].endswith('offline')))")
    code = cli_main(["-q", "run", "--preset", "tiny", "--notebooks", "01_good", "--data-root", str(tmp / "offline"),
                     "--notebooks-dir", str(dirs["notebooks_dir"]), "--params-dir", str(dirs["params_dir"]),
                     "--runs-dir", str(dirs["runs_dir"])])
    doc = json.loads((tmp / "runs/tiny/01_good/results.json").read_text())
    assert code == 0 and doc["status"] == "ok"
    assert {k: v["value"] for k, v in doc["results"].items()} == {"test_images": 20, "data_root_is_the_option": 1.0}
    assert doc["environment"]["data_root"] == str((tmp / "offline").resolve())  # results say which data were read
    assert os.environ["DECOYLAB_DATA"] == str(tmp / "elsewhere")  # the option was the run's, not the process's


def test_every_file_of_a_run_is_readable_per_the_umask(kit, monkeypatch):
    """A runs folder served to colleagues: results.json, the summary, the report (Markdown, HTML, CSV/LaTeX
    tables), each executed notebook and its HTML page get 0666 less the umask (0644 under 022), not 0600."""
    import stat

    tmp, dirs = kit
    monkeypatch.setenv("DECOYLAB_CACHE", str(tmp / "cache"))
    previous = os.umask(0o022)
    try:
        code, _ = _run(dirs, notebooks=["01_good"])
    finally:
        os.umask(previous)
    assert code == 0
    written = [p for p in (tmp / "runs").rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    names = {p.name for p in written}
    assert {"results.json", "summary.json", "report.md", "report.html", "01_good.ipynb", "01_good.html"} <= names
    assert any(p.suffix == ".csv" for p in written) and any(p.suffix == ".tex" for p in written), names
    modes = {str(p.relative_to(tmp)): oct(stat.S_IMODE(p.stat().st_mode)) for p in written}
    assert set(modes.values()) == {"0o644"}, modes


def test_unknown_preset_and_notebook_are_named(kit):
    _, dirs = kit
    lines = []
    assert runner.run(preset="huge", log=lines.append, **dirs) == 2
    assert "available presets: tiny" in lines[-1]
    code, log = _run(dirs, notebooks=["99"])
    assert code == 2 and "01_good, 02_bad" in log


def test_failure_is_reported_others_still_run_then_skip_and_force(kit):
    tmp, dirs = kit
    code, log = _run(dirs, jobs=2)
    assert code == 1
    assert "02_bad: FAILED at cell 4: RuntimeError: boom on purpose" in log
    good = json.loads((tmp / "runs/tiny/01_good/results.json").read_text())
    bad = json.loads((tmp / "runs/tiny/02_bad/results.json").read_text())
    assert good["status"] == "ok" and good["results"]["twice_eps"] == {
        "value": 0.5, "paper": 0.2, "source": "Table 1", "note": None, "match": "different dataset"}
    assert good["params"] == {"SEED": 0, "EPS": 0.25, "INTERACTIVE": False}
    assert set(good["environment"]) >= {"versions", "device", "seed", "git_commit"}
    # cell 4 of the executed notebook: papermill inserts the injected-parameters cell
    assert bad["status"] == "failed" and bad["error"]["ename"] == "RuntimeError" and bad["error"]["cell"] == 4
    assert (tmp / "runs/tiny/01_good/01_good.ipynb").exists()
    assert not (tmp / "runs/tiny/TEMPLATE").exists()
    summary = json.loads((tmp / "runs/tiny/summary.json").read_text())
    assert summary["notebooks"]["01_good"]["status"] == "ok"
    report = (tmp / "runs/tiny/report.md").read_text()
    assert "| twice_eps | 0.5 |  |  | 0.2 | 0.3 | different dataset | Table 1 |" in report  # no n: no interval
    assert "1 beside a paper value: 0 same dataset and settings, 1 different dataset, 0 different settings" in report
    assert "twice_eps" in (tmp / "runs/tiny/report.html").read_text()
    # each executed notebook rendered to a page beside it, the report linking the page
    assert "boom on purpose" in (tmp / "runs/tiny/02_bad/02_bad.html").read_text()
    assert 'href="01_good/01_good.html"' in (tmp / "runs/tiny/report.html").read_text()

    mtime = (tmp / "runs/tiny/01_good/results.json").stat().st_mtime_ns
    code, log = _run(dirs, notebooks=["01_good"])
    assert code == 0 and "01_good: skipped" in log
    assert (tmp / "runs/tiny/01_good/results.json").stat().st_mtime_ns == mtime

    code, log = _run(dirs, notebooks=["01"], force=True)
    assert code == 0 and "01_good: ok" in log
    assert (tmp / "runs/tiny/01_good/results.json").stat().st_mtime_ns != mtime

    (tmp / "params/tiny/01_good.yaml").write_text("EPS: 0.3\n")  # new parameters: runs again
    code, log = _run(dirs, notebooks=["01_good"])
    assert code == 0 and "01_good: ok" in log
    assert json.loads((tmp / "runs/tiny/01_good/results.json").read_text())["results"]["twice_eps"]["value"] == 0.6


def test_cli_help_explains_the_options(capsys):
    with pytest.raises(SystemExit):
        cli_main(["run", "--help"])
    text = capsys.readouterr().out
    for word in ("--preset", "--notebooks", "--jobs", "--force", "tiny", "quick", "paper"):
        assert word in text


def test_python_dash_m_entry_point():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "decoylab", "run", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--jobs" in out.stdout


@pytest.mark.parametrize("kw, needle", [
    ({"executor": "dask"}, "--executor 'dask' is not allowed; allowed: local, ray"),
    ({"executor": "ray", "ray_address": "127.0.0.1:1"}, "--ray-address '127.0.0.1:1' cannot be reached"),
    ({"executor": "ray", "ray_address": "head-node"}, "give host:port, ray://host:port or auto"),
    ({"ray_address": "127.0.0.1:6379"}, "--ray-address needs --executor ray"),
])
def test_bad_executor_settings_stop_before_any_notebook(kit, kw, needle):
    tmp, dirs = kit
    code, log = _run(dirs, **kw)
    assert code == 2 and needle in log
    assert not (tmp / "runs").exists()


def test_ray_executor_writes_what_a_local_run_writes(kit):
    """Both notebooks on a local Ray instance, then locally: the same files and the same results."""
    ray = pytest.importorskip("ray")
    tmp, dirs = kit
    try:
        code, log = _run(dirs, executor="ray")
    finally:
        ray.shutdown()
    assert code == 1 and "on Ray (a local instance)" in log and "02_bad: FAILED at cell 4" in log
    ray_runs = tmp / "runs" / "tiny"
    ray_files = sorted(str(p.relative_to(ray_runs)) for p in ray_runs.rglob("*") if p.is_file())
    ray_doc = json.loads((ray_runs / "01_good/results.json").read_text())
    local = {**dirs, "runs_dir": tmp / "local-runs"}
    assert _run(local)[0] == 1
    local_runs = tmp / "local-runs" / "tiny"
    assert ray_files == sorted(str(p.relative_to(local_runs)) for p in local_runs.rglob("*") if p.is_file())
    local_doc = json.loads((local_runs / "01_good/results.json").read_text())
    assert ray_doc["results"] == local_doc["results"] and ray_doc["status"] == local_doc["status"] == "ok"
    assert ray_doc["params_hash"] == local_doc["params_hash"]
    assert "twice_eps" in (ray_runs / "report.md").read_text()


def test_sweep_points_fan_out_over_ray_in_order(monkeypatch):
    ray = pytest.importorskip("ray")
    from decoylab import parallel

    assert parallel.map_points(lambda p: p * p, [3, 1, 2]) == [9, 1, 4]  # locally, without Ray
    monkeypatch.setenv("DECOYLAB_EXECUTOR", "ray")
    monkeypatch.setenv("DECOYLAB_RAY_ADDRESS", "")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert parallel.map_points(lambda p: (p * p, __import__("os").getpid()), [3, 1, 2])[0][0] == 9
        squares = parallel.map_points(lambda p: p * p, [3, 1, 2])
    finally:
        ray.shutdown()
    assert squares == [9, 1, 4]


def test_workshop_writes_parameterised_notebooks_and_prebuilds(kit):
    from decoylab.tools import workshop

    tmp, dirs = kit
    lines = []
    out = tmp / "workshop"
    assert workshop.prepare("huge", out, notebooks_dir=dirs["notebooks_dir"], params_dir=dirs["params_dir"],
                            log=lines.append) == 2
    assert not out.exists() and "available presets: tiny" in lines[-1]
    code = workshop.prepare("tiny", out, notebooks=["01_good"], notebooks_dir=dirs["notebooks_dir"],
                            params_dir=dirs["params_dir"], log=lines.append)
    assert code == 0, lines
    nb = nbformat.read(out / "01_good.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "EPS = 0.25" in injected[0].source and "INTERACTIVE = True" in injected[0].source
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    prebuilt = json.loads((out / ".prebuild/tiny/01_good/results.json").read_text())
    assert prebuilt["status"] == "ok" and prebuilt["params"]["INTERACTIVE"] is False


def test_parallel_workers_share_the_cores_but_keep_a_users_thread_count(monkeypatch):
    """--jobs N: each worker's kernel gets cpu_count // N threads (at least 1); an explicit OMP_NUM_THREADS stays."""
    from decoylab.tools import runner

    monkeypatch.setattr(runner.os, "cpu_count", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # records the original state, restored after the test
    monkeypatch.delenv("OMP_NUM_THREADS")
    runner._share_cores(1)
    assert "OMP_NUM_THREADS" not in os.environ
    runner._share_cores(3)
    assert os.environ["OMP_NUM_THREADS"] == "2"
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    runner._share_cores(4)
    assert os.environ["OMP_NUM_THREADS"] == "5"


def test_builders_start_first_and_the_notebooks_reading_their_cache_last():
    from pathlib import Path
    from types import SimpleNamespace

    from decoylab.tools import runner

    names = sorted(p.stem for p in Path("notebooks").glob("[0-9]*.ipynb"))
    # the pairs name real notebooks (a rename would silently drop the ordering)
    assert set(runner.READS_CACHE_OF) | set(runner.READS_CACHE_OF.values()) <= set(names)
    order = [t.name for t in runner.start_order([SimpleNamespace(name=n) for n in names])]
    assert sorted(order) == names
    for reader, builder in runner.READS_CACHE_OF.items():
        assert order.index(builder) < len(runner.READS_CACHE_OF)  # among the first to start
        assert order.index(reader) >= len(order) - len(runner.READS_CACHE_OF)  # among the last
    others = [n for n in order if n not in runner.READS_CACHE_OF and n not in runner.READS_CACHE_OF.values()]
    assert others == sorted(others)


def test_a_runs_folder_belongs_to_one_run_at_a_time(kit):
    """A second run on the same runs folder stops with the first one's pid instead of sharing its partial files."""
    import fcntl

    tmp, dirs = kit
    folder = tmp / "runs" / "tiny"
    folder.mkdir(parents=True)
    with open(folder / runner.LOCK_FILE, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242")
        held.flush()
        code, log = _run(dirs, notebooks=["01_good"])
    assert code == 2 and "in use by another decoylab run (pid 4242)" in log and "--runs-dir" in log
    assert not (folder / "01_good").exists()
    code, log = _run(dirs, notebooks=["01_good"])  # released: the next run goes ahead
    assert code == 0 and "01_good: ok" in log


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has stopped; its parent may just not have reaped it yet


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_the_run_within_seconds_and_leaves_no_ok(kit, signal_name):
    """SIGINT (Ctrl-C) or SIGTERM to a running `decoylab run`: the running notebook is killed with its kernel and
    what the kernel started (the kernel leads its own session), the queued one never starts, exit 130, and
    neither is recorded ok (the next run redoes them)."""
    import signal
    import subprocess
    import sys
    import time

    tmp, dirs = kit
    pids = tmp / "pids.txt"
    _notebook(dirs["notebooks_dir"] / "01_good.ipynb",
              f"import os, subprocess, time\nchild = subprocess.Popen(['sleep', '300'])\n"
              f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\ntime.sleep(120)")
    code = (f"import sys; from decoylab import specs, params; from decoylab.specs import common; "
            f"specs.NOTEBOOKS.update({{n: {{'SEED': common.SEED, 'EPS': common.UNIT, 'INTERACTIVE': params.boolean()}} "
            f"for n in ('01_good', '02_bad')}}); from decoylab.tools import runner; "
            f"sys.exit(runner.run(preset='tiny', notebooks_dir={str(dirs['notebooks_dir'])!r}, "
            f"params_dir={str(dirs['params_dir'])!r}, runs_dir={str(dirs['runs_dir'])!r}))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (pids.exists() and len(pids.read_text().split()) == 2) and time.time() < deadline:
        time.sleep(0.5)
    kernel, grandchild = (int(v) for v in pids.read_text().split())
    assert _alive(kernel) and _alive(grandchild)
    start = time.time()
    proc.send_signal(getattr(signal, signal_name))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert time.time() - start < 20 and "interrupted" in out
    assert not _alive(kernel) and not _alive(grandchild)  # nothing left running, not even the kernel's child
    assert not (tmp / "runs/tiny/01_good/results.json").exists() and not (tmp / "runs/tiny/02_bad/results.json").exists()


def test_a_runner_killed_outright_leaves_no_ok_and_the_next_run_redoes_the_notebook(kit):
    """SIGKILL gives the runner no chance to clean up: its worker dies with it (PR_SET_PDEATHSIG), the lock goes
    with the process, no results.json says ok, and the next run on the same folder runs the notebook again."""
    import signal
    import subprocess
    import sys
    import time

    tmp, dirs = kit
    good = dirs["notebooks_dir"] / "01_good.ipynb"
    original = good.read_bytes()
    started = tmp / "started.txt"
    _notebook(good, f"open({str(started)!r}, 'w').write('1')\nimport time\ntime.sleep(120)")
    code = (f"import sys; from decoylab import specs, params; from decoylab.specs import common; "
            f"specs.NOTEBOOKS.update({{n: {{'SEED': common.SEED, 'EPS': common.UNIT, 'INTERACTIVE': params.boolean()}} "
            f"for n in ('01_good', '02_bad')}}); from decoylab.tools import runner; "
            f"sys.exit(runner.run(preset='tiny', notebooks=['01_good'], notebooks_dir={str(dirs['notebooks_dir'])!r}, "
            f"params_dir={str(dirs['params_dir'])!r}, runs_dir={str(dirs['runs_dir'])!r}))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not started.exists() and time.time() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (tmp / "runs/tiny/01_good/results.json").exists()
    good.write_bytes(original)  # the notebook as it was: records a result
    code, log = _run(dirs, notebooks=["01_good"])
    assert code == 0 and "skipped" not in log
    assert json.loads((tmp / "runs/tiny/01_good/results.json").read_text())["status"] == "ok"


def test_quiet_and_verbose_flags_set_how_much_the_runner_says(kit, capsys):
    tmp, dirs = kit
    folders = ["--notebooks-dir", str(dirs["notebooks_dir"]), "--params-dir", str(dirs["params_dir"]),
               "--runs-dir", str(dirs["runs_dir"])]
    assert cli_main(["-v", "run", "--preset", "tiny", "--notebooks", "01_good", *folders]) == 0
    out = capsys.readouterr().out
    assert "01_good: parameters from" in out and "[1/1] 01_good: ok" in out and "summary:" in out
    assert cli_main(["-q", "run", "--preset", "tiny", "--notebooks", "01_good", "--force", *folders]) == 0
    assert capsys.readouterr().out == ""  # -q: nothing when all is well
    assert cli_main(["-qq", "run", "--preset", "tiny", "--notebooks", "02_bad", *folders]) == 1
    out = capsys.readouterr().out
    assert "02_bad: FAILED at cell 4" in out and "running" not in out  # errors always get through
    assert cli_main(["run", "--preset", "tiny", "--notebooks", "01_good", *folders]) == 0
    out = capsys.readouterr().out
    assert "skipped" in out and "parameters from" not in out  # the default: progress, no debug lines


def test_the_runner_log_carries_no_third_party_info_lines(kit, capsys):
    tmp, dirs = kit
    folders = ["--notebooks-dir", str(dirs["notebooks_dir"]), "--params-dir", str(dirs["params_dir"]),
               "--runs-dir", str(dirs["runs_dir"])]
    assert cli_main(["run", "--preset", "tiny", "--notebooks", "01_good", *folders]) == 0
    out = capsys.readouterr().out
    assert "Input Notebook" not in out and "Output Notebook" not in out  # papermill's INFO lines stay out


def test_a_kernel_that_dies_mid_run_is_reported_at_the_cell_it_was_running(tmp_path):
    """A kernel killed in section 1 was reported "FAILED at startup"; papermill's marks say which cell it ran."""
    from decoylab.tools.execution import running_cell

    def cell(kind, state):
        return {"cell_type": kind, "metadata": {"papermill": {"status": state}}, "source": ""}

    executed = tmp_path / ".nb.running.ipynb"
    executed.write_text(json.dumps({"cells": [cell("markdown", "completed"), cell("code", "completed"),
                                              cell("code", "completed"), cell("markdown", "completed"),
                                              cell("code", "running"), cell("code", "pending")]}))
    assert running_cell(executed) == 3
    executed.write_text(json.dumps({"cells": [cell("code", "pending")]}))
    assert running_cell(executed) is None  # died before its first cell: at startup
    assert running_cell(tmp_path / "missing.ipynb") is None
