"""Injected Attractors (Zhang, Chang, Lee, "Detection and Recovery of Adversarial Attacks with Injected
Attractors"): the QIM decoder, F_d / F_r, M_(d,r), the control, the adaptive attacks, the eq. 1 construction."""
import math

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


@pytest.mark.parametrize("unit", ["pixel", "interval"])
def test_watermarked_image_decodes_exactly(unit):
    """§V-E: an image moved to message t's codewords inside [0, 255] has Q(x, m_t) = 0, so w_t is the largest."""
    decoder = at.QIMDecoder.generate(10, 64, codewords="in_range", distance_unit=unit, seed=1)
    x = torch.rand(5, 1, 8, 8)
    t = torch.tensor([0, 3, 5, 7, 9])
    marked = decoder.watermarked(x, t)
    assert marked.min() >= 0 and marked.max() <= 1
    q = decoder.distance(marked)
    assert torch.allclose(q[torch.arange(5), t], torch.zeros(5), atol=1e-5)
    assert torch.equal(decoder(marked).argmax(1), t)
    d0, d1 = at.QIMDecoder.generate(10, 64, seed=1).bit_distances(x)
    assert d0.min() >= 0 and d1.max() <= 1 + 1e-6 and torch.allclose(d0 + d1, torch.ones_like(d0), atol=1e-5)


def test_lattice_attractor_is_the_local_maximum_of_w_inside_the_box():
    """With the lattice, message t's attractor is the nearest codeword of each pixel's bit clipped to [0, 255]: every
    pixel sits on a codeword (q = 0) or on the box's edge with W's pull pointing out of the box, so no feasible step
    raises w_t — the attractor W's gradient leads to. On saturated images (MNIST's black and white pixels) many
    pixels are on the edge."""
    decoder = at.QIMDecoder.generate(10, 64, seed=1)
    x = (torch.rand(5, 1, 8, 8) > 0.7).float()  # black and white only
    t = torch.tensor([0, 3, 5, 7, 9])
    marked = decoder.watermarked(x, t).requires_grad_(True)
    w = decoder(marked)[torch.arange(5), t]
    (pull,) = torch.autograd.grad(w.sum(), marked)
    bits = decoder.messages[t]
    d0, d1 = decoder.bit_distances(marked.detach())
    on_codeword = torch.where(bits.bool(), d1, d0) < 1e-4
    pixels, pull = marked.detach().flatten(1), pull.flatten(1)
    pushes_out = ((pixels == 0) & (pull <= 0)) | ((pixels == 1) & (pull >= 0))
    assert (on_codeword | pushes_out).all() and (~on_codeword).any()
    assert (w >= decoder(x)[torch.arange(5), t]).all()


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
    ({"distance_unit": "levels"}, "distance_unit"),
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
    """Table II and Fig. 5: M classifies like C; the loss gradient through W is far larger than through C (with
    distances in units of δ, the 40x steeper fine intervals make it larger still)."""
    defense, x_cal, x, y = setup
    assert abs(train.accuracy(defense.attacked_model, x_cal, data.load("digits", "test").y[:150]) -
               train.accuracy(defense.classifier, x_cal, data.load("digits", "test").y[:150])) < 0.05
    split = xg.branch_gradients(defense.attacked_model, x, y)
    assert float(split["gradient_1"].median()) > 5 * float(split["gradient_2"].median())
    steeper = at.Attractors(distance_unit="interval", key_seed=0).protect(defense.classifier, tuple(x.shape[1:]), 10)
    assert float(xg.branch_gradients(steeper.attacked_model, x, y)["gradient_1"].median()) > \
        5 * float(split["gradient_1"].median())


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
    # A file saved before distances had a unit was measured in units of δ: it loads as such.
    older = torch.load(tmp_path / "plain.pt", weights_only=True)
    del older["distance_unit"]
    torch.save(older, tmp_path / "older.pt")
    assert at.Attractors.load(tmp_path / "older.pt", log=None).decoder.distance_unit == "interval"


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
    assert [a.knowledge[0] for a in levels] == ["0", "1", "2", "3", "4"]
    assert levels[0].model is defense.attacked_model
    assert isinstance(levels[1].model, attacks.BPDA) and levels[1].success_model is levels[1].model
    assert levels[2].model is levels[3].model is defense.classifier and levels[2].loss_for is None
    assert levels[3].loss_key_for(0.5)["term"] == "attractors_detector_score"
    penalty = levels[3].loss_for(2.0)(x[:4], y[:4])
    assert torch.allclose(penalty, 2.0 * defense.score(x[:4]), atol=1e-5)
    # level 4: the same term, only above the attacker's own threshold (at twice the FPR, so at most the deployed one)
    decision = levels[4]
    assert decision.model is defense.classifier and "detector's decision" in decision.knowledge
    aim = decision.loss_key_for(2.0)["hinged_at"]
    assert aim <= defense.threshold
    scores = defense.score(x)
    hinged = decision.loss_for(2.0)(x, y)
    assert torch.allclose(hinged, 2.0 * (scores - aim).clamp_min(0), atol=1e-4)
    assert (hinged[scores < aim] == 0).all() and (hinged[scores > aim + 1e-3] > 0).all()
    assert decision.loss_key_for(2.0)["term"] == "attractors_detector_score"


def test_evaluate_attacks_measures_m_and_the_control(setup):
    defense, x_cal, x, y = setup
    settings = xa.AttackSettings(dataset="digits", attacks=["fgsm"], fprs=[0.05], integrated=False)
    table = xa.evaluate_attacks(defense, FeatureSqueezingDetector(defense.classifier), x[:20], y[:20],
                                x_calibration=x_cal, x_clean=x_cal, settings=settings, log=None)
    row = table.iloc[0]
    assert row["attack"] == "FGSM" and row["settings"] == "Table VII" and "success_integrated" not in table
    assert 0 <= row["control_detection"] <= 1 and row["detection"] == row["tpr@0.05"]
    assert set(table.attrs["thresholds"]) == {"U", "L", "sigma0"}
    # the per-image outcomes the claims are judged on give back the row's rates
    o = {k: torch.tensor(v) for k, v in table.attrs["outcomes"]["FGSM"].items()}
    assert len(o["success_M"]) == 20 and float(o["success_M"].float().mean()) == pytest.approx(row["success_M"])
    assert o["score_M"].isnan().equal(~o["success_M"]) and o["score_control"].isnan().equal(~o["success_C"])
    flagged = o["score_M"].nan_to_num(float("-inf")) > table.attrs["cuts"]["0.05"]
    if o["success_M"].any():
        assert float(flagged.sum() / o["success_M"].sum()) == pytest.approx(row["detection"])
    assert not (o["recovered"] & ~flagged).any() and "success_integrated" not in o
    # the control's recoveries lie on its detections, and give back its row's rate
    control_flagged = o["score_control"].nan_to_num(float("-inf")) > table.attrs["cuts"]["0.05"]
    assert not (o["recovered_control"] & ~control_flagged).any()
    if control_flagged.any():
        assert float(o["recovered_control"].sum() / control_flagged.sum()) == pytest.approx(row["control_recovery"])
    shown = xa.table_one(table, "mnist").loc["FGSM"]
    assert shown["successful on M"] == int(o["success_M"].sum()) and shown["successful on C"] == int(o["success_C"].sum())


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


@pytest.mark.parametrize("codewords", ["lattice", "in_range"])
def test_w_pulls_toward_the_attractor_it_defines(setup, codewords):
    """Issue 30's mismatch: the attractor ``nearest_attractor`` computes and the way W's own gradient points must
    agree, on clean images (where W is small) and per interval size. With distances in units of δ the all-pixel
    cosine is far smaller than within each interval size (scales 40x apart); in pixel values it is not."""
    defense, x = setup[0], setup[1]
    cosines = {}
    for unit in ("pixel", "interval"):
        probe = at.Attractors(codewords=codewords, distance_unit=unit, key_seed=0).protect(
            defense.classifier, tuple(x.shape[1:]), 10)
        cosines[unit] = {k: float(v.mean()) for k, v in xg.cosines_by_interval(
            probe.attacked_model, probe.decoder, x[:100])["W alone (−∇Q)"].items()}
    per_interval = [v for k, v in cosines["interval"].items() if k != "all pixels"]
    assert len(per_interval) == 2 and min(per_interval) > 0.5
    assert cosines["interval"]["all pixels"] < 0.5 * min(per_interval)
    assert cosines["pixel"]["all pixels"] > 0.5


def test_recovery_follows_the_attractors_not_the_perturbation(setup):
    """§V-D with the default decoder (lattice, pixel distances): F_r = argmin W recovers the true class of FGSM
    examples crafted on M far more often than of examples crafted on C alone (the control); with distances in units
    of δ (the kit's first reading) it does not."""
    from decoylab.experiments import attractor_definitions as xd

    defense, x_calibration, x, y = setup
    table = xd.compare_definitions(defense.classifier, x, y, x_calibration, intervals=(3.0, 128.0), weights=(1.0, 3.0),
                                   strength=0.5, key_seed=0, eps_list=[0.3])
    row = table.set_index(["codewords", "distance unit"]).loc[("lattice", "pixel")]
    assert row["successful on M"] >= 10 and row["recovered, M"] > row["recovered, C (control)"] + 0.2
    old = table.set_index(["codewords", "distance unit"]).loc[("lattice", "interval")]
    assert old["recovered, M"] < row["recovered, M"] - 0.2
    assert (table["success on C"] == row["success on C"]).all()  # one control for the four readings


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


# ----- The paper's claims judged on a run (experiments.attractor_claims) -----

def test_paired_difference_is_newcombes_square_and_add_interval():
    """Fagerland, Lydersen, Laake, ch. 8 (Cavo et al. 2012): 59, 6, 16, 80 gives −0.0621 (−0.1186 to −0.0046)."""
    from decoylab.experiments import attractor_claims as xc

    first = torch.cat([torch.ones(65), torch.zeros(96)]).bool()
    second = torch.cat([torch.ones(59), torch.zeros(6), torch.ones(16), torch.zeros(80)]).bool()
    value, (low, high) = xc.paired_difference(first, second)
    assert (round(value, 4), round(low, 4), round(high, 4)) == (-0.0621, -0.1186, -0.0046)
    same = torch.rand(10_000) > 0.02
    value, (low, high) = xc.paired_difference(same, same)  # identical outcomes: a narrow interval around 0
    assert value == 0 and -0.001 < low < 0 < high < 0.001
    assert xc.absolute(-0.01, (-0.03, 0.002)) == (0.01, (0.0, 0.03))
    assert xc.absolute(-0.01, (-0.03, -0.005)) == (0.01, (0.005, 0.03))


class _Lookup(torch.nn.Module):
    """Predicts the class written in the input's first feature, except on ``wrong`` rows (class + 1)."""

    def __init__(self, wrong: int = 0):
        super().__init__()
        self.wrong, self.anchor = wrong, torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        label = x[:, 0].long()
        label = torch.where(torch.arange(len(x)) < self.wrong, (label + 1) % 10, label)
        return torch.nn.functional.one_hot(label, 10).float() + 0 * self.anchor


def _synthetic_run(*, n=1000, control_flagged=0.0, wrong_m=0, control_recovered=False):
    """A run of notebook 20 as ``table_claims`` sees it, with outcomes chosen per attack."""
    import types

    import pandas as pd

    nan = float("nan")

    def attack(on_c, on_m, *, integrated=0):
        hit_m = [i < on_m for i in range(n)]
        return {"success_C": tuple(i < on_c for i in range(n)), "success_M": tuple(hit_m),
                "score_M": tuple(5.0 if h else nan for h in hit_m),  # flagged at both FPRs
                "score_control": tuple((5.0 if i < control_flagged * on_c else 0.0) if i < on_c else nan
                                       for i in range(n)),
                "recovered": tuple(hit_m), "recovered_control": tuple(control_recovered and i < control_flagged * on_c for i in range(n)),
                "success_integrated": tuple(i < integrated for i in range(n))}

    outcomes = {"PGD": attack(n, 800), "FGSM": attack(n, 20), "CW2": attack(0, 0)}
    table = pd.DataFrame({"attack": list(outcomes), "settings": ["Table VII"] * 3})
    table.attrs.update(outcomes=outcomes, cuts={"0.05": 1.0, "0.005": 2.0}, fpr_measured={"0.05": 0.05, "0.005": 0.005})
    y = torch.arange(2000) % 10
    defense = types.SimpleNamespace(classifier=_Lookup(), attacked_model=_Lookup(wrong_m))
    run = {"DATASET": "mnist", "MODEL": "deepsec_mnist", "EPOCHS": 20, "N_TRAIN": None, "INTERVALS": [3.0, 128.0],
           "N_CALIBRATION": 1000, "SEED": 0}
    return defense, table, y[:, None].float(), y, run


@pytest.mark.parametrize("control_flagged,wrong_m,expected", [
    (0.0, 0, {"pgd.detection_vs_control": "reproduced", "accuracy_gap": "reproduced",
              "pgd.recovery_vs_control": "inconclusive"}),  # the control detects nothing: nothing to recover
    (1.0, 100, {"pgd.detection_vs_control": "not reproduced", "accuracy_gap": "not reproduced",
                "pgd.recovery_vs_control": "reproduced"}),  # the control is detected but never recovered
    (0.5, 0, {"pgd.recovery_vs_control": "not reproduced"})])  # the control is recovered as often as M's examples
def test_table_claims_rest_on_the_successful_examples_and_the_control(control_flagged, wrong_m, expected):
    """800 successful PGD examples, all flagged and recovered: detection, recovery, Table IV and the success drop
    are reproduced; against a control that flags everything too, the attractors cause nothing. FGSM's 20
    successes are too few; CW2 never succeeds even on C, so Table V's 0 % is no agreement but inconclusive."""
    from decoylab import claims, results, stats
    from decoylab.experiments import attractor_claims as xc

    defense, table, x, y, run = _synthetic_run(control_flagged=control_flagged, wrong_m=wrong_m,
                                               control_recovered=control_flagged == 0.5)
    comparison = xa.PaperComparison("mnist", "mnist", True, "same data set and settings")
    try:
        verdicts = {v.claim.id.split(".", 3)[-1]: v for v in xc.table_claims(defense, table, comparison, x_test=x,
                                                                              y_test=y, run=run)}
    finally:
        results.clear()
    outcome = {k: v.outcome for k, v in verdicts.items()}
    for claim, verdict in expected.items():
        assert outcome[claim] == verdict, (claim, verdicts[claim].reason)
    for claim in ("pgd.success_drop", "pgd.detection", "pgd.recovery", "pgd.low_fpr_tpr_change",
                  "pgd.integrated_success"):
        assert outcome[claim] == "reproduced", (claim, verdicts[claim].reason)
    pgd = verdicts["pgd.detection"].measurement
    assert (pgd.value, pgd.n, pgd.n_successful) == (1.0, 1000, 800)
    assert pgd.interval == pytest.approx(stats.wilson(800, 800))
    assert verdicts["pgd.success_drop"].measurement.n_successful == 1000  # rests on the successes on C
    assert verdicts["pgd.detection_vs_control"].measurement.value == pytest.approx(1.0 - control_flagged)
    fgsm = verdicts["fgsm.detection"]
    assert fgsm.outcome == "inconclusive" and "20 successful adversarial examples" in fgsm.reason
    for claim in ("cw2.integrated_success", "cw2.success_drop", "cw2.detection", "cw2.detection_vs_control"):
        assert outcome[claim] == "inconclusive" and "too weak" in verdicts[claim].measurement.note, claim
    assert verdicts["cw2.integrated_success"].measurement.value == 0.0  # would pass "at most 0.005" on its own
    assert outcome["bim.detection"] == "inconclusive" and "not among" in verdicts["bim.detection"].measurement.note
    declared = {c.id for c in claims.declared("attractors") if c.id.split(".")[1] in xc.TABLE_SOURCES}
    assert {v.claim.id for v in verdicts.values()} == declared  # a verdict for every declared claim


def test_figure_claims_judge_figs_5_to_7():
    from decoylab import results
    from decoylab.experiments import attractor_claims as xc

    g = torch.Generator().manual_seed(0)
    base = torch.rand(300, generator=g) + 0.1
    fig5 = {"signal_1": 0.1 * base, "signal_2": torch.ones(300), "gradient_1": 20 * base, "gradient_2": base}
    fig6 = {"signal_1": 0.01 * base, "signal_2": torch.ones(300), "gradient_1": torch.zeros(300), "gradient_2": base}
    aligned = {"Z1": 0.1 * torch.rand(300, generator=g), "Z2": 0.85 + 0.1 * torch.rand(300, generator=g)}
    unaligned = {"Z1": aligned["Z1"], "Z2": aligned["Z1"] - 0.05}
    run = {"DATASET": "digits", "MODEL": "mlp", "EPOCHS": 20, "SEED": 0, "TRAPDOOR_AMPLITUDE": 0.3}
    try:
        good = {v.claim.id.split(".")[-1]: v for v in xc.figure_claims(fig5=fig5, fig6=fig6, cosines=aligned, run=run)}
        bad = {v.claim.id.split(".")[-1]: v for v in xc.figure_claims(fig5=fig5, fig6=fig6, cosines=unaligned, run=run)}
        few = xc.figure_claims(fig5={k: v[:10] for k, v in fig5.items()}, fig6={k: v[:10] for k, v in fig6.items()},
                               cosines={k: v[:10] for k, v in aligned.items()}, run=run)
    finally:
        results.clear()
    assert {k: v.outcome for k, v in good.items()} == dict.fromkeys(
        ("output_C_over_W", "gradient_W_over_C", "gradient_C_over_trapdoor", "cosine_M", "cosine_M_over_C"), "reproduced")
    assert good["gradient_W_over_C"].measurement.value == pytest.approx(math.log10(20))
    assert "300 of the 600 norms exactly 0" in good["gradient_C_over_trapdoor"].measurement.note
    assert "data set digits" in good["cosine_M"].measurement.note
    assert bad["cosine_M"].outcome == bad["cosine_M_over_C"].outcome == "not reproduced"
    assert {v.outcome for v in few} == {"inconclusive"}  # 10 images: below the claims' 30


def test_f_d_reads_perturbations_that_know_nothing_of_the_attractors(setup):
    """Section 3b of notebook 20: F_d's flag rate on noise of size ε beside FGSM crafted on C and on M. Noise flags
    more as ε grows (whatever its direction), which is what the control has to rule out."""
    from decoylab.experiments import attractor_controls as xctl

    defense, x_calibration, x, y = setup
    defense.calibrate(x_calibration, 0.05)
    x, y = x[:40], y[:40]
    noisy = xctl.perturbed(x, 0.1, "random sign", seed=0)
    assert torch.allclose((noisy - x).abs().amax(), torch.tensor(0.1), atol=1e-6) and noisy.min() >= 0 and noisy.max() <= 1
    with pytest.raises(ValueError, match="kind='gaussian'"):
        xctl.perturbed(x, 0.1, "gaussian", seed=0)
    with pytest.raises(Exception, match="eps_list"):
        xctl.flag_rates_against_eps(defense, x, y, [1.5])
    table = xctl.flag_rates_against_eps(defense, x, y, [0.3, 0.004], seed=0)
    assert list(table.perturbation.unique()) == ["none (clean)", *xctl.PERTURBATIONS] and set(table.n) == {40}
    assert table.eps.iloc[0] == 0 and len(xctl.flag_rates_against_eps(defense, x, y, [0.3, 0.3])) == 1 + 4
    sign = table[table.perturbation == "random sign"].set_index("eps")["flagged"]
    assert sign[0.3] > sign[0.004]
    assert all(low <= f <= high for f, (low, high) in zip(table.flagged, table.interval))
    text = xctl.finding(table)
    assert "ε 0.3: FGSM crafted on M is flagged" in text and "n 40 each; FGSM succeeded on" in text
    assert "unperturbed:" in text and "conservative" in text
