import pytest
import torch

from decoylab import data, params, train
from decoylab.cache import Cache
from decoylab.defenses import honeymodels as hm
from decoylab.experiments import compare, detection
from decoylab.specs import compare as compare_specs


@pytest.fixture(scope="module")
def digits():
    train_set = data.load("digits", "train", seed=0)
    model = train.train_or_load("mlp", train_set.x, train_set.y, 10, train.TrainConfig(epochs=3, lr=3e-3), seed=0,
                                log=None)
    return train_set, model


@pytest.mark.parametrize("overrides, needle", [
    ({"defenses": ["undefended", "magnet"]}, "defenses=['undefended', 'magnet'] is not allowed"),
    ({"defenses": ["honeymodels"]}, "including 'undefended'"),
    ({"attacks_": ["pgd", "hopskipjump"]}, "attacks=['pgd', 'hopskipjump'] is not allowed"),
    ({"fpr": 1.0}, "fpr=1.0 is not allowed"),
    ({"n_attack": 5}, "n_attack=5 is not allowed"),
])
def test_bad_comparison_settings_are_named_before_reading_data(overrides, needle, tmp_path):
    with pytest.raises(params.ParameterError) as err:
        _prepare_digits(tmp_path, dataset="no_such_dataset", **overrides)  # named before the dataset is looked up
    assert needle in str(err.value)
    assert not any(tmp_path.iterdir())


def test_the_comparison_knows_what_its_specs_allow():
    assert tuple(compare.COMPARISON_ATTACKS) == compare_specs.ATTACKS
    assert {compare.UNDEFENDED, *compare.BUILDERS} == set(compare_specs.DEFENSES)


def test_adaptive_attack_settings_follow_the_comparison_and_name_bad_ones():
    specs = compare.attack_specs(["pgd", "cw2"], 1)
    assert detection.adaptive_attack(specs, "pgd", eps=0.1) == ("pgd", {**specs["pgd"][1], "eps": 0.1,
                                                                        "random_start": False})
    with pytest.raises(params.ParameterError, match="ADAPTIVE_EPS=0.1 is not allowed with ADAPTIVE_ATTACK='cw2'"):
        detection.adaptive_attack(specs, "cw2", eps=0.1)
    with pytest.raises(params.ParameterError, match="ADAPTIVE_ATTACK='fgsm' is not allowed"):
        detection.adaptive_attack(specs, "fgsm")


def test_attack_specs_scale_linf_budgets_for_colour_images():
    grey, colour = compare.attack_specs(["pgd", "cw2"], 1, cw_max_iter=7), compare.attack_specs(["pgd"], 3)
    assert grey["pgd"][1]["eps"] == 0.3 and grey["cw2"][1]["max_iter"] == 7
    assert colour["pgd"][1]["eps"] == pytest.approx(8 / 255)


@pytest.mark.parametrize("channels, steps", [(1, 10), (1, 20), (1, 40), (1, 80), (3, 5), (3, 20), (3, 40)])
def test_a_shortened_pgd_travels_as_far_as_the_full_one(channels, steps):
    full = compare.attack_specs(["pgd"], channels)["pgd"][1]
    capped = compare.attack_specs(["pgd"], channels, pgd_steps=steps)["pgd"][1]
    assert capped["steps"] == steps
    # never a shorter path than the full attack's, and never a smaller step than the full attack's
    assert capped["steps"] * capped["step_size"] >= full["steps"] * full["step_size"] - 1e-12
    assert capped["step_size"] >= full["step_size"]
    # 20 steps must be able to reach ε from the clean image (they could not at step 0.01 on MNIST)
    assert capped["steps"] * capped["step_size"] >= capped["eps"]


def test_frozen_features_are_never_moved_by_pgd(digits):
    train_set, model = digits
    x, y = train_set.x[:32], train_set.y[:32]
    frozen = torch.arange(0, x[0].numel(), 2)  # every other pixel
    wrapped = hm.FrozenFeatures(model, frozen)
    assert torch.equal(wrapped(x), model(x))  # the forward pass is unchanged
    from decoylab import attacks

    r = attacks.run("pgd", wrapped, x, y, eps=0.3, step_size=0.05, steps=10, random_start=False)
    delta = (r.x_adv - x).flatten(1)
    assert delta[:, frozen].abs().max() == 0
    assert delta.abs().max() > 0.1 and r.success_rate > 0.2


def test_key_estimate_has_the_asked_size(digits):
    train_set, model = digits
    estimate = hm.estimate_watermark_key(model, train_set.x[:40], train_set.y[:40], 6,
                                         ("pgd", {"eps": 0.3, "steps": 5, "step_size": 0.1}))
    assert len(estimate) == 6 and len(set(estimate.tolist())) == 6
    assert torch.equal(estimate, estimate.sort().values)


def test_undefended_and_feature_squeezing_share_one_network_and_report_build_time(digits, tmp_path):
    train_set, _ = digits
    cache = Cache(tmp_path)
    settings = {"watermark_size": 0.1, "poison_percent": 30.0, "fp_n": 2, "fp_eps": 0.1, "attractor_strength": 0.5,
                "luring_component": "luring_p_mnist", "luring_component_epochs": 1, "luring_component_init": "random"}
    cfg = train.TrainConfig(epochs=1)
    first = compare.build_contenders(["undefended", "feature_squeezing", "attractors"], train_set, model_name="mlp",
                                     train_config=cfg, seed=0, cache=cache, settings=settings, log=None)
    assert first["feature_squeezing"].classifier is first["undefended"].classifier
    assert first["attractors"].defense.classifier is first["undefended"].classifier
    assert first["attractors"].control.attacked_model is first["undefended"].classifier  # F_d, crafted on C alone
    assert first["feature_squeezing"].control is None and first["feature_squeezing"].control_description.startswith("none")
    again = compare.build_contenders(["undefended"], train_set, model_name="mlp", train_config=cfg, seed=0,
                                     cache=cache, settings=settings, log=None)
    # the cached network reports the time it took to train, not the time it took to load
    assert again["undefended"].train_seconds == pytest.approx(first["undefended"].train_seconds, abs=0.05)
    assert cache.hits >= 1


SMALL_SETTINGS = {"watermark_size": 0.1, "poison_percent": 30.0, "fp_n": 2, "fp_eps": 0.1, "attractor_strength": 0.5,
                  "luring_component": "luring_p_mnist", "luring_component_epochs": 1, "luring_component_init": "auto"}


def _prepare_digits(tmp_path, dataset="digits", **overrides):
    kwargs = dict(defenses=["undefended", "feature_squeezing", "attractors"], attacks_=["pgd"], model_name="mlp",
                  train_config=train.TrainConfig(epochs=2, lr=3e-3), settings=SMALL_SETTINGS, n_train=None,
                  n_calibration=60, n_detector_fit=20, n_attack=20, fpr=0.05, pgd_steps=5, seed=0,
                  cache=Cache(tmp_path), log=None)
    return compare.prepare_comparison(dataset, **{**kwargs, **overrides})


def test_prepare_comparison_gives_disjoint_splits_and_images_every_contender_gets_right(tmp_path):
    setup = _prepare_digits(tmp_path)
    assert (len(setup.x_cal), len(setup.x_fit), len(setup.y_att)) == (60, 20, 20)
    assert setup.pool_size == len(setup.test_set.y) - 80 and setup.pool_correct >= len(setup.y_att)
    flat = lambda x: {tuple(row.tolist()) for row in x.flatten(1)}  # noqa: E731
    assert not flat(setup.x_att) & flat(setup.x_cal) and not flat(setup.x_att) & flat(setup.x_fit)
    for c in setup.contenders.values():
        assert torch.equal(train.predict(c.classifier, setup.x_att).argmax(1), setup.y_att)
    assert setup.contenders["attractors"].defense.reference is not None  # calibrated on the calibration split


def test_prepare_comparison_names_bad_settings_before_reading_data(tmp_path):
    with pytest.raises(ValueError, match="dataset='imagenet' is not a known dataset"):
        compare.prepare_comparison(
            "imagenet", defenses=["undefended"], attacks_=["pgd"], model_name="mlp", train_config=train.TrainConfig(),
            settings=SMALL_SETTINGS, n_train=None, n_calibration=10, n_detector_fit=10, n_attack=10, fpr=0.05)
    with pytest.raises(ValueError, match="the test split has only"):
        _prepare_digits(tmp_path, n_calibration=400)
    assert not any(tmp_path.iterdir())  # nothing trained or written


def test_luring_component_follows_the_images():
    assert compare.component_for((1, 28, 28), "luring_p_mnist", "fashion_mnist") == "luring_p_mnist"
    assert compare.component_for((3, 32, 32), "luring_p_mnist", "cifar10") == "luring_p_cifar10"
    assert compare.component_for((1, 8, 8), "luring_p_mnist", "digits") == "luring_p_svhn"  # pads, then pools back
    with pytest.raises(ValueError, match=r"no Luring component takes odd images shaped \(1, 5, 7\)"):
        compare.component_for((1, 5, 7), "luring_p_mnist", "odd")


def test_comparison_panel_compares_a_new_dataset_on_demand(tmp_path):
    from decoylab import widgets

    setup = _prepare_digits(tmp_path)
    asked = []

    def prepare(name):
        asked.append(name)
        if name == "svhn":
            raise data.DatasetUnavailableError("svhn: no internet")
        return setup

    setups = {"digits": setup}
    panel = widgets.comparison_panel(setups, prepare, datasets=["mnist5k", "svhn"], seed=0)
    (dataset, compute), (attack, fpr) = panel.children[0].children, panel.children[1].children
    assert list(dataset.options) == ["digits", "mnist5k", "svhn"] and compute.disabled and attack.value == "pgd"
    dataset.value = "svhn"
    assert not compute.disabled
    compute.click()  # the download fails: said in the panel, the button stays usable, nothing stored
    assert asked == ["svhn"] and "svhn" not in setups and not compute.disabled
    dataset.value = "mnist5k"
    compute.click()
    assert asked == ["svhn", "mnist5k"] and setups["mnist5k"] is setup and compute.disabled
    fpr.value = 0.01  # recomputed from the cached adversarial set, no error


def test_adaptive_attacks_with_a_defense_aware_term_are_cached_under_what_the_term_depends_on(tmp_path):
    import pandas as pd

    setup = _prepare_digits(tmp_path)
    cache, attractors = Cache(tmp_path / "adaptive"), setup.contenders["attractors"]
    attack = ("pgd", {"eps": 0.3, "step_size": 0.05, "steps": 3})
    kwargs = dict(attack=attack, x_shadow=setup.x_fit, y_shadow=setup.y_fit, seed=0, cache=cache)
    first = detection.security_curve(attractors, setup.x_att, setup.y_att, setup.x_cal, 0.05, weights=[0.5], **kwargs)
    built = cache.misses
    assert built == 5  # one attack per level, levels 3 and 4 with their defense-aware terms included
    again = detection.security_curve(attractors, setup.x_att, setup.y_att, setup.x_cal, 0.05, weights=[0.5], **kwargs)
    assert cache.misses == built  # nothing re-attacked ...
    assert pd.DataFrame(again).equals(pd.DataFrame(first))  # ... and the same curve (NaN where nothing succeeded)
    detection.security_curve(attractors, setup.x_att, setup.y_att, setup.x_cal, 0.05, weights=[2.0], **kwargs)
    assert cache.misses == built + 2  # another weight is another term: only the two attacks with a term run


def test_each_level_carries_the_paired_control_of_its_detection(tmp_path):
    """"originals flagged": of the images a level's attack succeeded on, the share whose clean originals the detector
    flags at the same threshold: what its detection rate is judged against (adaptive_verdicts' "broken")."""
    from decoylab import metrics

    setup = _prepare_digits(tmp_path)
    cache, attractors = Cache(tmp_path / "adaptive"), setup.contenders["attractors"]
    attack = ("pgd", {"eps": 0.3, "step_size": 0.05, "steps": 3})
    shadow = dict(x_shadow=setup.x_fit, y_shadow=setup.y_fit)
    rows = detection.security_curve(attractors, setup.x_att, setup.y_att, setup.x_cal, 0.05, weights=[0.5, 4.0],
                                    attack=attack, seed=0, cache=cache, **shadow)
    defense = attractors.defense
    originals = defense.score(setup.x_att) > metrics.threshold_at_fpr(defense.score(setup.x_cal), 0.05)
    steps = defense.adaptive_attacks(attack=attack, seed=0, cache=cache, **shadow)
    partial = 0
    for row, step in zip(rows, steps):  # each row's weight: the one the attacker kept, its successes paired
        _, success, _ = detection.adaptive_run(attractors, step, setup.x_att, setup.y_att, attack, row["weight"],
                                               seed=0, cache=cache)
        if success.any():
            assert row["originals flagged"] == pytest.approx(float(originals[success].float().mean()))
            partial += bool(0 < int(success.sum()) < len(success))
        else:
            assert row["originals flagged"] != row["originals flagged"]  # NaN: no successful example to pair
    assert partial >= 1  # some level succeeded on part of the images: the pairing, not all originals, is checked


def test_a_targeted_level_with_an_untargeted_only_attack_is_reported_as_not_run(tmp_path, monkeypatch):
    """ADAPTIVE_ATTACK: deepfool cannot be targeted (Luring's level 3, NeuralFP's level 4): the level is a row that says
    so, not an error, and the verdict and the records go on with the levels that ran."""
    from decoylab import results
    from decoylab.defenses.base import AdaptiveAttack
    from decoylab.experiments import adaptive_verdicts as av

    monkeypatch.delenv("DECOYLAB_RUN_DIR", raising=False)
    setup = _prepare_digits(tmp_path)
    attractors = setup.contenders["attractors"]
    steps = [attractors.defense.oblivious_attack(),
             AdaptiveAttack("1 · targeted", attractors.classifier, targets_for=lambda x, y: (y + 1) % 10)]
    rows = detection._curve(attractors, steps, setup.x_att, setup.y_att, setup.x_cal, 0.05,
                            attack=("deepfool", {"max_iter": 5}), weights=[1.0], seed=0, cache=Cache(tmp_path / "a"))
    assert rows[1]["note"].startswith("not run: deepfool cannot be targeted") and rows[1]["n successful"] == 0
    assert rows[0]["n successful"] > 0
    import pandas as pd

    security = pd.DataFrame(rows)
    [verdict] = av.judge(security, av.Rate(50, 50), fpr=0.05)
    assert verdict.level == 0
    results.clear()
    detection.record_security(security, "deepfool")
    assert "adaptive.attractors.level1.overall" in results.recorded()
    results.clear()


def test_an_extra_loss_key_needs_its_extra_loss(digits):
    from decoylab import attacks

    train_set, model = digits
    with pytest.raises(ValueError, match="extra_loss_key is not allowed here"):
        attacks.run("pgd", model, train_set.x[:4], train_set.y[:4], extra_loss_key={"term": "x"})


def test_security_table_and_records_cover_each_defense_with_something_to_learn(tmp_path, monkeypatch):
    from decoylab import results

    monkeypatch.delenv("DECOYLAB_RUN_DIR", raising=False)
    setup = _prepare_digits(tmp_path)
    attack = detection.adaptive_attack(setup.specs, "pgd")
    security = detection.security_table(setup, attack, [0.5], 0.05, seed=0, cache=Cache(tmp_path))
    assert list(security["defense"].unique()) == ["attractors"]  # feature squeezing has no secret: no curve
    assert list(security["level"]) == [0, 1, 2, 3, 4]
    comparison, curves = detection.comparison_table(setup, [0.05, 0.01], seed=0, cache=Cache(tmp_path))
    results.clear()
    compare.record_comparison(setup, compare.overheads(setup, n_timing=50), comparison, [0.05, 0.01])
    detection.record_security(security, "pgd")
    compare.record_overlay(setup, comparison)
    names = set(results.recorded())
    results.clear()
    assert {"undefended.clean_accuracy", "attractors.accuracy_cost", "undefended.pgd.overall",
            "feature_squeezing.pgd.control_auc", "attractors.pgd.tpr@0.05", "adaptive.attractors.level3.detection",
            "adaptive.attractors.level4.overall",
            "overlay_attractors_control_pgd_auc", "overlay_feature_squeezing_defense_pgd_auc"} <= names
    assert "undefended.pgd.auc" not in names and "overlay_feature_squeezing_control_pgd_auc" not in names


def test_retrain_button_says_when_the_result_is_stale_and_is_disabled_while_training():
    """Notebooks 10 and 40's panels: moving N after training marks the button (orange, "N changed"); while
    retraining it is disabled; afterwards it is back to "retrain (cached)"."""
    import ipywidgets as w

    from decoylab.widgets import _Retrain

    n, eps, button = w.IntSlider(value=3), w.FloatSlider(value=0.1), w.Button(description="retrain (cached)")
    control = _Retrain(button, {"N": n, "ε": eps})
    seen = []
    control.run(lambda: seen.append(button.disabled))
    assert seen == [True] and not button.disabled and button.button_style == "primary"
    n.value = 5
    assert button.button_style == "warning" and button.description == "retrain (N changed)"
    n.value = 3
    assert button.button_style == "primary"
    n.value, eps.value = 5, 0.2
    assert button.description == "retrain (N, ε changed)"
    control.run(lambda: None)
    assert button.description == "retrain (cached)" and button.button_style == "primary"


def test_a_honeymodel_detector_without_successful_examples_is_a_clear_error():
    """Found on the paper preset's MNIST stand-ins (notebook 41's overlay): when the attacks succeed on too few
    detector-fit images, the HoneyModel's detector is not trained and calibration failed later with "call
    fit_detector before score"; the error now says what happened and what to change."""
    from types import SimpleNamespace

    from decoylab.experiments.compare import _fit_honeymodel_detector

    unfitted = SimpleNamespace(detector=None, fit_detector=lambda *a, **k: None)
    x = torch.zeros(40, 1, 8, 8)
    adversarial = {"pgd": (x, torch.zeros(40, dtype=torch.bool)), "cw2": (x, torch.tensor([True] + [False] * 39))}
    with pytest.raises(RuntimeError, match=r"40 detector-fit images the attacks succeeded on pgd 0, cw2 1.*N_DETECTOR_FIT"):
        _fit_honeymodel_detector(unfitted, x, adversarial, seed=0)
