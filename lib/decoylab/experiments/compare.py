"""Every defense through the shared interface (``decoylab.defenses.base.Defense``) on the same attacks.

Notebook 41 overlays the ROC curves of all the kit's defenses, each beside its control; the
comparison notebook (90) builds on the same helpers. A defense whose detector learns from
adversarial examples (HoneyModels) gets them from a separate set of images, so every ROC curve
is measured on images no detector has seen. How detection is measured (beside each control, and under
adaptive attacks) is in ``experiments.detection``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from decoylab import attacks, claims, params, results
from decoylab.defenses.base import Defense
from decoylab.experiments.comparison_splits import comparison_splits, correct_everywhere  # noqa: F401 (public here)
from decoylab.specs import compare as compare_specs
from decoylab.specs.common import FPR

AttackSpecs = dict[str, tuple[str, dict[str, Any]]]

#: Every name the comparison knows; "undefended" is the baseline every cost is measured against.
DEFENSE_NAMES = compare_specs.DEFENSES
UNDEFENDED = "undefended"
#: The comparison's attacks: registry name and settings for MNIST-like data (eps on [0, 1] pixels);
#: ``attack_specs`` rescales the L∞ budgets for colour images.
COMPARISON_ATTACKS = {
    "fgsm": ("fgsm", {"eps": 0.3}),
    "pgd": ("pgd", {"eps": 0.3, "step_size": 0.01, "steps": 40, "random_start": True}),
    "cw2": ("cw2", {"max_iter": 100, "binary_search_steps": 5, "learning_rate": 0.1, "initial_const": 1.0,
            "optimizer": "adam"}),
    "deepfool": ("deepfool", {}),
}
COLOUR_EPS = {"fgsm": 8 / 255, "pgd": 8 / 255}


def attack_sets(model, x: torch.Tensor, y: torch.Tensor, specs: AttackSpecs, *, seed: int = 0, cache=None):
    """``{label: AttackResult}`` for every ``(registry name, settings)`` in ``specs``."""
    return {label: attacks.run(name, model, x, y, seed=seed, cache=cache, **settings)
            for label, (name, settings) in specs.items()}


def attack_specs(names, dataset_channels: int, *, pgd_steps: int | None = None, cw_max_iter: int | None = None,
                 cw_binary_steps: int | None = None) -> AttackSpecs:
    """``{label: (registry name, settings)}`` for ``names`` (keys of ``COMPARISON_ATTACKS``, checked by the
    caller: ``prepare_comparison``). Fewer PGD steps than the default take proportionally larger steps, so the
    attack can still travel as far (an attack that cannot reach its budget is too weak to judge a defense by)."""
    specs = {}
    for label in names:
        name, settings = COMPARISON_ATTACKS[label]
        settings = dict(settings)
        if dataset_channels == 3 and label in COLOUR_EPS:
            settings["eps"] = COLOUR_EPS[label]
            if label == "pgd":
                settings.update(step_size=2 / 255, steps=20)
        if label == "pgd" and pgd_steps is not None:
            # A shortened PGD keeps the full attack's path length (steps x step size; Madry et al. 2018's
            # 40 x 0.01 at ε 0.3): 20 steps of 0.01 travel 0.2 and cannot reach the ε-ball's corners.
            path_length = settings["steps"] * settings["step_size"]
            settings["steps"] = pgd_steps
            settings["step_size"] = max(settings["step_size"], path_length / pgd_steps)
        if label == "cw2":
            settings.update({k: v for k, v in (("max_iter", cw_max_iter), ("binary_search_steps", cw_binary_steps))
                             if v is not None})
        specs[label] = (name, settings)
    return specs


# --- The contenders: one builder per defense, then the same steps for all ---------------------------

#: A detector that learns from adversarial examples: (defense, clean images, {label: (x_adv, success)}, seed).
DetectorFit = Callable[[Defense, torch.Tensor, dict, int], Any]


@dataclass
class Contender:
    """One column of the comparison: the deployed classifier, its detector (None: undefended) and
    the detector's control (``Defense.control()``, fitted; None where the defense is its own baseline),
    with the seconds it took to build (cached entries report the time they took when built)."""
    name: str
    classifier: nn.Module
    defense: Defense | None
    control: Defense | None = None
    control_description: str = ""
    train_seconds: float = 0.0
    detector_fit: DetectorFit | None = None  # see ``Built``

    def detectors(self) -> list[Defense]:
        """The defense and its control, where there are."""
        return [d for d in (self.defense, self.control) if d is not None]


@dataclass
class Built:
    """What a builder returns: the fitted defense, the seconds it cost and, for a detector that learns
    from adversarial examples, how to train it (``calibrate_and_prepare`` does, on the detector-fit split)."""
    defense: Defense
    seconds: float
    detector_fit: DetectorFit | None = None


@dataclass
class BuildContext:
    """The settings every builder shares: one base network (``base``, the undefended model), its data,
    training and seed. ``settings``: watermark_size, poison_percent, fp_n, fp_eps, luring_component,
    luring_component_epochs, luring_component_steps (optional), luring_component_init, attractor_strength."""
    train_set: Any
    base: nn.Module
    base_seconds: float
    model_name: str
    train_config: Any
    seed: int
    cache: Any
    log: Any
    settings: dict[str, Any]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train_set.x.shape[1:])

    @property
    def common(self) -> dict[str, Any]:
        """What every trained defense takes: architecture, training, seed, cache, log."""
        return dict(model_name=self.model_name, train_config=self.train_config, seed=self.seed, cache=self.cache,
                    log=self.log)

    def timed(self, build: Callable[[], Defense]) -> tuple[Defense, float]:
        return _timed(self.cache, build)


def _timed(cache, build):
    """``build()`` and its cost in seconds: when it went through the cache, the seconds its entries took
    to build (measured now on a miss, recorded with the entry on a hit — the same on a re-run);
    otherwise its wall time."""
    before, entries, start = cache.build_seconds, cache.hits + cache.misses, time.perf_counter()
    out = build()
    if cache.hits + cache.misses > entries:
        return out, cache.build_seconds - before
    return out, time.perf_counter() - start


def _feature_squeezing(ctx: BuildContext) -> Built:
    from decoylab.defenses import feature_squeezing as fs

    return Built(fs.FeatureSqueezingDetector.for_dataset(ctx.base, "cifar10" if ctx.shape[0] == 3 else "mnist"),
                 ctx.base_seconds)


def _fit_honeymodel_detector(defense, x_clean: torch.Tensor, adversarial: dict, seed: int) -> None:
    defense.fit_detector(x_clean, adversarial, seed=seed)
    if defense.detector is None:  # no successful example on one side of its 80/20 split: nothing to learn from
        counts = ", ".join(f"{name} {int(success.sum())}" for name, (_, success) in adversarial.items())
        raise RuntimeError(f"HoneyModels' detector could not be trained: of the {len(x_clean)} detector-fit images "
                           f"the attacks succeeded on {counts}, too few for both parts of its 80/20 split. Raise "
                           "N_DETECTOR_FIT or the attack budgets (PGD_STEPS, CW_MAX_ITER), or leave honeymodels out "
                           "of DEFENSES")


def _honeymodels(ctx: BuildContext) -> Built:
    from decoylab.defenses import honeymodels as hm

    honey = hm.HoneyModel.create(ctx.shape, watermark_size=ctx.settings["watermark_size"],
                                 poison_percent=ctx.settings["poison_percent"], key_seed=ctx.seed, **ctx.common)
    return Built(*ctx.timed(lambda: honey.fit(ctx.train_set)), detector_fit=_fit_honeymodel_detector)


def _attractors(ctx: BuildContext) -> Built:
    from decoylab.defenses import attractors as at

    defense = at.Attractors(strength=ctx.settings["attractor_strength"], key_seed=ctx.seed, **ctx.common)
    defense, seconds = ctx.timed(lambda: defense.protect(ctx.base, ctx.shape, ctx.train_set.info.num_classes))
    return Built(defense, ctx.base_seconds + seconds)  # W is added to the trained base network C


def _luring(ctx: BuildContext) -> Built:
    from decoylab import train
    from decoylab.defenses import luring as lu

    from decoylab.experiments import luring as lx

    paper_ds = lu.paper_dataset(ctx.train_set.info.name) or "mnist"
    epochs, steps = ctx.settings["luring_component_epochs"], ctx.settings.get("luring_component_steps")
    if ctx.settings["luring_component_init"] == "auto":  # a short fine-tune of Auto's P (the quick presets)
        component_config = train.TrainConfig(epochs=epochs, steps=steps, batch_size=32, lr=3e-3)
    elif paper_ds == "mnist":  # Algorithm 1 from a random start, with the paper's batch, learning rate and changes
        component_config = lx.paper_component_config(paper_ds, epochs=epochs, steps=steps)
    else:  # SVHN/CIFAR-10's P learns at 1e-4/1e-5 over 210/216 epochs: a shortened run at that rate would not train
        component_config = train.TrainConfig(epochs=epochs, steps=steps, batch_size=64, lr=1e-3)
    luring = lu.Luring("luring", weight=lu.PAPER_WEIGHT[paper_ds], target_name=ctx.model_name,
                       component_name=ctx.settings["luring_component"],
                       component_init=ctx.settings["luring_component_init"], target_data="all", seed=ctx.seed,
                       cache=ctx.cache, log=ctx.log, target_config=ctx.train_config, train_config=component_config)
    return Built(*ctx.timed(lambda: luring.fit(ctx.train_set)))


def _fingerprints(ctx: BuildContext) -> Built:
    from decoylab.defenses import fingerprints as nf

    nfp = nf.NeuralFingerprinting.create(ctx.shape, ctx.train_set.info.num_classes, n=ctx.settings["fp_n"],
                                         eps=ctx.settings["fp_eps"], fingerprint_seed=ctx.seed, **ctx.common)
    return Built(*ctx.timed(lambda: nfp.fit(ctx.train_set)))


#: How the comparison builds each defense around the shared base network (every name of ``DEFENSE_NAMES``
#: but the undefended baseline).
BUILDERS: dict[str, Callable[[BuildContext], Built]] = {
    "feature_squeezing": _feature_squeezing, "honeymodels": _honeymodels, "attractors": _attractors,
    "luring": _luring, "fingerprints": _fingerprints}


def build_contenders(names, train_set, *, model_name: str, train_config, seed: int, cache, settings: dict[str, Any],
                     log=print) -> dict[str, Contender]:
    """Build (or load from the cache) every defense in ``names`` around one base architecture, each with
    its control (``control()``, fitted on the same training set).

    The undefended model, HoneyModels' benign control, NeuralFP's plain control, the Attractors' C and
    Luring's target M are the same network (same architecture, data, training and seed, hence the
    same cache entry). ``settings``: see ``BuildContext``."""
    params.check("defenses", list(names), compare_specs.DEFENSE_LIST)
    return _build_contenders(names, train_set, model_name=model_name, train_config=train_config, seed=seed,
                             cache=cache, settings=settings, log=log)


def _build_contenders(names, train_set, *, model_name, train_config, seed, cache, settings, log) -> dict[str, Contender]:
    from decoylab import train

    base, base_seconds = _timed(cache, lambda: train.train_or_load(
        model_name, train_set.x, train_set.y, train_set.info.num_classes, train_config, seed=seed, cache=cache,
        log=log))
    ctx = BuildContext(train_set, base, base_seconds, model_name, train_config, seed, cache, log, settings)
    out = {UNDEFENDED: Contender(UNDEFENDED, base, None, train_seconds=base_seconds)}
    for name in names:
        if name == UNDEFENDED:
            continue
        built = BUILDERS[name](ctx)
        control = built.defense.control()
        out[name] = Contender(name, built.defense.attacked_model, built.defense,
                              control.fit(train_set) if control is not None else None,
                              built.defense.control_description, built.seconds, built.detector_fit)
    return out


def calibrate_and_prepare(contenders: dict[str, Contender], x_cal: torch.Tensor, x_fit: torch.Tensor,
                          y_fit: torch.Tensor, specs: AttackSpecs, fpr: float, *, seed: int = 0, cache=None) -> None:
    """Each detector (and its control) on its own splits: a detector that learns from adversarial examples
    from the same attacks on the detector-fit images (crafted on its own ``attacked_model``), then every
    detector calibrated on the calibration images (clean statistics such as the Attractors' C1-C3, and a
    threshold at ``fpr``)."""
    for c in contenders.values():
        for d in c.detectors():
            if c.detector_fit is not None:
                adv = attack_sets(d.attacked_model, x_fit, y_fit, specs, seed=seed, cache=cache)
                c.detector_fit(d, x_fit, {label: (r.x_adv, r.success) for label, r in adv.items()}, seed)
            d.calibrate(x_cal, fpr)


def component_for(shape: tuple[int, ...], preferred: str, dataset: str) -> str:
    """Luring's component P for images shaped ``shape``: ``preferred`` when it takes them, else the
    paper's component for ``dataset`` (Bernhard et al., Appendix B), else the first one that does. A clear
    error when none does."""
    from decoylab import models
    from decoylab.defenses import luring as lu

    paper = lu.PAPER_ARCHITECTURES.get(lu.paper_dataset(dataset) or "", (None, None))[1]
    for name in dict.fromkeys([preferred, paper, *models.COMPONENTS]):
        if name is None:
            continue
        try:
            models.build_component(name, shape)
        except (ValueError, RuntimeError):
            continue
        return name
    raise ValueError(f"no Luring component takes {dataset} images shaped {tuple(shape)} "
                     f"(allowed components: {', '.join(models.COMPONENTS)}); leave 'luring' out of DEFENSES")


@dataclass
class ComparisonSetup:
    """Everything sections 1-2 of notebook 90 build for one dataset: the contenders and the three splits."""
    dataset: str
    train_set: Any
    test_set: Any
    contenders: dict[str, Contender]
    specs: AttackSpecs
    settings: dict[str, Any]
    x_cal: torch.Tensor
    x_fit: torch.Tensor
    y_fit: torch.Tensor
    x_att: torch.Tensor
    y_att: torch.Tensor
    pool_size: int
    pool_correct: int
    model_name: str
    train_config: Any

    @property
    def where(self) -> str:
        """The run in words, for the notes of recorded results."""
        return f"{self.dataset}, {len(self.y_att)} attacked images, {self.train_config.epochs} epoch(s) of {self.model_name}"


def prepare_comparison(dataset: str, *, defenses, attacks_, model_name: str, train_config, settings: dict[str, Any],
                       n_train: int | None, n_calibration: int, n_detector_fit: int, n_attack: int, fpr: float,
                       pgd_steps: int | None = None, cw_max_iter: int | None = None, cw_binary_steps: int | None = None,
                       data_root=None, seed: int = 0, cache=None, log=None) -> ComparisonSetup:
    """Sections 1-2 of notebook 90 for one dataset in one call (the notebook's dataset widget runs it for
    the datasets the parameters did not name): data, splits, contenders, detectors calibrated and fitted,
    attacked images. A Luring component that cannot take the dataset's images is replaced by one that can
    (``component_for``). Bad names raise before any data is read."""
    from decoylab import data

    params.check("defenses", list(defenses), compare_specs.DEFENSE_LIST)
    params.check("attacks", list(attacks_), compare_specs.ATTACK_LIST)
    params.check("fpr", fpr, FPR)
    for name, value in (("n_calibration", n_calibration), ("n_detector_fit", n_detector_fit), ("n_attack", n_attack)):
        params.check(name, value, compare_specs.IMAGES)
    data.check_name(dataset, "dataset")
    train_set = data.load(dataset, "train", n=n_train, seed=seed, data_root=data_root)
    test_set = data.load(dataset, "test", seed=seed, data_root=data_root)
    shape = tuple(train_set.x.shape[1:])
    cal_idx, fit_idx, pool_idx = comparison_splits(len(test_set.y), n_calibration=n_calibration,
                                                   n_detector_fit=n_detector_fit, n_attack=n_attack, seed=seed)
    if "luring" in defenses:  # the one setting that depends on the images
        settings = {**settings, "luring_component": component_for(shape, settings["luring_component"], dataset)}
    contenders = _build_contenders(defenses, train_set, model_name=model_name, train_config=train_config, seed=seed,
                                   cache=cache, settings=settings, log=log)
    specs = attack_specs(attacks_, shape[0], pgd_steps=pgd_steps, cw_max_iter=cw_max_iter,
                         cw_binary_steps=cw_binary_steps)
    x_cal, x_fit, y_fit = test_set.x[cal_idx], test_set.x[fit_idx], test_set.y[fit_idx]
    calibrate_and_prepare(contenders, x_cal, x_fit, y_fit, specs, fpr, seed=seed, cache=cache)
    pool_x, pool_y = test_set.x[pool_idx], test_set.y[pool_idx]
    keep = correct_everywhere(contenders, pool_x, pool_y)
    return ComparisonSetup(dataset, train_set, test_set, contenders, specs, settings, x_cal, x_fit, y_fit,
                           pool_x[keep][:n_attack], pool_y[keep][:n_attack], len(pool_y), int(keep.sum()),
                           model_name=model_name, train_config=train_config)


# --- Costs: clean accuracy, training and inference time -------------------------------------------

def clean_accuracy(contender: Contender, x: torch.Tensor, y: torch.Tensor) -> float:
    from decoylab import train

    return train.accuracy(contender.classifier, x, y)


def inference_seconds(contender: Contender, x: torch.Tensor, repeats: int = 2) -> float:
    """Best of ``repeats`` wall times to classify *and* score ``x`` (the deployed cost)."""
    from decoylab import train

    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        train.predict(contender.classifier, x)
        if contender.defense is not None:
            contender.defense.score(x)
        best = min(best, time.perf_counter() - start)
    return best


def overheads(setup: ComparisonSetup, n_timing: int = 500):
    """Per contender (a DataFrame row): clean accuracy on the whole test split and its cost against the
    undefended model (points), training seconds and overhead, inference seconds per 1000 images (classify
    and score the first ``n_timing`` test images, best of two) and the factor over the undefended model."""
    import pandas as pd

    test_set, contenders = setup.test_set, setup.contenders
    base = contenders[UNDEFENDED]
    base_accuracy = clean_accuracy(base, test_set.x, test_set.y)
    timing_images = test_set.x[:n_timing]
    base_inference = inference_seconds(base, timing_images)
    return pd.DataFrame({name: {
        "clean accuracy": (acc := clean_accuracy(c, test_set.x, test_set.y)),
        "accuracy cost (points)": 100 * (base_accuracy - acc),
        "training s": c.train_seconds,
        "training overhead s": c.train_seconds - base.train_seconds,
        "inference s / 1000": 1000 / len(timing_images) * (inf := inference_seconds(c, timing_images)),
        "inference ×": inf / base_inference} for name, c in contenders.items()}).T


# --- Results -------------------------------------------------------------------------------------

NO_PAPER = "the kit's own comparison: no paper measures this"
AUC_INTERVAL = "interval: Hanley and McNeil's"


def record_comparison(setup: ComparisonSetup, costs, comparison, fprs) -> None:
    """Notebook 90's costs (``overheads``) and detection results (``comparison_table``) as named results."""
    where, first = setup.where, f"{fprs[0]:g}"
    for name, row in costs.iterrows():
        n_test = len(setup.test_set.y)
        accuracy = {who: claims.proportion(round(costs.loc[who, "clean accuracy"] * n_test), n_test)
                    for who in (UNDEFENDED, name)}
        results.record(f"{name}.clean_accuracy", row["clean accuracy"], n=n_test, proportion=True, note=where)
        results.record(f"{name}.accuracy_cost", row["accuracy cost (points)"] / 100, n=n_test,
                       interval=claims.difference(accuracy[UNDEFENDED], accuracy[name]).interval,
                       note=f"undefended minus {name} on the same {n_test} test images (interval: Newcombe's, "
                            f"unpaired, so conservative); {NO_PAPER}")
        results.record(f"{name}.training_overhead_seconds", row["training overhead s"],
                       note="wall time on the machine that trained it")
        results.record(f"{name}.inference_factor", row["inference ×"],
                       note="classify and score, relative to the undefended model")
    for (name, attack), row in comparison.iterrows():
        key, contender = f"{name}.{attack}", setup.contenders[name]
        attacked, won, control_won = int(row["n attacked"]), int(row["n successful"]), int(row["control n successful"])
        results.record(f"{key}.success", row["success"], n=attacked, proportion=True, note=where)
        results.record(f"{key}.overall", row["overall"], n=attacked, proportion=True,
                       note=f"success × (1 − TPR @ {first}); {NO_PAPER}")
        if contender.defense is not None:
            results.record(f"{key}.tpr@{first}", row[f"TPR @ {first}"], n=won, proportion=won > 0,
                           note=f"{where}; n: successful examples")
            results.record(f"{key}.auc", row["AUC"], n=won, auc_against=attacked,
                           note=f"{where}; n: successful examples against {attacked} clean; {AUC_INTERVAL}")
            results.record(f"{key}.control_auc", row["control AUC"], source="control", n=control_won,
                           auc_against=attacked,
                           note=f"{contender.control_description}; n: its successful examples; {AUC_INTERVAL}")


def record_overlay(setup: ComparisonSetup, comparison) -> None:
    """Notebook 41's overlay: each defense's AUC and its control's per attack (``overlay_<defense>_<role>_
    <attack>_auc``); a defense without a control (feature squeezing) records its own only."""
    for (name, attack), row in comparison.iterrows():
        contender = setup.contenders[name]
        for role, column, detector, what in (("defense", "AUC", contender.defense, "the defense"),
                                             ("control", "control AUC", contender.control,
                                              contender.control_description)):
            if detector is not None:
                won = int(row["n successful" if role == "defense" else "control n successful"])
                results.record(f"overlay_{name}_{role}_{attack}_auc", row[column], n=won,
                               auc_against=int(row["n attacked"]),
                               note=f"{attack} crafted on the {name} model ({setup.model_name}, {setup.dataset}), "
                                    f"{won} successful examples vs {int(row['n attacked'])} clean; {what}; "
                                    f"{AUC_INTERVAL}")
