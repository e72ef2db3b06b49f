"""One verdict per defense against its adaptive attackers (notebook 90, section 4), in the terms of Carlini et al.,
*On Evaluating Adversarial Robustness* (2019), and Tramèr, Carlini, Brendel, Madry, *On Adaptive Attacks to
Adversarial Example Defenses* (NeurIPS 2020): the attacker's best level, what gets through, with intervals, and the
evidence that the attack was strong (its success on the undefended model) before a defense is said to hold.

- **broken**: the strongest adaptive attacker succeeds on at least ``BROKEN_SUCCESS`` of the images and the detector
  flags at most the false-positive rate of its successful examples, or at most as many as it flags of the same
  images' clean originals while flagging those originals at its calibrated rate (the FPR within their interval):
  it does no better than on clean images;
- **holds**: at most ``HOLDS_OVERALL`` of the images get through (success and not flagged: the whole interval), and
  the same attack succeeds on at least ``STRONG_ATTACK`` of the undefended model;
- **weakened**: more get through at the best level than against the oblivious attacker (level 0), the two
  intervals apart;
- **not weakened**: neither: these adaptive attackers did no better than the oblivious one;
- **inconclusive**: the attack is too weak to judge (below ``STRONG_ATTACK`` on the undefended model), or a
  detection rate rests on fewer than ``MIN_SUCCESSES`` successful examples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from decoylab import attacks, results, stats

BROKEN_SUCCESS = 0.90
HOLDS_OVERALL = 0.10
STRONG_ATTACK = 0.90
MIN_SUCCESSES = 30  # the claims' minimum: a detection rate on fewer successful examples is no result
THIN = " (inconclusive: fewer than 30 successful examples)"  # after a detection rate that rests on too few
VERDICTS = ("broken", "weakened", "not weakened", "holds", "inconclusive")


@dataclass
class Rate:
    k: int
    n: int

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return stats.wilson(self.k, self.n)

    def text(self) -> str:
        if not self.n:
            return "— (none to count)"
        lo, hi = self.interval
        return f"{self.value:.3f} [{lo:.3f}, {hi:.3f}] of {self.n}"


@dataclass
class DefenseVerdict:
    defense: str
    verdict: str
    reason: str
    level: int
    knowledge: str
    success: Rate
    detection: Rate
    overall: Rate
    oblivious_overall: Rate
    undefended_success: Rate
    weight: float | None = None  # the defense-aware term's weight the strongest attacker kept (None: no term)

    def sentence(self, fpr_label: str) -> str:
        return (f"**{self.defense}: {self.verdict}** — {self.reason}. Strongest attacker: level {self.level} "
                f"({self.knowledge}); it succeeds on {self.success.text()} images, the detector flags "
                f"{self.detection.text()} of its successful examples at FPR {fpr_label}"
                f"{THIN if self.detection.n < MIN_SUCCESSES else ''}, and "
                f"{self.overall.text()} get through (the oblivious attacker, level 0: {self.oblivious_overall.text()}). "
                f"The same attack succeeds on {self.undefended_success.text()} images of the undefended model.")


def undefended_success(setup, attack: tuple[str, dict[str, Any]], *, seed: int = 0, cache=None) -> Rate:
    """The adaptive attack (same settings, same images) on the undefended model: is it strong?"""
    name, settings = attack
    model = setup.contenders["undefended"].classifier
    r = attacks.run(name, model, setup.x_att, setup.y_att, seed=seed, cache=cache, **settings)
    return Rate(int(r.success.sum()), len(r.success))


def _weight(value) -> float | None:
    return None if value is None or value != value else float(value)


def _count(rate: float, n: int) -> int:
    return 0 if n == 0 or rate != rate else int(round(rate * n))


def _no_better_than_clean(detection: Rate, originals_flagged: int, fpr: float) -> bool:
    """The detector flags no more of the successful examples than of the same images' clean originals, and on
    those originals it works at its calibrated rate (the FPR inside their Wilson interval): a detector that
    flags half of every image, clean or not, is not beaten by this rule."""
    return (detection.k <= originals_flagged
            and stats.wilson(originals_flagged, detection.n)[0] <= fpr)


def judge(security, strength: Rate, fpr: float) -> list[DefenseVerdict]:
    """A ``DefenseVerdict`` per defense in ``security`` (``detection.security_table``), by the rules above."""
    verdicts = []
    for defense in dict.fromkeys(security["defense"]):
        part = security[security["defense"] == defense].sort_values("level")
        best = part.loc[part["overall"].idxmax()]
        oblivious = part.iloc[0]
        n, k = int(best["n attacked"]), int(best["n successful"])
        success, detection = Rate(k, n), Rate(_count(best["detection"], k), k)
        originals = best.get("originals flagged", float("nan"))  # the paired control (detection.security_table)
        overall = Rate(_count(best["overall"], n), n)
        oblivious_overall = Rate(_count(oblivious["overall"], int(oblivious["n attacked"])),
                                 int(oblivious["n attacked"]))
        if strength.value < STRONG_ATTACK:
            verdict, reason = "inconclusive", (f"the attack succeeds on only {strength.value:.2f} of the undefended "
                                               f"model (needed: {STRONG_ATTACK:g}), too weak to judge a defense")
        elif success.value >= BROKEN_SUCCESS and k >= MIN_SUCCESSES and (
                detection.value <= fpr or _no_better_than_clean(detection, _count(originals, k), fpr)):
            verdict, reason = "broken", (f"success ≥ {BROKEN_SUCCESS:g} with detection at or below the "
                                         f"false-positive rate {fpr:g}" if detection.value <= fpr else
                                         f"success ≥ {BROKEN_SUCCESS:g}, and the detector flags no more of the "
                                         f"successful examples ({detection.k}) than of the same images' clean "
                                         f"originals ({_count(originals, k)} of {k}) at the threshold set for FPR {fpr:g}")
        elif overall.interval[1] <= HOLDS_OVERALL:
            verdict, reason = "holds", (f"at most {HOLDS_OVERALL:g} of the images get through (the whole interval) "
                                        "against an attack that is strong on the undefended model")
        elif k < MIN_SUCCESSES and success.value >= BROKEN_SUCCESS:
            verdict, reason = "inconclusive", f"the detection rate rests on {k} successful examples (< {MIN_SUCCESSES})"
        elif overall.interval[0] > oblivious_overall.interval[1]:
            verdict, reason = "weakened", ("more get through at the best level than against the oblivious attacker, "
                                           "the two intervals apart")
        else:
            verdict, reason = "not weakened", ("these adaptive attackers get no more through than the oblivious one "
                                               "(the intervals overlap)")
        verdicts.append(DefenseVerdict(defense, verdict, reason, int(best["level"]), str(best["knowledge"]), success,
                                       detection, overall, oblivious_overall, strength, _weight(best.get("weight"))))
    return verdicts


def record(verdicts: list[DefenseVerdict], attack_label: str) -> None:
    """Each verdict as a named result (``adaptive.<defense>.verdict``: the share that gets through at the best
    level, with its interval and n, the verdict in the note)."""
    for v in verdicts:
        results.record(f"adaptive.{v.defense}.verdict_overall", v.overall.value, n=v.overall.n,
                       interval=list(v.overall.interval),
                       note=f"{v.verdict}: {v.reason}; best level {v.level} ({v.knowledge}), {attack_label}; "
                            f"the kit's own adaptive evaluation: no paper measures this")


def summary_lines(verdicts: list[DefenseVerdict], fpr_label: str) -> list[str]:
    if not verdicts:
        return ["No defense with a secret to learn was compared (DEFENSES), so there is no adaptive verdict."]
    return [f"- {v.sentence(fpr_label)}" for v in verdicts]


def equal_terms_lines(overheads, tolerance_points: float = 2.0, n_test: int | None = None,
                      reasons: dict[str, str] | None = None) -> list[str]:
    """One line per defense: its clean accuracy against the undefended model's (with a Wilson interval on
    ``n_test`` images where given), and whether it is within ``tolerance_points`` (the comparison is on equal terms
    only where every defense is). ``reasons[name]``: why a defense that loses more was not trained further (e.g.
    it already trains to its paper's budget), said on its line instead of the advice to train longer."""
    lines, behind, reasons = [], [], reasons or {}
    base = overheads.loc["undefended", "clean accuracy"]

    def accuracy(value: float) -> str:
        return Rate(round(value * n_test), n_test).text() if n_test else f"{value:.3f}"
    for name, row in overheads.iterrows():
        if name == "undefended":
            continue
        cost = row["accuracy cost (points)"]
        within = not math.isnan(cost) and cost <= tolerance_points
        if not within:
            behind.append(name)
        lines.append(f"- {name}: clean accuracy {accuracy(row['clean accuracy'])} against {accuracy(base)} "
                     f"undefended ({cost:.1f} points lost"
                     f"{'' if within else f'; more than {tolerance_points:g}: not equal terms'})"
                     + (f": {reasons[name]}" if not within and name in reasons else ""))
    head = ("Every defense is within "f"{tolerance_points:g} points of the undefended model's clean accuracy: the "
            "comparison is on equal terms." if not behind else
            f"Not on equal terms: {', '.join(behind)} {'loses' if len(behind) == 1 else 'lose'} more than "
            f"{tolerance_points:g} points of clean accuracy at this training budget ("
            + ("why, below; " if all(name in reasons for name in behind) else "train longer, e.g. `EPOCHS`, or ")
            + "read their rows with that in mind).")
    return [head, *lines]


def detection_lines(comparison, fpr_label: str) -> list[str]:
    """Section 3 in sentences: per defense and attack, the share of successful examples flagged beside the
    control's (the same detector without the secret), and the difference with its 95 % interval (MOVER from the
    two Wilson intervals, as the comparison claims judge it: ``claims.difference``)."""
    from decoylab import claims

    lines = []
    for (defense, attack), row in comparison.iterrows():
        tpr = row.get(f"TPR @ {fpr_label}")
        if defense == "undefended" or tpr != tpr:
            continue
        k, k_control = int(row["n successful"]), int(row["control n successful"])
        measured = Rate(_count(tpr, k), k)
        control_tpr = row.get(f"control TPR @ {fpr_label}")
        has_control = control_tpr == control_tpr and k_control > 0
        control = Rate(_count(control_tpr, k_control), k_control) if has_control else None
        if control is None:
            lines.append(f"- {defense}, {attack}: flags {measured.text()} successful examples at FPR {fpr_label}; "
                         "no control measured.")
            continue
        low, high = claims.difference(claims.proportion(measured.k, measured.n),
                                      claims.proportion(control.k, control.n)).interval
        gap = f"difference {measured.value - control.value:+.3f} [{low:+.3f}, {high:+.3f}]"
        if k < MIN_SUCCESSES or k_control < MIN_SUCCESSES:
            reading = f"inconclusive (fewer than {MIN_SUCCESSES} successful examples)"
        elif low > 0:
            reading = "above its control: detection caused by the defense"
        elif high <= 0:  # as claims.GreaterThan: nothing of the interval above 0
            reading = "not above its control"
        else:
            reading = "not distinguishable from its control: the detection is not shown to come from the defense"
        lines.append(f"- {defense}, {attack}: flags {measured.text()} successful examples at FPR {fpr_label}; the "
                     f"control {control.text()}; {gap}: {reading}.")
    return lines
