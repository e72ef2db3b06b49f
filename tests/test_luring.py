"""Luring (Bernhard, Moellic, Dutertre, "Luring of Transferable Adversarial Perturbations in the Black-Box
Paradigm", 2021): eq. 2 against a naive loop, eq. 3-4 on hand-made predictions, training that freezes M and keeps
the best epoch, the disagreement score, the control and the adaptive attacks, save/load, and bad input rejected
before training."""
import pytest
import torch

from decoylab import data, models, params, train
from decoylab.cache import Cache
from decoylab.defenses import luring as lu
from decoylab.experiments import luring as lx


def test_luring_terms_match_a_naive_loop():
    g = torch.Generator().manual_seed(0)
    z, h = torch.randn(16, 10, generator=g), torch.randn(16, 10, generator=g)
    hinge, gap = lu.luring_terms(z, h)
    for i in range(16):
        order = sorted(range(10), key=lambda k: -float(h[i, k]))
        a, b = order[0], order[1]
        others = max(float(z[i, j]) for j in range(10) if j != a)
        assert float(hinge[i]) == pytest.approx(max(0.0, others - float(z[i, a])), abs=1e-6)
        assert float(gap[i]) == pytest.approx(-(float(z[i, a]) - float(z[i, b])), abs=1e-6)


def test_transfer_metrics_by_hand():
    y = torch.tensor([0, 0, 0, 0, 0, 0])
    pred_mop = torch.tensor([1, 1, 1, 2, 0, 0])  # four x' fool M∘P
    pred_m = torch.tensor([0, 1, 2, 2, 0, 3])  # M: right, fooled alike, fooled differently, fooled alike, right, wrong
    m = lx.transfer_metrics(pred_mop, pred_m, y)
    assert m["n_fooled"] == 4
    assert m["DR"] == pytest.approx(2 / 4)  # indices 0 and 2 disagree among the fooled
    assert m["IAR"] == pytest.approx(1 / 4)  # index 0: M still right
    assert m["AC_MoP"] == pytest.approx(2 / 6) and m["AC_M"] == pytest.approx(2 / 6)
    assert m["DAC"] == pytest.approx(1 - 2 / 6)  # indices 1 and 3: agree and M wrong
    only = lx.transfer_metrics(pred_mop, pred_m, y, successful=torch.tensor([True, True, False, False, True, True]))
    assert only["n_fooled"] == 2 and only["IAR"] == pytest.approx(0.5)
    assert torch.isnan(torch.tensor(lx.transfer_metrics(y, y, y)["DR"]))  # nothing fooled: undefined, not 0


def test_worst_case_is_best_for_the_attacker():
    rows = [{"DAC": 0.6, "AC_M": 0.5, "variant": "mim"}, {"DAC": 0.4, "AC_M": 0.6, "variant": "dim"},
            {"DAC": 0.4, "AC_M": 0.3, "variant": "dim_ti"}]
    assert lx.worst_case(rows)["variant"] == "dim_ti"


def test_paper_tables_are_indexed_by_attack_eps_and_approach():
    assert lx.PAPER_DEFENSE_TABLE["mnist"][("spsa", 0.2, "luring")] == (0.14, 0.99, 0.99)
    assert lx.PAPER_DEFENSE_TABLE["svhn"][("mim_w", 0.08, "luring")] == (0.0, 0.48, 0.67)
    assert ("spsa", 0.02, "auto") not in lx.PAPER_DEFENSE_TABLE["cifar10"]  # the paper has no Auto on CIFAR-10


def test_fit_keeps_the_best_epoch():
    model = models.build("mlp", (1, 8, 8), 10, seed=0)
    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,))
    snapshots = []

    def select(m):  # scores fall after the first epoch: the first epoch's weights must come back
        snapshots.append({k: v.clone() for k, v in m.state_dict().items()})
        return 1.0 / len(snapshots)

    history = train.fit(model, x, y, train.TrainConfig(epochs=3, lr=0.05), select=select, log=None)
    assert history.best_epoch == 1 and history.selection == pytest.approx([1, 1 / 2, 1 / 3])
    assert all(torch.equal(v, snapshots[0][k]) for k, v in model.state_dict().items())


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    cache = Cache(tmp_path_factory.mktemp("cache"))
    tr = data.load("mnist5k", "train", n=1200, seed=0)
    te = data.load("mnist5k", "test", n=200, seed=0)
    common = dict(target_config=train.TrainConfig(epochs=1, batch_size=28),
                  train_config=train.TrainConfig(epochs=4, batch_size=32, lr=3e-3), component_init="auto",
                  cache=cache, log=None)
    luring = lu.Luring("luring", **common).fit(tr)
    return luring, luring.control().fit(tr), tr, te, cache


def test_copy_agreement_counts_the_images_p_saw_and_new_ones(fitted):
    """M∘P against M on P's own training images, on the split the defense held out and on test images: with a
    defense whose M∘P copies M exactly where P trained and never elsewhere, the three rates are 1, 0 and 0, with
    their counts; on a fitted defense each equals the share computed from the two networks."""
    luring, _, tr, te, _ = fitted
    train_idx, held_out_idx = luring._split(len(tr.y), tr.y)

    class CopiesOnlyItsOwnImages:
        validation_images = len(held_out_idx)
        _split = luring._split

        @staticmethod
        def predictions(x):
            seen = (x.flatten(1)[:, None] == tr.x[train_idx].flatten(1)[None]).all(-1).any(1)
            return torch.where(seen, 0, 1), torch.zeros(len(x), dtype=torch.long)

    stub = lx.copy_agreement(CopiesOnlyItsOwnImages(), tr, te)
    assert (stub["train"].k, stub["train"].n) == (len(train_idx), len(train_idx))
    assert (stub["held_out"].k, stub["held_out"].n) == (0, len(held_out_idx)) and stub["test"].n == len(te.y)
    copy = lx.copy_agreement(luring, tr, te)
    for images, rate in ((tr.x[train_idx], copy["train"]), (tr.x[held_out_idx], copy["held_out"]), (te.x, copy["test"])):
        same = luring.attacked_model(images).argmax(1) == luring.target(images).argmax(1)
        assert (rate.k, rate.n) == (int(same.sum()), len(images))
    with pytest.raises(ValueError, match="pass the training set it was fitted on"):
        lx.copy_agreement(luring, data.load("mnist5k", "train", n=600, seed=0), te)


def test_control_is_the_unfitted_c_e_baseline_with_the_same_settings():
    luring = lu.Luring("luring", weight=0.5, component_init="auto", seed=3, log=None)
    control = luring.control()
    assert control.approach == "ce" and control.label == "C_E" and control.model is None and control.target is None
    assert (control.weight, control.component_init, control.seed) == (0.5, "auto", 3)
    assert luring.approach == "luring"  # the defense itself is untouched
    assert "C_E baseline" in lu.Luring.control_description and "no luring loss" in control.control_description


def test_training_freezes_m_and_changes_p(fitted):
    luring, ce, tr, te, cache = fitted
    fit_idx, _ = luring._split(len(tr.x), tr.y)  # M, like P, never sees the validation images (the authors' code)
    fresh_target = train.train_or_load("luring_mnist", tr.x[fit_idx], tr.y[fit_idx], 10, luring.target_config,
                                       cache=cache, log=None)
    for k, v in fresh_target.state_dict().items():
        assert torch.equal(v, luring.target.state_dict()[k]), f"M changed while P trained: {k}"
        assert torch.equal(v, luring.attacked_model.target.state_dict()[k])
    assert isinstance(luring.attacked_model, lu.Augmented)
    p_luring = luring.attacked_model.component.state_dict()
    p_ce = ce.attacked_model.component.state_dict()
    assert any(not torch.equal(p_luring[k], p_ce[k]) for k in p_luring)  # different losses, different P


def test_the_training_curve_comes_back_from_the_cache(fitted):
    """P's validation accuracy per epoch is stored beside its weights, so notebook 30 shows how far training went
    on a cache hit too."""
    from decoylab.experiments import luring as lx

    luring, _, tr, _, cache = fitted
    again = lu.Luring("luring", target_config=luring.target_config, train_config=luring.train_config,
                      component_init="auto", cache=cache, log=None).fit(tr)
    assert again.history is not None and again.history.selection == luring.history.selection
    curves = lx.training_curves({"luring": again})
    assert list(curves.step) == [again.steps_per_epoch * e for e in (1, 2, 3, 4)]  # 4 epochs
    assert again.steps_per_epoch == -(-(1200 - 120) // 32) and set(curves.n) == {120}
    assert curves.kept.sum() == 1 and curves[curves.kept].step.item() == again.history.best_epoch * again.steps_per_epoch
    assert 0 < curves["M's validation accuracy"].iloc[0] <= 1


def test_luring_stretches_the_gap_and_score_is_zero_iff_agree(fitted):
    luring, ce, tr, te, _ = fitted
    def mean_gap(d):
        z = train.predict(d.attacked_model, te.x)
        return float(-lu.luring_terms(z, train.predict(d.target, te.x))[1].mean())
    assert luring.accuracy_and_agreement(te.x, te.y)["test"] > 0.3  # P learned to keep M's decisions
    assert mean_gap(luring) > mean_gap(ce)  # eq. 2's second term at work
    scores = luring.score(te.x)
    disagree = luring.detect_disagreement(te.x)
    assert bool((scores[~disagree] == 0).all()) and bool((scores[disagree] > 0).all())
    kl = lu.Luring("luring", score_kind="kl")
    kl.model, kl.target = luring.model, luring.target
    assert bool((kl.score(te.x) >= -1e-6).all())


def test_save_and_load_give_the_same_defense(fitted, tmp_path):
    luring, _, _, te, _ = fitted
    path = luring.save(tmp_path / "luring.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["luring.pt"]  # no temporary file left behind
    again = lu.Luring.load(path, device="cpu", log=None)
    assert again.approach == "luring" and again.weight == luring.weight and again.score_kind == luring.score_kind
    assert torch.equal(again.score(te.x), luring.score(te.x))
    assert torch.equal(again.predictions(te.x)[1], luring.predictions(te.x)[1])


def test_stack_saves_its_hidden_m_beside_the_retrained_copy(tmp_path):
    tr = data.load("mnist5k", "train", n=300, seed=0)
    te = data.load("mnist5k", "test", n=50, seed=0)
    stack = lu.Luring("stack", target_config=train.TrainConfig(epochs=1, batch_size=28), cache=Cache(tmp_path / "c"),
                      log=None).fit(tr)
    again = lu.Luring.load(stack.save(tmp_path / "stack.pt"), device="cpu", log=None)
    assert again.attacked_model.target is not again.target  # M∘P holds a retrained M; the hidden M is the original
    assert torch.equal(again.score(te.x), stack.score(te.x))


def test_adaptive_attacks_by_knowledge(fitted):
    luring, _, _, te, _ = fitted
    levels = luring.adaptive_attacks(x_shadow=te.x[:8], y_shadow=te.y[:8], attack=("pgd", {"eps": 0.3}))
    assert [a.knowledge for a in levels] == ["0 · the paper's setting: white-box on M∘P, M hidden",
                                             "1 · knows M: attacks M directly",
                                             "2 · knows M and P: M∘P with an agreement term",
                                             "3 · knows M and P: drives both to one wrong class (targeted)"]
    assert levels[0].model is luring.attacked_model and levels[1].model is luring.target
    assert levels[0].loss_for is None and levels[1].loss_for is None
    term = levels[2].loss_for(2.0)(te.x[:8], te.y[:8])
    assert term.shape == (8,) and torch.isfinite(term).all()
    key = levels[2].loss_key_for(2.0)
    assert key["term"] == "luring_agreement" and key["weight"] == 2.0 and "target" not in key


def test_opposite_sign_counts():
    model = models.build("mlp", (1, 8, 8), 10, seed=0)
    flipped = torch.nn.Sequential(model, torch.nn.Identity())
    x = torch.rand(5, 1, 8, 8)
    assert int(lx.opposite_sign_counts(model, flipped, x).sum()) == 0  # a model agrees with itself

    class Negated(torch.nn.Module):
        def forward(self, v):
            return -model(v)
    counts = lx.opposite_sign_counts(model, Negated(), x)
    assert counts.shape == (5, 10) and int(counts.min()) > 0


@pytest.mark.parametrize("kwargs,needle", [
    ({"approach": "decoy"}, "approach='decoy'"), ({"weight": 0}, "weight"), ({"weight": -1.0}, "weight"),
    ({"score_kind": "js"}, "score_kind"), ({"component_init": "zeros"}, "component_init"),
    ({"component_name": "unet"}, "component_name"), ({"validation_fraction": 0.9}, "validation_fraction")])
def test_bad_input_fails_before_training(kwargs, needle, tmp_path):
    cache = Cache(tmp_path / "cache")
    approach = kwargs.pop("approach", "luring")
    with pytest.raises(ValueError, match=needle):
        lu.Luring(approach, cache=cache, **kwargs)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.pt"))


def test_eps_outside_the_data_range_is_named_before_any_attack():
    for eps in (0, 1.5, -0.1):
        with pytest.raises(params.ParameterError, match=f"eps={eps!r}"):
            lx.run_attack(None, "fgsm", torch.zeros(1), torch.zeros(1), eps, "luring_mnist", None, None, 0)
        with pytest.raises(params.ParameterError, match="eps_list"):
            lx.characterise({}, torch.zeros(1), torch.zeros(1), ["fgsm"], [0.3, eps])


def test_component_must_fit_the_images(tmp_path):
    digits = data.load("digits", "train", n=50)
    with pytest.raises(ValueError, match="luring_p_mnist"):
        lu.Luring("luring", cache=Cache(tmp_path), log=None).fit(digits)


# ------------------------------------------------------------------------------------------------- claims
def _bools(n, k, offset=0):
    """n points, the first k (after rolling by ``offset``) True."""
    return torch.roll(torch.arange(n) < k, offset)


def _claims_run(n=400):
    from decoylab.experiments import luring_claims as lc

    order = ("luring", "ce", "stack", "auto")
    fooled_all = torch.zeros(n, dtype=torch.bool)
    few = _bools(n, 20)  # x' that fool every M∘P at ε 0.4: 20, below the evidence minimum
    char = []
    for eps, kept, drs, iars in ((0.3, ~fooled_all, (360, 240, 120, 140), (320, 120, 200, 100)),
                                 (0.4, few, (20, 10, 5, 5), (20, 10, 5, 5))):
        for attack in ("pgd", "mim"):
            for a, k_dr, k_iar in zip(order, drs, iars):
                mop = fooled_all.clone() if attack == "pgd" else _bools(n, n // 2)  # MIM fails on half of each M∘P
                char.append({"attack": attack, "eps": eps, "approach": a, "DR": 0.0, "IAR": 0.0, "kept": int(kept.sum()),
                             "points": {"kept": kept, "mop_correct": mop & ~kept, "disagree": _bools(n, k_dr),
                                        "target_correct": _bools(n, k_iar, 7)}})
    table = []
    dac = {"luring": 300, "ce": 228, "stack": 180, "auto": 170}  # Table 14's MIM-W ε 0.3: 0.75, 0.57, 0.45, 0.45
    for attack in ("spsa", "mim_w"):
        for a in order:
            mop = _bools(n, n // 2) if attack == "spsa" else fooled_all  # SPSA leaves every M∘P at accuracy 0.5
            table.append({"attack": attack, "eps": 0.3, "approach": a, "points": {
                "mop_correct": mop, "target_correct": _bools(n, dac[a] - 40), "disagree": _bools(n, 40, -40)}})
    run = lx.LuringRun(dataset="mnist5k", paper_dataset="mnist", paper_settings=False, attack_preset="luring_mnist",
                       n_attack=n, n_defense=n, n_cw=0, score_kind="margin", detection_eps=0.3, accuracy=None,
                       characterisation=char, defense=table, detection=[], distortion=[])
    parameters = {**{k: v for k, v in zip(("TARGET_EPOCHS", "COMPONENT_STEPS", "COMPONENT_EPOCHS", "COMPONENT_BATCH_SIZE",
                                          "COMPONENT_LR", "COMPONENT_LR_DROPS", "COMPONENT_LR_VALUES", "STACK_EPOCHS",
                                          "LURING_WEIGHT", "COMPONENT_INIT", "VALIDATION_FRACTION"),
                                         (5, 50000, 64, 64, 0.001, [35000, 45000], [0.0002, 0.0004], 5, 1.0, "random",
                                          0.1))},
                  "ITER_STEPS": None, "MIM_W_STEPS": None, "ITER_STEP_SIZE": None, "MIM_L2_STEP_SIZE": None, "SPSA_STEPS": 5,
                  "SPSA_SAMPLES": None, "ECO_QUERIES": None}
    return lc, run, parameters


class _Predicting:
    """A fitted approach's (M∘P, M) predictions on the test set, as ``Luring.predictions`` gives them."""
    def __init__(self, pred_mop, pred_m):
        self.pred = pred_mop, pred_m

    def predictions(self, x):
        return self.pred


def test_claims_are_judged_on_the_measured_points_with_their_evidence():
    from types import SimpleNamespace

    from decoylab import claims, results
    from decoylab.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

    lc, run, parameters = _claims_run()
    y = torch.zeros(1000, dtype=torch.long)
    target_ok, mop_ok = _bools(1000, 950), _bools(1000, 940)  # M∘P wrong on 10 more images than M: a drop of 0.01
    defenses = {"luring": _Predicting(torch.where(mop_ok, 0, 1), torch.where(target_ok, 0, 1))}
    results.clear()
    try:
        verdicts = {v.claim.id: v for v in lc.evaluate_claims(run, defenses, SimpleNamespace(x=None, y=y), parameters,
                                                              n_train=60000, draws=300)}
        assert set(verdicts) == set(results.recorded_claims())  # every claim recorded, declared ones included
    finally:
        results.clear()
    assert {c.id for c in claims.declared("luring")} <= set(verdicts)
    drop = verdicts["luring.table8.mnist.luring.accuracy_drop"]
    assert drop.outcome == REPRODUCED and drop.measurement.value == pytest.approx(0.01)
    assert drop.measurement.n == 1000 and "data set mnist5k (paper: mnist)" in drop.measurement.note

    dr, iar = verdicts["luring.fig2.mnist.pgd.eps0.3.dr"], verdicts["luring.fig2.mnist.pgd.eps0.3.iar"]
    assert dr.outcome == REPRODUCED and dr.measurement.parts["Luring"].value == pytest.approx(0.9)
    assert dr.measurement.parts["Stack/Auto (higher)"].value == pytest.approx(140 / 400)  # Auto beats Stack here
    assert dr.measurement.n_successful == 400
    assert iar.outcome == NOT_REPRODUCED and "Stack/Auto (higher) above C_E" in iar.reason  # Stack's 200 > C_E's 120
    thin = verdicts["luring.fig2.mnist.pgd.eps0.4.dr"]
    assert thin.outcome == INCONCLUSIVE and "20 successful adversarial examples" in thin.reason

    ordering = verdicts["luring.table14.mnist.mim_w_0.3.dac_ordering"]
    assert ordering.outcome == REPRODUCED and ordering.measurement.parts["C_E"].value == pytest.approx(0.57)
    dac = verdicts["luring.table14.mnist.mim_w_0.3.luring.dac"]
    assert dac.measurement.value == pytest.approx(0.75) and dac.measurement.n_successful == 400
    for approach in ("luring", "ce"):  # SPSA leaves M∘P at 0.5 (the paper: 0.05 and 0): never agreement
        weak = verdicts[f"luring.table14.mnist.spsa_0.3.{approach}.dac"]
        assert weak.outcome == INCONCLUSIVE and weak.reason.startswith("attack too weak: SPSA at ε 0.3")
        assert "SPSA iterations 5 (paper: 100)" in weak.measurement.note
    missing = verdicts["luring.table14.mnist.spsa_0.2.ac_m_over_ce"]
    assert missing.outcome == INCONCLUSIVE and missing.reason.startswith("not measured") and "ε run: 0.3" in missing.reason
    assert verdicts["luring.table14.mnist.eco_0.3.luring.dac"].reason.startswith("not measured")

    pgd, mim = verdicts["luring.sec4_3.mnist.pgd.ac_mop"], verdicts["luring.sec4_3.mnist.mim.ac_mop"]
    assert pgd.outcome == REPRODUCED and (pgd.measurement.value, pgd.measurement.n_successful) == (0.0, 400)
    assert mim.outcome == INCONCLUSIVE and "also leaves C_E's M∘P" in mim.reason  # the control resists too


def test_transfer_claims_wait_for_a_component_that_mimics_its_target():
    from types import SimpleNamespace

    from decoylab import results
    from decoylab.claims import INCONCLUSIVE, REPRODUCED

    lc, run, parameters = _claims_run()
    parameters = {**parameters, "COMPONENT_STEPS": None, "COMPONENT_EPOCHS": 4}  # far fewer steps than the paper's
    y = torch.zeros(1000, dtype=torch.long)
    target_ok, mop_ok = _bools(1000, 950), _bools(1000, 850)  # M∘P 0.10 below M (the paper: 0.017)
    defenses = {"luring": _Predicting(torch.where(mop_ok, 0, 1), torch.where(target_ok, 0, 1))}
    results.clear()
    try:
        verdicts = {v.claim.id: v for v in lc.evaluate_claims(run, defenses, SimpleNamespace(x=None, y=y), parameters,
                                                              n_train=60000, draws=300)}
    finally:
        results.clear()
    for claim in ("luring.fig2.mnist.pgd.eps0.3.iar", "luring.table14.mnist.mim_w_0.3.dac_ordering",
                  "luring.table14.mnist.mim_w_0.3.luring.dac"):  # judged (one not reproduced) when P mimics M
        assert verdicts[claim].outcome == INCONCLUSIVE and verdicts[claim].reason.startswith("P does not yet mimic M")
    drop = verdicts["luring.table8.mnist.luring.accuracy_drop"]
    assert drop.outcome == INCONCLUSIVE and drop.reason.startswith("settings too short to refute")
    assert verdicts["luring.sec4_3.mnist.pgd.ac_mop"].outcome == REPRODUCED  # white-box AC_MoP needs no fidelity


def test_the_learning_rate_drops_must_fit_the_training_they_count_in():
    """COMPONENT_LR_DROPS count steps when COMPONENT_STEPS is set and epochs otherwise: a drop beyond the end, the
    wrong unit, or one learning rate too many is named before any compute."""
    from decoylab import specs

    paper = {"COMPONENT_STEPS": 50000, "COMPONENT_EPOCHS": 64, "COMPONENT_LR_DROPS": [35000, 45000],
             "COMPONENT_LR_VALUES": [0.0002, 0.0004]}
    assert specs.notebook_problems("30_luring", paper) == []
    epochs_with_step_drops = {**paper, "COMPONENT_STEPS": None}
    assert "must each fall before the end of training" in specs.notebook_problems("30_luring", epochs_with_step_drops)[0]
    assert "COMPONENT_EPOCHS=64" in specs.notebook_problems("30_luring", epochs_with_step_drops)[0]
    assert "one learning rate per drop (2)" in specs.notebook_problems(
        "30_luring", {**paper, "COMPONENT_LR_VALUES": [0.0002]})[0]
    assert "increasing order" in specs.notebook_problems("30_luring", {**paper, "COMPONENT_LR_DROPS": [45000, 35000]})[0]


def test_p_trains_on_the_papers_recipe_placed_at_the_same_fractions_of_any_length():
    """Appendix B and the authors' MNIST code: batch 64, learning rate 0.001, 0.0002 from step 35 000 and 0.0004
    from 45 000 of 50 000 (epochs 45 and 58 of 64); a shorter run keeps the schedule's shape."""
    code = lx.paper_component_config("mnist", epochs=64, steps=50_000)
    assert (code.batch_size, code.lr, code.steps) == (64, 0.001, 50_000)
    assert list(code.milestones) == [35_000, 45_000] and list(code.milestone_lrs) == [0.0002, 0.0004]
    assert list(lx.paper_component_config("mnist", epochs=64).milestones) == [45, 58]
    assert list(lx.paper_component_config("mnist", epochs=64, steps=1000).milestones) == [700, 900]
    one = lx.paper_component_config("mnist", epochs=1)  # no change fits inside one epoch
    assert (one.schedule, list(one.milestones), list(one.milestone_lrs)) == ("constant", [], [])
    short = lx.paper_component_config("mnist", epochs=64, steps=5)  # 3.5 and 4.5 round to one step: the first kept
    assert (list(short.milestones), list(short.milestone_lrs)) == ([4], [0.0002])
    cifar = lx.paper_component_config("cifar10", epochs=216)
    assert (cifar.batch_size, cifar.lr, list(cifar.milestones)) == (256, 1e-5, [154, 185])


@pytest.mark.parametrize("init,steps,dataset", [("random", 50_000, "mnist5k"), ("random", None, "mnist5k"),
                                                ("auto", None, "mnist5k"), ("random", None, "cifar10")])
def test_the_comparisons_luring_trains_p_as_its_settings_say(monkeypatch, tmp_path, init, steps, dataset):
    """Notebook 90's Luring: from a random start the paper's recipe (counted in steps when LURING_COMPONENT_STEPS is
    set); from Auto's P the quick presets' short fine-tune."""
    from types import SimpleNamespace

    from decoylab.experiments import compare

    seen = {}

    class Captured:
        def __init__(self, *args, train_config, **kwargs):
            seen["config"] = train_config

        def fit(self, train_set):
            return self

    monkeypatch.setattr(lu, "Luring", Captured)
    train_set = SimpleNamespace(info=SimpleNamespace(name=dataset), x=torch.zeros(4, 1, 28, 28))
    settings = {"luring_component": "luring_p_mnist", "luring_component_epochs": 64, "luring_component_init": init,
                "luring_component_steps": steps}
    ctx = compare.BuildContext(train_set=train_set, base=None, base_seconds=0.0, model_name="honey_small_conv",
                               train_config=train.TrainConfig(), seed=0, cache=Cache(tmp_path), log=None,
                               settings=settings)
    compare._luring(ctx)
    config = seen["config"]
    if init == "random" and dataset == "cifar10":  # the paper's 1e-5 would not train a shortened run
        assert (config.batch_size, config.lr, config.schedule) == (64, 1e-3, "constant")
    elif init == "random":
        assert config == lx.paper_component_config("mnist", epochs=64, steps=steps)
    else:
        assert (config.batch_size, config.lr, config.schedule, config.steps) == (32, 3e-3, "constant", None)


def augmented_model(luring):
    return luring.attacked_model


def test_level_three_drives_m_and_m_of_p_to_one_wrong_class(fitted):
    """The attacker who knows M and P targets the detector's decision: PGD targeted on M∘P, plus M's cross-entropy
    to the same class, towards the class both rank highest after the true one. Of the images it fools M∘P on, M agrees on more than after the
    paper's attack on M∘P alone (level 0), so the disagreement detector sees less."""
    from decoylab import attacks

    luring, _, _, te, cache = fitted
    x, y = te.x[:60], te.y[:60]
    levels = luring.adaptive_attacks(x_shadow=x, y_shadow=y, attack=("pgd", {}))
    assert len(levels) == 4 and levels[3].targets_for is not None
    targets = levels[3].targets_for(x, y)
    assert (targets != y).all() and targets.shape == y.shape
    augmented, target = luring.model, luring.target
    agreement = {}
    assert levels[3].model is augmented_model(luring) and levels[3].loss_key_for(1.0)["term"] == "luring_same_target"
    for level in (0, 3):
        step = levels[level]
        extra = {"targeted": True, "target": targets} if step.targets_for is not None else {}
        if step.loss_for is not None:
            extra.update(extra_loss=step.loss_for(1.0), extra_loss_key=step.loss_key_for(1.0))
        r = attacks.run("pgd", step.model, x, y, eps=0.3, step_size=0.01, steps=40, seed=0, cache=cache, **extra)
        fooled = train.predict(augmented, r.x_adv).argmax(1) != y
        same = train.predict(target, r.x_adv).argmax(1) == train.predict(augmented, r.x_adv).argmax(1)
        assert fooled.sum() >= 20, (level, int(fooled.sum()))
        agreement[level] = float(same[fooled].float().mean())
    assert agreement[3] >= 0.9 and agreement[3] > agreement[0], agreement
