"""The headline claims of the Luring paper (Bernhard, Moellic, Dutertre, "Luring of Transferable Adversarial
Perturbations in the Black-Box Paradigm", 2021), judged on notebook 30's measurements: ``evaluate_claims``.

- Declared in ``paper_values.yaml`` (a printed value each): Table 8's test-accuracy drop from M to Luring's M∘P;
  Table 14's DAC (eq. 4) of Luring and of C_E at ε 0.3 under SPSA, ECO and MIM-W; AC_M of Luring above C_E's
  under SPSA at ε 0.2.
- Declared here (orderings, or a statement without a single printed value): Fig. 2's DR and IAR (eq. 3),
  Luring > C_E > Stack/Auto for every attack and ε run (§3.3); Table 14's DAC ordering under MIM-W at ε 0.3;
  §4.3's AC_MoP ≈ 0 under white-box iterative attacks on M∘P (P masks no gradient).

Intervals: Wilson for one rate; a percentile bootstrap over the attacked points for differences and orderings
(paired: every approach's x' comes from the same clean points). Evidence: a claim about AC_M or DAC under an
attack that leaves an M∘P more accurate than the paper's (the Wilson lower bound of AC_MoP above the paper's
AC_MoP plus the tolerance rule's margin at its 1000 points) is inconclusive, "attack too weak" — DAC and AC_M
count a failed attack as harmless, so they would agree for the wrong reason. A claim whose data set, ε or
approaches this run did not measure is inconclusive, "not measured". Each measurement's note names every
setting that differs from the paper's (``settings_note``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from decoylab import claims, paper_values, results, stats
from decoylab.experiments.luring import APPROACH_LABELS, PAPER_DEFENSE_TABLE, LuringRun

PAPER = "luring"
PAPER_SETTINGS = paper_values.values(PAPER, "experiment_settings")
METRICS = ("AC_MoP", "AC_M", "DAC")  # the columns of Tables 1 and 14
STACK_OR_AUTO = "Stack/Auto (higher)"  # C_E must beat both baselines: the higher of the two stands for them
ORDER = ("Luring", "C_E", STACK_OR_AUTO)
ATTACK_NAMES = {"fgsm": "FGSM", "pgd": "PGD", "mim": "MIM", "mim_l2": "MIM-L2", "spsa": "SPSA", "eco": "ECO",
                "mim_w": "MIM-W"}
# §4.3: "AC_MoP almost always equal 0 with gradient-based iterative attacks": 0.0 as Tables 1 and 14 print it
# (2 decimals) is 0.005 + the Wilson distance of 0/1000 (0.0038) = 0.0088, rounded up to 0.01.
AC_MOP_THRESHOLD = 0.01
ITERATIVE = ("pgd", "mim")  # Fig. 2's white-box iterative L∞ attacks on M∘P

# Fig. 2 and §3.3 ("the highest performances reached with our loss (for every ε)"); per attack, ε and metric.
FIG2 = {metric: claims.Claim(
    f"luring.fig2.{{dataset}}.{{attack}}.eps{{eps:g}}.{metric.lower()}", PAPER, "Fig. 2",
    f"{{attack_name}} at ε {{eps:g}}: of the x' crafted on M∘P that fool all the augmented models, {what} "
    f"({metric}, eq. 3) most often for Luring, then C_E, then Stack and Auto (§3.3: the highest {metric} for "
    "every ε with the luring loss).", claims.Ordering(ORDER), min_successes=claims.DETECTION_MIN_SUCCESSES)
    for metric, what in (("DR", "M disagrees with M∘P"), ("IAR", "M still classifies correctly"))}
# Table 14, MNIST, MIM-W at ε 0.3: DAC 0.75 (Luring), 0.57 (C_E), 0.45 (Stack), 0.45 (Auto).
DAC_ORDERING = claims.Claim(
    "luring.table14.mnist.mim_w_0.3.dac_ordering", PAPER, "Table 14",
    "On MNIST under MIM-W at ε 0.3, DAC (eq. 4) is highest for Luring (0.75), then C_E (0.57), then Stack and "
    "Auto (0.45 each).", claims.Ordering(ORDER), min_successes=claims.DETECTION_MIN_SUCCESSES)
# §4.3 (Tables 1 and 14): gradient-based iterative attacks bring M∘P's accuracy to about 0 (no gradient masking).
AC_MOP_ITERATIVE = claims.Claim(
    "luring.sec4_3.{dataset}.{attack}.ac_mop", PAPER, "§4.3",
    "White-box {attack_name} on Luring's M∘P brings M∘P's accuracy (AC_MoP) to about 0 at every ε run: P does "
    "not mask the gradients (§4.3: AC_MoP \"almost always equal 0 with gradient-based iterative attacks\").",
    claims.AtMost(AC_MOP_THRESHOLD))


def _named(template: claims.Claim, **fields) -> claims.Claim:
    return replace(template, id=template.id.format(**fields), statement=template.statement.format(**fields))


def _differs(what: str, kit, paper) -> list[str]:
    return [] if kit == paper or paper is None else [f"{what} {kit} (paper: {paper})"]


def component_budget(parameters: Mapping, n_train: int, paper_dataset: str) -> tuple[int, int, str]:
    """(this run's, the paper's, unit) of P's training length, in the unit the paper gives: optimiser steps where
    the authors' code counts them (MNIST: 50 000), else epochs (Appendix B). A run given in the other unit is
    converted over P's training split (the training images less the validation share)."""
    paper = PAPER_SETTINGS[paper_dataset]
    n_fit = n_train - max(1, int(n_train * parameters["VALIDATION_FRACTION"]))
    batches = math.ceil(n_fit / parameters["COMPONENT_BATCH_SIZE"])
    steps, epochs = parameters["COMPONENT_STEPS"], parameters["COMPONENT_EPOCHS"]
    if paper["component_steps"]:
        return int(steps) if steps else epochs * batches, int(paper["component_steps"]), "optimiser steps"
    return (math.ceil(steps / batches) if steps else epochs), int(paper["component_epochs"]), "epochs"


def settings_note(parameters: Mapping, run: LuringRun, *, n_train: int, attack: str | None = None,
                  n_points: int | None = None, n_test: int | None = None) -> str:
    """Every way this run's settings differ from the paper's (Appendices A, B, D.1, F) for one measurement:
    data set and training always, then the ``attack``'s budget, the points attacked or the test images."""
    p, paper = parameters, PAPER_SETTINGS[run.paper_dataset]
    out = _differs("data set", run.dataset, run.paper_dataset)
    out += _differs("training images", n_train, paper["train_images"])
    out += _differs("M's epochs", p["TARGET_EPOCHS"], paper["target_epochs"])
    trained, paper_length, unit = component_budget(p, n_train, run.paper_dataset)
    if trained != paper_length:
        auto = f"; Auto {paper['auto_epochs']} epochs" if paper["auto_epochs"] else ""
        out.append(f"P's {unit} {trained:,} (paper: {paper_length:,} for Luring and C_E{auto})")
    out += _differs("P's batch", p["COMPONENT_BATCH_SIZE"], paper["component_batch_size"])
    out += _differs("P's learning rate", p["COMPONENT_LR"], paper["component_lr"])
    unit, paper_drops = (("step", paper["component_lr_steps"]) if p["COMPONENT_STEPS"] and paper["component_lr_steps"]
                         else ("epoch", paper["component_lr_drops"]))
    drops, paper_drops = (", ".join(map(str, d)) or "none" for d in (p["COMPONENT_LR_DROPS"], paper_drops))
    out += _differs(f"P's learning-rate drops at {unit}s", drops, paper_drops)
    if p["COMPONENT_LR_DROPS"]:
        values = ", ".join(map(str, p["COMPONENT_LR_VALUES"])) or "× 0.2 each"
        out += _differs("P's learning rates after the drops", values, ", ".join(map(str, paper["component_lr_values"])))
    out += _differs("Stack's epochs", p["STACK_EPOCHS"], paper["stack_epochs"])
    out += _differs("λ", p["LURING_WEIGHT"], paper["weight"])
    if p["COMPONENT_INIT"] == "auto":
        out.append("P warm-started from Auto's autoencoder (paper: random, Algorithm 1)")
    if n_test is not None:
        out += _differs("test images", n_test, paper["test_images"])
    steps = p["ITER_STEPS"]
    if attack in ("pgd", "mim", "mim_l2"):
        name = ATTACK_NAMES[attack]
        out += _differs(f"{name} iterations", steps or paper["fig2_iterations"], paper["fig2_iterations"])
        step = p["MIM_L2_STEP_SIZE"] if attack == "mim_l2" else p["ITER_STEP_SIZE"]
        out += _differs(f"{name} step", step or paper["fig2_step_size"], paper["fig2_step_size"])
    elif attack == "mim_w":
        out += _differs("MIM-W iterations", p["MIM_W_STEPS"] or paper["mim_w_iterations"], paper["mim_w_iterations"])
        out += [f"MIM-W step {p['ITER_STEP_SIZE']} (0.01 by default)"] if p["ITER_STEP_SIZE"] else []
        out.append("MIM-TI/DIM-TI kernel and DIM's p of the paper's Luring model for every approach (Tables 11-13)")
    elif attack == "spsa":
        out += _differs("SPSA iterations", p["SPSA_STEPS"] or paper["spsa_iterations"], paper["spsa_iterations"])
        out += _differs("SPSA batch", p["SPSA_SAMPLES"] or paper["spsa_batch"], paper["spsa_batch"])
    elif attack == "eco":
        out += _differs("ECO queries", p["ECO_QUERIES"] or paper["eco_queries"], paper["eco_queries"])
        out.append("ECO as a batched greedy block-flip search (not Moon et al.'s lazy greedy)")
    if n_points is not None:
        out += _differs("points attacked", n_points, paper["points"])
    return "; ".join(out)


def _bootstrap_means(indicators: Mapping[str, np.ndarray], *, seed: int, draws: int) -> dict[str, np.ndarray]:
    """Each label's mean over ``draws`` resamples of the points, the same resample for every label (paired)."""
    n = len(next(iter(indicators.values())))
    index = np.random.default_rng(seed).integers(0, n, (draws, n))
    return {label: np.asarray(v, dtype=float)[index].mean(1) for label, v in indicators.items()}


def _ordering(indicators: Mapping[str, np.ndarray], *, successes: Mapping[str, int], n_points: int, seed: int,
              draws: int, note: str) -> claims.Measurement:
    """ORDER's parts from per-point indicators of each approach label (paired over the points); the
    ``STACK_OR_AUTO`` part is the higher of Stack and Auto (of those run), in each bootstrap draw as well."""
    baselines = [label for label in ("Stack", "Auto") if label in indicators]
    means = _bootstrap_means(indicators, seed=seed, draws=draws)
    rate = {label: float(np.mean(v)) for label, v in indicators.items()}
    parts = {label: claims.proportion(int(np.sum(indicators[label])), len(indicators[label]), images=n_points,
                                      n_successful=successes[label], seeds=[seed]) for label in indicators}
    if baselines:
        higher = max(baselines, key=lambda label: rate[label])
        parts[STACK_OR_AUTO] = parts[higher]
        means[STACK_OR_AUTO] = np.max([means[label] for label in baselines], axis=0)
    order = [label for label in ORDER if label in parts]
    differences = {(a, b): stats.percentile_interval(means[a] - means[b]) for a, b in zip(order, order[1:])}
    return claims.combined({label: parts[label] for label in order}, differences=differences, note=note)


@dataclass
class _Run:
    """The notebook's measurements, indexed for the claims."""
    run: LuringRun
    parameters: Mapping
    n_train: int
    seed: int
    draws: int
    fidelity: str | None = None  # why the transfer claims cannot be judged (``_fidelity``), or None
    predicted: dict = field(default_factory=dict)  # approach -> (M∘P, M) test predictions

    def __post_init__(self):
        self.fig2 = {(r["attack"], round(float(r["eps"]), 4), r["approach"]): r for r in self.run.characterisation}
        self.table = {(r["attack"], round(float(r["eps"]), 4), r["approach"]): r for r in self.run.defense}

    def note(self, **where) -> str:
        return settings_note(self.parameters, self.run, n_train=self.n_train, **where)

    def missing(self, rows: Mapping, attack: str, eps: float, approaches, *, ordering: bool = False) -> str | None:
        """Why the cells (attack, ε, approaches) were not measured in this run, or None; an ``ordering`` also
        needs Stack or Auto."""
        cell = (attack, round(float(eps), 4))
        absent = [APPROACH_LABELS[a] for a in approaches if (*cell, a) not in rows]
        if ordering and not any((*cell, a) in rows for a in ("stack", "auto")):
            absent.append("Stack or Auto")
        if not absent:
            return None
        run_eps = sorted({key[1] for key in rows if key[0] == attack})
        return (f"not measured: this run has no {ATTACK_NAMES.get(attack, attack)} at ε {eps:g} for "
                f"{', '.join(absent)} (ε run: {', '.join(f'{e:g}' for e in run_eps) or 'none'})")

    def too_weak(self, attack: str, eps: float, approaches) -> str | None:
        """'too little evidence' when the attack fools an M∘P on fewer than 30 points, 'attack too weak' when it
        leaves an M∘P more accurate than the paper's beyond the tolerance rule."""
        quoted = PAPER_DEFENSE_TABLE[self.run.paper_dataset]
        for approach in approaches:
            correct = self.table[(attack, round(float(eps), 4), approach)]["points"]["mop_correct"]
            k, n = int(correct.sum()), len(correct)
            if n - k < claims.DETECTION_MIN_SUCCESSES:
                return (f"too little evidence: {ATTACK_NAMES[attack]} at ε {eps:g} fools {APPROACH_LABELS[approach]}'s "
                        f"M∘P on {n - k} of {n} points, fewer than {claims.DETECTION_MIN_SUCCESSES} successful "
                        "adversarial examples; AC_M and DAC would count its failures as harmless")
            low, high = stats.wilson(k, n)
            ref = quoted.get((attack, round(float(eps), 4), approach))
            if ref is None:
                continue
            limit = ref[0] + claims.tolerance_rule(ref[0], 2, PAPER_SETTINGS[self.run.paper_dataset]["points"])
            if low > limit:
                return (f"attack too weak: {ATTACK_NAMES[attack]} at ε {eps:g} leaves {APPROACH_LABELS[approach]}'s "
                        f"M∘P at accuracy {k / n:.3g} [{low:.3g}, {high:.3g}] on {n} points, above the paper's "
                        f"AC_MoP {ref[0]:g} + {limit - ref[0]:g}; AC_M and DAC would count its failures as harmless")
        return None


def _declared(claim: claims.Claim, spec: Mapping, ctx: _Run, defenses, test_set):
    """(measurement, undecided reason or None) for a claim of ``paper_values.yaml``, read off its value path."""
    entry, dataset = spec["value"][0], spec["value"][1]
    if dataset != ctx.run.paper_dataset:
        return claims.not_measured(ctx.note()), (f"not measured: this run stands for {ctx.run.paper_dataset}, the claim "
                                           f"is about {dataset}")
    if entry == "table_8":
        approach = spec["minus"][2]
        if approach not in defenses:
            return claims.not_measured(ctx.note()), f"not measured: this run has no {APPROACH_LABELS[approach]} M∘P"
        pred_mop, pred_m = _predictions(ctx, defenses, approach, test_set)
        y = test_set.y.cpu()
        target_ok, mop_ok = (pred_m == y).numpy(), (pred_mop == y).numpy()
        value, interval = stats.bootstrap_mean_difference(target_ok, mop_ok, paired=True, seed=ctx.seed,
                                                           draws=ctx.draws)
        parts = {label: claims.proportion(int(ok.sum()), len(ok), seeds=[ctx.seed])
                 for label, ok in (("M", target_ok), (f"{APPROACH_LABELS[approach]} M∘P", mop_ok))}
        measurement = claims.combined(parts, value=value, interval=interval, note=ctx.note(n_test=len(y)))
        return measurement, _short_training(claim, measurement, ctx)
    attack, eps, approach, column = spec["value"][2:6]
    metric = METRICS[column]
    approaches = [approach] + ([spec["minus"][4]] if "minus" in spec else [])
    note = ctx.note(attack=attack, n_points=ctx.run.n_defense)
    missing = ctx.missing(ctx.table, attack, eps, approaches)
    if missing:
        return claims.not_measured(note), missing
    measured = []
    for a in approaches:
        points = ctx.table[(attack, round(float(eps), 4), a)]["points"]
        ok = {"AC_MoP": points["mop_correct"], "AC_M": points["target_correct"],
              "DAC": points["disagree"] | points["target_correct"]}[metric].numpy()
        fooled = int((~points["mop_correct"]).sum())
        measured.append((ok, claims.proportion(int(ok.sum()), len(ok), n_successful=fooled, seeds=[ctx.seed],
                                               note=note)))
    if len(measured) == 1:
        m = measured[0][1]
    else:
        (ok, m_defense), (ok_control, m_control) = measured
        _, interval = stats.bootstrap_mean_difference(ok, ok_control, paired=True, seed=ctx.seed, draws=ctx.draws)
        labels = (APPROACH_LABELS[approaches[0]], APPROACH_LABELS[approaches[1]])
        m = claims.difference(m_defense, m_control, labels=labels, interval=interval, note=note)
    return m, ctx.too_weak(attack, eps, approaches) or (ctx.fidelity if metric != "AC_MoP" else None)


def _short_training(claim: claims.Claim, measurement: claims.Measurement, ctx: _Run) -> str | None:
    """Shorter training than the paper's can only widen M∘P's accuracy gap, so a gap within the claim's bound
    still reproduces it, but a wider one does not refute it: that verdict waits for the paper's schedule."""
    trained, paper, unit = component_budget(ctx.parameters, ctx.n_train, ctx.run.paper_dataset)
    if trained >= paper or claim.judge(measurement).outcome != claims.NOT_REPRODUCED:
        return None
    return (f"settings too short to refute: the gap {measurement.value:.3g} {claims.span(measurement.interval)} exceeds the "
            f"bound, but P trained {trained:,} of the paper's {paper:,} {unit} (Algorithm 1, Appendix B)")


#: The transfer claims (Fig. 2, Table 14) compare M∘P's that mimic M: the paper's Luring M∘P is 1.7 points below M
#: (Table 8). Where this run's is further below than that claim's bound, its x' transfer for another reason (P's own
#: errors), so neither an ordering nor a DAC is judged.
FIDELITY_GAP = 0.022


def _predictions(ctx: _Run, defenses: Mapping, approach: str, test_set):
    """(M∘P, M) predictions on the test set, computed once per approach (Table 8 and the fidelity gate share them)."""
    if approach not in ctx.predicted:
        ctx.predicted[approach] = defenses[approach].predictions(test_set.x)
    return ctx.predicted[approach]


def _fidelity(ctx: _Run, defenses: Mapping, test_set) -> str | None:
    if "luring" not in defenses:
        return None
    pred_mop, pred_m = _predictions(ctx, defenses, "luring", test_set)
    y = test_set.y.cpu()
    gap = float((pred_m == y).float().mean() - (pred_mop == y).float().mean())
    if gap <= FIDELITY_GAP:
        return None
    return (f"P does not yet mimic M: Luring's M∘P is {gap:.3g} below M's test accuracy (the paper: 0.017, bound "
            f"{FIDELITY_GAP}), so the transfer metrics are not judged (P trained as Algorithm 1 first)")


def _fig2(ctx: _Run, dataset: str) -> list[claims.Verdict]:
    verdicts = []
    cells = dict.fromkeys((r["attack"], r["eps"]) for r in ctx.run.characterisation)
    for attack, eps in cells:
        fields = {"dataset": dataset, "attack": attack, "eps": eps, "attack_name": ATTACK_NAMES.get(attack, attack)}
        note = ctx.note(attack=attack, n_points=ctx.run.n_attack)
        missing = ctx.missing(ctx.fig2, attack, eps, ("luring", "ce"), ordering=True)
        rows = {APPROACH_LABELS[a]: ctx.fig2.get((attack, round(float(eps), 4), a)) for a in APPROACH_LABELS}
        rows = {label: row for label, row in rows.items() if row is not None}
        for metric, template in FIG2.items():
            claim = _named(template, **fields)
            if missing:
                verdicts.append(results.record_claim(claim, claims.not_measured(note), undecided=missing))
                continue
            kept = {label: row["points"]["kept"] for label, row in rows.items()}
            key = "disagree" if metric == "DR" else "target_correct"
            indicators = {label: row["points"][key][kept[label]].numpy() for label, row in rows.items()}
            n_kept = int(next(iter(kept.values())).sum())
            m = _ordering(indicators, successes={label: n_kept for label in rows}, n_points=ctx.run.n_attack,
                          seed=ctx.seed, draws=ctx.draws, note=note) if n_kept else claims.not_measured(note)
            verdicts.append(results.record_claim(claim, m, undecided=ctx.fidelity if n_kept else
                                                 "not measured: no x' fools every M∘P (DR and IAR undefined)"))
    return verdicts


def _dac_ordering(ctx: _Run) -> claims.Verdict:
    attack, eps = "mim_w", 0.3
    note = ctx.note(attack=attack, n_points=ctx.run.n_defense)
    if ctx.run.paper_dataset != "mnist":
        return results.record_claim(DAC_ORDERING, claims.not_measured(note), undecided=(
            f"not measured: this run stands for {ctx.run.paper_dataset}, the claim is about mnist"))
    missing = ctx.missing(ctx.table, attack, eps, ("luring", "ce"), ordering=True)
    if missing:
        return results.record_claim(DAC_ORDERING, claims.not_measured(note), undecided=missing)
    run = [a for a in APPROACH_LABELS if (attack, eps, a) in ctx.table]
    points = {APPROACH_LABELS[a]: ctx.table[(attack, eps, a)]["points"] for a in run}
    indicators = {label: (p["disagree"] | p["target_correct"]).numpy() for label, p in points.items()}
    successes = {label: int((~p["mop_correct"]).sum()) for label, p in points.items()}
    m = _ordering(indicators, successes=successes, n_points=ctx.run.n_defense, seed=ctx.seed, draws=ctx.draws,
                  note=note)
    return results.record_claim(DAC_ORDERING, m, undecided=ctx.too_weak(attack, eps, run) or ctx.fidelity)


def _ac_mop_iterative(ctx: _Run, dataset: str) -> list[claims.Verdict]:
    """The worst (highest) AC_MoP of Luring's M∘P over the ε run, per iterative attack; C_E's M∘P under the same
    attack is the control: if it too keeps its accuracy, the attack (capped iterations) is too weak to tell."""
    verdicts = []
    for attack in ITERATIVE:
        claim = _named(AC_MOP_ITERATIVE, dataset=dataset, attack=attack, attack_name=ATTACK_NAMES[attack])
        note = ctx.note(attack=attack, n_points=ctx.run.n_attack)
        cells = sorted(eps for a, eps, approach in ctx.fig2 if a == attack and approach == "luring"
                       and (attack, eps, "ce") in ctx.fig2)
        if not cells:
            verdicts.append(results.record_claim(claim, claims.not_measured(note), undecided=(
                f"not measured: this run has no {ATTACK_NAMES[attack]} on Luring's and C_E's M∘P")))
            continue
        correct = {eps: ctx.fig2[(attack, eps, "luring")]["points"]["mop_correct"] for eps in cells}
        eps = max(cells, key=lambda e: float(correct[e].float().mean()))
        k, n = int(correct[eps].sum()), len(correct[eps])
        where = f"the highest AC_MoP of ε {', '.join(f'{e:g}' for e in cells)}: ε {eps:g}"
        m = claims.proportion(k, n, n_successful=n - k, seeds=[ctx.seed], note="; ".join(filter(None, (where, note))))
        control = ctx.fig2[(attack, eps, "ce")]["points"]["mop_correct"]
        kc, nc = int(control.sum()), len(control)
        low, high = stats.wilson(kc, nc)
        weak = None if low <= AC_MOP_THRESHOLD else (
            f"attack too weak: {ATTACK_NAMES[attack]} at ε {eps:g} also leaves C_E's M∘P (the control) at accuracy "
            f"{kc / nc:.3g} [{low:.3g}, {high:.3g}], above {AC_MOP_THRESHOLD:g}")
        verdicts.append(results.record_claim(claim, m, undecided=weak))
    return verdicts


def evaluate_claims(run: LuringRun, defenses: Mapping, test_set, parameters: Mapping, *, n_train: int, seed: int = 0,
                    draws: int = 1000) -> list[claims.Verdict]:
    """Judge and record (``results.record_claim``) every Luring claim on notebook 30's measurements: ``run``
    (the tables, with their per-point outcomes), the fitted ``defenses`` by approach and ``test_set`` (Table 8),
    the notebook's ``parameters`` (``params.validate``'s dict) and ``n_train`` training images for the notes."""
    ctx = _Run(run, parameters, n_train, seed, draws)
    ctx.fidelity = _fidelity(ctx, defenses, test_set)
    dataset = run.paper_dataset
    specs = {spec["id"]: spec for spec in paper_values.claims(PAPER)}
    verdicts = []
    for claim in claims.declared(PAPER):
        measurement, undecided = _declared(claim, specs[claim.id], ctx, defenses, test_set)
        verdicts.append(results.record_claim(claim, measurement, undecided=undecided))
    verdicts += _fig2(ctx, dataset)
    verdicts.append(_dac_ordering(ctx))
    return verdicts + _ac_mop_iterative(ctx, dataset)
