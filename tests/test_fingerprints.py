"""Neural Fingerprinting: fingerprints, eq. 9-13 against naive loops, training, the defense interface."""
import math

import pytest
import torch

from decoylab import attacks, data, metrics, params, train
from decoylab.cache import Cache
from decoylab.defenses import fingerprints as nf
from decoylab.defenses.base import NotFittedError


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
    ({"n": 0}, "n=0"), ({"eps": 0.0}, "eps=0.0"), ({"eps": -0.1}, "eps=-0.1"), ({"tau": -1.0}, "tau=-1.0"),
    ({"dx_mode": "both"}, "dx_mode='both'"), ({"dy_sign": "x"}, "dy_sign='x'"), ({"weight": 0}, "weight=0")])
def test_bad_settings_fail_with_the_parameter_named(kwargs, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        nf.check_settings(**kwargs)


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
        params.validate({"N_FINGERPRINTS": 0, "FP_EPS": 0.0, "TAU": -0.5, "N_GRID": [], "SWEEP_ATTACKS": ["PGD"]})
    for name in ("N_FINGERPRINTS", "FP_EPS", "TAU", "N_GRID", "SWEEP_ATTACKS"):
        assert name in str(err.value)
    assert params.validate({"TAU": None, "N_FINGERPRINTS": 3, "FP_EPS": 0.1})["TAU"] is None


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
    return nfp, nfp.plain_twin().fit(tr), te


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
    loaded = nf.NeuralFingerprinting.load(path)
    assert torch.allclose(loaded.score(te.x[:20]), nfp.score(te.x[:20]))
    assert loaded.threshold == nfp.threshold and loaded.fingerprints.seeded
    assert [p.name for p in tmp_path.iterdir()] == ["nfp.pt"]  # no temporary file left behind


def test_auc_row_readings():
    clean = torch.tensor([0.1, 0.2, 0.3, 0.9])
    adv = torch.tensor([0.8, 0.7, 0.05, 0.95])
    correct = torch.tensor([True, True, True, False])
    success = torch.tensor([True, True, False, True])
    row = nf.auc_row(clean, adv, correct=correct, success=success, fpr=0.34)
    assert row["auc_all"] == pytest.approx(metrics.auc([0] * 4 + [1] * 4, torch.cat([clean, adv])))
    assert row["auc_correct"] == pytest.approx(6 / 9)  # 3 clean vs 3 adversarial, the failed one below all
    assert row["auc_successful"] == 1.0 and row["success"] == pytest.approx(2 / 3)
    assert math.isclose(row["tpr_at_0.34"], 2 / 3)


def test_sweep_point_is_cached(digits, tmp_path):
    tr, te = digits
    cache = Cache(tmp_path)
    kw = dict(n=2, eps=0.1, model_name="mlp", train_config=train.TrainConfig(epochs=2), n_pretest=30,
              attack_names=["FGM"], cache=cache)
    first = nf.sweep_point(tr, te, **kw)
    assert set(first) == {"accuracy", "FGM_success", "FGM_auc"}
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert nf.sweep_point(tr, te, **kw) == first
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == stamp
    with pytest.raises(ValueError, match="PGD"):
        nf.sweep_point(tr, te, **{**kw, "attack_names": ["PGD"]})


def test_adaptive_attacks_side_by_side_and_cached(trained, tmp_path):
    nfp, _, te = trained
    idx = train.correct_subset(nfp.model, te.x, te.y, 20, seed=0)
    x, y = te.x[idx], te.y[idx]
    cache = Cache(tmp_path)
    cw = {"max_iter": 30, "binary_search_steps": 2, "learning_rate": 0.05, "initial_const": 1.0}
    first = nf.run_adaptive_attacks(nfp, x, y, weight=10.0, cw_settings=cw, cache=cache)
    assert set(first) == {"cw", "paper_adaptive", "kit_adaptive"}
    assert float(nfp.score(first["kit_adaptive"].x_adv).mean()) < float(nfp.score(first["cw"].x_adv).mean())
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    again = nf.run_adaptive_attacks(nfp, x, y, weight=10.0, cw_settings=cw, cache=cache)
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == files
    assert torch.equal(again["kit_adaptive"].x_adv, first["kit_adaptive"].x_adv)
    with pytest.raises(ValueError, match="weight=0"):
        nf.run_adaptive_attacks(nfp, x, y, weight=0, cache=cache)


def test_attack_presets_per_dataset():
    assert nf.attack_preset("cifar10") == "nfp_cifar10" and nf.attack_preset("mnist5k") == "nfp_mnist"
    for name, _ in nf.PAPER_ATTACKS.values():
        presets = attacks.core.REGISTRY[name].presets
        assert {"nfp_mnist", "nfp_cifar10"} <= set(presets), name
