"""The adaptive-evaluation verdicts of notebook 90 (broken / weakened / not weakened / holds / inconclusive) and the
rendered Summary lines, on hand-made security tables whose answers are known."""
import pandas as pd
import pytest

from decoylab.experiments import adaptive_verdicts as av
from decoylab.experiments import comparison_claims as cc


def _security(defense, levels):
    """levels: [(n successful, detection, overall)] on 200 attacked images."""
    return pd.DataFrame([{"defense": defense, "level": i, "knowledge": f"level {i} knowledge", "n attacked": 200,
                          "n successful": k, "success": k / 200, "detection": det, "overall": overall}
                         for i, (k, det, overall) in enumerate(levels)])


STRONG = av.Rate(198, 200)


@pytest.mark.parametrize("levels,strength,verdict", [
    ([(190, 0.9, 0.095), (196, 0.03, 0.95)], STRONG, "broken"),           # near-total success, detection ≤ FPR
    ([(100, 0.99, 0.005), (150, 0.98, 0.015)], STRONG, "holds"),          # at most 1.5 % gets through
    ([(120, 0.9, 0.06), (160, 0.5, 0.40)], STRONG, "weakened"),           # 6 % → 40 % through
    ([(120, 0.5, 0.30), (122, 0.49, 0.31)], STRONG, "not weakened"),      # no better than the oblivious attacker
    ([(120, 0.5, 0.30), (196, 0.03, 0.95)], av.Rate(120, 200), "inconclusive"),  # too weak on the undefended model
    ([(5, 1.0, 0.0), (20, 0.0, 0.2)], STRONG, "weakened"),
])
def test_each_verdict_follows_its_rule(levels, strength, verdict):
    [v] = av.judge(_security("honeymodels", levels), strength, fpr=0.05)
    assert v.verdict == verdict, v.reason
    assert v.level == max(range(len(levels)), key=lambda i: levels[i][2])  # the attacker's best level decides
    sentence = v.sentence("0.05")
    assert sentence.startswith(f"**honeymodels: {verdict}**") and "of 200" in sentence and "[" in sentence


def test_detection_no_higher_than_on_the_same_images_clean_originals_breaks_a_defense():
    """HoneyModels' key-aware attacker leaves the key's pixels alone, so its detector sees the clean originals'
    features: it flags 10 of 199 either way, 0.0503 > 0.05, yet no better than on clean images."""
    levels = [(120, 0.9, 0.06), (199, 10 / 199, 0.945)]
    security = _security("honeymodels", levels).assign(**{"originals flagged": [0.05, 10 / 199]})
    [v] = av.judge(security, STRONG, fpr=0.05)
    assert v.verdict == "broken" and "clean originals (10 of 199)" in v.reason
    security["originals flagged"] = [0.05, 3 / 199]  # the detector does better than on the originals
    [v] = av.judge(security, STRONG, fpr=0.05)
    assert v.verdict == "weakened"
    # A detector that flags half of everything, clean or not, still stops half the attacks: not broken
    half = _security("honeymodels", [(120, 0.9, 0.06), (190, 0.5, 0.475)]).assign(**{"originals flagged": [0.05, 0.5]})
    [v] = av.judge(half, STRONG, fpr=0.05)
    assert v.verdict == "weakened"


def test_a_detection_rate_on_few_successes_does_not_break_a_defense():
    [v] = av.judge(_security("luring", [(10, 0.5, 0.025), (20, 0.0, 0.10)]), STRONG, fpr=0.05)
    assert v.verdict != "broken"  # 20 successes, 10 % success: far from 0.9
    [v] = av.judge(_security("luring", [(10, 0.5, 0.025), (20, 0.0, 0.10)]), av.Rate(5, 6), fpr=0.05)
    assert v.verdict == "inconclusive"  # 5 of 6 is below the 0.9 an attack must reach to judge a defense


def test_detection_lines_compare_each_detector_with_its_control():
    index = pd.MultiIndex.from_tuples([("undefended", "pgd"), ("attractors", "pgd"), ("honeymodels", "pgd"),
                                       ("luring", "cw2")], names=["defense", "attack"])
    comparison = pd.DataFrame({"n successful": [200, 150, 180, 12], "control n successful": [0, 160, 170, 40],
                               "TPR @ 0.05": [float("nan"), 1.0, 0.9, 0.5],
                               "control TPR @ 0.05": [float("nan"), 1.0, 0.2, 0.1]}, index=index)
    lines = av.detection_lines(comparison, "0.05")
    assert len(lines) == 3 and not any(line.startswith("- undefended") for line in lines)
    assert "not distinguishable from its control" in lines[0]
    assert "above its control: detection caused by the defense" in lines[1]
    assert "inconclusive (fewer than 30 successful examples)" in lines[2]


def test_detection_lines_agree_with_the_comparison_claims():
    """The Summary's sentence and the recorded claim judge the same numbers the same way: notebook 90 on
    paper-mnist5k had Attractors' CW2 at 8 of 40 against the control's 16 of 195, whose Wilson intervals overlap
    while the difference's interval (MOVER) lies above 0 — the sentence said "not distinguishable", the claim
    "reproduced"."""
    index = pd.MultiIndex.from_tuples([("attractors", "cw2")], names=["defense", "attack"])
    comparison = pd.DataFrame({"n successful": [40], "control n successful": [195], "TPR @ 0.05": [8 / 40],
                               "control TPR @ 0.05": [16 / 195]}, index=index)
    from decoylab import results

    results.clear()
    [line] = av.detection_lines(comparison, "0.05")
    [verdict] = cc.record(comparison, "mnist5k", "0.05")
    results.clear()
    assert verdict.outcome == "reproduced" and "above its control" in line
    assert "difference +0.118 [+0.012, +0.269]" in line


def test_a_detector_without_control_says_so_once():
    index = pd.MultiIndex.from_tuples([("feature_squeezing", "pgd")], names=["defense", "attack"])
    comparison = pd.DataFrame({"n successful": [50], "control n successful": [0], "TPR @ 0.05": [0.9],
                               "control TPR @ 0.05": [float("nan")]}, index=index)
    assert av.detection_lines(comparison, "0.05") == [
        "- feature_squeezing, pgd: flags 0.900 [0.786, 0.957] of 50 successful examples at FPR 0.05; no control measured."]


def test_equal_terms_names_the_defenses_that_lose_accuracy():
    overheads = pd.DataFrame({"clean accuracy": [0.95, 0.94, 0.80],
                              "accuracy cost (points)": [0.0, 1.0, 15.0]}, index=["undefended", "attractors", "luring"])
    lines = av.equal_terms_lines(overheads)
    assert lines[0].startswith("Not on equal terms: luring loses more than 2 points")
    assert "not equal terms" in lines[2] and "not equal terms" not in lines[1]
    assert av.equal_terms_lines(overheads.iloc[:2])[0].startswith("Every defense is within 2 points")
    assert "train longer" in lines[0]
    # a defense already trained to its paper's budget says so instead of being told to train longer
    explained = av.equal_terms_lines(overheads, reasons={"luring": "P trained the authors' 50000 steps",
                                                         "attractors": "never shown (within 2 points)"})
    assert "train longer" not in explained[0] and "why, below" in explained[0]
    assert explained[2].endswith("not equal terms): P trained the authors' 50000 steps")
    assert "never shown" not in explained[1]


def test_each_papers_detection_claim_is_judged_against_its_control_through_the_claims_api():
    from decoylab import results
    from decoylab.experiments import comparison_claims

    results.clear()
    index = pd.MultiIndex.from_tuples([("undefended", "pgd"), ("feature_squeezing", "pgd"), ("honeymodels", "pgd"),
                                       ("attractors", "pgd"), ("luring", "pgd"), ("fingerprints", "pgd"),
                                       ("fingerprints", "cw2")], names=["defense", "attack"])
    comparison = pd.DataFrame({"n successful": [200, 200, 180, 150, 100, 12, 0],
                               "control n successful": [0, 0, 170, 160, 100, 40, 50],
                               "TPR @ 0.05": [float("nan"), 0.5, 0.9, 1.0, 0.1, 1.0, float("nan")],
                               "control TPR @ 0.05": [float("nan")] * 2 + [0.2, 1.0, 0.6, 0.1, 0.1]}, index=index)
    verdicts = {v.claim.id: v for v in comparison_claims.record(comparison, "mnist5k", "0.05", note="common network")}
    assert set(verdicts) == {f"{d}.comparison.mnist5k.{a}.detection_vs_control" for d, a in
                             [("honeymodels", "pgd"), ("attractors", "pgd"), ("luring", "pgd"),
                              ("fingerprints", "pgd"), ("fingerprints", "cw2")]}
    outcome = {k.split(".")[0] + "." + k.split(".")[3]: v.outcome for k, v in verdicts.items()}
    assert outcome == {"honeymodels.pgd": "reproduced", "attractors.pgd": "inconclusive",
                       "luring.pgd": "not reproduced", "fingerprints.pgd": "inconclusive",
                       "fingerprints.cw2": "inconclusive"}
    assert "not measured" in verdicts["fingerprints.comparison.mnist5k.cw2.detection_vs_control"].reason
    assert "12 successful" in verdicts["fingerprints.comparison.mnist5k.pgd.detection_vs_control"].reason
    stored = results.recorded_claims()
    assert stored["luring.comparison.mnist5k.pgd.detection_vs_control"]["paper"] == "luring"  # the report's grouping
    results.clear()


def test_a_verdict_sentence_calls_a_detection_rate_on_fewer_than_30_examples_inconclusive():
    rate = av.Rate
    few = av.DefenseVerdict("attractors", "weakened", "more get through", 4, "4 · decision", rate(27, 50),
                            rate(11, 27), rate(16, 50), rate(0, 50), rate(50, 50))
    assert "of 27 of its successful examples at FPR 0.05 (inconclusive: fewer than 30" in few.sentence("0.05")
    enough = av.DefenseVerdict("attractors", "weakened", "more get through", 4, "4 · decision", rate(40, 50),
                               rate(11, 40), rate(29, 50), rate(0, 50), rate(50, 50))
    assert "inconclusive" not in enough.sentence("0.05")
