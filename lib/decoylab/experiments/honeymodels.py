"""The experiments of the HoneyModels paper (Abdou, Sheatsley, Beugin, Shipp, McDaniel, "HoneyModels: Machine
Learning Honeypots", MILCOM 2021) on the defense of ``decoylab.defenses.honeymodels``.

- ``run_paper_attacks`` / ``attack_set`` — appendix C's CW-L2, PGD-L∞ and JSMA (Tables II-IV), targeted at
  random classes, on correctly classified test images;
- ``reconstruction_table`` and ``reconstruction_samples`` — §III-C-3's Sim(W, Ŵ) in both readings, beside
  the clean control;
- ``table_one`` — Table I beside the paper and the control (the benign model's detector);
- ``sweep_point`` and ``sweep`` — Fig. 4's poison and watermark-size sweeps (``SweepSettings``), every
  point cached;
- ``mmd_analysis`` — Fig. 5's MMD bootstrap as numbers (overlap accuracy, permutation tests);
- ``record_results``, ``record_sweep``, ``record_mmd`` — notebooks 10, 11 and 12's named results.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from decoylab import claims, paper_values, results, stats, train
from decoylab.defenses.honeymodels import READINGS, DetectorReport, HoneyModel, WatermarkKey, reconstruction

if TYPE_CHECKING:
    import pandas as pd

# The three attacks of §IV, by the kit's registry names, each with the `honeymodels` preset
# (appendix C, Tables II-IV: ART, targeted, random targets, ART defaults elsewhere).
PAPER_ATTACKS = {"cw": "cw2", "pgd": "pgd", "jsma": "jsma"}

# Table I of the paper, quoted as printed (watermark size 10 %, poison 30 %, 500 adversarial
# examples per attack). Fractions, not percentages. The rows are not internally consistent
# (e.g. MNIST CW: ACC 45.0 % beside FPR 56.5 % and TPR 97.5 %), which the notebook points out.
PAPER_TABLE_I = paper_values.values("honeymodels", "table_1")
PAPER_TABLE_I_SETTINGS = paper_values.settings("honeymodels", "table_1")

# The two models of every comparison, in the kit's colours for the defense and for the undefended model.
MODEL_COLORS = {"HoneyModel": "honeymodels", "benign model": "undefended"}
# Fig. 4's markers: (label, colour, marker) per measured column.
FIG4_CURVES = {"accuracy": ("accuracy", "tab:blue", "^"), "jsma_reconstruction": ("JSMA", "tab:green", "o"),
               "pgd_reconstruction": ("PGD", "tab:red", "D"), "cw_reconstruction": ("CW", "tab:purple", "s")}
FIG4_BOUNDS = {column: (f"{column}_low", f"{column}_high") for column in FIG4_CURVES}


def with_fig4_intervals(sweep_frame: "pd.DataFrame") -> "pd.DataFrame":
    """``sweep``'s rows with each Fig. 4 curve's 95 % interval (``FIG4_BOUNDS``' columns): Wilson's for the
    accuracy on ``n_test`` images, Student's t for each attack's mean reconstruction over its
    successful examples (``stats.mean_interval``; none where fewer than two)."""
    out = sweep_frame.copy()
    bounds = [stats.wilson(round(a * n), int(n)) for a, n in zip(out["accuracy"], out["n_test"])]
    out["accuracy_low"], out["accuracy_high"] = [b[0] for b in bounds], [b[1] for b in bounds]
    for attack in PAPER_ATTACKS:
        bounds = [stats.mean_interval(m, sd, int(k)) for m, sd, k in
                  zip(out[f"{attack}_reconstruction"], out[f"{attack}_reconstruction_sd"], out[f"{attack}_n_successful"])]
        out[f"{attack}_reconstruction_low"] = [b[0] for b in bounds]
        out[f"{attack}_reconstruction_high"] = [b[1] for b in bounds]
    return out


def paper_dataset(dataset: str) -> str:
    """The dataset whose Table I row a kit run is shown beside: itself, or MNIST for MNIST-like
    stand-ins such as mnist5k."""
    return dataset if dataset in PAPER_TABLE_I else "mnist"


def matches_table_one(*, dataset: str, watermark_size: float, poison_percent: float, amplitude: float,
                      n_attack: int, full_training_set: bool, epochs: int, jsma_gamma: float) -> bool:
    """Whether a run's settings are Table I's (appendix B training: 1 epoch MNIST, 25 CIFAR-10)."""
    s = PAPER_TABLE_I_SETTINGS
    return (dataset in PAPER_TABLE_I and watermark_size == s["watermark_size"] and amplitude == s["amplitude"]
            and poison_percent == s["poison_percent"] and n_attack >= s["n_per_attack"] and full_training_set
            and jsma_gamma == 1.0 and epochs == {"mnist": 1, "cifar10": 25}[dataset])


def run_paper_attacks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, backend: str = "fast", seed: int = 0,
                      cache=None, jsma_gamma: float = 1.0) -> dict[str, Any]:
    """The paper's CW-L2, PGD-L∞ and JSMA with their `honeymodels` presets, targeted at random classes.

    ``jsma_gamma`` (the largest fraction of features JSMA may change) is ART's default 1.0 in the
    paper; with θ = 0.3 a failing image then runs until every feature is saturated (about 1500
    iterations on MNIST), so quick runs may lower it."""
    from decoylab import attacks

    extra = {"jsma": {"gamma": jsma_gamma}}
    return {label: attacks.run(name, model, x, y, targeted=True, target="random", preset="honeymodels",
                               backend=backend, seed=seed, cache=cache, **extra.get(label, {}))
            for label, name in PAPER_ATTACKS.items()}


def attack_set(model: nn.Module, test_set, n_attack: int, *, backend: str = "fast", seed: int = 0, cache=None,
               jsma_gamma: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """``n_attack`` test images ``model`` classifies correctly (stratified, seeded), their labels and the
    paper's three attacks on them (``run_paper_attacks``)."""
    idx = train.correct_subset(model, test_set.x, test_set.y, n_attack, seed=seed)
    x, y = test_set.x[idx], test_set.y[idx]
    return x, y, run_paper_attacks(model, x, y, backend=backend, seed=seed, cache=cache, jsma_gamma=jsma_gamma)


Attacked = dict[str, tuple[torch.Tensor, dict[str, Any]]]  # model label -> (attacked images, {attack: result})


def reconstruction_table(key: WatermarkKey, attacked: Attacked) -> "pd.DataFrame":
    """Mean Sim(W, Ŵ) on the successful examples per model, attack and reading, beside its clean control
    (Ŵ read on the clean images themselves). ``attacked``: ``{"HoneyModel": (x, adv), "benign model": (x, adv)}``."""
    import pandas as pd

    rows = []
    for who, (x, adversarial) in attacked.items():
        for name, r in adversarial.items():
            ok = r.success
            for reading in READINGS:
                sim = reconstruction(key, r.x_adv[ok], x[ok], reading)
                rows.append({"model": who, "attack": name, "reading": reading, "similarity": float(sim.mean()),
                             "sd": float(sim.double().std()) if len(sim) > 1 else float("nan"), "n": len(sim),
                             "clean control": float(reconstruction(key, x[ok], x[ok], reading).mean())})
    return pd.DataFrame(rows)


def reconstruction_samples(key: WatermarkKey, attacked: Attacked, reading: str) -> "pd.DataFrame":
    """Sim(W, Ŵ) of every successful example (for the box plot): one row per model, attack and example."""
    import pandas as pd

    rows = []
    for who, (x, adversarial) in attacked.items():
        for name, r in adversarial.items():
            sim = reconstruction(key, r.x_adv[r.success], x[r.success], reading)
            rows += [{"model": who, "attack": name, "similarity": float(s)} for s in sim]
    return pd.DataFrame(rows)


def table_one(report: DetectorReport, control: DetectorReport, dataset: str, settings_match: bool):
    """Table I beside the paper: the HoneyModel's detector, the same pipeline on the benign model
    (the control), and the paper's value for the same cell with the dataset it was measured on."""
    import pandas as pd

    paper_ds = paper_dataset(dataset)
    paper = PAPER_TABLE_I[paper_ds]
    rows = []
    for attack, row in report.rows.items():
        for metric in ("acc", "fpr", "tpr", "auc"):
            rows.append({"attack": attack, "metric": metric.upper(), "HoneyModel": row[metric],
                         "benign model (control)": control.rows.get(attack, {}).get(metric, float("nan")),
                         "paper": paper.get(attack, {}).get(metric, float("nan")),
                         "paper source": f"Table I, {paper_ds}" if metric != "auc" else "not reported",
                         "settings match": settings_match and metric != "auc"})
    return pd.DataFrame(rows)


def record_results(accuracy: dict[str, tuple[float, float]], adversarial: dict[str, Any], reconstructions: "pd.DataFrame",
                   report: DetectorReport, control: DetectorReport, *, where: str, paper_ds: str, match: str,
                   backend: str, n_test: int) -> None:
    """Notebook 10's named results: accuracies on ``n_test`` test images (``accuracy[model] = (clean,
    watermarked)``), the HoneyModel's attack success and reconstruction (``adversarial``,
    ``reconstruction_table``'s frame), and each detector's ACC, FPR and TPR beside Table I (for ``paper_ds``,
    with ``match`` from ``results.settings_match``) and its AUC beside the control's. ``where`` describes the
    run's settings in the notes."""
    results.record("honey_accuracy", accuracy["HoneyModel"][0], n=n_test, proportion=True,
                   note=f"test accuracy, {where}; the paper gives no single value (Fig. 4)")
    results.record("benign_accuracy", accuracy["benign model"][0], n=n_test, proportion=True,
                   note="the control: same training on clean data")
    results.record("honey_accuracy_on_watermarked", accuracy["HoneyModel"][1], n=n_test, proportion=True,
                   note="test images with the watermark applied")
    sims = reconstructions.set_index(["model", "attack", "reading"])
    for name, r in adversarial.items():
        results.record(f"{name}_success_honey", r.success_rate, n=len(r.success), proportion=True,
                       note=f"targeted, random targets, preset honeymodels, {backend}")
        for reading in READINGS:
            row, benign = sims.loc["HoneyModel", name, reading], sims.loc["benign model", name, reading]
            results.record(f"{name}_reconstruction_{reading}", row["similarity"], n=int(row["n"]),
                           interval=stats.mean_interval(row["similarity"], row["sd"], int(row["n"])),
                           note=f"mean Sim(W, Ŵ) on successful examples; benign model {benign['similarity']:.3f} "
                                f"(n {int(benign['n'])})")
    for attack, row in report.rows.items():
        n_adversarial = row.get("n_test_adversarial", 0)
        counts = {"acc": row["n_test"], "fpr": row["n_test"] - n_adversarial, "tpr": n_adversarial}
        for metric in ("acc", "fpr", "tpr"):
            results.record(f"detector_{attack}_{metric}", row[metric], paper=PAPER_TABLE_I[paper_ds][attack][metric],
                           source=f"HoneyModels Table I, {paper_ds}", match=match, n=counts[metric], proportion=True,
                           note=f"{where}; held-out images ({n_adversarial} successful adversarial examples)")
        results.record(f"detector_{attack}_auc", row["auc"], n=row["n_test"],
                       note="held-out ROC AUC; the paper reports none")
        results.record(f"control_{attack}_auc", control.rows[attack]["auc"], n=control.rows[attack]["n_test"],
                       note="same detector pipeline on the benign model")


@dataclass
class SweepSettings:
    """Everything a point of Fig. 4 depends on besides the watermark size and the poison percentage."""
    amplitude: float = 1.0
    key_seed: int | None = 0
    model_name: str = "honey_small_conv"
    train_config: train.TrainConfig = field(default_factory=train.TrainConfig)
    seed: int = 0
    n_attack: int = 100
    backend: str = "fast"
    reading: str = "perturbation"
    jsma_gamma: float = 1.0


def sweep_point(train_set, test_set, settings: SweepSettings, *, watermark_size: float, poison_percent: float,
                cache=None) -> dict[str, float]:
    """One point of Fig. 4: train (or load) the HoneyModel, then its test accuracy (on ``n_test`` images) and,
    per paper attack, the success rate, the number of successful examples and the mean and standard deviation
    of the reconstruction over them. The model and
    every adversarial set are cached, and so is the point itself (``sweeps.cached_point``): a re-run or
    an interrupted sweep resumes where it stopped."""
    import sys

    from decoylab.attacks import art_backend
    from decoylab.experiments.sweeps import cached_point

    s = settings
    # Made before the cache is read, so that a bad setting fails before any compute.
    honey = HoneyModel.create(tuple(train_set.x.shape[1:]), watermark_size=watermark_size, amplitude=s.amplitude,
                              poison_percent=poison_percent, key_seed=s.key_seed, model_name=s.model_name,
                              train_config=s.train_config, seed=s.seed, cache=cache, log=None)
    key_parts = {"watermark_size": watermark_size, "poison_percent": poison_percent, "amplitude": s.amplitude,
                 "key_seed": s.key_seed, "model": s.model_name, "train": s.train_config, "seed": s.seed,
                 "n_attack": s.n_attack, "backend": s.backend, "reading": s.reading, "jsma_gamma": s.jsma_gamma}

    def build(cache) -> dict[str, float]:
        honey.cache = cache
        honey.fit(train_set)
        x, y, adversarial = attack_set(honey.model, test_set, s.n_attack, backend=s.backend, seed=s.seed, cache=cache,
                                       jsma_gamma=s.jsma_gamma)
        point = {"accuracy": train.accuracy(honey.model, test_set.x, test_set.y), "n_test": len(test_set.y)}
        for label, r in adversarial.items():
            sim = honey.reconstruction(r.x_adv[r.success], x[r.success], s.reading)
            point[f"{label}_success"] = r.success_rate
            point[f"{label}_reconstruction"] = float(sim.mean()) if len(sim) else float("nan")
            # what an interval of the mean needs (the claims of notebook 11)
            point[f"{label}_reconstruction_sd"] = float(sim.double().std()) if len(sim) > 1 else float("nan")
            point[f"{label}_n_successful"] = int(r.success.sum())
        return point

    return cached_point("honeymodels_sweep", key_parts, build, train_set=train_set, test_set=test_set,
                        code=(sys.modules[__name__], sys.modules[HoneyModel.__module__], art_backend), cache=cache)


def poison_scale(train_set, test_set, settings: SweepSettings, *, sizes, steps: int, watermark_size: float,
                 poisons: tuple[float, float] = (0.0, 90.0), cache=None) -> "pd.DataFrame":
    """Poison tolerance against the number of training images (Abdou et al., HoneyModels, §IV-A: "we can poison
    up to 90 % of the data while only losing 12 % accuracy" on MNIST's 60,000 digits). For each size of
    ``sizes`` a stratified seeded subset of ``train_set`` trains a HoneyModel at each of ``poisons`` for the
    same number of optimiser ``steps`` (epochs rounded up: the paper's one epoch of 60,000 at batch 64 is 938),
    so that only the number of clean images differs; one row per size with both accuracies on ``test_set`` and
    their difference (Newcombe's interval for two independent proportions, a conservative one here: both are
    read on the same test images). Models are cached."""
    import pandas as pd

    from decoylab.data import Dataset, stratified_indices

    rows = []
    for size in sizes:
        if size > len(train_set.y):
            raise ValueError(f"SCALE_N_TRAIN: {size} is more than the {len(train_set.y)} training images loaded")
        pick = torch.from_numpy(stratified_indices(train_set.y, size, settings.seed))
        subset = Dataset(train_set.x[pick], train_set.y[pick], train_set.info)
        epochs = math.ceil(steps / math.ceil(size / settings.train_config.batch_size))
        config = replace(settings.train_config, epochs=epochs)
        correct = []
        for poison in poisons:
            honey = HoneyModel.create(tuple(train_set.x.shape[1:]), watermark_size=watermark_size,
                                      amplitude=settings.amplitude, poison_percent=poison, key_seed=settings.key_seed,
                                      model_name=settings.model_name, train_config=config, seed=settings.seed,
                                      cache=cache, log=None)
            honey.fit(subset)
            correct.append(round(train.accuracy(honey.model, test_set.x, test_set.y) * len(test_set.y)))
        n = len(test_set.y)
        drop = claims.difference(claims.proportion(correct[0], n), claims.proportion(correct[1], n))
        rows.append({"training images": size, "epochs": epochs,
                     "optimiser steps": epochs * math.ceil(size / settings.train_config.batch_size),
                     f"accuracy at {poisons[0]:g} %": correct[0] / n, f"accuracy at {poisons[1]:g} %": correct[1] / n,
                     "drop": drop.value, "drop 95 % interval": tuple(round(v, 4) for v in drop.interval),
                     "clean images at the high poison": round(size * (1 - poisons[1] / 100)), "test images": n})
    return pd.DataFrame(rows).set_index("training images")


def _sweep_row(train_set, test_set, settings: SweepSettings, cache, grid_point: tuple[str, float, float]) -> dict[str, Any]:
    kind, size, poison = grid_point
    return {"sweep": kind, "poison_percent": poison, "watermark_size": size,
            **sweep_point(train_set, test_set, settings, watermark_size=size, poison_percent=poison, cache=cache)}


def sweep(train_set, test_set, settings: SweepSettings, *, poison_grid, poison_sweep_size: float, size_grid,
          size_sweep_poison: float, cache=None) -> list[dict[str, Any]]:
    """Fig. 4's two sweeps, one row per point: the poison percentages of ``poison_grid`` at watermark size
    ``poison_sweep_size`` (Fig. 4a, 4c), then the sizes of ``size_grid`` at ``size_sweep_poison`` % poison
    (Fig. 4b, 4d). Under ``decoylab run --executor ray`` each point is a Ray task (``parallel.map_points``)."""
    from decoylab import parallel

    grid = [("poison", poison_sweep_size, poison) for poison in poison_grid] + \
           [("size", size, size_sweep_poison) for size in size_grid]
    return parallel.map_points(functools.partial(_sweep_row, train_set, test_set, settings, cache), grid)


def record_sweep(sweep_frame: "pd.DataFrame", *, where: str, size_sweep_poison: float, dataset: str,
                 paper_settings: bool, differences: str = "") -> None:
    """Notebook 11's named results: accuracy and reconstruction per poison percentage, accuracy per watermark
    size, and, when the poison grid holds 0 and 90, the accuracy drop the paper quotes (§IV-A); ``differences``
    names every way the run's settings differ from the paper's (``honeymodel_claims.setting_differences``)."""
    poison_part = sweep_frame[sweep_frame.sweep == "poison"].set_index("poison_percent")
    for poison, row in poison_part.iterrows():
        results.record(f"accuracy_poison_{poison:g}", row["accuracy"], n=int(row["n_test"]), proportion=True,
                       note=where)
        for attack in PAPER_ATTACKS:
            mean, n = row[f"{attack}_reconstruction"], int(row[f"{attack}_n_successful"])
            results.record(f"{attack}_reconstruction_poison_{poison:g}", mean, n=n,
                           interval=stats.mean_interval(mean, row[f"{attack}_reconstruction_sd"], n),
                           note=f"mean Sim(W, Ŵ) on the successful examples; {where}")
    for _, row in sweep_frame[sweep_frame.sweep == "size"].iterrows():
        results.record(f"accuracy_size_{row['watermark_size']:g}", row["accuracy"], n=int(row["n_test"]),
                       proportion=True, note=f"poison {size_sweep_poison} %")
    if 0 in poison_part.index and 90 in poison_part.index:
        clean, poisoned = (poison_part.loc[p] for p in (0, 90))
        accuracy = {p: claims.proportion(round(row["accuracy"] * row["n_test"]), int(row["n_test"]))
                    for p, row in ((0, clean), (90, poisoned))}
        drop = claims.difference(accuracy[0], accuracy[90])
        results.record("accuracy_drop_0_to_90", drop.value, n=int(clean["n_test"]), interval=drop.interval,
                       paper=paper_values.values("honeymodels", "accuracy_drop_0_to_90")["mnist"],
                       source="HoneyModels " + paper_values.source("honeymodels", "accuracy_drop_0_to_90"),
                       match=results.settings_match(dataset, "mnist", paper_settings, differences),
                       note=f"{where}; interval: Newcombe's for a difference of two rates, unpaired (both rates are "
                            "on the same test images, so it is conservative)")


def chosen_examples(result, samples: str) -> torch.Tensor:
    """The adversarial examples a comparison uses: the successful ones, or ``samples="all"`` outputs."""
    return result.x_adv[result.success] if samples == "successful" else result.x_adv


def mmd_analysis(adversarial: dict[str, dict[str, Any]], *, samples: str, sample_size: int, draws: int,
                 permutations: int, seed: int = 0, minimum: int = 10,
                 log: Callable[[str], None] | None = print) -> tuple[dict[str, Any], "pd.DataFrame"]:
    """Fig. 5 (§IV-C) per paper attack, on ``adversarial["benign"][attack]`` vs ``adversarial["honey"][attack]``:
    the MMD bootstrap (``stats.bootstrap_mmd``) and its overlap accuracy, a permutation test on all examples
    and one on ``sample_size`` per side. Attacks with fewer than ``minimum`` examples on a side are skipped
    (and logged). Returns ``({attack: BootstrapMMD}, summary table indexed by attack)``."""
    import pandas as pd

    boot, rows = {}, []
    for attack in PAPER_ATTACKS:
        benign_x = chosen_examples(adversarial["benign"][attack], samples)
        honey_x = chosen_examples(adversarial["honey"][attack], samples)
        if min(len(benign_x), len(honey_x)) < minimum:
            if log:
                log(f"{attack}: fewer than {minimum} examples on one side ({len(benign_x)} / {len(honey_x)}): skipped")
            continue
        boot[attack] = stats.bootstrap_mmd(benign_x, honey_x, sample_size=sample_size, draws=draws, seed=seed)
        observed, p_value = stats.permutation_test(benign_x, honey_x, permutations=permutations, seed=seed)
        small = torch.Generator().manual_seed(seed)
        pick_b = torch.randperm(len(benign_x), generator=small)[:sample_size]
        pick_h = torch.randperm(len(honey_x), generator=small)[:sample_size]
        _, p_small = stats.permutation_test(benign_x[pick_b], honey_x[pick_h], permutations=permutations, seed=seed)
        rows.append({"attack": attack, "n benign": len(benign_x), "n honey": len(honey_x), "sigma": boot[attack].sigma,
                     "overlap accuracy": boot[attack].overlap_accuracy(), "MMD (all examples)": observed,
                     "p (all examples)": p_value, f"p ({sample_size} vs {sample_size})": p_small})
    return boot, (pd.DataFrame(rows).set_index("attack") if rows else pd.DataFrame())


def record_mmd(summary: "pd.DataFrame", *, where: str, sample_size: int) -> None:
    """Notebook 12's named results per attack: the overlap accuracy and both permutation p-values."""
    for attack, row in summary.iterrows():
        n_benign, n_honey = int(row["n benign"]), int(row["n honey"])
        results.record(f"{attack}_overlap_accuracy", row["overlap accuracy"], n=min(n_benign, n_honey),
                       note=f"{where}; 0.5 = indistinguishable; n: examples of the model with fewer. The paper's "
                            "design, biased toward distinguishable with few examples; the Fig. 5 claim measures the "
                            "unbiased split-half overlap, with its interval. The paper shows Fig. 5 only as curves")
        results.record(f"{attack}_permutation_p", row["p (all examples)"], n=n_benign + n_honey,
                       note=f"{n_benign} vs {n_honey} examples")
        results.record(f"{attack}_permutation_p_small", row[f"p ({sample_size} vs {sample_size})"],
                       n=2 * min(sample_size, n_benign, n_honey), note=f"{sample_size} vs {sample_size}")
