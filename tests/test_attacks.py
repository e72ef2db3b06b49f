"""Property tests on a small trained model (cleverhans style) for every registered attack."""
import pytest
import torch

from decoylab import attacks, data, params, train
from decoylab.attacks.registry import REGISTRY
from decoylab.cache import Cache


@pytest.fixture(scope="module")
def setup():
    tr = data.load("digits", "train")
    te = data.load("digits", "test")
    model = train.train_or_load("mlp", tr.x, tr.y, 10, train.TrainConfig(epochs=20, lr=3e-3), seed=0,
                                cache=Cache(), log=None)
    idx = train.correct_subset(model, te.x, te.y, 100, seed=0)
    return model, te.x[idx], te.y[idx]


def _kwargs(name):
    entry = REGISTRY[name]
    return {"targeted": True} if entry.targeting == "always" else {}


# Attacks that must fool a small MLP on 8x8 digits on most inputs at their default settings.
# rllc's eps 0.15 random step is weak by design.
MUST_SUCCEED = {"fgsm", "rfgsm", "bim", "bim_a", "pgd", "mim", "dim", "mim_ti", "dim_ti", "mim_l2", "spsa", "eco",
                "illc", "tmifgsm", "cw2", "deepfool", "jsma", "ead", "optmargin", "blb"}


@pytest.mark.parametrize("name", attacks.names())
def test_stays_in_box_and_ball(setup, name):
    model, x, y = setup
    entry = REGISTRY[name]
    res = attacks.run(name, model, x, y, backend="fast", **_kwargs(name))
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    if entry.norm == "linf":
        assert float(res.linf.max()) <= res_eps(name) + 1e-5
    assert res.l2.shape == res.l0.shape == res.success.shape == (len(y),)
    if name in MUST_SUCCEED:
        assert res.success_rate > 0.5, f"{name}: {res.success_rate}"
    if entry.targeting == "least_likely":
        assert torch.equal(res.target, train.predict(model, x).argmin(1))


def res_eps(name):
    return REGISTRY[name].defaults["eps"]


@pytest.mark.parametrize("name,settings", [
    ("fgsm", {}), ("bim", {}), ("pgd", {}), ("mim", {}), ("deepfool", {}), ("jsma", {"saliency": "target_top2"}),
    ("jsma", {"preset": "honeymodels"}), ("pgd", {"preset": "honeymodels"}),
    ("cw2", {}), ("cw2", {"targeted": True, "preset": "honeymodels"}), ("ead", {"targeted": True})])
def test_fast_and_art_agree(setup, name, settings):
    """Same settings, same model: success within 5 points, mean perturbation norm within 20 %."""
    model, x, y = setup
    entry = REGISTRY[name]
    kw = {**_kwargs(name), "seed": 0, **settings}
    fast = attacks.run(name, model, x, y, backend="fast", **kw)
    art = attacks.run(name, model, x, y, backend="art", **kw)
    norm = {"linf": "l2", "l2": "l2", "l1": "l2", "l0": "l0"}[entry.norm]
    assert abs(fast.success_rate - art.success_rate) <= 0.05
    assert float(getattr(fast, norm).float().mean()) == pytest.approx(float(getattr(art, norm).float().mean()), rel=0.2)


def test_bim_a_stops_each_sample_at_misclassification(setup):
    """NeuralFP's BIM-a against BIM-b (fixed steps): same success, smaller perturbations, and
    every sample frozen at the step its prediction changed."""
    model, x, y = setup
    settings = {"eps": 0.3, "step_size": 0.01, "steps": 50}
    bim_a = attacks.run("bim_a", model, x, y, **settings)
    bim_b = attacks.run("bim", model, x, y, **settings)
    assert bim_a.success_rate >= bim_b.success_rate - 0.02
    assert float(bim_a.linf.mean()) < 0.8 * float(bim_b.linf.mean())
    # one more step of 0.01 would have been taken only by still-correct samples
    assert float(bim_a.linf[bim_a.success].max()) < settings["eps"]


def test_targeted_reaches_target_and_seed_repeats(setup):
    model, x, y = setup
    a = attacks.run("pgd", model, x, y, targeted=True, target="random", seed=3, eps=0.3, steps=40)
    b = attacks.run("pgd", model, x, y, targeted=True, target="random", seed=3, eps=0.3, steps=40)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.target, b.target)
    assert (a.target != y).all()
    pred = train.predict(model, a.x_adv).argmax(1)
    assert torch.equal(pred == a.target, a.success) and a.success_rate > 0.5


@pytest.mark.parametrize("kwargs,needle", [
    ({"name": "deepfoo"}, "attack='deepfoo'"), ({"eps": 0.0}, "eps=0.0"), ({"eps": 1.5}, "eps=1.5"),
    ({"backend": "jax"}, "backend='jax'"), ({"steps": 0}, "steps=0"), ({"radius": 3}, "radius"),
    ({"preset": "nope"}, "preset='nope'"), ({"target": "random"}, "targeted=False"),
    ({"name": "deepfool", "targeted": True}, "cannot be targeted"), ({"name": "jsma"}, "targeted only"),
    ({"extra_loss": lambda x, labels: x.sum((1, 2, 3)), "backend": "art"}, "backend='fast'"),
    ({"name": "deepfool", "extra_loss": lambda x, labels: x.sum((1, 2, 3))}, "no loss to add"),
    ({"name": "rfgsm", "eps": 0.1, "alpha": 0.2}, "alpha < eps"),
    ({"name": "cw2", "optimizer": "adam", "backend": "art"}, "optimizer='adam' needs"),
    ({"name": "cw2", "optimizer": "sgd"}, "optimizer='sgd'"),
])
def test_bad_arguments_fail_before_compute(setup, kwargs, needle):
    model, x, y = setup
    name = kwargs.pop("name", "pgd")
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        attacks.run(name, model, x, y, **kwargs)


def test_a_parameter_the_attack_does_not_take_raises(setup):
    """A setting of another attack (FGSM has no steps) is an error naming the attack, the parameter
    and what the attack takes — never silently dropped."""
    model, x, y = setup
    with pytest.raises(params.ParameterError, match=r"attack 'fgsm'(.|\n)*unknown parameter 'steps'; allowed: eps"):
        attacks.run("fgsm", model, x, y, eps=0.1, steps=5)
    allowed = r"eps=1.5 is not allowed; eps must be a number in \(0, 1\]"
    with pytest.raises(ValueError, match=r"attack 'pgd'(.|\n)*" + allowed):
        attacks.checked_settings("pgd", eps=1.5)


@pytest.mark.parametrize("name", attacks.names())
def test_backends_take_exactly_their_settings_and_refuse_other_keys(setup, name):
    """Every setting an entry declares is a keyword of each of its backends, and a backend called
    with a key it does not know raises (no ``**_`` catch-all swallows it)."""
    import inspect

    model, x, y = setup
    entry = REGISTRY[name]
    for backend, attack in entry.backends.items():
        takes = inspect.signature(attack).parameters
        missing = (set(entry.specs) | set(entry.fixed)) - set(takes)
        assert not missing, f"{name} ({backend}) does not take {missing}"
        assert all(p.kind != p.VAR_KEYWORD for p in takes.values()), f"{name} ({backend}) has a **kwargs catch-all"
        with pytest.raises(TypeError, match="unexpected keyword argument 'not_a_setting'"):
            attack(model, x, y, not_a_setting=1, **entry.defaults)


def test_cached_attack_is_not_recomputed(setup, tmp_path):
    model, x, y = setup
    cache = Cache(tmp_path)
    first = attacks.run("pgd", model, x, y, eps=0.2, steps=5, cache=cache)
    again = attacks.run("pgd", model, x, y, eps=0.2, steps=5, cache=cache)
    assert (cache.misses, cache.hits) == (1, 1)
    assert torch.equal(first.x_adv, again.x_adv) and torch.equal(first.success, again.success)
    attacks.run("pgd", model, x, y, eps=0.25, steps=5, cache=cache)  # other settings: a new entry
    assert cache.misses == 2


def test_model_must_return_logits(setup):
    _, x, y = setup
    with pytest.raises(ValueError, match="logits shaped"):
        attacks.run("fgsm", torch.nn.Flatten(), x, y, num_classes=10)  # returns (N, 64) pixels, not (N, 10) logits
    with pytest.raises(ValueError, match="logits shaped"):
        attacks.run("fgsm", torch.nn.Sequential(torch.nn.Flatten(0)), x, y)
    with pytest.raises(ValueError, match="differ in length"):
        attacks.run("fgsm", setup[0], x, y[:-1])


def test_images_outside_the_data_range_are_refused_before_any_attack(setup):
    """x × 255 or NaN pixels would be "attacked" and counted as successes; both are refused, naming the fix."""
    model, x, y = setup
    with pytest.raises(ValueError, match=r"x spans \[0, 255\]; attacks need images in \[0, 1\]"):
        attacks.run("fgsm", model, x * 255 / x.max(), y, eps=0.3)
    broken = x.clone()
    broken[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="1 NaN or infinite values"):
        attacks.run("fgsm", model, broken, y, eps=0.3)


def test_extra_loss_hook_changes_the_attack(setup):
    """An adaptive term that punishes brightness makes PGD darken its perturbation."""
    model, x, y = setup
    plain = attacks.run("pgd", model, x, y, eps=0.3, steps=20, step_size=0.05)
    dark = attacks.run("pgd", model, x, y, eps=0.3, steps=20, step_size=0.05,
                       extra_loss=lambda adv, labels: 1000.0 * adv.flatten(1).sum(1))
    assert float(dark.x_adv.mean()) < float(plain.x_adv.mean()) - 0.05


def test_accepted_and_catalogue():
    assert attacks.accepted("fgsm", eps=0.1, steps=5) == {"eps": 0.1}
    assert attacks.accepted("deepfool", eps=0.1, steps=5) == {}
    entry = attacks.catalogue_entry("cw2")
    assert entry["norm"] == "l2" and "honeymodels" in entry["presets"]
    with pytest.raises(ValueError, match="allowed"):
        attacks.accepted("nope")


def test_attack_benchmark_prints_and_writes_json(tmp_path, capsys):
    import json

    from decoylab.tools import bench

    assert bench.attacks_main(n=20, names=["fgsm", "deepfool"], json_path=str(tmp_path / "b.json")) == 0
    out = capsys.readouterr().out
    assert "art/fast" in out and "deepfool" in out
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert {(r["attack"], r["backend"]) for r in rows} == {("fgsm", "fast"), ("fgsm", "art"),
                                                          ("deepfool", "fast"), ("deepfool", "art")}


def test_benchmark_counts_the_passes_an_attack_makes_copies_included():
    """The floor's pass counter: images forward, images per backward (K class gradients = K passes),
    and a deep copy of the counted model (the CW line search's scorer) counting into the same totals."""
    import copy

    from decoylab.tools import bench

    counted, images = bench._counting(torch.nn.Linear(4, 3))
    x = torch.rand(5, 4, requires_grad=True)
    out = counted(x)
    for k in range(3):
        torch.autograd.grad(out[:, k].sum(), x, retain_graph=True)
    with torch.no_grad():
        copy.deepcopy(counted)(torch.rand(7, 4))
    assert images == {"forward": 12, "backward": 15}


def test_attack_benchmark_settings_reach_both_backends_and_bad_ones_are_named(tmp_path, capsys):
    import json

    from decoylab.tools import bench

    assert bench.attacks_main(n=10, names=["fgsm"], json_path=str(tmp_path / "b.json"), settings={"eps": 0.05}) == 0
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert all(abs(r["mean_linf"] - 0.05) < 1e-4 for r in rows) and len(rows) == 2  # not fgsm's default 0.3
    assert bench.attacks_main(n=10, names=["fgsm"], settings={"max_iter": 5}) == 2
    assert bench.attacks_main(n=10, names=["fgsm"], settings={"eps": 7.0}) == 2
    assert bench.attacks_main(n=10, names=["fgsm"], repeats=0) == 2
    assert "not allowed" in capsys.readouterr().out


def test_attack_benchmark_repeats_take_turns_and_report_medians(tmp_path, capsys):
    """With repeats, each backend runs that many times, in turn, and the ratio is the median of the
    per-turn ratios (this machine's speed drifts between runs far apart in time)."""
    import json
    import statistics

    from decoylab.tools import bench

    assert bench.attacks_main(n=10, names=["fgsm"], json_path=str(tmp_path / "b.json"), repeats=3) == 0
    assert "medians of 3 turns" in capsys.readouterr().out
    fast, art = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert len(fast["seconds_each"]) == len(art["seconds_each"]) == 3
    assert fast["seconds"] == pytest.approx(statistics.median(fast["seconds_each"]), abs=1e-3)
    # the stored ratio is of the unrounded times; the stored times are rounded to the millisecond, which on a
    # 10 ms run moves their ratio by up to the bound below (plus the ratio's own rounding to 0.01)
    for ratio, a, f in zip(art["art_over_fast_each"], art["seconds_each"], fast["seconds_each"]):
        assert abs(ratio - a / f) <= (a / f) * (0.0005 / a + 0.0005 / f) + 0.005 + 1e-9
    assert art["art_over_fast"] == pytest.approx(statistics.median(art["art_over_fast_each"]), abs=0.01)


def test_batch_benchmark_prints_every_model_and_writes_json(tmp_path, capsys):
    import json

    from decoylab.tools import bench

    assert bench.batches_main([16, 64], n=64, json_path=str(tmp_path / "b.json")) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in bench.BATCH_MODELS) and "fwd+bwd" in out
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert len(rows) == 2 * len(bench.BATCH_MODELS) and all(r["best_batch"] in (16, 64) for r in rows)
    assert bench.batches_main([0]) == 2  # a batch size < 1 is refused before any timing


def test_training_benchmark_times_both_layouts_for_every_model(capsys):
    from decoylab.tools import bench

    assert bench.training_main([8], steps=1) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in bench.BATCH_MODELS) and "ch-last" in out and out.count("x\n") == len(bench.BATCH_MODELS)


def test_cw_adam_leaves_the_models_weights_without_gradients(setup):
    model, x, y = setup
    before = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(True)  # as a freshly trained net comes: the attack must not fill its weights' .grad
    try:
        for p in model.parameters():
            p.grad = None
        attacks.run("cw2", model, x[:8], y[:8], optimizer="adam", max_iter=3, binary_search_steps=1)
        assert all(p.grad is None for p in model.parameters())
    finally:
        for p, flag in zip(model.parameters(), before):
            p.requires_grad_(flag)


def test_jsma_pairs_benchmark_finds_identical_examples(capsys):
    from decoylab.tools import bench

    assert bench.jsma_pairs_main(n=4, model_name="honey_small_conv") == 0  # 1: the pruned search changed an example
    out = capsys.readouterr().out
    assert "all F x F" in out and "pruned" in out and "identical adversarial examples: True" in out
    assert bench.jsma_pairs_main(n=4, model_name="resnet20") == 2  # refused before any training


def test_default_batch_follows_the_device_and_bad_batches_are_named(setup):
    from decoylab import config

    assert config.batch_size("cpu") == config.CPU_BATCH and config.batch_size("cuda") == config.GPU_BATCH
    model, x, y = setup
    with pytest.raises(ValueError, match="batch_size=0 is not allowed"):
        attacks.run("fgsm", model, x, y, eps=0.1, batch_size=0)
    small = attacks.run("pgd", model, x, y, eps=0.2, step_size=0.05, steps=5, batch_size=3, random_start=False)
    default = attacks.run("pgd", model, x, y, eps=0.2, step_size=0.05, steps=5, random_start=False)
    assert torch.allclose(small.x_adv, default.x_adv, atol=1e-5)  # batching changes speed, not the result


def test_transfer_tricks_reduce_to_mim(setup):
    """DIM with p = 0 and TI with a 1x1 kernel are MIM step for step; with p = 1 or a wider
    kernel the perturbation changes (the trick is on) and stays in the ball."""
    model, x, y = setup
    mim = attacks.run("mim", model, x, y, seed=3)
    assert torch.equal(attacks.run("dim", model, x, y, seed=3, diversity_prob=0.0).x_adv, mim.x_adv)
    assert torch.equal(attacks.run("mim_ti", model, x, y, seed=3, ti_kernel=1).x_adv, mim.x_adv)
    for name in ("dim", "mim_ti", "dim_ti"):
        res = attacks.run(name, model, x, y, seed=3)
        assert not torch.equal(res.x_adv, mim.x_adv), name
        assert float(res.linf.max()) <= 0.3 + 1e-5


def test_ti_kernel_is_a_normalised_gaussian():
    from decoylab.attacks.linf import _ti_smoother

    impulse = torch.zeros(1, 1, 9, 9)
    impulse[0, 0, 4, 4] = 1.0
    spread = _ti_smoother(5, 1, "cpu")(impulse)
    assert spread.sum() == pytest.approx(1.0, abs=1e-6)
    assert spread[0, 0, 4, 4] == spread.max() and (spread[0, 0, 2:7, 2:7] > 0).all()
    assert spread[0, 0, 4, 3] == pytest.approx(float(spread[0, 0, 3, 4]))  # symmetric


def test_mim_l2_respects_both_budgets(setup):
    model, x, y = setup
    res = attacks.run("mim_l2", model, x, y, eps=0.2, eps_l2=1.0, step_size=0.2, steps=20)
    assert float(res.l2.max()) <= 1.0 + 1e-4 and float(res.linf.max()) <= 0.2 + 1e-5
    assert res.success_rate > 0.3


class _NoGradient(torch.nn.Module):
    """Answers with logits but gives an attacker no gradient (a hard black box)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        with torch.no_grad():
            return self.model(x)


@pytest.mark.parametrize("name", ["spsa", "eco"])
def test_query_attacks_need_only_scores(setup, name):
    model, x, y = setup
    res = attacks.run(name, _NoGradient(model), x[:40], y[:40], seed=0)
    assert res.success_rate > 0.5 and float(res.linf.max()) <= 0.3 + 1e-5
    assert res.grad_steps > 100  # queries per input
    if name == "eco":  # every pixel sits on a vertex of the L∞ ball unless clipped by [0, 1]
        delta = (res.x_adv - x[:40]).abs()
        on_vertex = ((delta - 0.3).abs() < 1e-5) | (res.x_adv <= 1e-6) | (res.x_adv >= 1 - 1e-6)
        assert bool(on_vertex.all())
    with pytest.raises(ValueError, match="extra_loss"):
        attacks.run(name, model, x, y, extra_loss=lambda a, b: a.sum((1, 2, 3)))


def test_spsa_rejects_odd_samples(setup):
    model, x, y = setup
    with pytest.raises(ValueError, match="samples=3"):
        attacks.run("spsa", model, x, y, samples=3)


def test_bpda_restores_the_gradient_of_a_non_differentiable_step(setup):
    """Quantising the input kills the gradient (PGD cannot move); BPDA's identity backward pass
    lets the same PGD fool the same quantised model (Athalye et al. 2018)."""
    model, x, y = setup

    class Quantised(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, v):
            return self.model(torch.round(v * 4) / 4)

    plain = attacks.run("pgd", Quantised(), x, y, random_start=False)
    assert float(plain.linf.max()) == 0.0  # zero gradient: the attack never moved
    wrapped = attacks.BPDA(model, lambda v: torch.round(v * 4) / 4)
    res = attacks.run("pgd", wrapped, x, y, random_start=False)
    assert res.success_rate > 0.5
    with torch.no_grad():  # the forward pass is the quantised model's
        assert torch.equal(wrapped(x), Quantised()(x))
    with pytest.raises(ValueError, match="step="):
        attacks.BPDA(model, "round")


def test_uap_is_one_perturbation_for_every_input(setup):
    """UAP's success swings with the input order (ART's own runs gave 17-45 % on this model), so it
    is checked by its definition, not against ART: one v, ‖v‖∞ ≤ eps, the stop at the fooling rate."""
    model, x, y = setup
    res = attacks.run("uap", model, x, y, eps=0.3, fooling_rate=0.2, max_passes=5)
    inside = (x > 0.3) & (x < 0.7)  # pixels no clipping can have touched
    delta = res.x_adv - x
    highest = torch.where(inside, delta, torch.full_like(delta, -9)).amax(0)
    lowest = torch.where(inside, delta, torch.full_like(delta, 9)).amin(0)
    seen = inside.any(0)
    assert seen.sum() > 10 and torch.allclose(highest[seen], lowest[seen], atol=1e-6)
    assert float(res.linf.max()) <= 0.3 + 1e-6
    assert res.success_rate >= 0.2


def test_ead_is_sparser_than_cw(setup):
    """EAD's L1 shrinkage (Chen et al. 2018, eq. 6) changes fewer pixels than C&W-L2 at equal settings."""
    model, x, y = setup
    settings = {"learning_rate": 0.01, "max_iter": 100, "binary_search_steps": 5, "initial_const": 0.01}
    cw = attacks.run("cw2", model, x, y, optimizer="adam", **settings)
    ead = attacks.run("ead", model, x, y, beta=0.01, **settings)
    both = cw.success & ead.success
    assert both.float().mean() > 0.8
    assert float(ead.l0[both].float().mean()) < 0.8 * float(cw.l0[both].float().mean())


@pytest.mark.parametrize("theta", [1.0, -1.0])
def test_jsma_pruned_pair_search_picks_the_full_matrix_pair(theta):
    """The pruned search of jsma._best_pair must pick what the argmax over all F×F pairs picks, ties included."""
    from decoylab.attacks import jsma

    g = torch.Generator().manual_seed(0)
    for trial in range(60):
        n, features = 5, int(torch.randint(3, 150, (1,), generator=g))
        alpha = torch.randn(n, features, generator=g) * torch.rand(n, features, generator=g).pow(4)
        beta = torch.randn(n, features, generator=g)
        if trial % 2:  # rounded gradients: many equal scores
            alpha, beta = alpha.round(decimals=1), beta.round(decimals=1)
        domain = torch.rand(n, features, generator=g) < 0.2 + 0.8 * torch.rand(1, generator=g)
        score = jsma._pair_scores(alpha, beta, domain, theta).flatten(1)
        found = score.amax(1) > 0
        p, q, has_pair = jsma._best_pair(alpha, beta, domain, theta)
        assert torch.equal(has_pair, found)
        assert torch.equal((p * features + q)[found], score.argmax(1)[found])


@pytest.mark.parametrize("saliency", ["target_top2", "pairs"])
def test_jsma_same_examples_whether_it_reuses_or_repeats_the_forward_pass(setup, monkeypatch, saliency):
    """Reusing a forward pass that holds stopped rows (their gradients dropped) must not change JSMA's output."""
    from decoylab.attacks import jsma

    model, x, y = setup
    kw = {"targeted": True, "seed": 0, "saliency": saliency, "theta": 1.0, "gamma": 0.3}
    runs = []
    for fraction in (0.0, 2.0):  # 0: always reuse; 2: always a new forward pass of the rows that go on
        monkeypatch.setattr(jsma, "_REUSE_FORWARD_FRACTION", fraction)
        runs.append(attacks.run("jsma", model, x, y, backend="fast", **kw))
    assert runs[0].success.float().mean() > 0.5
    assert torch.equal(runs[0].x_adv, runs[1].x_adv)
