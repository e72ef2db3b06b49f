import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower()


#: conda-forge's names for distributions that PyPI names otherwise.
_CONDA_NAMES = {"pytorch": "torch"}


def test_environment_yml_mirrors_pyproject():
    """conda-forge packages for what conda-forge has, pip for the rest; together exactly pyproject's dependencies
    (core and test extra) with the same version bounds."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str) and _name(d) not in ("python", "pip")]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    renamed = {_CONDA_NAMES.get(_name(c), _name(c)) + c[len(_name(c)):] for c in conda}
    listed = renamed | {p for p in pip if not p.startswith("-e")}
    assert len(conda) > len(pip), "most packages should come from conda-forge"
    assert {_name(r) for r in wanted} == {_name(r) for r in listed}
    assert wanted == listed, "version pins differ between pyproject.toml and environment.yml"
    assert "packaging" in {_name(r) for r in project["dependencies"]}


# Import name -> distribution name, where they differ.
_DISTRIBUTION = {"art": "adversarial-robustness-toolbox", "sklearn": "scikit-learn", "yaml": "pyyaml",
                 "IPython": "ipython"}


def test_every_third_party_import_of_the_library_is_declared():
    """scipy and IPython were imported but not declared: a lean install would fail on first use."""
    import ast
    import sys

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    optional = {_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    imported = set()
    for path in (ROOT / "lib" / "decoylab").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "decoylab"}
    missing = {m for m in third_party if _DISTRIBUTION.get(m, m).lower() not in declared | optional}
    assert not missing, f"imported by lib/decoylab but not in pyproject.toml: {sorted(missing)}"


def test_version_and_list_commands():
    import subprocess
    import sys

    import decoylab
    from decoylab.attacks.registry import names

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "decoylab", *args], capture_output=True, text=True, cwd=ROOT)

    assert cli("--version").stdout.strip() == f"decoylab {decoylab.__version__}"
    listing = cli("list").stdout
    for name in ("20_attractors", "paper-mnist5k", "mnist5k", "attractors", *names()):
        assert f"  {name} " in listing
    bad = cli("list", "attack")
    assert bad.returncode == 2 and "allowed: notebooks, presets" in bad.stderr


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci/run").read_text()
    assert "make test" in readme and "make test" in ci


def test_the_room_server_draws_a_random_token_unless_given_one():
    """`make lab-room` serves every address: a published fixed token would let anyone on the network in."""
    import subprocess

    def dry_run(*args):
        return subprocess.run(["make", "-n", "lab-room", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout

    drawn = dry_run()
    assert "secrets.token_hex(16)" in drawn and "Room URL" in drawn and "token=decoylab" not in drawn
    assert 'token="mine"' in dry_run("TOKEN=mine")


def test_make_lab_runs_as_root_in_a_container():
    """JupyterLab stops with "Running as root is not recommended" unless given --allow-root; the Makefile adds it
    for root only."""
    import os
    import subprocess

    dry = subprocess.run(["make", "-n", "lab"], capture_output=True, text=True, cwd=ROOT).stdout
    assert ("--allow-root" in dry) == (os.getuid() == 0)



def test_the_gpu_check_refuses_without_cuda_and_its_placement_checks_run_on_cpu(capsys):
    """`decoylab bench --gpu` (make gpu-check) is for the day a GPU is at hand: without CUDA it stops before any
    work with exit 2 and the reason; its placement checks are the same code on any device, run here on the CPU."""
    import torch

    from decoylab.tools import cli, gpu_check

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: run `make gpu-check` itself")
    assert cli.main(["bench", "--gpu"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert cli.main(["bench", "--gpu", "--notebooks", "20", "30"]) == 2
    assert "name one notebook" in capsys.readouterr().err
    assert gpu_check.main(device="auto") == 2 and "device='auto' is not allowed" in capsys.readouterr().err
    assert gpu_check.main(device="cpu", attack_names=["nope"]) == 2  # before any training or notebook
    assert "attack_names ['nope'] are not allowed" in capsys.readouterr().err
    rows = gpu_check.placement_checks("cpu")
    assert [r["check"] for r in rows] == ["config.device", "trained network", "attack backend fast",
                                          "attack backend art"]
    assert all(r["ok"] for r in rows), rows


@pytest.mark.slow
def test_the_whole_gpu_check_script_runs_end_to_end_on_the_cpu(tmp_path, capsys):
    """The script after the refusal (placement, the attack benchmark, one timed notebook, the JSON) on the CPU
    with two attacks and the tiny preset, so that it is known to run before the day a GPU is lent."""
    import json

    from decoylab.tools import gpu_check

    rc = gpu_check.main(n=16, preset="tiny", notebook="00_tour", out=str(tmp_path), device="cpu",
                        attack_names=["fgsm", "pgd"], notebooks_dir=str(ROOT / "notebooks"),
                        params_dir=str(ROOT / "params"))
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert rc == 0, capsys.readouterr()
    assert report["device"] == "cpu" and all(r["ok"] for r in report["placement"])
    assert {row["attack"] for row in report["attacks"]["rows"]} == {"fgsm", "pgd"}
    assert report["notebook"]["exit_code"] == 0 and report["notebook"]["seconds"] > 0
    assert report["notebook"]["peak_gpu_mib"] is None and report["attacks_peak_gpu_mib"] is None


def test_jupyterlab_and_ray_are_extras_not_core_installs():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    extras = {k: {_name(r) for r in v} for k, v in project["optional-dependencies"].items()}
    assert "jupyterlab" not in core and "ray" not in core
    assert extras["lab"] == {"jupyterlab"} and "ray" in extras["ray"]
    assert {"jupyterlab", "ray"} <= extras["test"]  # the suite drives JupyterLab and a local Ray
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -e '.[lab]'" in makefile and re.search(r"^lab: lab-installed", makefile, re.M)


def test_the_rehearsal_stages_fashion_mnist_as_mnist_and_times_each_notebook(tmp_path, capsys):
    """`decoylab bench --rehearsal`: a missing idx file is named before anything runs; the four files land where the
    kit reads MNIST; each notebook runs on its own and gets a row (here the tiny tour, to keep the test short)."""
    import json

    from decoylab import data
    from decoylab.tools import cli, rehearsal
    from standins import write_mnist_raw

    source = write_mnist_raw(tmp_path / "src") / "mnist" / "MNIST" / "raw"
    (source / "t10k-labels-idx1-ubyte").rename(tmp_path / "aside")
    assert cli.main(["bench", "--rehearsal", "--source", str(source), "--out", str(tmp_path / "out"),
                     "--preset", "tiny", "--notebooks", "00_tour"]) == 2
    assert "missing t10k-labels-idx1-ubyte" in capsys.readouterr().out
    (tmp_path / "aside").rename(source / "t10k-labels-idx1-ubyte")

    staged = rehearsal.stage_as_mnist(source, tmp_path / "data")
    assert staged == tmp_path / "data" / "mnist" / "MNIST" / "raw"
    assert len(data.load("mnist", "train", data_root=tmp_path / "data").y) == 200

    out = tmp_path / "out"
    out.mkdir()
    # an earlier invocation's rows: another notebook's is kept, this notebook's replaced
    earlier = [{"notebook": "10_honeymodels", "exit_code": 0, "seconds": 5.0, "peak_rss_mib": 99},
               {"notebook": "00_tour", "exit_code": 1, "seconds": 1.0, "peak_rss_mib": 1}]
    (out / "rehearsal.json").write_text(json.dumps({"preset": "tiny", "notebooks": earlier}))
    # an earlier invocation's cache of this notebook: emptied, else its networks and attacks would be read back untimed
    (out / "cache" / "00_tour").mkdir(parents=True)
    (out / "cache" / "00_tour" / "from_an_earlier_run").write_text("stale")
    assert cli.main(["bench", "--rehearsal", "--source", str(source), "--out", str(out), "--preset", "tiny",
                     "--notebooks", "00_tour"]) == 0
    rows = json.loads((out / "rehearsal.json").read_text())["notebooks"]
    assert [r["notebook"] for r in rows] == ["00_tour", "10_honeymodels"] and rows[0]["exit_code"] == 0
    assert rows[1] == earlier[0]
    assert (out / "cache" / "00_tour").is_dir()  # each notebook from an empty cache of its own
    assert not (out / "cache" / "00_tour" / "from_an_earlier_run").exists()
    assert rows[0]["seconds"] > 0 and rows[0]["peak_rss_mib"] > 50
    assert "| `00_tour` | 0 |" in capsys.readouterr().out
