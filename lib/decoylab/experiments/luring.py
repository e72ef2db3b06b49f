"""The experiments of the Luring paper (Bernhard, Moellic, Dutertre, "Luring of Transferable Adversarial
Perturbations in the Black-Box Paradigm", 2021) on the defense of ``decoylab.defenses.luring``.

- ``transfer_metrics`` — DR, IAR (eq. 3), AC_MoP, AC_M and DAC (eq. 4) of adversarial examples crafted on M∘P;
- ``characterise`` (Fig. 2), ``defense_table`` (Tables 1 and 14), ``distortion_table`` (Table 9),
  ``accuracy_table`` (Table 8), ``detection_table`` (the ROC curves of the disagreement score);
- ``saliency_columns`` (Fig. 3) and ``opposite_sign_counts`` (Appendix D.3, Table 10);
- ``record_results`` — notebook 30's named results, each beside the paper's value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import nn

from decoylab import metrics, paper_values, params, results, stats, train
from decoylab.experiments.adaptive_verdicts import Rate
# PAPER_WEIGHT and paper_dataset are the defense's settings per data set; the notebook reads them here too.
from decoylab.defenses.luring import APPROACH_LABELS, PAPER_WEIGHT, Luring, paper_dataset  # noqa: F401
from decoylab.specs import luring as specs

if TYPE_CHECKING:
    import pandas as pd

# Luring keeps the kit's colour for the defense (plots.DEFENSE_COLORS); the baselines get neutral ones.
APPROACH_COLORS = {"Stack": "#8c564b", "Auto": "#ff7f0e", "C_E": "#1f77b4", "Luring": "#2ca02c"}

# The paper's numbers, quoted (decoylab/paper_values.yaml). Table 8: (test accuracy, agreement) per model.
PAPER_TABLE_8 = paper_values.values("luring", "table_8")
# Table 14 (MNIST), Table 1 (SVHN, CIFAR-10): (AC_MoP, AC_M, DAC) per (attack, eps, approach).
PAPER_DEFENSE_TABLE = {dataset: {(attack, eps, approach): row for attack, by_eps in table.items() for eps, by_approach in by_eps.items()
                              for approach, row in by_approach.items()}
                      for dataset, table in paper_values.values("luring", "defense_table").items()}
PAPER_DEFENSE_SOURCE = paper_values.source("luring", "defense_table")
PAPER_EPS = {"mnist": (0.2, 0.3, 0.4), "svhn": (0.03, 0.06, 0.08), "cifar10": (0.02, 0.03, 0.04)}
# Table 9: mean (L2, L∞) of CW-L2 on M ("target") and on each M∘P.
PAPER_TABLE_9 = paper_values.values("luring", "table_9")
MIM_W_VARIANTS = ("mim", "dim", "mim_ti", "dim_ti")


def paper_component_config(paper_ds: str, *, epochs: int, steps: int | None = None) -> train.TrainConfig:
    """P's training as Algorithm 1 and the authors' code (Bernhard, Moellic, Dutertre, "Luring of Transferable
    Adversarial Perturbations in the Black-Box Paradigm", Appendix B): the paper's batch size and learning rate,
    with its two learning-rate changes at the same fractions of this run's length — of ``steps`` when given (the
    MNIST code: 0.0002 from step 35 000 and 0.0004 from 45 000 of 50 000), else of ``epochs`` (epochs 45 and 58
    of 64). A shorter run keeps the schedule's shape; a change that would fall at or past its end, or on the
    same step as the one before, is left out (a 1-epoch run keeps the first learning rate)."""
    paper = paper_values.values("luring", "experiment_settings")[paper_ds]
    if steps and paper["component_steps"] and paper["component_lr_steps"]:
        full, drops = paper["component_steps"], paper["component_lr_steps"]
    else:
        full, drops = paper["component_epochs"], paper["component_lr_drops"]
    length = steps or epochs
    milestones, lrs = [], []
    for drop, lr in zip(drops, paper["component_lr_values"]):
        at = round(length * drop / full)
        if 0 < at < length and (not milestones or at > milestones[-1]):
            milestones.append(at)
            lrs.append(lr)
    return train.TrainConfig(epochs=epochs, steps=steps, batch_size=paper["component_batch_size"],
                             lr=paper["component_lr"], schedule="step" if milestones else "constant",
                             milestones=milestones, milestone_lrs=lrs)


def attack_preset(dataset: str) -> str:
    """The attack engine's ``luring_*`` preset for a data set."""
    return {"svhn": "luring_svhn", "cifar10": "luring_cifar10"}.get(dataset, "luring_mnist")


def transfer_metrics(pred_augmented: torch.Tensor, pred_target: torch.Tensor, y: torch.Tensor,
                     successful: torch.Tensor | None = None) -> dict[str, float]:
    """The Luring metrics from predictions on an adversarial set X' crafted on M∘P.

    - DR (eq. 3): among x' that fool M∘P, the share where M and M∘P disagree;
    - IAR (eq. 3): among x' that fool M∘P, the share M still classifies correctly;
    - AC_MoP, AC_M: accuracy of M∘P and of M on X' (§4.1, transferability scenario);
    - DAC (eq. 4): 1 − the share of x' where M and M∘P agree and M is wrong (detected or harmless).

    ``successful`` restricts DR and IAR to a subset (§3.2 keeps x' that fool all four augmented
    models); by default it is "fools this M∘P". NaN when no x' qualifies."""
    pred_augmented, pred_target, y = pred_augmented.cpu(), pred_target.cpu(), y.cpu()
    fooled = pred_augmented != y
    if successful is not None:
        fooled = fooled & successful.cpu()
    n_fooled = int(fooled.sum())
    rate = (lambda m: float((m & fooled).sum()) / n_fooled) if n_fooled else (lambda m: float("nan"))
    agree_wrong = (pred_augmented == pred_target) & (pred_target != y)
    return {"DR": rate(pred_augmented != pred_target), "IAR": rate(pred_target == y),
            "AC_MoP": float((pred_augmented == y).float().mean()), "AC_M": float((pred_target == y).float().mean()),
            "DAC": 1.0 - float(agree_wrong.float().mean()), "n": len(y), "n_fooled": n_fooled}


def point_outcomes(pred_augmented: torch.Tensor, pred_target: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per x' (the claims' paired bootstraps resample them): M∘P right, M right, M and M∘P disagree."""
    pred_augmented, pred_target, y = pred_augmented.cpu(), pred_target.cpu(), y.cpu()
    return {"mop_correct": pred_augmented == y, "target_correct": pred_target == y,
            "disagree": pred_augmented != pred_target}


def measure_transfer(defense: Luring, x_adv: torch.Tensor, y: torch.Tensor,
                     successful: torch.Tensor | None = None) -> dict[str, float]:
    """``transfer_metrics`` of adversarial inputs ``x_adv`` crafted on the defense's M∘P."""
    return transfer_metrics(*defense.predictions(x_adv), y, successful)


def copy_agreement(defense: Luring, train_set, test_set) -> dict[str, Rate]:
    """How well P copies M (Bernhard, Moellic, Dutertre 2021, Algorithm 1 trains P so that M∘P keeps M's
    decisions): the images on which M∘P and M predict the same class, as rates with Wilson intervals, on
    "train", the images P was trained on; "held_out", the validation split the defense held out of ``train_set``
    (new to P; M saw them too when it was trained on every image, ``target_data="all"``); and "test",
    ``test_set`` (new to both). "train" against "held_out" compares P on its own images and on new ones with M's
    familiarity held equal; "held_out" against "test" shows what M's familiarity adds."""
    train_idx, held_out_idx = defense._split(len(train_set.y), train_set.y)  # the defense's own split
    if defense.validation_images is not None and len(held_out_idx) != defense.validation_images:
        raise ValueError(f"train_set: {len(train_set.y)} images split into {len(held_out_idx)} held out, but the "
                         f"defense held out {defense.validation_images}: pass the training set it was fitted on")

    def agreement(x: torch.Tensor) -> Rate:
        augmented, target = defense.predictions(x)
        return Rate(int((augmented == target).sum()), len(x))

    return {"train": agreement(train_set.x[train_idx]), "held_out": agreement(train_set.x[held_out_idx]),
            "test": agreement(test_set.x)}


def worst_case(rows: list[dict[str, float]]) -> dict[str, float]:
    """MIM-W (§4.2): of several attacks' metric rows, the one best for the attacker — lowest DAC,
    then lowest AC_M (Appendix F: "parameters leading to the lowest AC_M and DAC values")."""
    return min(rows, key=lambda r: (r["DAC"], r["AC_M"]))


def _attack(model: nn.Module, attack: str, x: torch.Tensor, y: torch.Tensor, eps: float | None, preset: str,
            overrides: dict | None, cache, seed: int):
    from decoylab import attacks

    settings = dict((overrides or {}).get(attack, {}))
    if eps is not None:
        settings["eps"] = eps
    return attacks.run(attack, model, x, y, preset=preset, cache=cache, seed=seed, **settings)


def run_attack(model: nn.Module, attack: str, x: torch.Tensor, y: torch.Tensor, eps: float | None, preset: str,
               overrides: dict | None, cache, seed: int):
    """``attacks.run`` with a ``luring_*`` preset, a notebook's per-attack ``overrides`` and the budget
    ``eps`` (checked against the data range first)."""
    if eps is not None:
        params.check("eps", eps, specs.EPS)
    return _attack(model, attack, x, y, eps, preset, overrides, cache, seed)


def characterise(defenses: dict[str, Luring], x: torch.Tensor, y: torch.Tensor, attack_names, eps_list, *,
                 preset: str = "luring_mnist", overrides: dict | None = None, cache=None, seed: int = 0,
                 log: Callable[[str], None] | None = None) -> list[dict]:
    """Fig. 2: DR and IAR (eq. 3) per attack, ε and approach, for x' crafted on each M∘P and kept
    only when it fools all the augmented models (§3.2). One row per (attack, ε, approach); its ``points``
    hold ``point_outcomes`` of every attacked point and ``kept`` (fools every M∘P)."""
    params.check("eps_list", eps_list, specs.EPS_LIST)
    rows = []
    for attack in attack_names:
        for eps in eps_list:
            runs = {name: _attack(d.attacked_model, attack, x, y, eps, preset, overrides, cache, seed)
                    for name, d in defenses.items()}
            fools_all = torch.stack([r.success for r in runs.values()]).all(0)
            for name, d in defenses.items():
                predicted = d.predictions(runs[name].x_adv)
                m = transfer_metrics(*predicted, y, fools_all)
                rows.append({"attack": attack, "eps": eps, "approach": name, "DR": m["DR"], "IAR": m["IAR"],
                             "kept": int(fools_all.sum()), "success_on_MoP": runs[name].success_rate,
                             "points": {"kept": fools_all.cpu(), **point_outcomes(*predicted, y)}})
            if log is not None:
                log(f"{attack} eps={eps}: {int(fools_all.sum())}/{len(y)} fool every M∘P")
    return rows


def defense_table(defenses: dict[str, Luring], x: torch.Tensor, y: torch.Tensor, eps_list, *,
                  attack_names=("spsa", "eco", "mim_w"), preset: str = "luring_mnist", overrides: dict | None = None,
                  cache=None, seed: int = 0, paper: str | None = None) -> list[dict]:
    """Tables 1 and 14: AC_MoP, AC_M and DAC per attack, ε and approach, with the paper's value
    beside each where it has one. ``"mim_w"`` runs MIM, DIM, MIM-TI and DIM-TI and keeps the one
    best for the attacker (§4.2), naming it in ``variant``; ``points`` holds its ``point_outcomes``."""
    params.check("eps_list", eps_list, specs.EPS_LIST)
    rows = []
    quoted = PAPER_DEFENSE_TABLE.get(paper or "", {})
    for attack in attack_names:
        variants = MIM_W_VARIANTS if attack == "mim_w" else (attack,)
        for eps in eps_list:
            for name, d in defenses.items():
                measured = []
                for variant in variants:
                    res = _attack(d.attacked_model, variant, x, y, eps, preset, overrides, cache, seed)
                    predicted = d.predictions(res.x_adv)
                    measured.append({**transfer_metrics(*predicted, y), "variant": variant,
                                     "points": point_outcomes(*predicted, y)})
                best = worst_case(measured)
                ref = quoted.get((attack, round(float(eps), 4), name))
                rows.append({"attack": attack, "eps": eps, "approach": name, "variant": best["variant"],
                             "successful": int((~best["points"]["mop_correct"]).sum()),
                             "AC_MoP": best["AC_MoP"], "AC_M": best["AC_M"], "DAC": best["DAC"],
                             "paper_AC_MoP": ref[0] if ref else None, "paper_AC_M": ref[1] if ref else None,
                             "paper_DAC": ref[2] if ref else None, "points": best["points"]})
    return rows


def distortion_table(defenses: dict[str, Luring], target: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                     preset: str = "luring_mnist", overrides: dict | None = None, cache=None, seed: int = 0) -> list[dict]:
    """Table 9: mean L2 and L∞ of CW-L2's successful adversarial examples on M and on each M∘P."""
    rows = []
    for name, model in {"target": target, **{k: d.attacked_model for k, d in defenses.items()}}.items():
        res = _attack(model, "cw2", x, y, None, preset, overrides, cache, seed)
        ok = res.success
        rows.append({"model": name, "success": res.success_rate, "n successful": int(ok.sum()),
                     "mean_l2": float(res.l2[ok].mean()) if ok.any() else float("nan"),
                     "sd_l2": float(res.l2[ok].double().std()) if ok.sum() > 1 else float("nan"),
                     "mean_linf": float(res.linf[ok].mean()) if ok.any() else float("nan"),
                     "sd_linf": float(res.linf[ok].double().std()) if ok.sum() > 1 else float("nan")})
    return rows


def accuracy_table(defenses: dict[str, Luring], target: nn.Module, x: torch.Tensor, y: torch.Tensor, paper: str):
    """Table 8 as a DataFrame indexed by model ("base (M)", then each approach's label): test accuracy,
    agreement (M and M∘P both right) and the paper's values for data set ``paper``."""
    import pandas as pd

    quoted = PAPER_TABLE_8[paper]
    measured = {d.label: d.accuracy_and_agreement(x, y) for d in defenses.values()}
    return pd.DataFrame(
        {"test": {"base (M)": train.accuracy(target, x, y), **{k: v["test"] for k, v in measured.items()}},
         "agree": {"base (M)": float("nan"), **{k: v["agree"] for k, v in measured.items()}},
         f"paper test ({paper})": {"base (M)": quoted["base"][0],
                                   **{d.label: quoted.get(a, (None, None))[0] for a, d in defenses.items()}},
         f"paper agree ({paper})": {"base (M)": None,
                                    **{d.label: quoted.get(a, (None, None))[1] for a, d in defenses.items()}}})


def training_curves(defenses: dict[str, Luring]):
    """P's training as it went (Algorithm 1; the authors' code checks M∘P's validation accuracy every 1000
    steps and keeps the best): one row per approach and epoch with the optimiser steps so far, M∘P's accuracy
    on the held-out validation images and M's on the same images. Approaches trained without a history
    (loaded from an old cache entry) are left out. The kit checks after every epoch, more often than the code,
    so the kept epoch's validation accuracy is the best of more noisy checks (biased upward); Table 8's test
    accuracies are not."""
    import pandas as pd

    def budget(d: Luring) -> float:  # the step count training stopped at (its last epoch may be short)
        cfg = {"auto": d.auto_config, "stack": d.stack_config}.get(d.approach, d.train_config)
        return cfg.steps or float("inf")

    rows = [{"approach": d.label, "step": min((epoch + 1) * d.steps_per_epoch, budget(d)), "validation accuracy": accuracy,
             "M's validation accuracy": d.target_validation_accuracy, "n": d.validation_images,
             "kept": epoch + 1 == d.history.best_epoch}
            for d in defenses.values() if d.history is not None and d.history.selection
            for epoch, accuracy in enumerate(d.history.selection)]
    return pd.DataFrame(rows, columns=["approach", "step", "validation accuracy", "M's validation accuracy", "n", "kept"])


def detection_table(defenses: dict[str, Luring], defense_rows: list[dict], x_clean: torch.Tensor, x: torch.Tensor,
                    y: torch.Tensor, eps: float, *, fpr: float, preset: str = "luring_mnist",
                    overrides: dict | None = None, cache=None, seed: int = 0) -> tuple[list[dict], dict]:
    """The detector on clean and adversarial inputs, per approach: the share of clean images it flags
    (M ≠ M∘P), and the soft score's ROC against MIM-W's chosen variant (from ``defense_rows``, as
    ``defense_table`` returns them) at ``eps``, with clean vs clean (two halves of ``x_clean``) as the
    chance-level control. Returns (one row per approach, {label: (fpr, tpr)})."""
    params.check("eps", eps, specs.EPS)
    half = len(x_clean) // 2
    rows, curves = [], {}
    for approach, d in defenses.items():
        flagged_clean = float(d.detect_disagreement(x_clean).float().mean())
        variant = next(r["variant"] for r in defense_rows
                       if r["attack"] == "mim_w" and r["eps"] == eps and r["approach"] == approach)
        res = _attack(d.attacked_model, variant, x, y, eps, preset, overrides, cache, seed)
        clean_scores, adv_scores = d.score(x_clean), d.score(res.x_adv)
        truth = [0] * len(clean_scores) + [1] * len(adv_scores)
        both = torch.cat([clean_scores, adv_scores])
        curves[d.label] = metrics.roc(truth, both)
        rows.append({"approach": d.label, "clean flagged (M ≠ M∘P)": flagged_clean,
                     "adversarial flagged": float(d.detect_disagreement(res.x_adv).float().mean()),
                     "MIM-W variant": variant, "AUC (MIM-W)": metrics.auc(truth, both),
                     f"TPR at FPR {fpr}": metrics.tpr_at_fpr(clean_scores, adv_scores, fpr),
                     "AUC clean vs clean (control)": metrics.auc([0] * half + [1] * (len(x_clean) - half),
                                                                 clean_scores),  # the scores above, not a second pass
                     "n clean": len(clean_scores), "n adversarial": len(adv_scores)})
    return rows, curves


def component_saliency(defense: Luring, x: torch.Tensor) -> torch.Tensor:
    """Fig. 3 (right): ∇x Σ_d P(x)_d — how strongly each input pixel moves P's whole output
    (the column sums of P's Jacobian, one backward pass)."""
    component = defense.attacked_model.component
    x = x.detach().clone().to(next(component.parameters()).device).requires_grad_(True)
    (grad,) = torch.autograd.grad(component(x).sum(), x)
    return grad.detach().cpu()


def loss_saliency(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fig. 3 (right, top): the gradient of the cross-entropy loss with respect to the input."""
    dev = next(model.parameters()).device
    x = x.detach().to(dev).requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y.to(dev), reduction="sum"), x)
    return grad.cpu()


def saliency_columns(defenses: dict[str, Luring], target: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     n_classes: int = 4) -> dict[str, torch.Tensor]:
    """Fig. 3's panels for one image of each of the first ``n_classes`` classes in ``y``: the clean
    images, the gradient of M's cross-entropy loss, and ∇x ΣP for each approach's P (Stack's P is
    trained together with its M, so it has no P of its own to compare)."""
    shown = torch.tensor([int((y == c).nonzero()[0]) for c in y.unique()[:n_classes]])
    x_show, y_show = x[shown], y[shown]
    columns = {"clean x": x_show, "∇x CE of M": loss_saliency(target, x_show, y_show)}
    for d in defenses.values():
        if d.approach != "stack":
            columns[f"∇x ΣP, {d.label}"] = component_saliency(d, x_show)
    return columns


def opposite_sign_counts(target: nn.Module, augmented: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Appendix D.3, eq. 5: Ω_c per input and class, the number of pixels d whose logit gradients
    ∂h_c/∂x_d under M and under M∘P have opposite signs. Returns (N, K) counts."""
    dev = next((p.device for p in target.parameters()), x.device)
    x = x.detach().to(dev)
    k = train.predict(target, x[:1]).shape[1]
    counts = []
    for c in range(k):
        grads = []
        for model in (target, augmented):
            xi = x.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(model(xi)[:, c].sum(), xi)
            grads.append(g.flatten(1))
        counts.append(((grads[0] * grads[1]) < 0).sum(1).cpu())
    return torch.stack(counts, 1)


@dataclass
class LuringRun:
    """What notebook 30 measured and under which settings, for ``record_results``."""
    dataset: str  # the kit's data set
    paper_dataset: str  # the paper's data set the numbers stand beside
    paper_settings: bool  # the settings match the paper's (data, sizes, attacks, λ, P's start)
    attack_preset: str
    n_attack: int  # points of Fig. 2
    n_defense: int  # points of Tables 1/14 and the ROC
    n_cw: int  # points of Table 9
    score_kind: str
    detection_eps: float  # ε of the ROC's MIM-W
    accuracy: pd.DataFrame  # accuracy_table's Table 8
    characterisation: list[dict]  # characterise's rows
    defense: list[dict]  # defense_table's rows
    detection: list[dict]  # detection_table's rows
    distortion: list[dict]  # distortion_table's rows


def record_results(run: LuringRun, *, n_test: int | None = None,
                   differences: Callable[..., str] | None = None) -> None:
    """Record every number of notebook 30 (``results.record``), with the paper's value where it has one; rates
    carry the n they rest on (``n_test`` test images, the attacked points) and Wilson's interval. ``differences``
    (e.g. ``functools.partial(luring_claims.settings_note, P, run, n_train=...)``, called with ``attack=`` and
    ``n_points=``) names every way the settings differ, for the settings column."""
    ds, paper_ds = run.dataset, run.paper_dataset
    where = f"{ds}, {run.n_attack} attack points, preset {run.attack_preset}"

    def match(**measured) -> str:
        return results.settings_match(ds, paper_ds, run.paper_settings, differences(**measured) if differences else ())

    trained = match(n_test=n_test)
    quoted = PAPER_TABLE_8[paper_ds]
    counted = dict(n=n_test, proportion=n_test is not None)
    results.record("accuracy_target", run.accuracy.loc["base (M)", "test"], paper=quoted["base"][0],
                   source=f"Luring Table 8, {paper_ds}", match=trained, note=f"test accuracy of M, {ds}", **counted)
    labels = {label: approach for approach, label in APPROACH_LABELS.items()}
    for label in run.accuracy.index[1:]:
        approach, ref = labels[label], quoted.get(labels[label])
        source = f"Luring Table 8, {paper_ds}" if ref else None
        results.record(f"accuracy_{approach}", run.accuracy.loc[label, "test"], paper=ref[0] if ref else None,
                       source=source, match=trained, note=f"test accuracy of M∘P, {ds}", **counted)
        results.record(f"agreement_{approach}", run.accuracy.loc[label, "agree"], paper=ref[1] if ref else None,
                       source=source, match=trained, note=f"M and M∘P both correct, {ds}", **counted)
    for row in run.characterisation:
        key = f"{row['attack']}_eps{row['eps']:g}_{row['approach']}"
        results.record(f"dr_{key}", row["DR"], n=int(row["kept"]), proportion=True,
                       note=f"Fig. 2 (values not printed in the paper); {where}; {row['kept']} kept x'")
        results.record(f"iar_{key}", row["IAR"], n=int(row["kept"]), proportion=True,
                       note=f"Fig. 2 (values not printed in the paper); {where}; {row['kept']} kept x'")
    for row in run.defense:
        key = f"{row['attack']}_eps{row['eps']:g}_{row['approach']}"
        src = f"Luring {PAPER_DEFENSE_SOURCE[paper_ds]}, {paper_ds}, ε {row['eps']:g}"
        variant = f"; MIM-W variant {row['variant']}" if row["attack"] == "mim_w" else ""
        attacked = match(attack=row["attack"], n_points=run.n_defense)
        for metric in ("AC_MoP", "AC_M", "DAC"):
            ref = row[f"paper_{metric}"]
            results.record(f"{metric.lower()}_{key}", row[metric], paper=ref, source=src if ref is not None else None,
                           match=attacked, n=run.n_defense, proportion=True,
                           note=f"{ds}, {run.n_defense} points, {row['successful']} successful on M∘P{variant}"
                                + ("; fewer than 30 successful: AC_M and DAC count failures as harmless, so this row "
                                   "decides nothing" if row["successful"] < 30 and metric != "AC_MoP" else ""))
    for row in run.detection:
        key, n_clean, n_adversarial = row["approach"].lower(), int(row["n clean"]), int(row["n adversarial"])
        halves = (n_clean // 2, n_clean - n_clean // 2)
        results.record(f"clean_flagged_{key}", row["clean flagged (M ≠ M∘P)"], n=n_clean, proportion=True,
                       note="the detector's false alarms on clean held-out images")
        results.record(f"auc_mim_w_{key}", row["AUC (MIM-W)"], n=n_adversarial,
                       auc_against=n_clean,
                       note=f"soft score {run.score_kind}, MIM-W ({row['MIM-W variant']}) at ε {run.detection_eps} "
                            f"vs {n_clean} clean held-out images; interval: Hanley and McNeil's")
        results.record(f"auc_clean_vs_clean_{key}", row["AUC clean vs clean (control)"], n=n_clean,
                       interval=stats.hanley_mcneil(row["AUC clean vs clean (control)"], *halves),
                       note="control: two halves of clean images; interval: Hanley and McNeil's")
    quoted9 = PAPER_TABLE_9[paper_ds]
    distorted = match(n_points=run.n_cw)
    for row in run.distortion:
        ref = quoted9.get(row["model"])
        source = f"Luring Table 9, {paper_ds}" if ref else None
        k = int(row["n successful"])
        results.record(f"cw_l2_{row['model']}", row["mean_l2"], paper=ref[0] if ref else None, source=source,
                       match=distorted, n=k, interval=stats.mean_interval(row["mean_l2"], row["sd_l2"], k),
                       note=f"mean L2 of successful CW-L2 ({k} of {run.n_cw} points), {ds}")
        results.record(f"cw_linf_{row['model']}", row["mean_linf"], paper=ref[1] if ref else None, source=source,
                       match=distorted, n=k, interval=stats.mean_interval(row["mean_linf"], row["sd_linf"], k),
                       note=f"mean L∞ of successful CW-L2 ({k} of {run.n_cw} points), {ds}")
