"""The cost probe behind ``decoylab bench --rehearsal --estimate`` (``decoylab.costprobe``): training and attacks
time a few units and record the full count; nothing else changes; a probed run's cache entries never meet a real
run's."""
import json

import pytest
import torch

from decoylab import attacks, costprobe, models, train
from decoylab.cache import make_key


@pytest.fixture()
def probe(tmp_path, monkeypatch):
    log = tmp_path / "probe.jsonl"
    monkeypatch.setenv(costprobe.ENV, str(log))
    monkeypatch.setenv(costprobe.ATTACK_POINTS_ENV, "8")
    monkeypatch.setattr(costprobe, "MIN_STEPS", 5)
    monkeypatch.setattr(costprobe, "MAX_STEPS", 12)  # a probed training: more than 3 + 12 steps in full
    return log


def _net_and_data(n=300):
    torch.manual_seed(0)
    return models.build("deepsec_mnist", (1, 28, 28), 10), torch.rand(n, 1, 28, 28), torch.randint(0, 10, (n,))


def test_training_under_the_probe_times_a_few_steps_and_records_the_full_count(probe):
    model, x, y = _net_and_data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = train.fit(model, x, y, train.TrainConfig(epochs=5, batch_size=50), select=lambda m: 0.5, log=None)
    rows = costprobe.read(probe)
    assert [r["kind"] for r in rows] == ["train", "validation"]
    assert rows[0]["count"] == 5 * 6 and rows[0]["unit"] == "steps"  # 5 epochs of 300 / 50 batches
    assert rows[0]["seconds_per_unit"] > 0 and rows[0]["seconds_probed"] >= rows[0]["seconds_per_unit"]
    assert rows[1]["count"] == 5  # one selection pass per epoch
    assert len(history.epoch_loss) == 1 and history.best_epoch == 1  # it stopped after the probe's steps
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # but it did train
    assert rows[0]["units_timed"] == 12  # the probe's 12 steps after 3 untimed ones, not 30

    # a step budget counts steps, not epochs
    probe.unlink()
    train.fit(model, x, y, train.TrainConfig(steps=400, batch_size=50), log=None)
    assert [r["count"] for r in costprobe.read(probe)] == [400]


def test_a_training_shorter_than_the_probe_runs_in_full_and_records_nothing(probe):
    model, x, y = _net_and_data(100)
    history = train.fit(model, x, y, train.TrainConfig(epochs=7, batch_size=50), log=None)  # 14 steps <= 3 + 12
    assert len(history.epoch_loss) == 7 and not probe.exists()


def test_the_probe_stops_training_at_its_time_limit_once_it_has_its_minimum_of_steps(probe, monkeypatch):
    monkeypatch.setattr(costprobe, "TRAIN_SECONDS", 0.0)
    model, x, y = _net_and_data()
    train.fit(model, x, y, train.TrainConfig(epochs=5, batch_size=50), log=None)
    (row,) = costprobe.read(probe)
    assert row["count"] == 30 and row["units_timed"] == 5


def test_an_attack_under_the_probe_attacks_the_first_inputs_and_returns_the_rest_unchanged(probe):
    model, x, y = _net_and_data(40)
    result = attacks.run("pgd", model, x, y, eps=0.1)
    assert result.x_adv.shape == x.shape and len(result.success) == 40
    assert torch.equal(result.x_adv[8:], x[8:]) and not torch.equal(result.x_adv[:8], x[:8])
    (row,) = costprobe.read(probe)
    assert row == {**row, "kind": "attack", "what": "pgd", "count": 40, "unit": "inputs", "units_timed": 8}
    assert row["seconds_probed"] == pytest.approx(row["seconds_per_unit"] * 8)
    probe.unlink()
    attacks.run("pgd", model, x[:8], y[:8], eps=0.1)  # no more inputs than the probe takes: run in full
    assert not probe.exists()


def test_probe_once_reuses_the_cost_of_an_attack_set_up_already_timed(probe, monkeypatch):
    monkeypatch.setenv(costprobe.ONCE_ENV, "1")
    monkeypatch.setattr(costprobe, "_timed_attacks", {})
    model, x, y = _net_and_data(40)
    attacks.run("pgd", model, x, y, eps=0.1)
    again = attacks.run("pgd", model, x[20:], y[20:], eps=0.1)  # same set-up, other inputs: not run
    other = attacks.run("pgd", model, x, y, eps=0.2)  # other settings: timed
    first, reused, timed = costprobe.read(probe)
    assert reused["units_timed"] == 0 and reused["seconds_probed"] == 0.0 and reused["count"] == 20
    assert reused["seconds_per_unit"] == first["seconds_per_unit"] and timed["units_timed"] == 8
    assert torch.equal(again.x_adv, x[20:])  # returned unattacked
    assert not torch.equal(other.x_adv[:8], x[:8])


def test_probed_cache_entries_have_keys_of_their_own(monkeypatch, tmp_path):
    real = make_key("model", {"weights": 1})
    monkeypatch.setenv(costprobe.ENV, str(tmp_path / "probe.jsonl"))
    assert make_key("model", {"weights": 1}) != real


def test_the_estimate_replaces_the_probed_seconds_with_unit_cost_times_full_count():
    rows = [{"kind": "train", "what": "net", "seconds_per_unit": 0.5, "count": 1000, "unit": "steps",
             "seconds_probed": 12.0, "units_timed": 20},
            {"kind": "attack", "what": "pgd", "seconds_per_unit": 2.0, "count": 100, "unit": "inputs",
             "seconds_probed": 16.0, "units_timed": 8}]
    est = costprobe.estimate(100.0, rows)
    assert est["outside_probes"] == 72.0 and est["training"] == 500.0 and est["attacks"] == 200.0
    assert est["total"] == 772.0


@pytest.mark.parametrize("args,needle", [
    (["bench", "--estimate"], "--estimate, --probe-points and --probe-once go with --rehearsal"),
    (["bench", "--rehearsal", "--probe-once"], "--probe-once is allowed only with --estimate"),
    (["bench", "--rehearsal", "--probe-points", "4"], "only with --estimate"),
    (["bench", "--rehearsal", "--estimate", "--probe-points", "0"], "--probe-points 0 is not allowed"),
])
def test_bad_estimate_options_stop_before_any_run(args, needle, tmp_path, capsys):
    from decoylab.tools import cli

    assert cli.main([*args, "--out", str(tmp_path / "out")]) == 2
    said = capsys.readouterr()
    assert needle in said.out + said.err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_estimate_runs_a_notebook_under_the_probe_and_prints_its_parts(tmp_path, capsys):
    """`decoylab bench --rehearsal --estimate` on the tour with more training steps and attacked inputs than the
    probe takes: both are probed, the notebook completes, and the estimate is written."""
    from decoylab.tools import cli
    from standins import write_mnist_raw

    source = write_mnist_raw(tmp_path / "src", n_train=600) / "mnist" / "MNIST" / "raw"
    params = tmp_path / "params" / "probe"
    params.mkdir(parents=True)
    (params / "00_tour.yaml").write_text("DATASET: mnist\nN_TRAIN: 600\nN_TEST: 100\nEPOCHS: 50\nATTACK: pgd\n"
                                         "STEPS: 3\nN_ATTACK: 40\nINTERACTIVE: false\n")
    out = tmp_path / "out"
    assert cli.main(["bench", "--rehearsal", "--estimate", "--probe-points", "8", "--source", str(source),
                     "--out", str(out), "--preset", "probe", "--notebooks", "00_tour",
                     "--params-dir", str(tmp_path / "params")]) == 0
    (row,) = json.loads((out / "estimate.json").read_text())["notebooks"]
    assert row["exit_code"] == 0 and row["training"] > 0 and row["attacks"] > 0
    assert row["total"] == pytest.approx(row["outside_probes"] + row["training"] + row["attacks"], abs=0.2)
    kinds = {r["kind"] for r in costprobe.read(out / "probe" / "00_tour.jsonl")}
    assert {"train", "attack"} <= kinds
    printed = capsys.readouterr().out
    assert "| `00_tour` | 0 |" in printed and "attack pgd" in printed
    assert not (out / "cache").exists() and (out / "probe-cache").is_dir()  # never the rehearsal's cache
