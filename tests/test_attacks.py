"""Property tests on a small trained model (cleverhans style) for the attacks implemented so far."""
import pytest
import torch

from decoylab import attacks, data, train
from decoylab.cache import Cache


@pytest.fixture(scope="module")
def setup():
    tr = data.load("digits", "train")
    te = data.load("digits", "test")
    model = train.train_or_load("mlp", tr.x, tr.y, 10, train.TrainConfig(epochs=20, lr=3e-3), seed=0,
                                cache=Cache(), log=None)
    idx = train.correct_subset(model, te.x, te.y, 100, seed=0)
    return model, te.x[idx], te.y[idx]


@pytest.mark.parametrize("name", attacks.names())
@pytest.mark.parametrize("backend", ["fast", "art"])
def test_stays_in_box_and_ball_and_succeeds(setup, name, backend):
    model, x, y = setup
    res = attacks.run(name, model, x, y, backend=backend, eps=0.3)
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert float(res.linf.max()) <= 0.3 + 1e-5
    assert res.success_rate > 0.5  # eps 0.3 on 8x8 digits must fool a small MLP on most inputs
    assert res.l2.shape == res.l0.shape == res.success.shape == (len(y),)


def test_targeted_reaches_target_and_seed_repeats(setup):
    model, x, y = setup
    a = attacks.run("pgd", model, x, y, targeted=True, target="random", seed=3, eps=0.3, steps=40)
    b = attacks.run("pgd", model, x, y, targeted=True, target="random", seed=3, eps=0.3, steps=40)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.target, b.target)
    assert (a.target != y).all()
    pred = train.predict(model, a.x_adv).argmax(1)
    assert torch.equal(pred == a.target, a.success) and a.success_rate > 0.5


def test_fast_and_art_agree(setup):
    model, x, y = setup
    fast = attacks.run("fgsm", model, x, y, backend="fast", eps=0.1)
    art = attacks.run("fgsm", model, x, y, backend="art", eps=0.1)
    assert abs(fast.success_rate - art.success_rate) <= 0.05
    assert float(fast.l2.mean()) == pytest.approx(float(art.l2.mean()), rel=0.2)


@pytest.mark.parametrize("kwargs,needle", [
    ({"name": "deepfoo"}, "attack='deepfoo'"), ({"eps": 0.0}, "eps=0.0"), ({"eps": 1.5}, "eps=1.5"),
    ({"backend": "jax"}, "backend='jax'"), ({"steps": 0}, "steps=0"), ({"radius": 3}, "radius"),
    ({"preset": "nope"}, "preset='nope'"), ({"target": "random"}, "targeted=False"),
])
def test_bad_arguments_fail_before_compute(setup, kwargs, needle):
    model, x, y = setup
    name = kwargs.pop("name", "pgd")
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        attacks.run(name, model, x, y, **kwargs)


def test_cached_attack_is_not_recomputed(setup, tmp_path):
    model, x, y = setup
    cache = Cache(tmp_path)
    first = attacks.run("pgd", model, x, y, eps=0.2, steps=5, cache=cache)
    again = attacks.run("pgd", model, x, y, eps=0.2, steps=5, cache=cache)
    assert (cache.misses, cache.hits) == (1, 1)
    assert torch.equal(first.x_adv, again.x_adv) and torch.equal(first.success, again.success)
    attacks.run("pgd", model, x, y, eps=0.25, steps=5, cache=cache)  # other settings: a new entry
    assert cache.misses == 2
