"""Each paper's detection claim re-checked on the kit's common ground (notebook 90), through the claims API.

Every paper says its detector flags adversarial examples because of its secret: HoneyModels' watermark (Abdou et al.,
MILCOM 2021, Table I), the Injected Attractors (Zhang, Chang, Lee, §IV-B and Table I (e)), the luring component's
disagreement with M (Bernhard, Moellic, Dutertre, §5, Fig. 2's detection rate) and the fingerprints (Dathathri et al.
2018, Table 1). On one network, one data set and the same attacks, the claim becomes a check: at the comparison's
first false-positive rate the detector flags more of the successful examples crafted on the defended model than its
control (the same detector pipeline without the secret, ``Defense.control()``) flags of those crafted on the
control. ``claims.GreaterThan("control")`` on the difference of two Wilson-interval proportions (MOVER); a detection
rate on fewer than ``claims.DETECTION_MIN_SUCCESSES`` successful examples, on either side, is inconclusive. The
claims are the kit's own reading of each paper's statement (no paper measures this), so they carry no paper value.
"""
from __future__ import annotations

from decoylab import claims, results
from decoylab.experiments.adaptive_verdicts import _count

#: What each defense's paper states, and where (the statement each comparison claim re-checks).
PAPER_STATEMENTS = {
    "honeymodels": ("Table I, re-checked in the kit's comparison (notebook 90)",
                    "the watermark detector flags the examples crafted on the HoneyModel"),
    "attractors": ("§IV-B and Table I (e), re-checked in the kit's comparison (notebook 90)",
                   "F_d flags the examples crafted on the attractor-injected model M"),
    "luring": ("§5 and Fig. 2 (DR), re-checked in the kit's comparison (notebook 90)",
               "the disagreement of M and M∘P flags the examples crafted on M∘P"),
    "fingerprints": ("Table 1, re-checked in the kit's comparison (notebook 90)",
                     "the fingerprint mismatch flags the examples crafted on the fingerprinted network"),
}


def claim_for(defense: str, attack: str, dataset: str, fpr_label: str) -> claims.Claim:
    """The comparison's detection-vs-control claim for ``defense`` against ``attack`` on ``dataset``."""
    source, statement = PAPER_STATEMENTS[defense]
    return claims.Claim(
        f"{defense}.comparison.{dataset}.{attack}.detection_vs_control", defense, source,
        f"On the comparison's common network, {statement} ({attack}, FPR {fpr_label}) more often than its control "
        "(the same pipeline without the secret) flags the examples crafted on the control: detection caused by the "
        "secret.", claims.GreaterThan("control"), None, min_successes=claims.DETECTION_MIN_SUCCESSES)


def record(comparison, dataset: str, fpr_label: str, note: str = "") -> list[claims.Verdict]:
    """Judge and record one claim per defense of ``PAPER_STATEMENTS`` and attack in ``comparison``
    (``detection.comparison_table``: ``n successful``, ``TPR @ f`` and the control's columns)."""
    verdicts = []
    for (defense, attack), row in comparison.iterrows():
        if defense not in PAPER_STATEMENTS:
            continue
        claim = claim_for(defense, attack, dataset, fpr_label)
        k, k_control = int(row["n successful"]), int(row["control n successful"])
        tpr, control_tpr = row.get(f"TPR @ {fpr_label}"), row.get(f"control TPR @ {fpr_label}")
        has_defense, has_control = k > 0 and tpr == tpr, k_control > 0 and control_tpr == control_tpr  # NaN: none
        measured = claims.proportion(_count(tpr, k), k, n_successful=k) if has_defense else claims.not_measured(
            "no detection rate on the defended model", n_successful=k)
        control = claims.proportion(_count(control_tpr, k_control), k_control, n_successful=k_control) \
            if has_control else claims.not_measured("no detection rate on the control", n_successful=k_control)
        m = claims.difference(measured, control, labels=(f"{defense} flags", "control flags"),
                              note="; ".join(filter(None, [note, "evidence: the fewer of the two sets of successful "
                                                                  "examples"])))
        undecided = None
        if not (has_defense and has_control):
            undecided = (f"not measured: {'the defended model' if not has_defense else 'the control'} has no "
                         f"detection rate for {attack} (no successful example, or no detector)")
        verdicts.append(results.record_claim(claim, m, undecided=undecided))
    return verdicts
