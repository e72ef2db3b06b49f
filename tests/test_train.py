import pytest
import torch

from decoylab import data, train
from decoylab.cache import Cache


@pytest.fixture(scope="module")
def small():
    return data.load("mnist5k", "train", n=400, seed=0), data.load("mnist5k", "test", n=200, seed=0)


def test_same_seed_same_weights_and_metrics_on_cpu(small):
    tr, te = small
    cfg = train.TrainConfig(epochs=1, batch_size=32, lr=1e-3)
    runs = []
    for _ in range(2):
        from decoylab import models
        m = models.build("honey_small_conv", tr.info.shape, 10, seed=7)
        hist = train.fit(m, tr.x, tr.y, cfg, seed=7, device="cpu")
        runs.append((m, hist, train.accuracy(m, te.x, te.y)))
    (m1, h1, a1), (m2, h2, a2) = runs
    assert h1.epoch_loss == h2.epoch_loss and a1 == a2
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))


def test_a_trained_net_comes_back_in_the_default_memory_layout(small):
    from decoylab import models

    tr, _ = small
    m = models.build("nfp_mnist", tr.info.shape, 10, seed=0)
    train.fit(m, tr.x[:64], tr.y[:64], train.TrainConfig(epochs=1, batch_size=32), device="cpu", log=None)
    # fit trains in channels-last on the CPU; a net loaded from the cache has the default layout
    assert all(p.is_contiguous() for p in m.parameters())


def test_training_learns(small):
    tr, te = small
    m = train.train_or_load("mlp", tr.x, tr.y, 10, train.TrainConfig(epochs=5, batch_size=32, lr=3e-3),
                            seed=0, cache=Cache(), log=None)
    assert train.accuracy(m, te.x, te.y) > 0.7  # chance is 0.1


def test_train_or_load_hits_the_cache(small, tmp_path):
    tr, _ = small
    cache = Cache(tmp_path)
    cfg = train.TrainConfig(epochs=1)
    lines = []
    m1 = train.train_or_load("mlp", tr.x, tr.y, 10, cfg, seed=1, cache=cache, log=lines.append)
    first = list(lines)  # with DECOYLAB_BATCH set, epoch lines come first
    m2 = train.train_or_load("mlp", tr.x, tr.y, 10, cfg, seed=1, cache=cache, log=lines.append)
    assert any("trained" in line for line in first) and lines[len(first):] == [lines[-1]]
    assert "loaded from cache" in lines[-1]
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))
    # different data (e.g. poisoned) must not reuse the entry
    train.train_or_load("mlp", tr.x.flip(0), tr.y.flip(0), 10, cfg, seed=1, cache=cache, log=lines.append)
    assert "trained" in lines[-1]


def test_custom_loss_needs_a_key(small):
    tr, _ = small
    with pytest.raises(ValueError, match="loss_key"):
        train.train_or_load("mlp", tr.x, tr.y, 10, loss_fn=lambda m, x, y: m(x).sum(), cache=Cache())


@pytest.mark.parametrize("kwargs,needle", [({"epochs": 0}, "epochs=0"), ({"lr": -1.0}, "lr=-1.0"),
                                           ({"optimizer": "rmsprop"}, "optimizer='rmsprop'"),
                                           ({"batch_size": 0}, "batch_size=0"), ({"lr": float("inf")}, "lr=inf"),
                                           ({"steps": 0}, "steps=0"),
                                           ({"milestones": [5, 2], "milestone_lrs": [1e-4, 1e-5]}, "increasing"),
                                           ({"milestones": [2], "milestone_lrs": [1e-4, 1e-5]}, "one lr per milestone"),
                                           ({"weight_decay": float("inf")}, "weight_decay=inf"),
                                           ({"weight_decay": float("nan")}, "weight_decay=nan"),
                                           ({"gamma": float("nan")}, "gamma=nan"), ({"gamma": 0.0}, "gamma=0.0"),
                                           ({"momentum": float("nan")}, "momentum=nan")])
def test_bad_training_settings(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        train.TrainConfig(**kwargs)


def test_correct_subset_is_stratified(small):
    tr, te = small
    m = train.train_or_load("mlp", tr.x, tr.y, 10, train.TrainConfig(epochs=3, lr=3e-3), seed=0, cache=Cache(), log=None)
    idx = train.correct_subset(m, te.x, te.y, 50, seed=0)
    assert len(idx) == 50
    assert (train.predict(m, te.x[idx]).argmax(1) == te.y[idx]).all()
    assert len(te.y[idx].unique()) >= 8


def test_a_step_budget_stops_after_that_many_batches_with_the_milestone_lrs(small):
    """The Luring code trains P for a number of optimiser steps, with learning rates given per milestone."""
    from decoylab import models

    tr, _ = small
    batch_sizes = []

    def counting_loss(model, x, y):
        batch_sizes.append(len(x))
        return train.cross_entropy(model, x, y)

    m = models.build("mlp", tr.info.shape, 10, seed=0)
    cfg = train.TrainConfig(batch_size=64, lr=1e-3, steps=17, schedule="step", milestones=[10, 15],
                            milestone_lrs=[2e-4, 4e-4])
    assert cfg.epochs_for(400) == 3  # 7 batches per epoch
    original = torch.optim.Adam.step
    lrs = []

    def step(self, *a, **k):
        lrs.append(self.param_groups[0]["lr"])
        return original(self, *a, **k)

    torch.optim.Adam.step = step
    try:
        history = train.fit(m, tr.x, tr.y, cfg, loss_fn=counting_loss, device="cpu", log=None)
    finally:
        torch.optim.Adam.step = original
    assert len(lrs) == 17 and len(history.epoch_loss) == 3
    assert lrs[:10] == [1e-3] * 10 and lrs[10:15] == pytest.approx([2e-4] * 5) and lrs[15:] == pytest.approx([4e-4] * 2)
    assert len(batch_sizes) == 17 and batch_sizes[6] == 400 - 6 * 64  # an epoch's last, short batch is a step
