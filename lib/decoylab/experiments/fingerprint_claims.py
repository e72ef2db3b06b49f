"""Neural Fingerprinting's headline claims (Dathathri, Zheng, Murray, Yue, "Detecting Adversarial Examples via
Neural Fingerprinting", 2018) measured on a run and judged. The claims and their tolerances are declared in
``paper_values.yaml`` (``claims.declared("fingerprints")``); this module measures each one:

- notebook 40 (``evaluate_claims``): Table 1's AUC per attack, the same AUC above the control's (the net trained
  without fingerprints, §3.2), the control at most at chance, the test accuracy with and without fingerprints
  (§3.2), Fig. 5's separation and §3.4's Adaptive-CW-L2;
- notebook 41 (``evaluate_sweep_claims``): Fig. 3's AUC against N and against ε (§3.2), Fig. 4's spread over
  random fingerprint sets.

Every AUC here is read on the correctly classified clean pre-test points against the *successful* adversarial
examples (a failed attack is no adversarial example), with a percentile-bootstrap interval, and rests on their
number; each measurement's note lists how the run's settings differ from the paper's.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from decoylab import claims, metrics, results, stats, train
from decoylab.experiments.fingerprints import UNLEARNED_FIT, PAPER_ATTACKS, AttackedSet, SweepSettings, sweep_point

PAPER = "fingerprints"
#: The paper's settings a run is set beside: Table 1's 1328 pre-test points on MNIST's full training split, the
#: authors' JSMA γ, and Carlini & Wagner's defaults for the CW-L2 settings the paper does not state.
PAPER_PRETEST, PAPER_TRAIN = 1328, 60000
PAPER_JSMA_GAMMA = 0.1
CW_DEFAULTS = {"max_iter": 1000, "binary_search_steps": 9, "learning_rate": 0.01, "initial_const": 0.001}
#: The largest fingerprint scale ε the paper's setups use (the authors' README example; their scripts 0.003-0.01,
#: §3.3 and MiniImagenet-20 0.05): Fig. 3's claims about ε are read within it.
PAPER_MAX_EPS = 0.1
#: Which claims each notebook measures, by the id's second part.
NOTEBOOK_CLAIMS = {"40_neural_fingerprinting": ("table1", "control", "accuracy", "fig5", "adaptive"),
                   "41_roc_curves": ("fig3", "fig4")}
SUCCESSFUL_ONLY = "AUC of the correct clean pre-test points against the successful adversarial examples"


def attack_key(label: str) -> str:
    """The part of a claim id that names one of Table 1's attacks: "BIM-a" -> "bim_a"."""
    return label.lower().replace("-", "_")


@dataclass(frozen=True)
class RunSettings:
    """A run's settings where they can differ from the paper's (what every measurement's note lists)."""
    dataset: str
    n_train: int | None
    n_pretest: int  # clean pre-test points attacked
    jsma_gamma: float
    cw_settings: Mapping[str, Any] = field(default_factory=lambda: dict(CW_DEFAULTS))
    n_fingerprints: int | None = None
    eps: float | None = None
    seed: int = 0
    fingerprint_seed: int | None = 0
    epochs: int | None = None  # training epochs (the paper states none)

    def note(self, attack: str | None = None, *, paper_dataset: str = "mnist", extra: Iterable[str] = ()) -> str:
        """The differences from the paper's settings, for a claim on ``attack`` (None: every attack) whose
        paper value was measured on ``paper_dataset``."""
        found = [f"data set {self.dataset} (the paper: {paper_dataset})"] if self.dataset != paper_dataset else []
        if self.n_train is not None and self.n_train < PAPER_TRAIN:
            found.append(f"{self.n_train} training images (the paper: the full training split)")
        if self.epochs is not None:
            found.append(f"{self.epochs} training epochs (the paper states none)")
        if self.n_pretest < PAPER_PRETEST:
            found.append(f"{self.n_pretest} pre-test points (the paper: {PAPER_PRETEST})")
        if self.n_fingerprints is not None:
            found.append(f"N {self.n_fingerprints}, ε {self.eps} (the paper: the best N and ε of a grid search)")
        if attack in (None, "JSMA") and self.jsma_gamma != PAPER_JSMA_GAMMA:
            found.append(f"JSMA γ {self.jsma_gamma:g} (the authors' code: {PAPER_JSMA_GAMMA:g})")
        cw = {**CW_DEFAULTS, **self.cw_settings}
        if attack in (None, "CW-L2") and cw != CW_DEFAULTS:
            found.append(f"CW-L2 {cw['max_iter']} iterations × {cw['binary_search_steps']} binary-search steps, "
                         f"learning rate {cw['learning_rate']:g}, c₀ {cw['initial_const']:g} (the paper states none; "
                         "Carlini & Wagner's defaults: 1000 × 9, 0.01, 0.001)")
        return "; ".join([*found, *extra])

    @property
    def seeds(self) -> tuple[int, ...]:
        """The run's seed and the fingerprints' (when seeded), each once."""
        seeds = (self.seed,) if self.fingerprint_seed is None else (self.seed, self.fingerprint_seed)
        return tuple(dict.fromkeys(seeds))


# ------------------------------------------------------------------------------------------------ measurements
def successful_scores(scores: Mapping[str, torch.Tensor], correct: torch.Tensor, success: torch.Tensor,
                      attack: str) -> tuple[np.ndarray, np.ndarray]:
    """(scores of the correct clean points, scores of their successful adversarial versions) for ``attack``."""
    return (scores["clean"][correct].double().numpy(),
            scores[attack][correct & success.to(torch.bool)].double().numpy())


def _labelled(clean: np.ndarray, adversarial: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.r_[np.zeros(len(clean)), np.ones(len(adversarial))], np.r_[clean, adversarial]


def either_direction(clean: np.ndarray, adversarial: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The control's scores read in the direction that separates best: a control AUC below 0.5 is signal too
    (the probes flag clean inputs more), so the control is credited with max(AUC, 1 − AUC)."""
    if len(clean) and len(adversarial) and metrics.auc(*_labelled(clean, adversarial)) < 0.5:
        return -clean, -adversarial
    return clean, adversarial


def auc_measurement(clean: np.ndarray, adversarial: np.ndarray, *, images: int, seeds: tuple[int, ...],
                    note: str) -> claims.Measurement:
    """Bootstrap AUC of clean against adversarial scores, resting on the adversarial examples' number."""
    if not len(clean) or not len(adversarial):
        return claims.Measurement(None, None, images, len(adversarial), seeds, note)
    value, interval = stats.bootstrap_auc(*_labelled(clean, adversarial), seed=seeds[0] if seeds else 0)
    return claims.Measurement(value, interval, images, len(adversarial), seeds, note)


def _difference_draws(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray],
                      seed: int) -> np.ndarray:
    """Bootstrap replicates of AUC(first) − AUC(second), the two resampled independently."""
    (labels_a, scores_a), (labels_b, scores_b) = _labelled(*first), _labelled(*second)
    return stats.bootstrap_auc_difference_draws(labels_a, scores_a, scores_b, control_labels=labels_b, seed=seed)[1]


def auc_difference(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray], *,
                   labels: tuple[str, str], images: int, seeds: tuple[int, ...], note: str,
                   measured: tuple[claims.Measurement, claims.Measurement] | None = None,
                   draws: np.ndarray | None = None) -> claims.Measurement:
    """AUC(first) − AUC(second) of two nets attacked separately: each AUC with its interval (``measured``, when
    the caller has them already), and the difference's interval from a bootstrap that resamples the two
    independently (``draws``, its replicates, when the caller has them already)."""
    parts = list(measured or [auc_measurement(*pair, images=images, seeds=seeds, note=note) for pair in (first, second)])
    if any(p.value is None for p in parts):
        return claims.combined(dict(zip(labels, parts)), note=note)
    if draws is None:
        draws = _difference_draws(first, second, seeds[0] if seeds else 0)
    return claims.difference(parts[0], parts[1], labels=labels, interval=stats.percentile_interval(draws), note=note)


def trend_over_sets(per_set: list[tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]], *,
                    labels: tuple[str, str], images: int, seeds: tuple[int, ...], note: str) -> claims.Measurement:
    """AUC(first) − AUC(second) (Fig. 3's change from one end of a sweep to the other), measured on each
    fingerprint set (``per_set``: per set, the (clean, adversarial) scores at both ends). One set: the bootstrap
    over the pre-test images (``auc_difference``). Several: the mean of the per-set differences, and an interval
    that spans both sources of chance: the hull of Student's t interval over the sets (the fingerprints'
    randomness) and the percentile bootstrap of the mean over the images (every set is scored on the same
    pre-test images, so the spread between sets cannot show the images' own sampling error), clipped to [-1, 1]."""
    seed = seeds[0] if seeds else 0
    draws = [_difference_draws(first, second, seed) if all(len(a) for pair in (first, second) for a in pair) else None
             for first, second in per_set]
    per_set_measured = [auc_difference(first, second, labels=labels, images=images, seeds=seeds, note=note, draws=d)
                        for (first, second), d in zip(per_set, draws)]
    if len(per_set_measured) == 1 or any(m.value is None for m in per_set_measured):
        return per_set_measured[0] if len(per_set_measured) == 1 else claims.combined(
            {f"set {k}": m for k, m in enumerate(per_set_measured)}, note=note)
    values = np.array([m.value for m in per_set_measured])
    mean = float(values.mean())
    t_low, t_high = stats.mean_interval(mean, float(values.std(ddof=1)), len(values))
    b_low, b_high = stats.percentile_interval(np.mean(draws, axis=0))
    interval = (max(min(t_low, b_low), -1.0), min(max(t_high, b_high), 1.0))
    return claims.combined({f"set {k}": m for k, m in enumerate(per_set_measured)}, value=mean, interval=interval,
                           note=note)


def separation(clean: np.ndarray, adversarial: np.ndarray, *, fpr: float = 0.05, draws: int = 1000, seed: int = 0,
               images: int, seeds: tuple[int, ...], note: str) -> claims.Measurement:
    """The fraction of adversarial scores above the clean scores' (1 − ``fpr``) quantile (``metrics.tpr_at_fpr``),
    with a percentile bootstrap that resamples both, so the threshold's own sampling error is in the interval."""
    if not len(clean) or not len(adversarial):
        return claims.Measurement(None, None, images, len(adversarial), seeds, note)
    rng = np.random.default_rng(seed)
    boot = [metrics.tpr_at_fpr(clean[rng.integers(0, len(clean), len(clean))],
                               adversarial[rng.integers(0, len(adversarial), len(adversarial))], fpr)
            for _ in range(draws)]
    return claims.Measurement(metrics.tpr_at_fpr(clean, adversarial, fpr), stats.percentile_interval(boot), images,
                              len(adversarial), seeds, note)


def accuracy_difference(correct_with: torch.Tensor, correct_without: torch.Tensor, *, seeds: tuple[int, ...],
                        note: str) -> claims.Measurement:
    """Test accuracy with minus without fingerprints, paired on the same images (bootstrap)."""
    a, b = correct_with.double().numpy(), correct_without.double().numpy()
    value, interval = stats.bootstrap_mean_difference(a, b, paired=True, seed=seeds[0] if seeds else 0)
    parts = {"with fingerprints": claims.proportion(int(a.sum()), len(a), seeds=seeds),
             "without (control)": claims.proportion(int(b.sum()), len(b), seeds=seeds)}
    return claims.combined(parts, value=value, interval=interval, note=note)


def std_over_sets(per_set: list[tuple[np.ndarray, np.ndarray]], *, images: int, seeds: tuple[int, ...],
                  note: str) -> claims.Measurement:
    """Sample std s of the AUC over fingerprint sets (each set's (clean, adversarial) scores). Its 95 % interval is
    the χ² interval of s (the sets taken as a normal sample), with the lower end net of the AUCs' own sampling
    variance at this many pre-test points (the mean squared bootstrap standard error), so that the noise of a few
    pre-test points cannot by itself refute a small spread, and the upper end as measured (cut at 0.5·√(k / (k − 1)),
    the largest sample std of k values in [0, 1]), so that it cannot by itself confirm one."""
    from scipy.stats import chi2

    n_successful = min(len(adversarial) for _, adversarial in per_set)
    if len(per_set) < 2 or any(not len(c) or not len(a) for c, a in per_set):
        return claims.Measurement(None, None, images, n_successful, seeds, note)
    fits = [stats.bootstrap_auc(*_labelled(c, a), seed=seeds[0] if seeds else 0) for c, a in per_set]
    values = np.array([value for value, _ in fits])
    noise = float(np.mean([((high - low) / (2 * stats.Z95)) ** 2 for _, (low, high) in fits]))
    s, dof = float(values.std(ddof=1)), len(values) - 1
    low = s * np.sqrt(dof / chi2.ppf(0.975, dof))
    high = min(s * np.sqrt(dof / chi2.ppf(0.025, dof)), 0.5 * np.sqrt(len(values) / dof))
    return claims.Measurement(s, (float(np.sqrt(max(0.0, low ** 2 - noise))), float(high)), images, n_successful,
                              seeds, note)


def _record(measurements: Mapping[str, claims.Measurement], missing: Mapping[str, str],
            undecided: Mapping[str, str] | None = None) -> list[claims.Verdict]:
    """Judge and record each claim; ``missing[id]`` says why this run could not measure it, ``undecided[id]`` why
    it cannot decide a claim it measured (the measurement is still shown)."""
    by_id, undecided = {c.id: c for c in claims.declared(PAPER)}, undecided or {}
    return [results.record_claim(by_id[claim_id], m, undecided=f"not measured: {missing[claim_id]}"
                                 if claim_id in missing else undecided.get(claim_id))
            for claim_id, m in measurements.items()]


def fingerprints_unlearned(fit: float) -> bool:
    """Whether a fingerprint fit (``sweep_point``'s "fit", the mean D of the true class) says the net has not
    learned its fingerprints: the one rule behind ``unlearned_ends`` and the trend tables' sentences."""
    return fit >= UNLEARNED_FIT


def unlearned_ends(fits: Mapping[float, float], name: str) -> str | None:
    """Why a trend cannot be judged when the fingerprints at one end of its grid were not learned (``fits``: grid
    value → mean D of the true class over the fingerprint sets, ``sweep_point``'s "fit"), or None."""
    unfit = {v: d for v, d in fits.items() if fingerprints_unlearned(d)}
    if not unfit:
        return None
    return ("the fingerprints at " + ", ".join(f"{name} {v:g} (mean D of the true class {d:.3f})" for v, d in unfit.items())
            + f" were not learned (≈ 0.995 where the net ignores the probes; learned below {UNLEARNED_FIT:g}): a change "
            "against that end "
            "says how well the nets fitted, not how the defense varies")


def _unmeasured(found: dict[str, claims.Measurement], missing: dict[str, str], ids, why: str) -> None:
    """Mark each claim of ``ids`` as not measured in this run, for ``why``."""
    for claim_id in ids:
        found[claim_id], missing[claim_id] = claims.not_measured(why), why


def notebook_claim_ids(notebook: str) -> list[str]:
    """The declared claims that ``notebook`` measures, in declaration order."""
    return [c.id for c in claims.declared(PAPER) if c.id.split(".")[1] in NOTEBOOK_CLAIMS[notebook]]


# ------------------------------------------------------------------------------------------------- notebook 40
def evaluate_claims(attacked: AttackedSet, control: AttackedSet, *, defense, control_defense, test_set,
                    adaptive_x: torch.Tensor, adaptive_runs: Mapping[str, Any], run: RunSettings
                    ) -> list[claims.Verdict]:
    """Notebook 40's claims, each measured and recorded (``results.record_claim``): per Table 1 attack the AUC,
    the AUC minus the control's and the control's AUC; the accuracy with minus without fingerprints on
    ``test_set``; Fig. 5's separation (all attacks pooled); §3.4's AUC against the paper's Adaptive-CW-L2
    (``adaptive_runs["paper_adaptive"]`` on the clean ``adaptive_x``, from ``run_adaptive_attacks``)."""
    images, seeds, found, missing = len(attacked.correct), run.seeds, {}, {}
    pooled_adversarial = []
    for label in PAPER_ATTACKS:
        key = attack_key(label)
        if label not in attacked.adversarial:
            _unmeasured(found, missing, (f"{PAPER}.table1.mnist.{key}.auc", f"{PAPER}.table1.{key}.auc_over_control",
                                         f"{PAPER}.control.{key}.auc_at_most_chance"), f"{label} was not run")
            continue
        note = run.note(label, extra=[SUCCESSFUL_ONLY])
        ours = successful_scores(attacked.scores, attacked.correct, attacked.adversarial[label].success, label)
        theirs = either_direction(*successful_scores(control.scores, control.correct,
                                                     control.adversarial[label].success, label))
        pooled_adversarial.append(ours[1])
        m_ours = auc_measurement(*ours, images=images, seeds=seeds, note=note)
        m_theirs = auc_measurement(*theirs, images=images, seeds=seeds,
                                   note=run.note(label, extra=[SUCCESSFUL_ONLY + ", on the control"]))
        found[f"{PAPER}.table1.mnist.{key}.auc"] = m_ours
        found[f"{PAPER}.table1.{key}.auc_over_control"] = auc_difference(
            ours, theirs, labels=("fingerprinted", "control"), images=images, seeds=seeds, note=note,
            measured=(m_ours, m_theirs))
        found[f"{PAPER}.control.{key}.auc_at_most_chance"] = m_theirs

    correct = [train.predict(d.model, test_set.x).argmax(1) == test_set.y for d in (defense, control_defense)]
    n_test = len(test_set.y)
    found[f"{PAPER}.accuracy.mnist.unchanged"] = accuracy_difference(
        *correct, seeds=seeds, note=run.note(extra=[f"{n_test} test images (the paper: MNIST's 10,000)"]
                                             if n_test < 10000 else []))

    clean = attacked.scores["clean"][attacked.correct].double().numpy()
    found[f"{PAPER}.fig5.separation"] = separation(
        clean, np.concatenate(pooled_adversarial) if pooled_adversarial else np.zeros(0), seed=run.seed,
        images=images, seeds=seeds,
        note=run.note(paper_dataset="cifar10", extra=[
            f"{', '.join(attacked.adversarial)} pooled", "the paper's Fig. 5: 100 images, its attack not named",
            "threshold at the correct clean pre-test points' 95th percentile"]))

    paper_attack = adaptive_runs["paper_adaptive"]
    adaptive_note = run.note("CW-L2", paper_dataset="cifar10", extra=[
        f"{len(adaptive_x)} test images (the paper: 1024)", "the paper: N 30, ε 0.006", SUCCESSFUL_ONLY])
    found[f"{PAPER}.adaptive.cifar10.paper_adaptive.auc"] = auc_measurement(
        defense.score(adaptive_x).double().numpy(),
        defense.score(paper_attack.x_adv[paper_attack.success]).double().numpy(),
        images=len(adaptive_x), seeds=seeds, note=adaptive_note)
    return _record({i: found[i] for i in notebook_claim_ids("40_neural_fingerprinting")}, missing)


# ------------------------------------------------------------------------------------------------- notebook 41
def _point_scores(point: Mapping[str, Any], attack: str) -> tuple[np.ndarray, np.ndarray]:
    evidence = point["evidence"]
    return successful_scores(evidence["scores"], evidence["correct"], evidence["success"][attack], attack)


def evaluate_sweep_claims(train_set, test_set, settings: SweepSettings, *, n_grid, eps_grid, n: int, eps: float,
                          n_sets: int, run: RunSettings, sweep_sets: int = 1, cache=None) -> list[claims.Verdict]:
    """Notebook 41's claims, each measured and recorded: per attack, the AUC at the grid's largest N minus at its
    smallest (ε = ``eps``, Fig. 3 left), the same over ε (N = ``n``, Fig. 3 middle), both on ``sweep_sets``
    fingerprint sets (``trend_over_sets``), and the AUC's std over ``n_sets`` fingerprint sets (Fig. 4). Reads the
    sweep's cached points (``sweep_point``) with their scores. A trend whose grid has an end where the fingerprints
    were not learned is inconclusive, its change still shown (``unlearned_ends``)."""
    def point(n_, eps_, seed=0):
        return sweep_point(train_set, test_set, settings, n=n_, eps=eps_, fingerprint_seed=seed, cache=cache,
                           with_evidence=True)

    images, seeds, found, missing, undecided = min(settings.n_pretest, len(test_set.y)), run.seeds, {}, {}, {}
    in_range = sorted(v for v in set(eps_grid) if v <= PAPER_MAX_EPS)
    beyond = sorted(set(eps_grid) - set(in_range))
    axes = {"n": ("N", sorted(set(n_grid)), lambda v, k: point(v, eps, k), f"ε {eps}", ""),
            "eps": ("ε", in_range, lambda v, k: point(n, v, k), f"N {n}", f"; ε {', '.join(f'{v:g}' for v in beyond)} "
                    f"left out, beyond the paper's range (at most {PAPER_MAX_EPS:g})" if beyond else "")}
    for label in PAPER_ATTACKS:
        key, swept = attack_key(label), label in settings.attack_names
        for axis, (name, grid, at, held, left_out) in axes.items():
            ids = ([f"{PAPER}.fig3.eps.cw_l2.auc_falls", f"{PAPER}.fig3.eps.cw_l2.fall_not_substantial"]
                   if (axis, label) == ("eps", "CW-L2") else [f"{PAPER}.fig3.{axis}.{key}.auc_does_not_fall"])
            if not swept or len(grid) < 2:
                why = (f"{label} is not in SWEEP_ATTACKS" if not swept
                       else f"the {name} grid has fewer than two values to compare{left_out}")
                _unmeasured(found, missing, ids, why)
                continue
            low, high = grid[0], grid[-1]
            which = ("fingerprint set 0" if sweep_sets == 1
                     else f"mean over {sweep_sets} fingerprint sets, Student's t over the sets")
            note = run.note(label, paper_dataset="mnist", extra=[
                f"{name} {high:g} against {name} {low:g} ({held}, {which}; the paper's grid is not "
                f"printed){left_out}",
                SUCCESSFUL_ONLY])
            measured = trend_over_sets([(_point_scores(at(high, k), label), _point_scores(at(low, k), label))
                                        for k in range(sweep_sets)],
                                       labels=(f"{name} {high:g}", f"{name} {low:g}"), images=images,
                                       seeds=tuple(dict.fromkeys((*seeds, *range(sweep_sets)))), note=note)
            found.update({i: measured for i in ids})
            unfit = unlearned_ends({v: float(np.mean([at(v, k)["fit"] for k in range(sweep_sets)]))
                                    for v in (low, high)}, name)
            undecided.update({i: unfit for i in ids} if unfit else {})
            if (axis, label) == ("eps", "CW-L2") and measured.interval and measured.interval[0] > 0:
                # "falls by no more than 8 %" would pass on any rise: a size of fall needs a fall to judge
                _unmeasured(found, missing, [f"{PAPER}.fig3.eps.cw_l2.fall_not_substantial"],
                            f"no fall to judge: the AUC rose by {measured.value:.3g} "
                            f"{claims.span(measured.interval)} from ε {low:g} to {high:g} (auc_falls carries the "
                            "verdict)")
        if not swept or n_sets < 2:
            _unmeasured(found, missing, [f"{PAPER}.fig4.{key}.auc_std"],
                        f"{label} is not in SWEEP_ATTACKS" if not swept else "one fingerprint set has no spread")
            continue
        found[f"{PAPER}.fig4.{key}.auc_std"] = std_over_sets(
            [_point_scores(point(n, eps, s), label) for s in range(n_sets)], images=images,
            seeds=tuple(dict.fromkeys((run.seed, *range(n_sets)))),
            note=run.note(label, paper_dataset="cifar10", extra=[
                f"{n_sets} fingerprint sets at N {n}, ε {eps} (the paper: 32 sets, N randomised too)",
                "per set: " + SUCCESSFUL_ONLY]))
    order = notebook_claim_ids("41_roc_curves")
    return _record({i: found[i] for i in order}, missing, undecided)
