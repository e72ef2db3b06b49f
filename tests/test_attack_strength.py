"""The checks that an adaptive attack is strong (notebook 90, section 4c): an unbounded budget reaches ~100 % on an
honest model and not on one whose gradients are masked; more iterations and restarts never do worse; the rendered
sentence says which."""
from types import SimpleNamespace

import pandas as pd
import torch
from torch import nn

from decoylab.defenses.base import AdaptiveAttack
from decoylab.experiments import attack_strength as strength
from decoylab.experiments.adaptive_verdicts import Rate

N = 60


class _Linear(nn.Module):
    def __init__(self, mask_gradients: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Linear(16, 3)
        self.mask_gradients = mask_gradients

    def forward(self, x):
        x = x.flatten(1)
        if self.mask_gradients:  # a masked gradient (as rounding the input would): none flows back to x
            x = x.detach() + 0 * x
        return self.layer(x)


class _NeverFlags:
    """A detector whose score is the same on every input: it flags nothing beyond its false-positive rate."""

    def score(self, x):
        return torch.zeros(len(x))

    def adaptive_attacks(self, **_):
        return [AdaptiveAttack("oblivious", self.model)]


def _setup(model):
    torch.manual_seed(1)
    x = torch.rand(N, 1, 4, 4)
    y = model(x).argmax(1).detach()
    defense = _NeverFlags()
    defense.model = model
    contender = SimpleNamespace(name="toy", classifier=model, defense=defense)
    return SimpleNamespace(contenders={"toy": contender}, x_fit=x, y_fit=y, x_cal=x, x_att=x, y_att=y)


def _verdict():
    return [SimpleNamespace(defense="toy", level=0, weight=None)]


PGD = ("pgd", {"eps": 0.2, "step_size": 0.05, "steps": 2, "random_start": False})  # 2 steps cannot reach ε


def test_an_unbounded_attack_reaches_every_image_of_an_honest_model_and_more_steps_never_hurt():
    checks = strength.strength_checks(_setup(_Linear()), _verdict(), PGD, 0.05, step_multipliers=(1, 4),
                                      restarts=2)
    assert list(checks["check"]) == ["unbounded ε", "iterations", "iterations", "restarts"]
    unbounded = checks.iloc[0]["success"]
    assert unbounded.value >= strength.UNBOUNDED_SUCCESS and unbounded.n == N
    few, many = (checks.iloc[i]["success"].value for i in (1, 2))
    assert many > few + 0.2  # 2 steps of 0.05 cover half of ε; 8 reach it
    assert checks.iloc[3]["grad_steps"] == 2 * checks.iloc[2]["grad_steps"]  # two starts of 8 steps, both paid for
    line = "\n".join(strength.strength_lines(checks, "0.05"))
    assert "no sign of masked gradients" in line
    assert "from steps 2 to steps 8" in line and "not shown to have converged" in line


def test_masked_gradients_are_named_when_the_unbounded_attack_fails():
    checks = strength.strength_checks(_setup(_Linear(mask_gradients=True)), _verdict(), PGD, 0.05,
                                      step_multipliers=(1, 2), restarts=1)
    assert checks.iloc[0]["success"].value < strength.UNBOUNDED_SUCCESS
    assert "gradients may be masked" in strength.strength_lines(checks, "0.05")[0]


def test_the_best_of_several_starts_keeps_an_image_that_got_through_in_any_start():
    one = strength.Outcome(torch.tensor([True, True, False]), torch.tensor([False, True, False]), 10,
                           torch.tensor([1.0, 2.0, 0.0]))
    two = strength.Outcome(torch.tensor([True, False, True]), torch.tensor([True, False, False]), 10,
                           torch.tensor([3.0, 0.0, 1.0]))
    best = strength.best_of([one, two])
    assert best.success.tolist() == [True, True, True] and best.through.tolist() == [True, True, False]
    assert best.grad_steps == 20 and best.l2.tolist() == [3.0, 2.0, 1.0]  # the L2 of the start that was kept
    rates = best.rates()
    assert rates["overall"] == Rate(2, 3) and rates["detection"] == Rate(1, 3)


def test_convergence_is_judged_on_both_success_and_get_through():
    row = lambda k, through: {"success": Rate(k, 200), "overall": Rate(through, 200)}  # noqa: E731
    assert strength._converged(row(150, 20), row(152, 22))
    assert not strength._converged(row(100, 20), row(180, 22))  # success still rising
    assert not strength._converged(row(150, 20), row(152, 90))  # more get past the detector with more steps
    assert not strength._converged(row(100, 20), row(118, 22))  # +0.09 inside overlapping intervals: not shown


def test_a_defense_does_not_hold_against_an_attack_that_masks_more_steps_or_no_checks():
    import pandas as pd

    from decoylab.experiments import adaptive_verdicts as av

    def verdict(name, said):
        r = Rate(1, 200)
        return av.DefenseVerdict(name, said, "rule", 1, "knows", r, r, r, Rate(15, 200), Rate(199, 200))

    def row(defense, check, budget, success, through, restarts=1):
        return {"defense": defense, "check": check, "budget": budget, "success": Rate(success, 200),
                "overall": Rate(through, 200), "restarts": restarts}

    strong = [row("{d}", "unbounded ε", "ε = 1", 200, 195), row("{d}", "iterations", "steps 20", 150, 1),
              row("{d}", "iterations", "steps 40", 152, 2)]

    def shown(defense):  # every check run, and none of them doubts the defense
        return [{**r, "defense": defense} for r in strong]

    rows = ([row("masked", "unbounded ε", "ε = 1", 40, 1)] + shown("masked")[1:]
            + shown("rising")[:2] + [row("rising", "iterations", "steps 40", 120, 2)]
            + shown("detector")[1:] + [row("detector", "unbounded ε", "ε = 1", 200, 30)]
            + shown("restarted") + [row("restarted", "restarts", "steps 40", 160, 24, restarts=3)]
            + shown("more") + [row("more", "restarts", "steps 40", 170, 60, restarts=3)]
            + shown("fine"))
    given = [verdict(name, "holds") for name in ("masked", "rising", "detector", "restarted", "fine", "unchecked")]
    given += [verdict("more", "not weakened"), verdict("weak", "weakened")]
    after = {v.defense: v for v in strength.revised(given, pd.DataFrame(rows))}
    assert after["masked"].verdict == "inconclusive" and "ε = 1" in after["masked"].reason
    assert after["rising"].verdict == "inconclusive" and "converged" in after["rising"].reason
    assert after["detector"].verdict == "inconclusive" and "past the detector on 0.150" in after["detector"].reason
    assert after["restarted"].verdict == "inconclusive" and "3 start(s)" in after["restarted"].reason
    assert after["more"].verdict == "weakened" and after["more"].overall == Rate(60, 200)
    assert after["unchecked"].verdict == "inconclusive" and "not checked" in after["unchecked"].reason
    assert after["fine"].verdict == "holds" and after["weak"].verdict == "weakened"


def test_the_strength_checks_need_two_different_step_multipliers():
    import pytest

    from decoylab.params import ParameterError

    with pytest.raises(ParameterError, match="at least two different multiples"):
        strength.strength_checks(_setup(_Linear()), _verdict(), PGD, 0.05, step_multipliers=(2, 2))


def _rows(defense, unbounded, bounded):
    """Strength-check rows: (success k, get-through k) of 200 at ε = 1, then per iteration budget."""
    from decoylab.experiments.adaptive_verdicts import Rate

    rows = [{"defense": defense, "check": "unbounded ε", "budget": "ε = 1", "level": 4, "restarts": 1,
             "n successful": unbounded[0], "success": Rate(unbounded[0], 200), "overall": Rate(unbounded[1], 200),
             "detection": Rate(0, max(unbounded[0], 1))}]
    rows += [{"defense": defense, "check": "iterations", "budget": f"steps {40 * 2 ** i}", "level": 4, "restarts": 1,
              "n successful": k, "success": Rate(k, 200), "overall": Rate(t, 200), "detection": Rate(0, max(k, 1))}
             for i, (k, t) in enumerate(bounded)]
    return pd.DataFrame(rows)


def test_an_unbounded_run_below_the_bounded_one_is_called_uninformative_not_masking():
    """Notebook 90 on paper-mnist5k: the Attractors' decision attack got 200 of 200 through at ε 0.3, and at ε = 1
    (wider steps) succeeded on 71 — "gradients may be masked" would have been wrong."""
    [line] = strength.strength_lines(_rows("attractors", (71, 0), [(200, 198), (200, 199)]), "0.05")
    assert "uninformative" in line and "masked" not in line.replace("not a sign of masking", "")
    [line] = strength.strength_lines(_rows("luring", (200, 100), [(140, 150), (140, 160)]), "0.05")
    assert "fewer get past the detector than the 0.800 of the bounded attack" in line
    [line] = strength.strength_lines(_rows("fingerprints", (200, 0), [(195, 1), (196, 1)]), "0.05")
    assert "the attack does not handle the detector" in line
