"""Neural Fingerprinting: fingerprints, eq. 9-13 against naive loops, training, the defense interface, and the
experiments (Table 1, the sweeps, the adaptive attacks, what notebook 40 records)."""
import math

import pandas as pd
import pytest
import torch

from decoylab import attacks, data, metrics, params, results, train
from decoylab.cache import Cache
from decoylab.defenses import fingerprints as nf
from decoylab.defenses.base import AdaptiveAttack, NotFittedError
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


def test_sweep_point_is_cached(digits, tmp_path):
    tr, te = digits
    cache = Cache(tmp_path)
    settings = nfx.SweepSettings(model_name="mlp", train_config=train.TrainConfig(epochs=2), n_pretest=30,
                                 attack_names=["FGM"])
    first = nfx.sweep_point(tr, te, settings, n=2, eps=0.1, cache=cache)
    assert set(first) == {"accuracy", "FGM_success", "FGM_auc"}
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert nfx.sweep_point(tr, te, settings, n=2, eps=0.1, cache=cache) == first
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == stamp
    by_n = nfx.auc_sweep(tr, te, settings, "N", [2], n=5, eps=0.1, cache=cache, log=None)
    assert by_n.to_dict("records") == [{"N": 2, "attack": "FGM", "AUC": first["FGM_auc"], "accuracy": first["accuracy"]}]
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == stamp  # read from the cache
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
                            paper_settings=False)
    results.clear()
    nfx.record_results(measured, accuracy={"with fingerprints": 0.9, "without (control)": 0.95}, match_rate=0.8,
                       table=table, adaptive=adaptive)
    got = results.recorded()
    results.clear()
    assert {"accuracy_with_fingerprints", "auc_cw_l2", "control_auc_fgm", "adaptive_undetected_cw"} <= set(got)
    assert got["auc_fgm"]["paper"] == 1.0 and got["auc_fgm"]["match"] == "different dataset"
    assert got["adaptive_auc_paper_adaptive"]["paper"] == nfx.PAPER_ADAPTIVE_AUC["value"]
    assert got["adaptive_auc_cw"]["paper"] is None


def test_attack_presets_per_dataset():
    assert nfx.attack_preset("cifar10") == "nfp_cifar10" and nfx.attack_preset("mnist5k") == "nfp_mnist"
    for name, _ in nfx.PAPER_ATTACKS.values():
        presets = attacks.core.REGISTRY[name].presets
        assert {"nfp_mnist", "nfp_cifar10"} <= set(presets), name
