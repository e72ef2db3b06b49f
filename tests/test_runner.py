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
])
def test_bad_parameters_stop_everything_before_any_notebook(kit, yaml_text, needle):
    tmp, dirs = kit
    (tmp / "params" / "tiny" / "01_good.yaml").write_text(yaml_text)
    code, log = _run(dirs)
    assert code == 2
    assert needle in log and "01_good.yaml" in log
    assert not (tmp / "runs").exists()  # nothing written


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


def test_ctrl_c_stops_the_run_within_seconds_and_leaves_no_ok(kit):
    """SIGINT to a running `decoylab run`: the running notebook is killed with its kernel, the queued one never
    starts, exit 130, and neither is recorded ok (the next run redoes them)."""
    import signal
    import subprocess
    import sys
    import time

    tmp, dirs = kit
    _notebook(dirs["notebooks_dir"] / "01_good.ipynb", "import time\ntime.sleep(120)")
    code = (f"import sys; from decoylab import specs, params; from decoylab.specs import common; "
            f"specs.NOTEBOOKS.update({{n: {{'SEED': common.SEED, 'EPS': common.UNIT, 'INTERACTIVE': params.boolean()}} "
            f"for n in ('01_good', '02_bad')}}); from decoylab.tools import runner; "
            f"sys.exit(runner.run(preset='tiny', notebooks_dir={str(dirs['notebooks_dir'])!r}, "
            f"params_dir={str(dirs['params_dir'])!r}, runs_dir={str(dirs['runs_dir'])!r}))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not list((tmp / "runs/tiny/01_good").glob(".01_good.running.ipynb")) and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(3)  # the kernel is sleeping inside the notebook now
    start = time.time()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert time.time() - start < 20 and "interrupted" in out
    assert not (tmp / "runs/tiny/01_good/results.json").exists() and not (tmp / "runs/tiny/02_bad/results.json").exists()
