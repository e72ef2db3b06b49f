"""Injected Attractors (Zhang, Chang, Lee, "Detection and Recovery of Adversarial Attacks with Injected
Attractors"): the QIM decoder, F_d / F_r, M_(d,r), the control, the adaptive attacks, the eq. 1 construction."""
import pytest
import torch

from decoylab import attacks, data, params, specs, train
from decoylab.cache import Cache
from decoylab.defenses import attractors as at
from decoylab.defenses.feature_squeezing import FeatureSqueezingDetector
from decoylab.experiments import attractor_gradients as xg
from decoylab.experiments import attractors as xa


@pytest.fixture(scope="module")
def setup():
    tr = data.load("digits", "train")
    te = data.load("digits", "test")
    defense = at.Attractors(model_name="mlp", train_config=train.TrainConfig(epochs=20, lr=3e-3), key_seed=0,
                            cache=Cache(), log=None).fit(tr)
    idx = train.correct_subset(defense.classifier, te.x[150:], te.y[150:], 60, seed=0)
    return defense, te.x[:150], te.x[150:][idx], te.y[150:][idx]


def test_watermarked_image_decodes_exactly():
    """§V-E: an image moved to message t's codewords has Q(x, m_t) = 0, so w_t is the largest correlation."""
    decoder = at.QIMDecoder.generate(10, 64, seed=1)
    x = torch.rand(5, 1, 8, 8)
    t = torch.tensor([0, 3, 5, 7, 9])
    marked = decoder.watermarked(x, t)
    assert marked.min() >= 0 and marked.max() <= 1
    q = decoder.distance(marked)
    assert torch.allclose(q[torch.arange(5), t], torch.zeros(5), atol=1e-5)
    assert torch.equal(decoder(marked).argmax(1), t)
    d0, d1 = decoder.bit_distances(x)
    assert d0.min() >= 0 and d1.max() <= 1 + 1e-6 and torch.allclose(d0 + d1, torch.ones_like(d0), atol=1e-5)


def test_nearest_attractor_is_the_closest_watermarked_image():
    decoder = at.QIMDecoder.generate(4, 64, seed=2)
    x = torch.rand(6, 1, 8, 8)
    best, label = xg.nearest_attractor(decoder, x)
    for t in range(4):
        other = decoder.watermarked(x, torch.full((6,), t))
        assert ((best - x).flatten(1).norm(dim=1) <= (other - x).flatten(1).norm(dim=1) + 1e-6).all()
    assert torch.equal(decoder(best).argmax(1), label)


@pytest.mark.parametrize("kwargs,needle", [
    ({"intervals": [0.0, 128.0]}, "intervals"), ({"intervals": [3.0, 200.0]}, "intervals"),
    ({"weights": [0.0, 0.0]}, "weights"), ({"weights": [1.0, -1.0]}, "weights"), ({"strength": 0}, "strength"),
    ({"a0": 2.0, "a1": 0.5}, "a0=2.0"), ({"a1": -0.1}, "a1=-0.1"), ({"codewords": "all"}, "codewords"),
    ({"weights": [1.0]}, "one weight per interval size"), ({"key_seed": -1}, "key_seed")])
def test_bad_settings_fail_before_anything_is_built(kwargs, needle):
    with pytest.raises(params.ParameterError, match=needle):
        at.Attractors(**kwargs)


def test_the_notebooks_check_one_weight_per_interval_size():
    for notebook in ("20_attractors", "21_kde_gradient_analysis"):
        assert specs.notebook_problems(notebook, {"INTERVALS": [3.0, 128.0], "INTERVAL_WEIGHTS": [1.0]}) == [
            "INTERVAL_WEIGHTS=[1.0] is not allowed; give one weight per interval size (2)"]
    assert tuple(xa.TABLE_I_ATTACKS) == specs.attractors.TABLE_ATTACKS


def test_bad_fpr_and_unknown_attack_fail_early(setup):
    defense, x_cal, x, y = setup
    with pytest.raises(ValueError, match="fpr"):
        defense.calibrate(x_cal, 1.0)
    with pytest.raises(params.ParameterError, match=r"attacks=\['nope'\]"):
        xa.AttackSettings(dataset="digits", attacks=["nope"])
    with pytest.raises(params.ParameterError, match="iteration_cap=0"):
        xa.AttackSettings(dataset="digits", iteration_cap=0)
    with pytest.raises(params.ParameterError, match="attack='nope'"):
        xa.attack_settings("nope", "digits")


def test_combined_model_keeps_accuracy_and_w_dominates_the_gradient(setup):
    """Table II and Fig. 5: M classifies like C; the loss gradient through W is far larger than through C."""
    defense, x_cal, x, y = setup
    assert abs(train.accuracy(defense.attacked_model, x_cal, data.load("digits", "test").y[:150]) -
               train.accuracy(defense.classifier, x_cal, data.load("digits", "test").y[:150])) < 0.05
    split = xg.branch_gradients(defense.attacked_model, x, y)
    assert float(split["gradient_1"].median()) > 10 * float(split["gradient_2"].median())


def test_calibration_sets_u_l_sigma_consistently(setup):
    defense, x_cal, x, y = setup
    defense.calibrate(x_cal, 0.05)
    assert float(defense.detect(x_cal).float().mean()) <= 0.05 + 1e-9
    th = defense.thresholds
    w = defense.correlations(x)
    by_conditions = (w.amax(1) > th["U"]) | (w.amin(1) < th["L"]) | (w.std(1) > th["sigma0"])
    assert torch.equal(by_conditions, defense.detect(x))
    assert torch.equal(defense.conditions(x).any(1), defense.detect(x))


def test_attacks_following_w_are_detected_more_than_the_control(setup):
    """The mechanism, against its control: PGD on M is flagged far more often than PGD on C alone."""
    defense, x_cal, x, y = setup
    defense.calibrate(x_cal, 0.05)
    on_m = attacks.run("pgd", defense.attacked_model, x, y, preset="deepsec_mnist")
    on_c = attacks.run("pgd", defense.classifier, x, y, preset="deepsec_mnist")
    assert on_m.success.sum() >= 5
    detected_m = defense.detect(on_m.x_adv[on_m.success]).float().mean()
    detected_c = defense.detect(on_c.x_adv[on_c.success]).float().mean()
    assert detected_m > 0.9 and detected_m > detected_c + 0.2


def test_integrated_model_answers_with_the_recovery_when_flagged(setup):
    defense, x_cal, x, y = setup
    defense.calibrate(x_cal, 0.05)
    adv = attacks.run("pgd", defense.attacked_model, x, y, preset="deepsec_mnist").x_adv
    merged = defense.integrated_model()
    flagged = defense.detect(adv)
    assert flagged.any()
    with torch.no_grad():
        answer = merged(adv).argmax(1)
        plain = defense.attacked_model(adv).argmax(1)
    assert torch.equal(answer[flagged], defense.recover(adv[flagged]))
    assert torch.equal(answer[~flagged], plain[~flagged])


def test_save_and_load_keep_secret_and_thresholds(setup, tmp_path):
    defense, x_cal, x, y = setup
    defense.calibrate(x_cal, 0.05)
    path = defense.save(tmp_path / "attractors.pt")
    stored = torch.load(path, weights_only=True)  # tensors and plain values only
    assert stored["input_shape"] == list(x.shape[1:]) and stored["num_classes"] == 10
    again = at.Attractors.load(path, log=None)
    assert torch.equal(again.decoder.messages, defense.decoder.messages)
    assert torch.equal(again.decoder.interval_of_pixel, defense.decoder.interval_of_pixel)
    assert torch.equal(again.score(x), defense.score(x))
    assert again.thresholds == defense.thresholds
    assert repr(again.attacked_model) == repr(defense.attacked_model)  # same attack-cache identity
    assert not list(tmp_path.glob("*.tmp*"))
    uncalibrated = at.Attractors(key_seed=3, model_name="mlp").protect(defense.classifier, tuple(x.shape[1:]), 10)
    again = at.Attractors.load(uncalibrated.save(tmp_path / "plain.pt"), log=None)
    assert again.threshold is None and again.reference is None
    assert torch.equal(again.correlations(x), uncalibrated.correlations(x))


def test_the_control_scores_with_f_d_but_is_attacked_on_c_alone(setup):
    defense, x_cal, x, y = setup
    defense.calibrate(x_cal, 0.05)
    control = defense.control()
    assert control.fit(None) is control
    assert control.attacked_model is defense.classifier
    assert torch.equal(control.score(x), defense.score(x))
    assert "C alone" in defense.control_description


def test_adaptive_attacks_rise_from_oblivious_to_a_detector_aware_term(setup):
    defense, x_cal, x, y = setup
    defense.calibrate(x_cal, 0.05)
    levels = defense.adaptive_attacks(x_shadow=x, y_shadow=y, attack=("pgd", {}))
    assert [a.knowledge[0] for a in levels] == ["0", "1", "2", "3"]
    assert levels[0].model is defense.attacked_model
    assert isinstance(levels[1].model, attacks.BPDA) and levels[1].success_model is levels[1].model
    assert levels[2].model is levels[3].model is defense.classifier and levels[2].loss_for is None
    assert levels[3].loss_key_for(0.5)["term"] == "attractors_detector_score"
    penalty = levels[3].loss_for(2.0)(x[:4], y[:4])
    assert torch.allclose(penalty, 2.0 * defense.score(x[:4]), atol=1e-5)


def test_evaluate_attacks_measures_m_and_the_control(setup):
    defense, x_cal, x, y = setup
    settings = xa.AttackSettings(dataset="digits", attacks=["fgsm"], fprs=[0.05], integrated=False)
    table = xa.evaluate_attacks(defense, FeatureSqueezingDetector(defense.classifier), x[:20], y[:20],
                                x_calibration=x_cal, x_clean=x_cal, settings=settings, log=None)
    row = table.iloc[0]
    assert row["attack"] == "FGSM" and row["settings"] == "Table VII" and "success_integrated" not in table
    assert 0 <= row["control_detection"] <= 1 and row["detection"] == row["tpr@0.05"]
    assert set(table.attrs["thresholds"]) == {"U", "L", "sigma0"}


def test_trapdoor_construction_meets_its_goals_but_does_not_steer_gradients(setup):
    """§IV-C: clean inputs classified like C, trapdoored ones as t; the gradient flows through C."""
    defense, x_cal, x, y = setup
    trap = xg.TrapdoorConstruction(defense.classifier, 10, tuple(x.shape[1:]), amplitude=0.6)  # 64 pixels: a strong trapdoor
    trap.calibrate(x_cal)
    targets = (y + 1) % 10
    # 8x8 digits have 64 pixels, so clean correlations are noisy and D fires on a few clean images.
    assert train.accuracy(trap, x, y) >= train.accuracy(defense.classifier, x, y) - 0.2
    assert train.accuracy(trap, trap.trapdoored(x, targets), targets) > 0.9
    split = xg.branch_gradients(trap, x, y)
    assert float(split["gradient_2"].median()) > 10 * float(split["gradient_1"].median())


def test_feature_squeezing_scores_and_checks(setup):
    defense, x_cal, x, y = setup
    with pytest.raises(ValueError, match="bit_depth"):
        FeatureSqueezingDetector(defense.classifier, bit_depth=0)
    fs = FeatureSqueezingDetector(defense.classifier)
    scores = fs.score(x)
    assert scores.shape == (len(x),) and scores.min() >= 0 and scores.max() <= 2 + 1e-6
    binary = (x > 0.5).float()  # already squeezed by 1-bit depth: only the median filter can move it
    assert float(fs.score(binary).mean()) <= float(scores.mean()) + 1.0


def test_attack_settings_follow_tables_vii_and_viii():
    engine, kwargs, source = xa.attack_settings("cw2", "mnist")
    assert (engine, source) == ("cw2", "Table VII") and kwargs["max_iter"] == 10000 and kwargs["targeted"]
    engine, kwargs, source = xa.attack_settings("bpda", "mnist", iteration_cap=10)
    assert (engine, source, kwargs["steps"]) == ("pgd", "capped", 10)
    assert xa.attack_settings("spsa", "cifar10")[2] == "Table VIII"
    assert xa.attack_settings("umifgsm", "cifar10")[1]["eps"] == 0.1
    assert xa.AttackSettings(dataset="mnist", iteration_cap=10).for_attack("bpda") == \
        xa.attack_settings("bpda", "mnist", iteration_cap=10)


def test_w_pulls_toward_the_attractor_within_each_interval_size(setup):
    """Fig. 7a taken apart: with the in-range codewords W's own gradient points to the exact nearest
    attractor within each interval size, yet the all-pixel cosine is far smaller (scales 40x apart)."""
    defense, x = setup[0], setup[1]
    probe = at.Attractors(codewords="in_range", key_seed=0).protect(defense.classifier, tuple(x.shape[1:]), 10)
    cos = xg.cosines_by_interval(probe.attacked_model, probe.decoder, x[:100])["W alone (−∇Q)"]
    per_interval = [float(v.mean()) for k, v in cos.items() if k != "all pixels"]
    assert len(per_interval) == 2 and min(per_interval) > 0.6
    assert float(cos["all pixels"].mean()) < 0.5 * min(per_interval)


def test_attack_cache_tells_apart_models_that_differ_only_in_settings(setup, tmp_path):
    """A2, a calibrated trapdoor threshold and a BPDA step are not weights; the attack cache keys on
    repr(model), so each must show there, or a cached attack on one model would be served for another."""
    defense, _, x, y = setup
    cache = Cache(tmp_path)
    weak = at.Attractors(strength=0.05, key_seed=0).protect(defense.classifier, tuple(x.shape[1:]), 10)
    strong = at.Attractors(strength=2.0, key_seed=0).protect(defense.classifier, tuple(x.shape[1:]), 10)
    assert torch.equal(weak.decoder.messages, strong.decoder.messages)
    assert repr(weak.attacked_model) != repr(strong.attacked_model)
    first = attacks.run("fgsm", weak.attacked_model, x[:8], y[:8], eps=0.1, cache=cache)
    second = attacks.run("fgsm", strong.attacked_model, x[:8], y[:8], eps=0.1, cache=cache)
    assert len(list(tmp_path.rglob("*.pt"))) == 2, "the second attack was served from the first one's entry"
    assert not torch.equal(first.x_adv, second.x_adv)
    trapdoor = xg.TrapdoorConstruction(defense.classifier, 10, tuple(x.shape[1:]), seed=0)
    before = repr(trapdoor)
    trapdoor.calibrate(x, seed=0)
    assert repr(trapdoor) != before
    assert repr(attacks.BPDA(defense.classifier, at.quantise_8bit)) != repr(attacks.BPDA(defense.classifier, torch.round))
