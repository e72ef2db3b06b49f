"""Injected Attractors' tables (J. Zhang, E.-C. Chang, H. K. Lee, "Detection and Recovery of Adversarial Attacks
with Injected Attractors", Tables I-VI; notebook 20): every attack of Table I on C, on M and on M_(d,r), with
F_d, F_r, the control (F_d on examples crafted on C alone) and the feature-squeezing baseline, each table
beside the paper's numbers, and the recording of the results.

- ``AttackSettings`` — how Table I's attacks run (which attacks, FPRs, CPU caps), checked once;
- ``evaluate_attacks`` — one row per attack; ``table_one`` … ``table_five`` — the paper's tables from it;
- ``paper_comparison`` — which of the paper's columns the run stands beside, and how comparable it is;
- ``record_results`` — notebook 20's named results.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from decoylab import metrics, paper_values, params, results
from decoylab.defenses.attractors import Attractors, quantise_8bit
from decoylab.specs import attractors as spec
from decoylab.specs.common import FPR_LIST, SEED

# Attack key -> (the paper's row label, UA/TA, the attack engine's name, target).
TABLE_I_ATTACKS = {
    "fgsm": ("FGSM", "UA", "fgsm", None), "rfgsm": ("RFGSM", "UA", "rfgsm", None), "bim": ("BIM", "UA", "bim", None),
    "pgd": ("PGD", "UA", "pgd", None), "umifgsm": ("UMIFGSM", "UA", "mim", None), "uap": ("UAP", "UA", "uap", None),
    "deepfool": ("DeepFool", "UA", "deepfool", None), "optmargin": ("OM", "UA", "optmargin", None),
    "bpda": ("BPDA", "UA", "pgd", None), "spsa": ("SPSA", "UA", "spsa", None),
    "llc": ("LLC", "TA", "llc", None), "rllc": ("RLLC", "TA", "rllc", None), "illc": ("ILLC", "TA", "illc", None),
    "tmifgsm": ("TMIFGSM", "TA", "tmifgsm", "random"), "jsma": ("JSMA", "TA", "jsma", "random"),
    "blb": ("BLB", "TA", "blb", "random"), "cw2": ("CW2", "TA", "cw2", "random"), "ead": ("EAD", "TA", "ead", "random")}
_ITERATION_KEYS = ("steps", "max_iter")

# ----- The paper's numbers, quoted (fractions; None where the paper has none) -----
# Table I: (success on C, success on M, detection by F_d, recovery by F_r, overall success); None = no adversarial found
PAPER_TABLE_I = paper_values.values("attractors", "table_1")
# Table III: (TPR, FPR, AUC, overall success) per detector (LID, FS, MagNet quoted from DEEPSEC by the paper)
PAPER_TABLE_III = paper_values.values("attractors", "table_3")
# Table IV: (TPR at 5 % FPR, overall at 5 %, TPR at 0.5 % FPR, overall at 0.5 %)
PAPER_TABLE_IV = paper_values.values("attractors", "table_4")
# Table V: (success on C, success on the integrated M_(d,r))
PAPER_TABLE_V = paper_values.values("attractors", "table_5")
# Table II: clean accuracy of C and of M; Table VI: mean L2 of successful unbounded attacks on CIFAR-10.
PAPER_TABLE_II = paper_values.values("attractors", "table_2")
PAPER_TABLE_VI = paper_values.values("attractors", "table_6")


def paper_dataset(name: str) -> str | None:
    """The paper's data set a kit data set stands for (mnist5k, fashion and digits are MNIST-like)."""
    if name in ("mnist", "cifar10"):
        return name
    return "mnist" if name in ("mnist5k", "fashion_mnist", "fashion", "digits") else None


@dataclass(frozen=True)
class AttackSettings:
    """How Table I's attacks run, checked against ``decoylab.specs.attractors`` when built: the attacks
    (keys of ``TABLE_I_ATTACKS``), the FPRs of F_d (thresholds for the first; TPR and overall success at
    each), CPU caps on iterations, binary-search steps and samples, a larger starting constant for the
    C&W family (None keeps Tables VII and VIII), whether M_(d,r) is attacked too, and the attacks' seed."""
    dataset: str
    attacks: Sequence[str] = tuple(TABLE_I_ATTACKS)
    fprs: Sequence[float] = (0.05, 0.005)
    iteration_cap: int | None = None
    binary_steps_cap: int | None = None
    samples_cap: int | None = None
    initial_const: float | None = None
    integrated: bool = True
    seed: int = 0

    def __post_init__(self):
        for name, value, allowed in (("dataset", self.dataset, params.text()), ("attacks", self.attacks, spec.ATTACK_LIST),
                                     ("fprs", self.fprs, FPR_LIST), ("iteration_cap", self.iteration_cap,
                                     spec.ITERATION_CAP), ("binary_steps_cap", self.binary_steps_cap,
                                     spec.BINARY_STEPS_CAP), ("samples_cap", self.samples_cap, spec.SAMPLES_CAP),
                                     ("initial_const", self.initial_const, spec.INITIAL_CONST),
                                     ("integrated", self.integrated, params.boolean()), ("seed", self.seed, SEED)):
            params.check(name, value, allowed)

    @property
    def uncapped(self) -> bool:
        """Tables VII and VIII's settings as printed (no CPU cap, no larger starting constant)."""
        return (self.iteration_cap is None and self.binary_steps_cap is None and self.samples_cap is None
                and self.initial_const is None)

    def for_attack(self, key: str) -> tuple[str, dict[str, Any], str]:
        """``attack_settings`` for ``key`` under these caps (``key`` is one of ``attacks``, already checked)."""
        return _resolve(key, self.dataset, self.iteration_cap, self.binary_steps_cap, self.samples_cap,
                        self.initial_const)


def attack_settings(key: str, dataset: str, *, iteration_cap: int | None = None,
                    binary_steps_cap: int | None = None, samples_cap: int | None = None,
                    initial_const: float | None = None) -> tuple[str, dict[str, Any], str]:
    """(engine attack, ``attacks.run`` keyword arguments, which settings) for one Table I attack:
    Table VII's DEEPSEC settings (BPDA and SPSA: Table VIII's). CPU presets cap iterations,
    binary-search steps and samples (SPSA's probes, OptMargin's noise copies), and may start the
    C&W family (CW2, EAD, OM) at a larger constant c, since a capped search never grows c from
    Table VII's 0.001 — the third item then says "capped" instead of "Table VII" / "Table VIII"."""
    params.check("attack", key, spec.ATTACK)
    return _resolve(key, dataset, iteration_cap, binary_steps_cap, samples_cap, initial_const)


def _resolve(key, dataset, iteration_cap, binary_steps_cap, samples_cap, initial_const):
    from decoylab.attacks import core

    _, kind, engine, target = TABLE_I_ATTACKS[key]
    preset = "trapdoor" if key in ("bpda", "spsa") else f"deepsec_{paper_dataset(dataset) or 'mnist'}"
    entry = core.REGISTRY[engine]
    settings = {**entry.defaults, **entry.presets.get(preset, {})}
    capped = False
    for name in _ITERATION_KEYS:
        if iteration_cap is not None and name in settings and settings[name] > iteration_cap:
            settings[name], capped = iteration_cap, True
    if binary_steps_cap is not None and settings.get("binary_search_steps", 0) > binary_steps_cap:
        settings["binary_search_steps"], capped = binary_steps_cap, True
    for name in ("samples", "noise_count"):
        if samples_cap is not None and settings.get(name, 0) > samples_cap:
            # SPSA evaluates antithetic pairs: keep its sample count even.
            settings[name], capped = samples_cap - (samples_cap % 2 if name == "samples" else 0), True
    if initial_const is not None and engine in ("cw2", "ead", "optmargin"):
        settings["initial_const"], capped = initial_const, True
    kwargs: dict[str, Any] = dict(settings)
    if target is not None:
        kwargs.update(targeted=True, target=target)
    source = "capped" if capped else ("Table VIII" if preset == "trapdoor" else "Table VII")
    return engine, kwargs, source


@dataclass(frozen=True)
class PaperComparison:
    """Which of the paper's columns a run stands beside (``paper_column``), whether it is at the paper's scale
    (full MNIST / CIFAR-10, 1000 attacked images, uncapped attacks) and the scorecard's words for it."""
    dataset: str
    paper_column: str
    full_scale: bool
    label: str

    @property
    def match(self) -> str:
        return results.settings_match(self.dataset, self.paper_column, self.full_scale)


def paper_comparison(settings: AttackSettings, n_attack: int) -> PaperComparison:
    """Tables I-VI are comparable only on the full MNIST / CIFAR-10 with 1000 attacked images and uncapped
    attacks; a data set the paper did not use stands beside its MNIST column."""
    paper_ds = paper_dataset(settings.dataset)
    full_scale = settings.dataset == paper_ds and n_attack >= 1000 and settings.uncapped
    label = ("same data set and settings" if full_scale else
             "different settings" if settings.dataset == paper_ds else "different data set")
    return PaperComparison(settings.dataset, paper_ds or "mnist", full_scale, label)


def _mean(values: torch.Tensor) -> float:
    return float(values.float().mean()) if len(values) else float("nan")


def evaluate_attacks(defense: Attractors, baseline, x: torch.Tensor, y: torch.Tensor, *, x_calibration: torch.Tensor,
                     x_clean: torch.Tensor, settings: AttackSettings, cache=None, log=print):
    """One row per attack of Table I: success on C and on M, F_d's detection rate (TPR) on M's
    successful examples at each FPR (thresholds set on ``x_calibration``), F_r's recovery rate on
    the detected ones, overall success = success × (1 − detection), AUC against ``x_clean``; the
    control — the same F_d on C's successful examples, which never saw W (``defense.control()``); the
    feature-squeezing ``baseline`` on C's successful examples (Table III's FS columns, measured);
    with ``settings.integrated``, the attack's success on M_(d,r) (Table V) and mean L2 of successful
    examples on C, M and M_(d,r) (Table VI). ``attrs`` holds the thresholds (``cuts``, per FPR) and, per attack,
    every attacked image's outcome (``outcomes``, what ``attractor_claims`` judges the claims on)."""
    import pandas as pd

    from decoylab import attacks

    fprs, seed = list(settings.fprs), settings.seed
    defense.calibrate(x_calibration, fprs[0])
    calibration = defense.score(x_calibration)
    clean = defense.score(x_clean)
    cuts = [metrics.threshold_at_fpr(calibration, fpr) for fpr in fprs]
    fs_calibration, fs_clean = baseline.score(x_calibration), baseline.score(x_clean)
    fs_cut = metrics.threshold_at_fpr(fs_calibration, fprs[0])
    combined, served = defense.attacked_model, defense.served_model()
    control = defense.control()
    merged = defense.integrated_model() if settings.integrated else None
    rows, outcomes = [], {}
    for key in settings.attacks:
        engine, kwargs, source = settings.for_attack(key)
        label, kind = TABLE_I_ATTACKS[key][:2]
        if log:
            log(f"{label}: {engine} {source}")
        on_c = attacks.run(engine, control.attacked_model, x, y, seed=seed, cache=cache, **kwargs)
        on_m = attacks.run(engine, served if key == "bpda" else combined, x, y, seed=seed, cache=cache, **kwargs)
        hit = on_m.success
        scores = defense.score(on_m.x_adv[hit]) if hit.any() else torch.zeros(0)
        detected = scores > cuts[0]
        recovered = defense.recover(on_m.x_adv[hit][detected]) == y[hit][detected] if detected.any() \
            else torch.zeros(0, dtype=torch.bool)
        fs_scores = baseline.score(on_c.x_adv[on_c.success]) if on_c.success.any() else torch.zeros(0)
        truth = torch.cat([torch.zeros(len(clean)), torch.ones(len(scores))])
        fs_truth = torch.cat([torch.zeros(len(fs_clean)), torch.ones(len(fs_scores))])
        row = {"attack": label, "kind": kind, "settings": source, "success_C": on_c.success_rate,
               "success_M": on_m.success_rate, "detection": _mean(detected), "recovery": _mean(recovered),
               "overall": on_m.success_rate * (1 - _mean(detected)) if hit.any() else 0.0,
               "auc": metrics.auc(truth, torch.cat([clean, scores])),
               "fs_tpr": _mean(fs_scores > fs_cut), "fs_auc": metrics.auc(fs_truth, torch.cat([fs_clean, fs_scores])),
               "fs_overall": on_c.success_rate * (1 - _mean(fs_scores > fs_cut)) if on_c.success.any() else 0.0,
               "l2_C": _mean(on_c.l2[on_c.success]), "l2_M": _mean(on_m.l2[hit])}
        # The control: the same F_d on examples crafted on C alone (no attractors to follow).
        control_scores = control.score(on_c.x_adv[on_c.success]) if on_c.success.any() else torch.zeros(0)
        row["control_detection"] = _mean(control_scores > cuts[0])
        # ... and F_r on the control's detections: recovery by chance, without attractors to follow.
        control_detected = on_c.x_adv[on_c.success][control_scores > cuts[0]]
        control_recovered = defense.recover(control_detected) == y[on_c.success][control_scores > cuts[0]] \
            if len(control_detected) else torch.zeros(0, dtype=torch.bool)
        row["control_recovery"] = _mean(control_recovered)
        row["control_auc"] = metrics.auc(torch.cat([torch.zeros(len(clean)), torch.ones(len(control_scores))]),
                                         torch.cat([clean, control_scores]))
        for fpr, cut in zip(fprs, cuts):
            flagged = _mean(scores > cut)
            row[f"tpr@{fpr:g}"] = flagged
            row[f"overall@{fpr:g}"] = on_m.success_rate * (1 - flagged) if hit.any() else 0.0
        if merged is not None:
            from decoylab.attacks import BPDA

            target = BPDA(merged, quantise_8bit) if key == "bpda" else merged
            on_dr = attacks.run(engine, target, x, y, seed=seed, cache=cache, **kwargs)
            row.update(success_integrated=on_dr.success_rate, l2_integrated=_mean(on_dr.l2[on_dr.success]))
        outcomes[label] = _outcomes(on_c.success, hit, scores, control_scores, detected, recovered,
                                    on_dr.success if merged is not None else None,
                                    control_detected=control_scores > cuts[0], control_recovered=control_recovered)
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["cuts"] = {f"{fpr:g}": float(cut) for fpr, cut in zip(fprs, cuts)}
    table.attrs["outcomes"] = outcomes
    table.attrs["fpr_measured"] = {f"{fpr:g}": _mean(clean > cut) for fpr, cut in zip(fprs, cuts)}
    table.attrs["fs_fpr_measured"] = _mean(fs_clean > fs_cut)
    table.attrs["n_clean"] = len(clean)  # the held-out clean images the measured FPRs are of
    table.attrs["thresholds"] = defense.thresholds
    return table


def _outcomes(success_c, success_m, scores, control_scores, detected, recovered, success_integrated, *,
              control_detected, control_recovered):
    """One attack's outcome per attacked image: success on C and on M, F_d's score of M's example and the control's
    score of C's (NaN where that attack failed), recovered (on F_d's detections at the first FPR; for M's examples
    and the control's) and success on M_(d,r). Tuples, not tensors: pandas compares ``attrs`` with == when it
    concatenates."""
    success_c, success_m = success_c.cpu().bool(), success_m.cpu().bool()
    score_m, score_control = torch.full((len(success_m),), float("nan")), torch.full((len(success_c),), float("nan"))
    score_m[success_m], score_control[success_c] = scores.float().cpu(), control_scores.float().cpu()
    recovered_m = torch.zeros(len(success_m), dtype=torch.bool)
    recovered_m[success_m.nonzero().flatten()[detected.cpu()]] = recovered.cpu().bool()
    recovered_c = torch.zeros(len(success_c), dtype=torch.bool)
    recovered_c[success_c.nonzero().flatten()[control_detected.cpu()]] = control_recovered.cpu().bool()
    found = {"success_C": success_c, "success_M": success_m, "score_M": score_m, "score_control": score_control,
             "recovered": recovered_m, "recovered_control": recovered_c}
    if success_integrated is not None:
        found["success_integrated"] = success_integrated.cpu().bool()
    return {name: tuple(values.tolist()) for name, values in found.items()}


# ----- The paper's tables from ``evaluate_attacks``' rows, each beside the paper's column -----

def table_two(accuracy_c: float, accuracy_m: float, paper_column: str):
    """Table II: clean accuracy of C and of M, beside the paper's."""
    import pandas as pd

    return pd.DataFrame({"kit": [accuracy_c, accuracy_m],
                         f"paper ({paper_column}, Table II)": PAPER_TABLE_II[paper_column]},
                        index=["victim C", "with attractors M"])


def table_one(table, paper_column: str):
    """Table I: success on C and on M, F_d's detection, F_r's recovery and overall success, each with the
    paper's value after it ('None' where the paper has none), and the control column."""
    by_attack = table.set_index("attack")
    paper = PAPER_TABLE_I[paper_column]
    out = by_attack[["kind", "settings"]].copy()
    columns = [("success_C", "success on C"), ("success_M", "success on M"), ("detection", "F_d detection"),
               ("recovery", "F_r recovery"), ("overall", "overall success")]
    for field, (column, title) in enumerate(columns):
        out[title] = by_attack[column]
        out[f"{title} (paper)"] = [paper.get(a, (None,) * 8)[field] for a in out.index]
    out.attrs["source"] = f"Table I, {paper_column}"
    out["control: F_d on C's examples"] = by_attack["control_detection"]
    out["control: F_r on C's detections"] = by_attack["control_recovery"]
    # What each rate rests on: a detection or recovery rate on fewer than 30 examples decides no claim.
    outcomes = table.attrs.get("outcomes", {})
    out["successful on M"] = [sum(outcomes[a]["success_M"]) if a in outcomes else None for a in out.index]
    out["successful on C"] = [sum(outcomes[a]["success_C"]) if a in outcomes else None for a in out.index]
    return out


def table_three(table, paper_column: str, fpr: float):
    """Table III: F_d's TPR at ``fpr``, AUC and overall success beside the paper's; the control's AUC; the kit's
    feature squeezing on C; LID, FS and MagNet as the paper quotes them from DEEPSEC (not measured here)."""
    import pandas as pd

    by_attack, paper = table.set_index("attack"), PAPER_TABLE_III[paper_column]
    return pd.DataFrame({
        "F_d TPR": by_attack[f"tpr@{fpr:g}"], "F_d AUC": by_attack["auc"], "F_d overall": by_attack["overall"],
        "F_d TPR (paper)": [paper[a]["Attractors"][0] for a in table.attack],
        "F_d AUC (paper)": [paper[a]["Attractors"][2] for a in table.attack],
        "control: F_d AUC on C's examples": by_attack["control_auc"],
        "FS TPR (kit, on C)": by_attack["fs_tpr"], "FS AUC (kit)": by_attack["fs_auc"],
        "FS overall (kit)": by_attack["fs_overall"],
        "FS TPR (quoted, DEEPSEC)": [paper[a]["FS"][0] for a in table.attack],
        "LID TPR (quoted)": [paper[a]["LID"][0] for a in table.attack],
        "MagNet TPR (quoted)": [paper[a]["MagNet"][0] for a in table.attack]})


def table_four(table, paper_column: str, fprs: Sequence[float]):
    """Table IV: TPR and overall success at each FPR; the paper's 0.5 % columns where ``fprs`` are its 5 %, 0.5 %."""
    paper = PAPER_TABLE_IV[paper_column]
    out = table.set_index("attack")[[f"tpr@{f:g}" for f in fprs] + [f"overall@{f:g}" for f in fprs]].copy()
    if list(fprs[:2]) == [0.05, 0.005]:
        out["TPR@0.005 (paper)"] = [paper[a][2] for a in out.index]
        out["overall@0.005 (paper)"] = [paper[a][3] for a in out.index]
    return out


def table_five(table, paper_column: str):
    """Tables V and VI: success and mean L2 on C and on M_(d,r), beside the paper's (needs ``integrated``)."""
    paper, paper_6 = PAPER_TABLE_V[paper_column], PAPER_TABLE_VI.get(paper_column, {})
    out = table.set_index("attack")[["success_C", "success_integrated", "l2_C", "l2_integrated"]].copy()
    out["success on C (paper)"] = [paper[a][0] for a in out.index]
    out["success on M_(d,r) (paper)"] = [paper[a][1] for a in out.index]
    out["L2 on M_(d,r) (paper, Table VI)"] = [paper_6.get(a, (None, None))[1] for a in out.index]
    return out


def record_results(table, comparison: PaperComparison, *, accuracy_c: float, accuracy_m: float, n_attacked: int,
                   fpr: float, n_test: int | None = None, differences: Sequence[str] = ()) -> None:
    """Notebook 20's results: Table II's accuracies, F_d's measured FPR at ``fpr`` (the calibration's), and per
    attack its success on C and M, detection, recovery and overall success beside Table I, the control's detection,
    the kit's feature squeezing beside the FS TPR the paper quotes from DEEPSEC, and (with ``integrated``) the
    success on M_(d,r) beside Table V. Each rate carries the n it rests on and Wilson's interval; ``differences``
    (``attractor_claims.settings_differences``) fills the settings column."""
    dataset, column = comparison.dataset, comparison.paper_column
    match = results.settings_match(dataset, column, comparison.full_scale, differences)
    settings_note = f"{dataset}, {n_attacked} attacked images, {comparison.label}"
    for name, value, paper in (("attractors.accuracy_C", accuracy_c, PAPER_TABLE_II[column][0]),
                               ("attractors.accuracy_M", accuracy_m, PAPER_TABLE_II[column][1])):
        results.record(name, value, paper=paper, source="Table II", match=match, note=settings_note,
                       n=n_test, proportion=n_test is not None)
    results.record("attractors.fpr_measured", table.attrs["fpr_measured"][f"{fpr:g}"], paper=fpr,
                   source="Table III (b)", match=match, n=table.attrs.get("n_clean"),
                   proportion=table.attrs.get("n_clean") is not None,
                   note="F_d's FPR on held-out clean images at the calibrated threshold")
    paper_1, paper_3, paper_5 = PAPER_TABLE_I[column], PAPER_TABLE_III[column], PAPER_TABLE_V[column]
    for row in table.itertuples():
        paper_row = paper_1.get(row.attack, (None,) * 5)
        seen = table.attrs["outcomes"][row.attack]
        n_c, n_m = sum(seen["success_C"]), sum(seen["success_M"])
        counts = {"success_C": n_attacked, "success_M": n_attacked, "detection": n_m,
                  "overall": n_attacked, "recovery": round(row.detection * n_m) if n_m else 0}
        for field, value, paper_value in (("success_C", row.success_C, paper_row[0]),
                                          ("success_M", row.success_M, paper_row[1]),
                                          ("detection", row.detection, paper_row[2]),
                                          ("overall", row.overall, paper_row[4]),
                                          ("recovery", row.recovery, paper_row[3])):
            results.record(f"attractors.{row.attack}.{field}", value, paper=paper_value,
                           source=f"Table I ({column})", match=match, n=counts[field], proportion=True,
                           note=f"{settings_note}; attack settings: {row.settings}")
        if "success_integrated" in table:
            results.record(f"attractors.{row.attack}.success_integrated", row.success_integrated,
                           paper=paper_5.get(row.attack, (None, None))[1], source=f"Table V ({column})", match=match,
                           n=n_attacked, proportion=True,
                           note=f"{settings_note}; attack settings: {row.settings}; success on M_(d,r)")
        results.record(f"attractors.{row.attack}.control_detection", row.control_detection, source="control",
                       n=n_c, proportion=True, note="F_d on examples crafted on C alone")
        results.record(f"attractors.{row.attack}.fs_tpr", row.fs_tpr, paper=paper_3[row.attack]["FS"][0],
                       source="Table III, FS (DEEPSEC's FS, not the kit's)", n=n_c, proportion=True,
                       match=results.settings_match(dataset, column, False, differences), note=settings_note)