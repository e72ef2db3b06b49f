import pytest
import torch

from decoylab import compare, data, train
from decoylab.cache import Cache


@pytest.fixture(scope="module")
def digits():
    train_set = data.load("digits", "train", seed=0)
    model = train.train_or_load("mlp", train_set.x, train_set.y, 10, train.TrainConfig(epochs=3, lr=3e-3), seed=0,
                                log=None)
    return train_set, model


@pytest.mark.parametrize("kwargs, needle", [
    ({"defenses": ["undefended", "magnet"]}, "unknown defense(s) ['magnet']"),
    ({"defenses": ["honeymodels"]}, "must include 'undefended'"),
    ({"attacks_": ["pgd", "hopskipjump"]}, "unknown attack(s) ['hopskipjump']"),
    ({"fprs": [0.05, 1.0]}, "FPRS: 1.0 is not allowed"),
    ({"fprs": []}, "FPRS=[] is not allowed"),
])
def test_bad_comparison_settings_are_named(kwargs, needle):
    with pytest.raises(ValueError) as err:
        compare.check_comparison(**kwargs)
    assert needle in str(err.value)


def test_attack_specs_scale_linf_budgets_for_colour_images():
    grey, colour = compare.attack_specs(["pgd", "cw2"], 1, cw_max_iter=7), compare.attack_specs(["pgd"], 3)
    assert grey["pgd"][1]["eps"] == 0.3 and grey["cw2"][1]["max_iter"] == 7
    assert colour["pgd"][1]["eps"] == pytest.approx(8 / 255)


def test_frozen_features_are_never_moved_by_pgd(digits):
    train_set, model = digits
    x, y = train_set.x[:32], train_set.y[:32]
    frozen = torch.arange(0, x[0].numel(), 2)  # every other pixel
    wrapped = compare.FrozenFeatures(model, frozen)
    assert torch.equal(wrapped(x), model(x))  # the forward pass is unchanged
    from decoylab import attacks

    r = attacks.run("pgd", wrapped, x, y, eps=0.3, step_size=0.05, steps=10, random_start=False)
    delta = (r.x_adv - x).flatten(1)
    assert delta[:, frozen].abs().max() == 0
    assert delta.abs().max() > 0.1 and r.success_rate > 0.2


def test_key_estimate_has_the_asked_size(digits):
    train_set, model = digits
    estimate = compare.estimate_watermark_key(model, train_set.x[:40], train_set.y[:40], 6,
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
    again = compare.build_contenders(["undefended"], train_set, model_name="mlp", train_config=cfg, seed=0,
                                     cache=cache, settings=settings, log=None)
    # the cached network reports the time it took to train, not the time it took to load
    assert again["undefended"].train_seconds == pytest.approx(first["undefended"].train_seconds, abs=0.05)
    assert cache.hits >= 1
