import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {p for p in pip if not p.startswith("-e")}
    assert {_name(r) for r in wanted} == {_name(r) for r in listed}
    assert wanted == listed, "version pins differ between pyproject.toml and environment.yml"
    assert "packaging" in {_name(r) for r in project["dependencies"]}


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
