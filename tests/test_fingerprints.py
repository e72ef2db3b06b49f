"""Neural Fingerprinting: fingerprints, eq. 9-13 against naive loops, training, the defense interface, and the
experiments (Table 1, the sweeps, the adaptive attacks, what notebook 40 records)."""
import copy
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from decoylab import attacks, claims, data, metrics, params, results, train
from decoylab.attacks.core import AttackResult
from decoylab.cache import Cache
from decoylab.defenses import fingerprints as nf
from decoylab.defenses.base import AdaptiveAttack, NotFittedError
from decoylab.experiments import fingerprint_claims as nfc
from decoylab.experiments import fingerprints as nfx


def test_fingerprint_variants():
    fp = nf.Fingerprints.generate((1, 8, 8), 10, n=4, eps=0.1, seed=0)
    assert fp.dx.shape == (4, 1, 8, 8) and fp.dy.shape == (4, 10, 10)
    assert fp.dx.min() >= 0 and fp.dx.max() < 0.1
    # the code's signs: -0.7 on the true class, 1/(3√2) elsewhere, so ‖Δy‖ ≈ 1
    assert torch.allclose(fp.dy[0].diagonal(), torch.full((10,), -0.7))
    assert fp.dy[0, 0, 1] == pytest.approx(0.2357, abs=1e-4)
    assert fp.dy[0].norm(dim=1) == pytest.approx(torch.ones(10), abs=0.01)
    sym = nf.Fingerprints.generate((1, 8, 8), 10, n=4, eps=0.1, dx_mode="symmetric", dy_sign="paper", seed=0)
    assert sym.dx.min() < 0 < sym.dx.max() and sym.dx.abs().max() <= 0.1
    assert torch.allclose(sym.dy, -fp.dy)
    rnd = nf.Fingerprints.generate((1, 8, 8), 10, n=32, eps=0.1, random_sign=True, seed=0)
    signs = (rnd.dy[:, 0, 0] / -0.7)
    assert set(signs.round().tolist()) == {-1.0, 1.0}  # one fair sign per direction, shared by all classes
    assert torch.allclose(rnd.dy, signs.view(-1, 1, 1) * fp.dy[:1])
    # three classes keep ‖Δy‖ ≈ 1 with a scaled off-class value
    three = nf.Fingerprints.generate((1, 4, 4), 3, n=1, eps=0.1, seed=0)
    assert three.dy[0].norm(dim=1) == pytest.approx(torch.ones(3), abs=0.01)


def test_seeded_repeats_and_unseeded_comes_from_the_csprng():
    a = nf.Fingerprints.generate((1, 8, 8), 10, n=3, eps=0.1, seed=5)
    b = nf.Fingerprints.generate((1, 8, 8), 10, n=3, eps=0.1, seed=5)
    c = nf.Fingerprints.generate((1, 8, 8), 10, n=3, eps=0.1)
    d = nf.Fingerprints.generate((1, 8, 8), 10, n=3, eps=0.1)
    assert torch.equal(a.dx, b.dx) and a.seeded and not c.seeded
    assert not torch.equal(c.dx, d.dx)


@pytest.mark.parametrize("kwargs,needle", [
    ({"n": 0}, "n=0"), ({"eps": 0.0}, "eps=0.0"), ({"eps": -0.1}, "eps=-0.1"), ({"eps": 1.5}, "eps=1.5"),
    ({"dx_mode": "both"}, "dx_mode='both'"), ({"dy_sign": "x"}, "dy_sign='x'"), ({"n": True}, "n=True")])
def test_bad_fingerprints_fail_with_the_parameter_named(kwargs, needle):
    with pytest.raises(params.ParameterError, match=needle):
        nf.Fingerprints.generate((1, 8, 8), 10, **{"n": 2, "eps": 0.1, **kwargs})


def test_bad_weight_and_threshold_fail_with_the_parameter_named():
    fp = nf.Fingerprints.generate((1, 8, 8), 10, n=2, eps=0.1, seed=0)
    with pytest.raises(params.ParameterError, match="weight=0"):
        nf.NeuralFingerprinting(fp, weight=0)
    with pytest.raises(params.ParameterError, match=r"tau=-1\.0"):
        nf.NeuralFingerprinting(fp).detect_at(torch.zeros(1, 1, 8, 8), -1.0)


def test_bad_settings_fail_before_training(tmp_path):
    tr = data.load("digits", "train")
    cache = Cache(tmp_path)
    with pytest.raises(ValueError, match="n=0"):
        nf.NeuralFingerprinting.create((1, 8, 8), 10, n=0, eps=0.1, model_name="mlp", cache=cache).fit(tr)
    with pytest.raises(ValueError, match="eps=0"):
        nf.NeuralFingerprinting.create((1, 8, 8), 10, n=2, eps=0, model_name="mlp", cache=cache).fit(tr)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # nothing trained, nothing written


def test_notebook_parameters_are_checked():
    with pytest.raises(params.ParameterError) as err:
        params.validate({"N_FINGERPRINTS": 0, "FP_EPS": 0.0, "TAU": -0.5}, "40_neural_fingerprinting")
    for name in ("N_FINGERPRINTS", "FP_EPS", "TAU"):
        assert name in str(err.value)
    assert params.validate({"TAU": None, "N_FINGERPRINTS": 3, "FP_EPS": 0.1}, "40_neural_fingerprinting")["TAU"] is None
    with pytest.raises(params.ParameterError) as err:
        params.validate({"N_GRID": [], "SWEEP_ATTACKS": ["PGD"]}, "41_roc_curves")
    assert "N_GRID" in str(err.value) and "SWEEP_ATTACKS" in str(err.value)


def _naive_distances(model, fp, x):
    """Eq. 9-11 with explicit loops over inputs, classes and fingerprints."""
    out = torch.zeros(len(x), fp.num_classes)
    with torch.no_grad():
        for b in range(len(x)):
            phi = nf.normalised_logits(model(x[b:b + 1]))[0]
            for j in range(fp.num_classes):
                total = 0.0
                for i in range(fp.n):
                    change = nf.normalised_logits(model(x[b:b + 1] + fp.dx[i:i + 1]))[0] - phi
                    total += float((change - fp.dy[i, j]).norm())
                out[b, j] = total / fp.n
    return out


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", "train"), data.load("digits", "test")


def test_vectorised_distances_and_loss_match_the_equations(digits):
    tr, _ = digits
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    fp = nf.Fingerprints.generate((1, 8, 8), 10, n=3, eps=0.2, dx_mode="symmetric", seed=1)
    x, y = tr.x[:5], tr.y[:5]
    assert torch.allclose(nf.all_distances(model, fp, x), _naive_distances(model, fp, x), atol=1e-5)
    # eq. 13 for the true class: mean over i of the squared L2 norm
    with torch.no_grad():
        naive = torch.stack([torch.stack([
            (nf.normalised_logits(model(x[b:b + 1] + fp.dx[i:i + 1]))[0] - nf.normalised_logits(model(x[b:b + 1]))[0]
             - fp.dy[i, y[b]]).pow(2).sum() for i in range(fp.n)]).mean() for b in range(len(x))])
        assert torch.allclose(nf.fingerprint_loss(model, fp, x, y), naive, atol=1e-5)


def test_one_batched_forward_for_all_fingerprints_and_classes():
    calls = []
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    model.register_forward_hook(lambda m, inp, out: calls.append(len(inp[0])))
    fp = nf.Fingerprints.generate((1, 8, 8), 10, n=7, eps=0.1, seed=0)
    nf.distances(model, fp, torch.rand(16, 1, 8, 8))
    assert calls == [(7 + 1) * 16]


@pytest.fixture(scope="module")
def trained(digits):
    tr, te = digits
    cfg = train.TrainConfig(epochs=40, lr=3e-3)
    nfp = nf.NeuralFingerprinting.create((1, 8, 8), 10, n=4, eps=0.1, fingerprint_seed=0, model_name="mlp",
                                         train_config=cfg, cache=Cache(), log=None).fit(tr)
    return nfp, nfp.control().fit(tr), te


def test_control_is_the_same_net_without_fingerprints(trained):
    nfp, plain, _ = trained
    assert nfp.name == "fingerprints" and nfp.control_description == "the same probes on the net trained without fingerprints"
    assert plain.fingerprints is nfp.fingerprints and not plain.trained_with_fingerprints and nfp.trained_with_fingerprints
    assert (plain.model_name, plain.train_config, plain.seed) == (nfp.model_name, nfp.train_config, nfp.seed)
    assert nfp.control().model is None  # unfitted: the caller fits it like the defense


def test_training_embeds_the_fingerprints_and_the_control_does_not(trained):
    nfp, plain, te = trained
    assert train.accuracy(nfp.model, te.x, te.y) > 0.85
    true_class = nfp.distances(te.x).gather(1, te.y[:, None]).mean()
    assert float(true_class) < 0.5  # an untrained direction sits near ‖Δy‖ ≈ 1
    assert float(plain.distances(te.x).gather(1, te.y[:, None]).mean()) > 0.8
    assert float((nfp.fingerprint_class(te.x) == te.y).float().mean()) > 0.8


def test_detection_beats_the_control_and_calibrates(trained):
    nfp, plain, te = trained
    idx = train.correct_subset(nfp.model, te.x, te.y, 100, seed=0)
    x, y = te.x[idx], te.y[idx]
    aucs = []
    for defense in (nfp, plain):
        r = attacks.run("bim", defense.model, x, y, eps=0.3, step_size=0.02, steps=30)
        clean, adv = defense.score(x), defense.score(r.x_adv[r.success])
        aucs.append(metrics.auc([0] * len(clean) + [1] * len(adv), torch.cat([clean, adv])))
    assert aucs[0] > 0.9 and aucs[0] > aucs[1] + 0.1
    with pytest.raises(NotFittedError):
        nf.NeuralFingerprinting(nfp.fingerprints).detect(x)
    nfp.calibrate(te.x, 0.1)
    assert float(nfp.detect(te.x).float().mean()) <= 0.1
    assert torch.equal(nfp.detect_at(x, 0.0), nfp.score(x) > 0)


def test_kit_adaptive_attack_lowers_the_score(trained):
    nfp, _, te = trained
    idx = train.correct_subset(nfp.model, te.x, te.y, 40, seed=0)
    x, y = te.x[idx], te.y[idx]
    plain = attacks.run("bim", nfp.model, x, y, eps=0.3, step_size=0.02, steps=30)
    adaptive = attacks.run("bim", nfp.model, x, y, eps=0.3, step_size=0.02, steps=30,
                           extra_loss=nfp.adaptive_loss("min_class", weight=50.0))
    assert float(nfp.score(adaptive.x_adv).mean()) < float(nfp.score(plain.x_adv).mean())
    with pytest.raises(ValueError, match="kind='x'"):
        nfp.adaptive_loss("x")


def test_a_net_on_the_authors_input_range_is_read_through_the_shift(digits, tmp_path):
    tr, te = digits
    cfg = train.TrainConfig(epochs=3, lr=3e-3)
    shifted = nf.NeuralFingerprinting.create((1, 8, 8), 10, n=2, eps=0.1, fingerprint_seed=0, model_name="mlp",
                                             train_config=cfg, input_offset=-0.5, cache=Cache(tmp_path), log=None).fit(tr)
    assert isinstance(shifted.model, nf.ShiftedInputs) and "offset=-0.5" in repr(shifted.model)
    x = te.x[:8]
    with torch.no_grad():
        assert torch.equal(shifted.model(x), shifted.model.net(x - 0.5))
    # the inner net is the one trained on the shifted images (the same training key), read through the shift
    on_shifted = train.train_or_load("mlp", tr.x - 0.5, tr.y, 10, cfg, cache=Cache(tmp_path), log=None,
                                     loss_fn=nf.training_loss(shifted.fingerprints, 1.0),
                                     loss_key={"fingerprint_loss": 1.0, **shifted.fingerprints.to_dict()})
    assert all(torch.equal(a, b) for a, b in zip(on_shifted.state_dict().values(), shifted.model.net.state_dict().values()))
    assert train.accuracy(shifted.model, te.x, te.y) > 0.5  # it learned on [-0.5, 0.5] and reads [0, 1] images
    control = shifted.control().fit(tr)  # the control is shifted too, and trained without fingerprints
    assert isinstance(control.model, nf.ShiftedInputs) and control.model.offset == -0.5
    assert train.accuracy(control.model, te.x, te.y) > 0.5
    assert float(control.distances(te.x).gather(1, te.y.view(-1, 1)).mean()) > \
        float(shifted.distances(te.x).gather(1, te.y.view(-1, 1)).mean())
    loaded = nf.NeuralFingerprinting.load(shifted.save(tmp_path / "shifted.pt"), device="cpu", log=None)
    assert loaded.input_offset == -0.5 and torch.allclose(loaded.score(x), shifted.score(x))
    with pytest.raises(params.ParameterError, match="input_offset=2"):
        nf.NeuralFingerprinting.create((1, 8, 8), 10, n=2, eps=0.1, input_offset=2)


def test_save_and_load_keep_scores_and_threshold(trained, tmp_path):
    nfp, _, te = trained
    nfp.calibrate(te.x, 0.05)
    path = nfp.save(tmp_path / "nfp.pt")
    loaded = nf.NeuralFingerprinting.load(path, cache=None, device="cpu", log=None)
    assert torch.allclose(loaded.score(te.x[:20]), nfp.score(te.x[:20]))
    assert loaded.threshold == nfp.threshold and loaded.fingerprints.seeded
    assert (loaded.weight, loaded.train_config, loaded.model_name) == (nfp.weight, nfp.train_config, nfp.model_name)
    assert torch.equal(loaded.fingerprints.dy, nfp.fingerprints.dy) and loaded.device == "cpu"
    assert [p.name for p in tmp_path.iterdir()] == ["nfp.pt"]  # no temporary file left behind


def test_adaptive_attacks_by_knowledge(trained):
    nfp, _, te = trained
    nfp = copy.deepcopy(nfp)  # other tests calibrate the shared fixture; uncalibrated, no level aims at a threshold
    nfp.threshold = nfp.calibrated_fpr = None
    levels = nfp.adaptive_attacks(x_shadow=te.x[:10], y_shadow=te.y[:10], attack=("cw2", {}))
    assert all(isinstance(a, AdaptiveAttack) for a in levels)
    assert [a.knowledge for a in levels] == ["0 · oblivious (white-box on the deployed model)",
                                             "1 · the paper's adaptive term (L_fp of the true labels)",
                                             "2 · minimises min over classes of D"]
    assert all(a.model is nfp.model for a in levels) and levels[0].loss_for is None
    x, y = te.x[:6], te.y[:6]
    assert torch.allclose(levels[1].loss_for(2.0)(x, y), 2.0 * nf.fingerprint_loss(nfp.model, nfp.fingerprints, x, y))
    assert torch.allclose(levels[2].loss_for(3.0)(x, y), 3.0 * nf.distances(nfp.model, nfp.fingerprints, x).amin(1))
    keys = [a.loss_key_for(5.0) for a in levels[1:]]
    assert [k["term"] for k in keys] == ["fingerprints_attack_labels", "fingerprints_min_class"]
    assert all(k["weight"] == 5.0 and torch.equal(k["dx"], nfp.fingerprints.dx) for k in keys)


def test_a_calibrated_detector_adds_an_attack_on_its_decision(trained):
    nfp, _, te = trained
    nfp = copy.deepcopy(nfp)
    nfp.calibrate(te.x[:40], 0.05)
    levels = nfp.adaptive_attacks(x_shadow=te.x[40:80], y_shadow=te.y[40:80], attack=("cw2", {}))
    assert len(levels) == 5 and levels[3].knowledge.startswith("3 · minimises min over classes of D, only above")
    aim = levels[3].loss_key_for(3.0)["hinged_at"]
    assert aim <= nfp.threshold
    assert aim == pytest.approx(float(metrics.threshold_at_fpr(nfp.score(te.x[40:80]), 0.1)))
    x, y = te.x[:30], te.y[:30]
    scores = nfp.score(x)
    assert torch.allclose(levels[3].loss_for(3.0)(x, y), 3.0 * (scores - aim).clamp_min(0), atol=1e-5)
    # a different aim is a different attack: the cache must not hand back the plain term's result
    assert levels[3].loss_key_for(3.0) != levels[2].loss_key_for(3.0)
    assert levels[3].loss_key_for(3.0)["hinge_code"]  # editing the hinge invalidates its cached attacks
    # a detector calibrated at FPR 0.6: twice that is no threshold at all; the attacker aims halfway to 1 instead
    nfp.calibrate(te.x[:40], 0.6)
    high = nfp.adaptive_attacks(x_shadow=te.x[40:80], y_shadow=te.y[40:80], attack=("cw2", {}))
    assert len(high) == 5 and "at 0.8 FPR" in high[3].note and "at 0.8 FPR" in high[4].note


def test_the_closest_class_attack_aims_at_one_other_class_and_runs_targeted(trained):
    from decoylab.experiments import detection

    nfp, _, te = trained
    nfp = copy.deepcopy(nfp)
    nfp.calibrate(te.x[:40], 0.05)
    closest = nfp.adaptive_attacks(x_shadow=te.x[40:80], y_shadow=te.y[40:80], attack=("pgd", {}))[4]
    assert closest.knowledge.startswith("4 · targets the closest other class")
    x, y = te.x[80:100], te.y[80:100]
    targets = closest.targets_for(x, y)
    d = nfp.distances(x)
    assert (targets != y).all()
    # the best-matching class other than y: no other class j != y matches better
    assert (d.gather(1, targets.view(-1, 1)).squeeze(1) <= d.masked_fill(
        torch.nn.functional.one_hot(y, d.shape[1]).bool(), float("inf")).amin(1) + 1e-6).all()
    aim = closest.loss_key_for(2.0)["hinged_at"]
    expected = 2.0 * (d.gather(1, targets.view(-1, 1)).squeeze(1) - aim).clamp_min(0)
    assert torch.allclose(closest.loss_for(2.0)(x, targets), expected, atol=1e-4)
    contender = SimpleNamespace(defense=nfp, classifier=nfp.attacked_model)
    r, success, scores = detection.adaptive_run(contender, closest, x, y, ("pgd", {"eps": 0.3, "steps": 5,
                                                                                   "step_size": 0.1}), 1.0)
    assert r.target is not None and torch.equal(r.target.cpu(), targets.cpu())  # the engine ran it targeted
    assert len(scores) == int(success.sum())


def test_auc_row_readings():
    clean = torch.tensor([0.1, 0.2, 0.3, 0.9])
    adv = torch.tensor([0.8, 0.7, 0.05, 0.95])
    correct = torch.tensor([True, True, True, False])
    success = torch.tensor([True, True, False, True])
    row = nfx.auc_row(clean, adv, correct=correct, success=success, fpr=0.34)
    assert row["auc_all"] == pytest.approx(metrics.auc([0] * 4 + [1] * 4, torch.cat([clean, adv])))
    assert row["auc_correct"] == pytest.approx(6 / 9)  # 3 clean vs 3 adversarial, the failed one below all
    assert row["auc_successful"] == 1.0 and row["success"] == pytest.approx(2 / 3)
    assert math.isclose(row["tpr_at_0.34"], 2 / 3)


def test_auc_on_no_points_is_nan_not_a_crash():
    """Found on the paper preset's stand-ins (notebook 41): with no pre-test point both correct and attacked, the
    sweep point crashed in scikit-learn instead of recording an unmeasured AUC."""
    assert math.isnan(metrics.auc([], torch.tensor([])))
    assert math.isnan(metrics.auc([1, 1], torch.tensor([0.2, 0.3])))
    row = nfx.auc_row(torch.tensor([0.1, 0.2]), torch.tensor([0.3, 0.4]), correct=torch.tensor([False, False]),
                      success=torch.tensor([True, False]))
    assert math.isnan(row["auc_correct"]) and math.isnan(row["tpr_at_0.05"]) and row["n_correct"] == 0


def test_sweep_point_is_cached(digits, tmp_path):
    tr, te = digits
    cache = Cache(tmp_path)
    settings = nfx.SweepSettings(model_name="mlp", train_config=train.TrainConfig(epochs=2), n_pretest=30,
                                 attack_names=["FGM"])
    first = nfx.sweep_point(tr, te, settings, n=2, eps=0.1, cache=cache)
    assert set(first) == {"accuracy", "fit", "FGM_success", "FGM_auc", "FGM_n_correct"}
    assert 0 < first["fit"] < nfx.UNLEARNED_FIT  # ε 0.1 fingerprints are learned in two epochs
    # the fit is the true class's distance on the pre-test points, not the score (the smallest over the classes)
    evidence_scores = nfx.sweep_point(tr, te, settings, n=2, eps=0.1, cache=cache, with_evidence=True)["evidence"]
    assert first["fit"] > float(evidence_scores["scores"]["clean"].mean())
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert nfx.sweep_point(tr, te, settings, n=2, eps=0.1, cache=cache) == first
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == stamp
    by_n = nfx.auc_sweep(tr, te, settings, "N", [2], n=5, eps=0.1, cache=cache, log=None)
    assert by_n.to_dict("records") == [{"N": 2, "attack": "FGM", "AUC": first["FGM_auc"], "n": first["FGM_n_correct"],
                                        "accuracy": first["accuracy"], "fit": first["fit"]}]
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == stamp  # read from the cache
    full = nfx.sweep_point(tr, te, settings, n=2, eps=0.1, cache=cache, with_evidence=True)
    evidence = full.pop("evidence")
    assert full == first and set(evidence["scores"]) == {"clean", "FGM"} and evidence["correct"].dtype == torch.bool
    assert nfx.auc_row(evidence["scores"]["clean"], evidence["scores"]["FGM"], correct=evidence["correct"],
                       success=evidence["success"]["FGM"])["auc_correct"] == first["FGM_auc"]
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == stamp  # the same cache entry
    with pytest.raises(ValueError, match="PGD"):
        nfx.sweep_point(tr, te, nfx.SweepSettings(model_name="mlp", attack_names=["PGD"]), n=2, eps=0.1, cache=cache)
    with pytest.raises(params.ParameterError, match="eps=0"):  # before any training
        nfx.sweep_point(tr, te, settings, n=2, eps=0, cache=cache)


def test_adaptive_attacks_side_by_side_and_cached(trained, tmp_path):
    nfp, _, te = trained
    idx = train.correct_subset(nfp.model, te.x, te.y, 20, seed=0)
    x, y = te.x[idx], te.y[idx]
    cache = Cache(tmp_path)
    cw = {"max_iter": 30, "binary_search_steps": 2, "learning_rate": 0.05, "initial_const": 1.0}
    first = nfx.run_adaptive_attacks(nfp, x, y, weight=10.0, cw_settings=cw, cache=cache)
    assert set(first) == {"cw", "paper_adaptive", "kit_adaptive"}
    assert float(nfp.score(first["kit_adaptive"].x_adv).mean()) < float(nfp.score(first["cw"].x_adv).mean())
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    again = nfx.run_adaptive_attacks(nfp, x, y, weight=10.0, cw_settings=cw, cache=cache)
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == files
    assert torch.equal(again["kit_adaptive"].x_adv, first["kit_adaptive"].x_adv)
    with pytest.raises(ValueError, match="weight=0"):
        nfx.run_adaptive_attacks(nfp, x, y, weight=0, cache=cache)


def test_table_one_and_what_notebook_40_records(trained):
    nfp, plain, te = trained
    x, y = te.x[:30], te.y[:30]
    overrides = {"CW-L2": {"max_iter": 5, "binary_search_steps": 1}}
    runs = [nfx.attack_pretest(d, x, y, attack_names=["FGM", "CW-L2"], overrides=overrides) for d in (nfp, plain)]
    assert set(runs[0].scores) == {"clean", "FGM", "CW-L2"} and runs[0].correct.dtype == torch.bool
    table = nfx.table_one(*runs, paper_ds="mnist", paper_settings=False, fpr=0.05)
    assert list(table.index) == ["FGM", "CW-L2"] and table.loc["FGM", "paper NeuralFP"] == 1.0
    assert table.loc["FGM", "control auc_correct"] == nfx.auc_row(
        runs[1].scores["clean"], runs[1].scores["FGM"], correct=runs[1].correct,
        success=runs[1].adversarial["FGM"].success)["auc_correct"]
    assert set(nfx.roc_per_attack(runs[0])) == set(nfx.auc_per_attack(runs[0])) == {"FGM", "CW-L2"}
    assert list(nfx.rejection_rates(runs[0], 0.5).index) == ["clean", "FGM", "CW-L2"]
    adaptive = pd.DataFrame({"attack": ["a", "b"], "AUC": [0.6, 0.7], "succeeds undetected": [0.1, 0.2]},
                            index=["cw", "paper_adaptive"])
    measured = nfx.Measured(dataset="digits", n_fingerprints=4, eps=0.1, fpr=0.05, n_pretest=30, n_adaptive=2,
                            paper_settings=False, n_test=200)
    results.clear()
    nfx.record_results(measured, accuracy={"with fingerprints": 0.9, "without (control)": 0.95}, match_rate=0.8,
                       table=table, adaptive=adaptive)
    got = results.recorded()
    results.clear()
    assert {"accuracy_with_fingerprints", "auc_cw_l2", "control_auc_fgm", "adaptive_undetected_cw"} <= set(got)
    assert got["auc_fgm"]["paper"] == 1.0 and got["auc_fgm"]["match"] == "different dataset"
    assert got["adaptive_auc_paper_adaptive"]["paper"] == nfx.PAPER_ADAPTIVE_AUC["value"]
    assert got["adaptive_auc_cw"]["paper"] is None
    # every rate and AUC carries its n and a 95 % interval
    assert got["accuracy_with_fingerprints"]["n"] == 200 and got["success_fgm"]["n"] == table.loc["FGM", "n_correct"]
    low, high = got["auc_fgm"]["interval"]
    assert got["auc_fgm"]["n"] == table.loc["FGM", "n_correct"] and low <= got["auc_fgm"]["value"] <= high


def test_attack_presets_per_dataset():
    assert nfx.attack_preset("cifar10") == "nfp_cifar10" and nfx.attack_preset("mnist5k") == "nfp_mnist"
    for name, _ in nfx.PAPER_ATTACKS.values():
        presets = attacks.core.REGISTRY[name].presets
        assert {"nfp_mnist", "nfp_cifar10"} <= set(presets), name


# ------------------------------------------------------------------------------------------------------ claims
def test_each_declared_claim_belongs_to_one_notebook():
    forty, fortyone = (set(nfc.notebook_claim_ids(nb)) for nb in nfc.NOTEBOOK_CLAIMS)
    assert forty.isdisjoint(fortyone)
    assert forty | fortyone == {c.id for c in claims.declared("fingerprints")}
    assert {f"fingerprints.table1.mnist.{k}.auc" for k in ("fgm", "jsma", "bim_a", "bim_b", "cw_l2")} <= forty


def test_run_notes_list_only_the_differences():
    paper = nfc.RunSettings("mnist", 60000, 1328, 0.1, nfc.CW_DEFAULTS)
    assert paper.note("CW-L2") == "" and paper.note() == ""
    tiny = nfc.RunSettings("mnist5k", 1500, 40, 0.05, {"max_iter": 20}, n_fingerprints=2, eps=0.1)
    assert tiny.note("FGM") == ("data set mnist5k (the paper: mnist); 1500 training images (the paper: the full "
                                "training split); 40 pre-test points (the paper: 1328); N 2, ε 0.1 (the paper: the "
                                "best N and ε of a grid search)")
    assert "JSMA γ 0.05" in tiny.note("JSMA") and "CW-L2 20 iterations × 9" in tiny.note("CW-L2")


class _Reads(torch.nn.Module):
    """Logits that put the class written in pixel (0, 0, ``column``) first: a net with a known prediction."""
    def __init__(self, column):
        super().__init__()
        self.column, self.unused = column, torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.nn.functional.one_hot(x[:, 0, 0, self.column].long(), 10).float() + 0 * self.unused


class _StandIn:
    """A fitted defense's two faces the claims use: its ``model`` and a ``score`` (pixel (0, 0, 0))."""
    def __init__(self, column):
        self.model = _Reads(column)

    def score(self, x):
        return x[:, 0, 0, 0].clone()


def _attacked(scores, correct, successes):
    zeros = torch.zeros(len(correct))
    adversarial = {a: AttackResult(torch.zeros(len(correct), 1, 1, 3), s, None, zeros, zeros, zeros, 1)
                   for a, s in successes.items()}
    return nfx.AttackedSet(adversarial, correct, scores)


def test_notebook_40_claims_on_known_scores():
    rng = np.random.default_rng(0)
    normal = lambda mean, n=300: torch.from_numpy(rng.normal(mean, 1, n))  # noqa: E731
    correct = torch.arange(300) < 280  # the last 20 points are misclassified: never evidence
    everyone = torch.ones(300, dtype=torch.bool)
    jsma = (torch.arange(300) < 20) | ~correct  # 20 successes on correct points, 20 on misclassified ones
    shifts = {"FGM": 6.0, "JSMA": 6.0, "BIM-a": 0.3, "BIM-b": 6.0, "CW-L2": 6.0}
    ours = _attacked({"clean": normal(0), **{a: normal(m) for a, m in shifts.items()}}, correct,
                     {a: jsma if a == "JSMA" else everyone for a in shifts})
    control = _attacked({"clean": normal(0), **{a: normal(-1) for a in shifts}}, correct,
                        {a: everyone for a in shifts})
    # 1000 test images that both nets classify alike (pixel 1: fingerprinted, pixel 2: control)
    y = torch.arange(1000) % 10
    x = torch.zeros(1000, 1, 1, 3)
    x[:, 0, 0, 1] = x[:, 0, 0, 2] = y.float()
    x[:7, 0, 0, 1:] = ((y[:7] + 1) % 10).float()[:, None]
    adaptive_x = torch.zeros(50, 1, 1, 3)
    adaptive_x[:, 0, 0, 0] = normal(0, 50)
    x_adv = torch.zeros(50, 1, 1, 3)
    x_adv[:, 0, 0, 0] = normal(0, 50)  # the adaptive attack hides completely
    adaptive = AttackResult(x_adv, torch.arange(50) < 40, None, torch.zeros(50), torch.zeros(50), torch.zeros(50), 1)
    run = nfc.RunSettings("mnist", 60000, 300, 0.1, nfc.CW_DEFAULTS)
    results.clear()
    verdicts = nfc.evaluate_claims(ours, control, defense=_StandIn(1), control_defense=_StandIn(2),
                                   test_set=SimpleNamespace(x=x, y=y), adaptive_x=adaptive_x,
                                   adaptive_runs={"paper_adaptive": adaptive}, run=run)
    stored = results.recorded_claims()
    results.clear()
    by_id = {v.claim.id: v for v in verdicts}
    assert list(by_id) == nfc.notebook_claim_ids("40_neural_fingerprinting") == list(stored)

    def outcome(claim_id):
        return by_id[f"fingerprints.{claim_id}"].outcome

    fgm = by_id["fingerprints.table1.mnist.fgm.auc"].measurement
    clean, adv = ours.scores["clean"][correct], ours.scores["FGM"][correct]
    assert fgm.value == pytest.approx(metrics.auc([0] * 280 + [1] * 280, torch.cat([clean, adv])))
    assert (fgm.n, fgm.n_successful) == (300, 280)
    assert outcome("table1.mnist.fgm.auc") == claims.REPRODUCED
    assert outcome("table1.mnist.bim_a.auc") == claims.NOT_REPRODUCED  # AUC ≈ 0.58
    # JSMA succeeded on 20 correct points (its successes on misclassified points are no evidence): too few
    jsma_verdict = by_id["fingerprints.table1.mnist.jsma.auc"]
    assert jsma_verdict.measurement.n_successful == 20 and jsma_verdict.outcome == claims.INCONCLUSIVE
    assert "20 successful adversarial examples" in jsma_verdict.reason
    assert outcome("table1.jsma.auc_over_control") == claims.INCONCLUSIVE
    over = by_id["fingerprints.table1.fgm.auc_over_control"].measurement
    assert over.value == pytest.approx(over.parts["fingerprinted"].value - over.parts["control"].value)
    # the control's probes read its adversarial examples as cleaner (AUC ≈ 0.24): that separates too, so the
    # control is credited with 1 − AUC ≈ 0.76, which BIM-a's 0.58 does not beat
    assert over.parts["control"].value == pytest.approx(1 - metrics.auc(
        [0] * 280 + [1] * 280, torch.cat([control.scores["clean"][correct], control.scores["FGM"][correct]])))
    assert outcome("table1.fgm.auc_over_control") == claims.REPRODUCED
    assert outcome("table1.bim_a.auc_over_control") == claims.NOT_REPRODUCED
    assert outcome("control.fgm.auc_at_most_chance") == claims.NOT_REPRODUCED
    accuracy = by_id["fingerprints.accuracy.mnist.unchanged"]
    assert accuracy.measurement.value == 0 and accuracy.measurement.n == 1000
    assert accuracy.measurement.parts["with fingerprints"].value == pytest.approx(0.993)
    assert accuracy.outcome == claims.REPRODUCED  # the nets err on the same 7 images: the paired difference is 0
    separation = by_id["fingerprints.fig5.separation"].measurement
    assert separation.n_successful == 4 * 280 + 20
    assert separation.interval[0] <= separation.value <= separation.interval[1]
    assert outcome("fig5.separation") == claims.REPRODUCED
    adaptive_verdict = by_id["fingerprints.adaptive.cifar10.paper_adaptive.auc"]
    assert adaptive_verdict.measurement.n_successful == 40 and adaptive_verdict.outcome == claims.NOT_REPRODUCED
    assert "data set mnist (the paper: cifar10)" in adaptive_verdict.measurement.note


def test_notebook_41_claims_read_the_sweep_points(monkeypatch):
    def fake_point(train_set, test_set, settings, *, n, eps, fingerprint_seed, cache, with_evidence):
        assert with_evidence
        rng = np.random.default_rng(int(1000 * n + 100 * eps + fingerprint_seed))
        normal = lambda mean: torch.from_numpy(rng.normal(mean, 1, 200))  # noqa: E731
        success = torch.arange(200) < 150
        # FGM's AUC rises with N; BIM-b's falls with ε
        return {"fit": 0.2, "evidence": {"scores": {"clean": normal(0), "FGM": normal(n), "BIM-b": normal(3 - 25 * eps)},
                                         "correct": torch.ones(200, dtype=torch.bool),
                                         "success": {"FGM": success, "BIM-b": success}}}

    monkeypatch.setattr(nfc, "sweep_point", fake_point)
    settings = nfx.SweepSettings(attack_names=("FGM", "BIM-b"), n_pretest=200)
    run = nfc.RunSettings("mnist5k", 1000, 200, 0.1, nfc.CW_DEFAULTS)
    results.clear()
    verdicts = nfc.evaluate_sweep_claims(None, SimpleNamespace(y=torch.zeros(500)), settings, n_grid=[5, 1, 3],
                                         eps_grid=[0.1, 0.03, 0.3], n=2, eps=0.1, n_sets=3, run=run)
    stored = results.recorded_claims()
    results.clear()
    by_id = {v.claim.id: v for v in verdicts}
    assert list(by_id) == nfc.notebook_claim_ids("41_roc_curves") == list(stored)
    rising = by_id["fingerprints.fig3.n.fgm.auc_does_not_fall"]
    assert set(rising.measurement.parts) == {"N 5", "N 1"} and rising.measurement.n_successful == 150
    assert rising.outcome == claims.REPRODUCED
    falling = by_id["fingerprints.fig3.eps.bim_b.auc_does_not_fall"]
    assert set(falling.measurement.parts) == {"ε 0.1", "ε 0.03"}  # ε 0.3 lies beyond the paper's range
    assert falling.outcome == claims.NOT_REPRODUCED and "ε 0.3 left out" in falling.measurement.note
    for unswept in ("fig3.n.cw_l2.auc_does_not_fall", "fig3.eps.cw_l2.auc_falls", "fig4.jsma.auc_std"):
        verdict = by_id[f"fingerprints.{unswept}"]
        assert verdict.outcome == claims.INCONCLUSIVE
        assert verdict.reason.startswith("not measured: ") and "SWEEP_ATTACKS" in verdict.reason
    per_set = []
    for seed in range(3):
        ev = fake_point(None, None, None, n=2, eps=0.1, fingerprint_seed=seed, cache=None,
                        with_evidence=True)["evidence"]
        clean, adv = ev["scores"]["clean"], ev["scores"]["FGM"][ev["success"]["FGM"]]
        per_set.append(metrics.auc([0] * len(clean) + [1] * len(adv), torch.cat([clean, adv])))
    spread = by_id["fingerprints.fig4.fgm.auc_std"].measurement
    assert spread.value == pytest.approx(np.std(per_set, ddof=1))
    assert spread.interval[0] <= spread.value < spread.interval[1]
    # three sets alike but for sampling noise: the noise alone cannot refute a spread below 1 %
    assert by_id["fingerprints.fig4.fgm.auc_std"].outcome != claims.NOT_REPRODUCED
    assert by_id["fingerprints.fig4.bim_b.auc_std"].outcome != claims.NOT_REPRODUCED


@pytest.mark.parametrize("fit_at_small_eps", [0.2, 0.99])
def test_a_rise_is_no_fall_whose_size_could_be_judged(monkeypatch, fit_at_small_eps):
    """Fig. 3's CW-L2 claims on ε: a clear rise refutes "the AUC falls" and leaves "falls by no more than 8 %"
    without a fall to judge (inconclusive), instead of passing it on the rise; unless the fingerprints at the
    smallest ε were never learned: then the rise compares a fingerprinted net with one that is not, and the claim
    is inconclusive with its change still shown."""
    def fake_point(train_set, test_set, settings, *, n, eps, fingerprint_seed, cache, with_evidence):
        rng = np.random.default_rng(int(1000 * n + 100 * eps + fingerprint_seed))
        normal = lambda mean: torch.from_numpy(rng.normal(mean, 1, 200))  # noqa: E731
        return {"fit": fit_at_small_eps if eps < 0.01 else 0.2,
                "evidence": {"scores": {"clean": normal(0), "CW-L2": normal(25 * eps - 1)},
                             "correct": torch.ones(200, dtype=torch.bool),
                             "success": {"CW-L2": torch.arange(200) < 150}}}

    monkeypatch.setattr(nfc, "sweep_point", fake_point)
    settings = nfx.SweepSettings(attack_names=("CW-L2",), n_pretest=200)
    run = nfc.RunSettings("mnist5k", 1000, 200, 0.1, nfc.CW_DEFAULTS)
    results.clear()
    verdicts = nfc.evaluate_sweep_claims(None, SimpleNamespace(y=torch.zeros(500)), settings, n_grid=[5, 10],
                                         eps_grid=[0.003, 0.1], n=10, eps=0.1, n_sets=2, run=run)
    results.clear()
    by_id = {v.claim.id: v for v in verdicts}
    falls = by_id["fingerprints.fig3.eps.cw_l2.auc_falls"]
    size = by_id["fingerprints.fig3.eps.cw_l2.fall_not_substantial"]
    assert size.outcome == claims.INCONCLUSIVE and "no fall to judge: the AUC rose" in size.reason
    assert falls.measurement.value > 0.5  # measured and shown either way
    if fit_at_small_eps < nfx.UNLEARNED_FIT:
        assert falls.outcome == claims.NOT_REPRODUCED
    else:
        assert falls.outcome == claims.INCONCLUSIVE
        assert "ε 0.003 (mean D of the true class 0.990) were not learned" in falls.reason
    assert "not learned" not in (by_id["fingerprints.fig3.n.cw_l2.auc_does_not_fall"].reason or "")  # at ε 0.1


def test_one_rule_says_when_fingerprints_were_not_learned():
    """The claims' and the trend tables' "not learned" are the same rule: a fit at the bound counts as unlearned,
    one just below it as learned."""
    bound = nfx.UNLEARNED_FIT
    assert nfc.fingerprints_unlearned(bound) and not nfc.fingerprints_unlearned(bound - 1e-6)
    assert nfc.unlearned_ends({0.003: bound - 1e-6, 0.1: 0.2}, "ε") is None
    assert "ε 0.003" in nfc.unlearned_ends({0.003: bound, 0.1: 0.2}, "ε")


def test_the_trend_over_n_spans_the_fingerprint_sets():
    """Fig. 3's change from one end of a sweep to the other: one set gives the images' bootstrap; several give
    the mean of the per-set changes with Student's t over the sets, clipped to what two AUCs allow."""
    import numpy as np

    from decoylab.experiments import fingerprint_claims as nfc

    rng = np.random.default_rng(0)

    def scores(shift):  # (clean, adversarial): an AUC that grows with shift
        return rng.normal(0, 1, 60), rng.normal(shift, 1, 40)

    per_set = [(scores(2.0 + d), scores(1.0)) for d in (0.0, 0.3, -0.2)]
    one = nfc.trend_over_sets(per_set[:1], labels=("N 30", "N 5"), images=100, seeds=(0,), note="")
    many = nfc.trend_over_sets(per_set, labels=("N 30", "N 5"), images=100, seeds=(0, 1, 2), note="")
    assert one.interval[0] < one.value < one.interval[1] and one.n_successful == 40
    per_set_values = [m.value for m in many.parts.values()]
    assert many.value == pytest.approx(np.mean(per_set_values)) and len(per_set_values) == 3
    assert -1 <= many.interval[0] < many.value < many.interval[1] <= 1
    assert many.interval[1] - many.interval[0] > max(per_set_values) - min(per_set_values)  # t with 2 dof is wide
    # Sets that agree exactly still leave the images' sampling error in the interval (they share the images)
    same = nfc.trend_over_sets([per_set[0]] * 3, labels=("N 30", "N 5"), images=100, seeds=(0,), note="")
    assert same.interval[1] - same.interval[0] > 0.05 and same.interval[0] < same.value < same.interval[1]


def test_the_trend_sentences_read_each_interval_and_refuse_too_few_examples():
    import pandas as pd

    from decoylab.experiments import fingerprint_trends as nft

    base = {"over": "ε", "from": 0.003, "to": 0.1, "attack": "CW-L2"}
    rows = pd.DataFrame([
        {**base, "setting": "5 epochs", "AUC change": 0.3, "low": 0.2, "high": 0.4, "successful": 40,
         "accuracy at the smallest": 0.8, "accuracy at the largest": 0.9, "fit at the smallest": 0.99,
         "fit at the largest": 0.3},
        {**base, "setting": "15 epochs", "AUC change": 0.01, "low": -0.03, "high": 0.05, "successful": 12,
         "accuracy at the smallest": 0.95, "accuracy at the largest": 0.94, "fit at the smallest": 0.2,
         "fit at the largest": 0.1},
        {**base, "over": "N", "from": 1, "to": 5, "setting": "5 epochs", "AUC change": -0.1, "low": -0.15,
         "high": -0.05, "successful": 31, "accuracy at the smallest": 0.9, "accuracy at the largest": 0.7,
         "fit at the smallest": 0.2, "fit at the largest": 0.4}])
    text = nft.sentences(rows)
    first, second = text.split("\n\nAUC at ")
    assert first.startswith("AUC at ε 0.1 minus at ε 0.003:") and second.startswith("N 5 minus at N 1:")
    assert "5 epochs +0.300 [0.2, 0.4] (rises; 40 successful)" in first
    assert "15 epochs +0.010, inconclusive: 12 successful examples (fewer than 30)" in first
    assert "5 epochs ε 0.003 0.800, ε 0.1 0.900; 15 epochs ε 0.003 0.950" in first
    assert "5 epochs -0.100 [-0.15, -0.05] (falls; 31 successful)" in second
    assert "fingerprint fit (mean D of the true class; ≈ 1 unlearned, learned below 0.9): 5 epochs ε 0.003 0.990" in first
    assert "where the fingerprints at one end were not learned (5 epochs)" in first
    assert "not learned" not in second


def test_trends_refuse_a_bad_axis_or_a_one_point_grid(digits):
    from decoylab.experiments import fingerprint_trends as nft

    tr, te = digits
    settings = nfx.SweepSettings(model_name="mlp")
    with pytest.raises(ValueError, match="over='K'"):
        nft.trend_table(tr, te, {"x": ("x", settings)}, over="K", grid=[1, 2], n=2, eps=0.1, sets=1)
    with pytest.raises(ValueError, match=r"grid=\[3, 3\]"):
        nft.by_training_length(tr, te, settings, over="N", grid=[3, 3], n=2, eps=0.1, epochs_list=[1], sets=1)


def test_a_trend_by_input_offset_trains_shifted_nets_and_records_each_row(digits, tmp_path):
    from decoylab.experiments import fingerprint_trends as nft

    tr, te = digits
    results.clear()
    settings = nfx.SweepSettings(model_name="mlp", train_config=train.TrainConfig(epochs=2), n_pretest=30,
                                 attack_names=["FGM"])
    table = nft.by_input_offset(tr, te, settings, over="ε", grid=[0.05, 0.2], n=2, eps=0.1, offsets=[0.0, -0.5],
                                sets=2, cache=Cache(tmp_path))
    assert list(table["setting"]) == ["inputs on [0, 1]", "inputs on [-0.5, 0.5]"]
    assert set(table["over"]) == {"ε"} and set(table["from"]) == {0.05} and set(table["to"]) == {0.2}
    stored = results.recorded()
    assert {"trend_eps_fgm_offset0", "trend_eps_fgm_offset-0.5"} <= set(stored)
    # the two offsets are different nets: their ends differ; every fit is a mean distance, each row has its n
    assert table["fit at the smallest"].nunique() == 2
    assert ((table[["fit at the smallest", "fit at the largest"]] > 0).all().all()
            and (table["successful"] > 0).all() and (table["high"] > table["low"]).all())
