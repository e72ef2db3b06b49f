"""Injected Attractors' headline claims judged on a run (J. Zhang, E.-C. Chang, H. K. Lee, "Detection and Recovery
of Adversarial Attacks with Injected Attractors"): the measurements behind the claims that ``paper_values.yaml``
declares — Tables I, II, IV and V for notebook 20 (``table_claims``), Figs. 5-7 for notebook 21
(``figure_claims``) — each judged and recorded by ``results.record_claim``.

- a rate (detection, recovery, success on M_(d,r)) comes with its Wilson interval and the number of successful
  adversarial examples it rests on;
- a difference of two rates on the same images (accuracy of C and M, success on C and M, F_d's TPR at two
  FPRs) with Newcombe's interval for paired proportions (``paired_difference``);
- F_d on examples crafted on M against its control, F_d on examples crafted on C alone (``defense.control()``),
  with a bootstrap over the attacked images (``bootstrap_rate_difference``);
- the figures' log-ratios and cosines with percentile bootstraps.

A claim for one data set of the paper is judged only on a run that stands beside that column.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from decoylab import claims, results, stats, train
from decoylab.claims import Measurement, Verdict
from decoylab.experiments.attractors import TABLE_I_ATTACKS, PaperComparison, paper_dataset

PAPER = "attractors"
# §VI-E, §VI-F1 and §VI-C: Table II, Table I's success rates and Figs. 5-7 use the whole 10,000-image test set.
PAPER_IMAGES = 10_000
PAPER_MODELS = {"mnist": ("deepsec_mnist", "DEEPSEC's MNIST CNN"), "cifar10": ("resnet20", "ResNet-20")}  # §VI-B
PAPER_INTERVALS = (3.0, 128.0)  # §VI-B
DRAWS = 1000  # bootstrap draws
TABLE_SOURCES = ("table1", "table2", "table4", "table5")  # notebook 20
FIGURE_SOURCES = ("fig5a", "fig5b", "fig6b", "fig7a")  # notebook 21


# ----- Intervals -----

def paired_difference(first, second) -> tuple[float, tuple[float, float]]:
    """mean(first) − mean(second) of paired 0/1 outcomes (one pair per image) with its 95 % interval: Newcombe's
    square-and-add interval for paired proportions (R. G. Newcombe, "Improved confidence intervals for the
    difference between binomial proportions based on paired data", Statistics in Medicine 17, 1998, method 10;
    the correlation φ with the continuity correction of M. W. Fagerland, S. Lydersen, P. Laake, "Statistical
    Analysis of Contingency Tables", ch. 8): the two Wilson intervals combined, less their covariance."""
    first, second = np.asarray(first, dtype=bool).ravel(), np.asarray(second, dtype=bool).ravel()
    n = len(first)
    if n == 0 or len(second) != n:
        raise ValueError(f"outcomes of {n} and {len(second)} images: need both non-empty and paired")
    a, b, c = int((first & second).sum()), int((first & ~second).sum()), int((~first & second).sum())
    d = n - a - b - c
    p1, p2 = (a + b) / n, (a + c) / n
    (l1, u1), (l2, u2) = stats.wilson(a + b, n), stats.wilson(a + c, n)
    margins, cross = (a + b) * (c + d) * (a + c) * (b + d), a * d - b * c
    phi = 0.0 if margins == 0 or 0 <= cross <= n / 2 else (cross - n / 2 if cross > 0 else cross) / math.sqrt(margins)
    below = (p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2)
    above = (p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1)
    return p1 - p2, (max(-1.0, p1 - p2 - math.sqrt(max(below, 0.0))), min(1.0, p1 - p2 + math.sqrt(max(above, 0.0))))


def absolute(value: float, interval: tuple[float, float]) -> tuple[float, tuple[float, float]]:
    """|value| and the image of its interval under |·| (for "within x of": |difference| at most x)."""
    low, high = interval
    if low <= 0 <= high:
        return abs(value), (0.0, max(-low, high))
    return abs(value), (min(abs(low), abs(high)), max(abs(low), abs(high)))


def bootstrap_rate_difference(hit_a, flag_a, hit_b, flag_b, *, draws: int = DRAWS,
                              seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of (flagged among hits)_a − (flagged among hits)_b where both were
    measured on the same attacked images (one entry per image; flags false where the attack failed): each draw
    resamples the images, so the two rates keep their pairing through the source image."""
    arrays = [np.asarray(v, dtype=float).ravel() for v in (hit_a, flag_a, hit_b, flag_b)]
    rng, n, out = np.random.default_rng(seed), len(arrays[0]), []
    for size in [min(200, draws - start) for start in range(0, draws, 200)]:
        idx = rng.integers(0, n, (size, n))
        hit_a, flag_a, hit_b, flag_b = (v[idx].sum(1) for v in arrays)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(flag_a / hit_a - flag_b / hit_b)  # a draw without hits is NaN, left out
    return stats.percentile_interval(np.concatenate(out))


def bootstrap_median(values, *, draws: int = DRAWS, seed: int = 0) -> tuple[float, tuple[float, float]]:
    """(median, its 95 % percentile-bootstrap interval)."""
    values = np.asarray(values, dtype=float).ravel()
    rng = np.random.default_rng(seed)
    boot = [np.median(values[rng.integers(0, len(values), (min(200, draws - start), len(values)))], axis=1)
            for start in range(0, draws, 200)]
    return float(np.median(values)), stats.percentile_interval(np.concatenate(boot))


# ----- The run's settings against the paper's -----

def settings_differences(run: Mapping, column: str, *, images: int, what: str, attacked: bool = True) -> list[str]:
    """How the run (a notebook's validated parameters) differs from the paper's setting for ``column``: data set,
    classifier and its training, number of images (``what`` names them), QIM intervals and, for a measurement on
    ``attacked`` images, the attacks' CPU caps."""
    found = []
    if run.get("DATASET") != column:
        found.append(f"data set {run.get('DATASET')} (the paper: {column.upper() if column == 'mnist' else 'CIFAR-10'})")
    model, model_words = PAPER_MODELS[column]
    if run.get("MODEL") != model:
        found.append(f"classifier {run.get('MODEL')} (the paper: {model_words})")
    trained_on = f"{run['N_TRAIN']} training images" if run.get("N_TRAIN") is not None else "the training split"
    found.append(f"C trained by the kit, {run.get('EPOCHS')} epochs on {trained_on} (the paper: DEEPSEC's weights)")
    if images < PAPER_IMAGES:
        found.append(f"{images} {what} (the paper: {PAPER_IMAGES:,})")
    if tuple(run.get("INTERVALS", PAPER_INTERVALS)) != PAPER_INTERVALS:
        found.append(f"QIM intervals {list(run['INTERVALS'])} (the paper: 3 and 128)")
    caps = [f"{name}={run[name]}" for name in ("ITERATION_CAP", "BINARY_STEPS_CAP", "SAMPLES_CAP", "INITIAL_CONST")
            if attacked and run.get(name) is not None]
    if caps:
        found.append("attacks capped for the CPU (" + ", ".join(caps) + "; the paper: Tables VII and VIII)")
    return found


def _claims_for(column: str, sources: Sequence[str]) -> list[claims.Claim]:
    """The declared claims of ``sources`` (the id's second part) for the paper's data set ``column``."""
    return [c for c in claims.declared(PAPER) if c.id.split(".")[1] in sources and c.id.split(".")[2] == column]


def _note(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _rate(k: int, n: int, *, images: int, seeds, note: str) -> Measurement:
    """``k`` of ``n`` successful adversarial examples (Wilson interval); nothing measured where ``n`` is 0."""
    if not n:
        return Measurement(None, None, images, 0, seeds, note)
    return claims.proportion(k, n, images=images, n_successful=n, seeds=seeds, note=note)


# ----- Notebook 20: Tables I, II, IV and V -----

def table_claims(defense, table, comparison: PaperComparison, *, x_test: torch.Tensor, y_test: torch.Tensor,
                 run: Mapping) -> list[Verdict]:
    """Judge and record notebook 20's claims for the paper's column ``comparison`` stands beside: Table II's
    accuracy gap (C and M on ``x_test``), and per attack of ``evaluate_attacks``' ``table`` the success drop from
    C to M, F_d's detection at 5 % FPR, the same against the control, F_r's recovery, the TPR at 0.5 % against
    5 % FPR (Table IV) and the success on M_(d,r) (Table V). ``run``: the notebook's validated parameters."""
    column, seeds = comparison.paper_column, (int(run.get("SEED", 0)),)
    n_attacked = len(next(iter(table.attrs["outcomes"].values()))["success_C"]) if len(table) else 0
    common = settings_differences(run, column, images=n_attacked, what="attacked images, correctly classified by C")
    verdicts = []
    for claim in _claims_for(column, TABLE_SOURCES):
        source, *rest = claim.id.split(".")[1:]
        if source == "table2":
            measurement = _accuracy_gap(defense, x_test, y_test, seeds, settings_differences(
                run, column, images=len(y_test), what="test images", attacked=False))
        else:
            measurement = _attack_measurement(table, TABLE_I_ATTACKS[rest[1]][0], rest[2], claim, seeds, common, run)
        verdicts.append(results.record_claim(claim, measurement))
    return verdicts


@torch.no_grad()
def _accuracy_gap(defense, x, y, seeds, differences) -> Measurement:
    """|accuracy of C − accuracy of M| on the same images, Newcombe's paired interval mapped through |·|."""
    correct_c = (train.predict(defense.classifier, x).argmax(1) == y.cpu()).numpy()
    correct_m = (train.predict(defense.attacked_model, x).argmax(1) == y.cpu()).numpy()
    value, interval = absolute(*paired_difference(correct_c, correct_m))
    parts = {"C": claims.proportion(int(correct_c.sum()), len(y)), "M": claims.proportion(int(correct_m.sum()), len(y))}
    return Measurement(value, interval, len(y), None, seeds, _note(*differences), parts)


def _attack_measurement(table, label: str, kind: str, claim, seeds, common: list[str], run: Mapping) -> Measurement:
    if label not in table.attrs["outcomes"]:
        return Measurement(None, None, 0, 0, seeds, _note(f"{label} was not among this run's attacks", *common))
    o = {k: np.asarray(v) for k, v in table.attrs["outcomes"][label].items()}
    cuts, fprs = table.attrs["cuts"], list(table.attrs["cuts"])
    hit_c, hit_m = o["success_C"].astype(bool), o["success_M"].astype(bool)
    n, on_c, on_m = len(hit_c), int(hit_c.sum()), int(hit_m.sum())

    def flagged(scores, fpr):  # F_d at ``fpr``; NaN (the attack failed) is never flagged
        return np.nan_to_num(scores.astype(float), nan=-np.inf) > cuts[fpr]

    row = table.set_index("attack").loc[label]
    weak = f"attack too weak: {label} found no adversarial example even on C" if on_c == 0 else ""
    counts = f"{label} successful on {on_c} of {n} images on C, {on_m} on M; attack settings: {row['settings']}"
    fpr_note = ", ".join(f"{v:.3g} at {k}" for k, v in table.attrs["fpr_measured"].items())
    calibration = (f"F_d's thresholds set on {run.get('N_CALIBRATION')} clean images, FPR measured on held-out "
                   f"clean images: {fpr_note}")
    note = _note(weak, counts, *common)
    missing = {"0.05", "0.005"} - set(cuts) if kind == "low_fpr_tpr_change" else {"0.05"} - set(cuts)
    if kind in ("detection", "detection_vs_control", "low_fpr_tpr_change") and missing:
        return Measurement(None, None, n, on_m, seeds, _note(f"FPRS lacks {', '.join(sorted(missing))}", note))
    if not n:
        return Measurement(None, None, 0, 0, seeds, note)
    if kind == "success_drop":
        value, interval = paired_difference(hit_c, hit_m)
        parts = {"C": claims.proportion(on_c, n), "M": claims.proportion(on_m, n)}
        return Measurement(value, interval, n, on_c, seeds, _note(note, "evidence: the successes on C"), parts)
    if kind == "detection":
        return _rate(int(flagged(o["score_M"], "0.05").sum()), on_m, images=n, seeds=seeds, note=_note(note, calibration))
    if kind == "detection_vs_control":
        on_m_flag, control_flag = flagged(o["score_M"], "0.05"), flagged(o["score_control"], "0.05")
        note = _note(note, calibration, "evidence: the fewer of the two sets of successful examples")
        if not (on_m and on_c):
            return Measurement(None, None, n, min(on_m, on_c), seeds, note)
        measured = claims.proportion(int(on_m_flag.sum()), on_m, images=n, n_successful=on_m, seeds=seeds)
        control = claims.proportion(int(control_flag.sum()), on_c, images=n, n_successful=on_c, seeds=seeds)
        interval = bootstrap_rate_difference(hit_m, on_m_flag, hit_c, control_flag, seed=seeds[0])
        return claims.difference(measured, control, labels=("F_d on M's examples", "control: F_d on C's examples"),
                                 interval=interval, note=note)
    if kind == "recovery":
        detected = flagged(o["score_M"], fprs[0]) & hit_m
        at = "" if fprs[0] == "0.05" else f"recovery on F_d's detections at FPR {fprs[0]} (the paper: 0.05)"
        return _rate(int(o["recovered"].sum()), int(detected.sum()), images=n, seeds=seeds,
                     note=_note(at, note, calibration, "evidence: the detected examples"))
    if kind == "recovery_vs_control":
        detected_m = flagged(o["score_M"], fprs[0]) & hit_m
        detected_c = flagged(o["score_control"], fprs[0]) & hit_c
        n_m, n_c = int(detected_m.sum()), int(detected_c.sum())
        at = "" if fprs[0] == "0.05" else f"recovery on F_d's detections at FPR {fprs[0]} (the paper: 0.05)"
        note = _note(at, note, calibration, "evidence: the fewer of the two sets of detected examples")
        if not (n_m and n_c):
            return Measurement(None, None, n, min(n_m, n_c), seeds, note)
        if "recovered_control" not in o:  # an older run without the control's recovery decides nothing
            return Measurement(None, None, n, min(n_m, n_c), seeds, _note("the control's recovery was not measured", note))
        recovered_c = o["recovered_control"].astype(bool)
        measured = claims.proportion(int(o["recovered"].sum()), n_m, images=n, n_successful=n_m, seeds=seeds)
        control = claims.proportion(int(recovered_c.sum()), n_c, images=n, n_successful=n_c, seeds=seeds)
        interval = bootstrap_rate_difference(detected_m, o["recovered"], detected_c, recovered_c, seed=seeds[0])
        return claims.difference(measured, control, labels=("F_r on M's detected examples",
                                                            "control: F_r on C's detected examples"),
                                 interval=interval, note=note)
    if kind == "low_fpr_tpr_change":
        low, high = flagged(o["score_M"], "0.005")[hit_m], flagged(o["score_M"], "0.05")[hit_m]
        if not on_m:
            return Measurement(None, None, n, 0, seeds, _note(note, calibration))
        value, interval = paired_difference(low, high)
        parts = {"TPR at 0.5 % FPR": claims.proportion(int(low.sum()), on_m),
                 "TPR at 5 % FPR": claims.proportion(int(high.sum()), on_m)}
        return Measurement(value, interval, n, on_m, seeds, _note(note, calibration), parts)
    if kind == "integrated_success":
        if "success_integrated" not in o:
            return Measurement(None, None, n, on_c, seeds, _note("INTEGRATED is off: M_(d,r) was not attacked", note))
        return claims.proportion(int(o["success_integrated"].sum()), n, n_successful=on_c, seeds=seeds,
                                 note=_note(note, "evidence: the successes on C"))
    raise ValueError(f"claim {claim.id}: no measurement for {kind!r}")


# ----- Notebook 21: Figs. 5-7 -----

def _log_norms(values: torch.Tensor) -> tuple[np.ndarray, int]:
    """log10 of 1-norms, an exact 0 counted as 1e-12 (as the figures plot it); and how many were 0."""
    values = values.detach().double().cpu()
    return torch.log10(values.clamp_min(1e-12)).numpy(), int((values == 0).sum())


def figure_claims(*, fig5: Mapping[str, torch.Tensor], fig6: Mapping[str, torch.Tensor],
                  cosines: Mapping[str, torch.Tensor], run: Mapping) -> list[Verdict]:
    """Judge and record notebook 21's claims: Fig. 5a (C's output above W's), Fig. 5b (the loss gradient through W
    above the one through C), Fig. 6b (the eq. 1 construction: the gradient through C above the trapdoor's), each
    as the mean over images of a log10 ratio; Fig. 7a (M's cosine to the nearest attractor: its median, and its
    mean above C's). ``fig5``, ``fig6``: ``branch_gradients``; ``cosines``: ``cosine_samples``."""
    column, seed = paper_dataset(run.get("DATASET", "mnist")) or "mnist", int(run.get("SEED", 0))
    common = settings_differences(run, column, images=len(fig5["signal_1"]), what="test images", attacked=False)
    pairs = {"output_C_over_W": (fig5["signal_2"], fig5["signal_1"]),
             "gradient_W_over_C": (fig5["gradient_1"], fig5["gradient_2"]),
             "gradient_C_over_trapdoor": (fig6["gradient_2"], fig6["gradient_1"])}
    verdicts = []
    for claim in _claims_for(column, FIGURE_SOURCES):
        kind = claim.id.split(".")[3]
        if kind in pairs:
            (larger, zeros_1), (smaller, zeros_2) = (_log_norms(v) for v in pairs[kind])
            value, interval = stats.bootstrap_mean_difference(larger, smaller, paired=True, draws=DRAWS, seed=seed)
            zeros = (f"{zeros_1 + zeros_2} of the {2 * len(larger)} norms exactly 0, counted as 1e-12"
                     if zeros_1 + zeros_2 else "")
            extra = (f"the kit's analytic eq. 1 construction, trapdoor amplitude {run.get('TRAPDOOR_AMPLITUDE')} (the "
                     "paper gives no settings for its additive watermark)") if kind.endswith("trapdoor") else ""
            measurement = Measurement(value, interval, len(larger), None, (seed,), _note(zeros, extra, *common))
        else:
            z_c, z_m = (cosines[k].detach().double().cpu().numpy() for k in ("Z1", "Z2"))
            finite = np.isfinite(z_c) & np.isfinite(z_m)  # a zero gradient has no direction
            z_c, z_m = z_c[finite], z_m[finite]
            if not len(z_m):
                value, interval = None, None
            elif kind == "cosine_M":
                value, interval = bootstrap_median(z_m, seed=seed)
            else:
                value, interval = stats.bootstrap_mean_difference(z_m, z_c, paired=True, draws=DRAWS, seed=seed)
            codewords = ("nearest attractor: the local maximum of w_t inside [0, 255] under the decoder's codewords ("
                         f"{run.get('CODEWORDS', 'lattice')}) and distance unit ({run.get('DISTANCE_UNIT', 'pixel')}); "
                         "§V-E leaves both readings open")
            measurement = Measurement(value, interval, len(z_m), None, (seed,), _note(codewords, *common))
        verdicts.append(results.record_claim(claim, measurement))
    return verdicts
