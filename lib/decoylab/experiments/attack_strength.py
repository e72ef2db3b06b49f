"""Is the adaptive attack strong? The checks a reviewer asks for before a defense is said to hold.

After Carlini et al., *On Evaluating Adversarial Robustness* (arXiv 1902.06705, 2019), §4–5: an attack with an
unbounded budget must reach (close to) 100 % success, otherwise gradients are masked or the attack is broken;
success must stop changing as iterations and random restarts are added (convergence); and Tramèr et al., *On
Adaptive Attacks to Adversarial Example Defenses* (NeurIPS 2020), §4: report the attacker's cost beside it.

Notebook 90 runs these on each defense's strongest attacker (the knowledge level of its verdict): the same attack
at ε = 1 (the whole [0, 1] box, step size scaled so the steps can cross it), then at growing step counts, and with
random restarts (the per-image best of several starts: an example that gets past the detector if any start finds
one, else a successful one). Every rate comes with its n and Wilson interval.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from decoylab import attacks, metrics, params
from decoylab.experiments import detection
from decoylab.experiments.adaptive_verdicts import MIN_SUCCESSES, Rate
from decoylab.specs.compare import STRENGTH_RESTARTS, STRENGTH_STEP_MULTIPLIERS

#: At ε = 1 the attack must fool the model and get past the detector on at least this share of the images
#: (Carlini et al. 2019, §5.2: "an unbounded attack should reach 100 %"); below it, gradients are masked or the
#: attack does not handle the detector, and a low get-through at the real budget says little.
UNBOUNDED_SUCCESS = 0.9
#: Two successive iteration budgets whose success and get-through each differ by at most this much count as
#: converged; a larger change, even inside overlapping intervals, is "not shown to have converged".
CONVERGED_CHANGE = 0.05
#: The knob that sets each attack's number of iterations, and whether it has an L∞ budget and a random start.
ITERATION_KEY = {"pgd": "steps", "cw2": "max_iter", "deepfool": "max_iter"}
LINF = ("fgsm", "pgd")


@dataclass
class Outcome:
    """One attack run against one defense, read at its calibrated threshold."""
    success: torch.Tensor  # per image: the attack fooled the model success is judged on
    through: torch.Tensor  # per image: fooled it and the detector did not flag it
    grad_steps: int
    l2: torch.Tensor

    def rates(self) -> dict[str, Any]:
        n, k = len(self.success), int(self.success.sum())
        passed = int(self.through.sum())
        detection = Rate(k - passed, k)
        return {"n attacked": n, "n successful": k, "success": Rate(k, n), "detection": detection,
                "overall": Rate(passed, n), "grad_steps": self.grad_steps,
                "mean_l2": float(self.l2[self.success].mean()) if k else float("nan")}


def run_once(contender, step, x: torch.Tensor, y: torch.Tensor, threshold: float, attack: tuple[str, dict[str, Any]],
             weight: float | None, *, seed: int = 0, cache=None) -> Outcome:
    """``detection.adaptive_run`` read at the defense's ``threshold``: what succeeded and what got through."""
    r, success, scores = detection.adaptive_run(contender, step, x, y, attack, weight, seed=seed, cache=cache)
    flagged = torch.zeros_like(success)
    flagged[success] = scores > threshold
    return Outcome(success, success & ~flagged, r.grad_steps, r.l2.cpu())


def best_of(outcomes: list[Outcome]) -> Outcome:
    """Per image, the best of several restarts: the first start that got through the detector, else the first
    that succeeded, else the first (the attacker can check both itself: it knows the detector); its L2 is that
    start's."""
    through = torch.stack([o.through for o in outcomes])
    success = torch.stack([o.success for o in outcomes])
    rank = through.float() * 2 + success.float()  # 2-3: got through, 1: succeeded, 0: failed
    chosen = rank.argmax(0)  # argmax returns the first of equal ranks
    pick = lambda stacked: stacked.gather(0, chosen.unsqueeze(0)).squeeze(0)  # noqa: E731
    return Outcome(pick(success), pick(through), sum(o.grad_steps for o in outcomes),
                   pick(torch.stack([o.l2 for o in outcomes])))


def strength_checks(setup, verdicts, attack: tuple[str, dict[str, Any]], fpr: float, *,
                    step_multipliers=(1, 2, 4), restarts: int = 3, seed: int = 0, cache=None):
    """For each defense's strongest attacker (``verdicts`` from ``adaptive_verdicts.judge``): the attack at
    ε = 1 (L∞ attacks), at ``step_multipliers`` times its iterations, and the largest of those with ``restarts``
    random starts (PGD). Rows of a DataFrame with each rate's n and interval as text."""
    import pandas as pd

    params.check("step_multipliers", list(step_multipliers), STRENGTH_STEP_MULTIPLIERS)
    params.check("restarts", restarts, STRENGTH_RESTARTS)
    step_multipliers = sorted(set(step_multipliers))
    name, settings = attack
    settings = attacks.checked_settings(name, **settings)  # with the attack's defaults (DeepFool's max_iter)
    rows = []
    for v in verdicts:
        contender = setup.contenders[v.defense]
        steps = contender.defense.adaptive_attacks(x_shadow=setup.x_fit, y_shadow=setup.y_fit, attack=attack,
                                                   seed=seed, cache=cache)
        step = steps[v.level]
        threshold = metrics.threshold_at_fpr(contender.defense.score(setup.x_cal), fpr)

        def measure(check: str, budget: str, changed: dict[str, Any], n_starts: int = 1) -> dict[str, Any]:
            run_settings = {**settings, **changed}
            starts = [run_once(contender, step, setup.x_att, setup.y_att, threshold, (name, run_settings), v.weight,
                               seed=seed, cache=cache)]
            for k in range(1, n_starts):  # further starts at random points of the ε-ball (the first is the attack's own)
                starts.append(run_once(contender, step, setup.x_att, setup.y_att, threshold,
                                       (name, {**run_settings, "random_start": True}), v.weight, seed=seed + k,
                                       cache=cache))
            return {"defense": v.defense, "level": v.level, "check": check, "budget": budget, "restarts": n_starts,
                    **best_of(starts).rates()}

        if name in LINF:
            unbounded = {"eps": 1.0}
            if name == "pgd":  # steps long enough to cross the box
                unbounded["step_size"] = min(1.0, max(settings["step_size"], 2.5 / settings["steps"]))
            rows.append(measure("unbounded ε", "ε = 1", unbounded))
        iterations = ITERATION_KEY.get(name)
        if iterations is not None and iterations in settings:
            for m in step_multipliers:
                rows.append(measure("iterations", f"{iterations} {settings[iterations] * m}",
                                    {iterations: settings[iterations] * m}))
            if name == "pgd" and restarts > 1:
                top = settings[iterations] * max(step_multipliers)
                rows.append(measure("restarts", f"{iterations} {top}", {iterations: top}, n_starts=restarts))
    return pd.DataFrame(rows)


def _converged(a: dict, b: dict) -> bool:
    return all(abs(a[key].value - b[key].value) <= CONVERGED_CHANGE for key in ("success", "overall"))


def strength_lines(checks, fpr_label: str) -> list[str]:
    """One sentence per defense: does the attack reach ~100 % without a bound, and has it converged?"""
    if checks is None or len(checks) == 0:
        return ["No strength check was run (no defense with an adaptive attacker, or an attack without an L∞ "
                "budget or iterations)."]
    lines = []
    for defense in dict.fromkeys(checks["defense"]):
        part = checks[checks["defense"] == defense]
        said = []
        unbounded = part[part["check"] == "unbounded ε"]
        if len(unbounded):
            u, through = unbounded.iloc[0]["success"], unbounded.iloc[0]["overall"]
            bounded = part[part["check"] != "unbounded ε"]
            best_success = max((r.value for r in bounded["success"]), default=float("nan"))
            best_through = max((r.value for r in bounded["overall"]), default=float("nan"))
            if u.value < UNBOUNDED_SUCCESS and u.value < best_success - CONVERGED_CHANGE:
                state = (f"below the {best_success:.3f} the bounded attack reaches: with the whole box PGD's steps "
                         "are wider and overshoot, so this check is uninformative here, not a sign of masking")
            elif u.value < UNBOUNDED_SUCCESS:
                state = (f"success below {UNBOUNDED_SUCCESS:g}: gradients may be masked, or the attack is too weak, "
                         "so a low success elsewhere says little about the defense")
            elif through.value < UNBOUNDED_SUCCESS and through.value < best_through - CONVERGED_CHANGE:
                state = (f"the model is fooled, but fewer get past the detector than the {best_through:.3f} of the "
                         "bounded attack: with the whole box PGD's steps are wider and overshoot the detector's "
                         "threshold, so this check is uninformative here")
            elif through.value < UNBOUNDED_SUCCESS:
                state = (f"the model is fooled, but fewer than {UNBOUNDED_SUCCESS:g} get past the detector even "
                         "with the whole box, where a clean image of another class would pass as often as clean "
                         "images do: the attack does not handle the detector")
            else:
                state = "no sign of masked gradients"
            said.append(f"at ε = 1 it succeeds on {u.text()} and gets past the detector on {through.text()} ({state})")
        iters = part[part["check"] == "iterations"].to_dict("records")
        if len(iters) >= 2:
            last, before = iters[-1], iters[-2]
            state = (f"converged: success and get-through each moved by at most {CONVERGED_CHANGE:g}"
                     if _converged(before, last) else
                     f"not shown to have converged: a change above {CONVERGED_CHANGE:g}")
            said.append(f"from {before['budget']} to {last['budget']} success goes {before['success'].text()} → "
                        f"{last['success'].text()} and get-through {before['overall'].text()} → "
                        f"{last['overall'].text()} ({state})")
        restarted = part[part["check"] == "restarts"].to_dict("records")
        if restarted and iters:
            r = restarted[0]
            thin = " (inconclusive: fewer than 30 successful examples)" if r["n successful"] < MIN_SUCCESSES else ""
            said.append(f"with {r['restarts']} starts get-through is {r['overall'].text()} "
                        f"(detection at FPR {fpr_label}: {r['detection'].text()}{thin})")
        small = [row for row in iters + restarted if row["n successful"] < MIN_SUCCESSES]
        if small:
            said.append(f"{len(small)} of these rows {'rests' if len(small) == 1 else 'rest'} on fewer than "
                        f"{MIN_SUCCESSES} successful examples (their detection rates are inconclusive)")
        level = int(part.iloc[0]["level"])
        lines.append(f"- **{defense}** (level {level}): " + "; ".join(said) + "." if said else
                     f"- **{defense}**: no check applies to this attack.")
    return lines


def table(checks):
    """``checks`` with each rate as text (value [interval] k/n) for display."""
    shown = checks.copy()
    for key in ("success", "detection", "overall"):
        shown[key] = [r.text() for r in shown[key]]
    return shown


def record(checks, attack_label: str) -> None:
    """The strength checks as named results (``adaptive.<defense>.strength.<check>.<budget>``)."""
    from decoylab import results

    for row in checks.to_dict("records"):
        budget = row["budget"].replace(" ", "").replace("=", "").replace("ε", "eps")
        key = f"adaptive.{row['defense']}.strength.{row['check'].replace(' ', '_').replace('ε', 'eps')}.{budget}"
        for what in ("success", "overall"):
            rate = row[what]
            results.record(f"{key}.{what}", rate.value, n=rate.n, interval=list(rate.interval),
                           note=f"level {row['level']}, {attack_label}, {row['restarts']} start(s); the kit's own "
                                "check that the adaptive attack is strong (Carlini et al. 2019)")


def revised(verdicts, checks):
    """The verdicts as the strength checks leave them (Carlini et al. 2019 §4: a defense holds only against an
    attack shown to be strong):

    - a stronger run (more iterations, restarts) that gets more through than the verdict's level re-decides
      "holds" and "not weakened": *weakened* when its get-through interval lies above the oblivious attacker's,
      otherwise *inconclusive* for a "holds" that no longer holds;
    - a remaining "holds" or "not weakened" is *inconclusive* unless the strength was shown: at ε = 1 (L∞
      attacks) success and get-through reach ``UNBOUNDED_SUCCESS``, at least two iteration budgets were run
      (attacks with iterations) and the last two agree within ``CONVERGED_CHANGE``.

    "weakened" and "broken" stand: a stronger attack can only get more through."""
    from dataclasses import replace

    from decoylab.experiments.adaptive_verdicts import HOLDS_OVERALL

    out = []
    for v in verdicts:
        if v.verdict not in ("holds", "not weakened"):
            out.append(v)
            continue
        part = checks[checks["defense"] == v.defense] if len(checks) else checks
        rows = {kind: (part[part["check"] == kind].to_dict("records") if len(part) else [])
                for kind in ("unbounded ε", "iterations", "restarts")}
        stronger = rows["iterations"] + rows["restarts"]
        if stronger:
            best = max(stronger, key=lambda r: r["overall"].value)
            through = best["overall"]
            if through.interval[0] > v.oblivious_overall.interval[1]:
                out.append(replace(v, verdict="weakened", overall=through, reason=(
                    f"{v.verdict} at the section's budget, but with {best['budget']} and {best['restarts']} "
                    f"start(s) {through.text()} get through, above the oblivious attacker (section 4c)")))
                continue
            if v.verdict == "holds" and through.interval[1] > HOLDS_OVERALL:
                out.append(replace(v, verdict="inconclusive", reason=(
                    f"holds at the section's budget, but with {best['budget']} and {best['restarts']} start(s) "
                    f"{through.text()} get through, more than {HOLDS_OVERALL:g} within the interval (section 4c)")))
                continue
        doubts = []
        if rows["unbounded ε"]:
            u = rows["unbounded ε"][0]
            if min(u["success"].value, u["overall"].value) < UNBOUNDED_SUCCESS:
                doubts.append(f"at ε = 1 the attack succeeds on {u['success'].text()} and gets past the detector on "
                              f"{u['overall'].text()} (needed: {UNBOUNDED_SUCCESS:g})")
        iters = rows["iterations"]
        if len(iters) < 2:
            doubts.append("the attack's convergence was not checked (fewer than two iteration budgets, or an "
                          "attack without iterations)")
        elif not _converged(iters[-2], iters[-1]):
            doubts.append(f"the attack is not shown to have converged ({iters[-2]['budget']} → {iters[-1]['budget']})")
        if doubts:
            v = replace(v, verdict="inconclusive", reason=f"{v.verdict} at the section's budget, but " +
                        " and ".join(doubts) + " (section 4c)")
        out.append(v)
    return out
