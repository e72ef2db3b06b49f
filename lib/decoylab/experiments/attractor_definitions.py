"""Which reading of §V-E makes Injected Attractors one consistent construction? (J. Zhang, E.-C. Chang, H. K. Lee,
"Detection and Recovery of Adversarial Attacks with Injected Attractors", §V-C to §V-E; notebook 20, section 3c.)

§V-E leaves two things open: which codewords count (the whole QIM lattice, or only the listed ones inside [0, 255])
and in what unit a pixel's distance to its codeword is measured (pixel values, as the text says, or units of the
pixel's own interval δᵢ). The four readings give four decoders W over the same classifier C and the same secret.
For each, this measures what §V claims W does: FGSM crafted on M = C + W succeeds less than on C, F_d flags its
successes, F_r = argmin W recovers their true class — and, as the control, how often F_r recovers examples crafted
on C alone (which never saw W), and whether W's own gradient points to the attractor ``QIMDecoder.watermarked``
computes (the cosine of Fig. 7a for W alone). Recovery *caused* by the attractors is recovery on M-crafted
examples above recovery on the C-crafted ones.
"""
from __future__ import annotations

import secrets
from typing import Sequence

import torch

from decoylab import claims, params, results, stats, train
from decoylab.defenses.attractors import CODEWORDS, DISTANCE_UNITS, Attractors
from decoylab.specs.base import list_of
from decoylab.specs.common import FPR, UNIT

EPS_LIST = list_of(UNIT)


def _share(hits: torch.Tensor) -> tuple[float, tuple[float, float] | None, int]:
    n = len(hits)
    return (float(hits.float().mean()) if n else float("nan")), (stats.wilson(int(hits.sum()), n) if n else None), n


def compare_definitions(classifier: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, x_calibration: torch.Tensor, *,
                        intervals, weights, strength: float, key_seed: int | None, eps_list: Sequence[float] = (0.3, 0.1),
                        fpr: float = 0.05, seed: int = 0, cache=None):
    """One row per (codewords, distance unit, ε): FGSM's success on C and on M, F_d's detection of M's successes at
    ``fpr`` (calibrated on ``x_calibration``), F_r's recovery of the true class on *every* successful example of M and
    of C (the control; Table I's recovery counts only F_d's detections, and F_d does not depend on who crafted the
    example), each with its n and Wilson interval, and the mean cosine between W's own gradient and the direction to
    the attractor ``nearest_attractor`` computes (first 100 images). ``x`` are images C classifies correctly."""
    import pandas as pd

    from decoylab import attacks
    from decoylab.experiments.attractor_gradients import cosines_by_interval

    params.check_each(eps_list=(list(eps_list), EPS_LIST), fpr=(fpr, FPR))
    shape, num_classes = tuple(x.shape[1:]), int(train.predict(classifier, x[:1]).shape[1])
    key_seed = secrets.randbits(63) if key_seed is None else key_seed  # one secret for the four readings
    on_c = {eps: attacks.run("fgsm", classifier, x, y, eps=eps, seed=seed, cache=cache) for eps in eps_list}
    rows = []
    for codewords in CODEWORDS:
        for unit in DISTANCE_UNITS:
            defense = Attractors(intervals=intervals, weights=weights, strength=strength, codewords=codewords,
                                 distance_unit=unit, key_seed=key_seed).protect(classifier, shape, num_classes)
            defense.calibrate(x_calibration, fpr)
            pull = cosines_by_interval(defense.attacked_model, defense.decoder, x[:100])["W alone (−∇Q)"]["all pixels"]
            for eps in eps_list:
                on_m = attacks.run("fgsm", defense.attacked_model, x, y, eps=eps, seed=seed, cache=cache)
                row = {"codewords": codewords, "distance unit": unit, "eps": eps, "n": len(x),
                       "W pull cosine": float(pull.mean()), "success on C": on_c[eps].success_rate,
                       "success on M": on_m.success_rate}
                for source, run in (("M", on_m), ("C (control)", on_c[eps])):
                    hit = run.success.cpu()
                    correlations = defense.correlations(run.x_adv[hit])
                    recovered = correlations.argmin(1) == y[hit]
                    if source == "M":
                        row["detected"], row["detected interval"], row["successful on M"] = _share(
                            defense.flags(correlations))
                    row[f"recovered, {source}"], row[f"recovered interval, {source}"], row[f"successful on {source}"] \
                        = _share(recovered)
                rows.append(row)
    return pd.DataFrame(rows)


def display_table(table):
    """The columns a reader compares, rates with their n and interval as text."""
    def cell(rate, interval, n):
        return "—" if not n else f"{rate:.2f} {claims.span(interval)} of {n}"

    out = table[["codewords", "distance unit", "eps", "W pull cosine", "success on C", "success on M"]].copy()
    out["detected (M's successes)"] = [cell(r["detected"], r["detected interval"], r["successful on M"])
                                       for _, r in table.iterrows()]
    for source in ("M", "C (control)"):
        out[f"recovered ({source}'s successes)"] = [
            cell(r[f"recovered, {source}"], r[f"recovered interval, {source}"], r[f"successful on {source}"])
            for _, r in table.iterrows()]
    return out.round(3)


def record_definitions(table, *, dataset: str) -> None:
    """Each row's recovery on M's and on C's successes, and its detection, with n and interval."""
    for _, row in table.iterrows():
        key = f"definitions.{row['codewords']}_{row['distance unit']}.fgsm_eps{row['eps']:g}"
        what = (f"codewords {row['codewords']}, distances in {row['distance unit']} units, FGSM ε {row['eps']:g}, "
                f"{dataset}, {int(row['n'])} attacked images; no paper value (section 3c)")
        for name, value, interval, n in (
                ("recovery", row["recovered, M"], row["recovered interval, M"], row["successful on M"]),
                ("recovery_control", row["recovered, C (control)"], row["recovered interval, C (control)"],
                 row["successful on C (control)"]),
                ("detection", row["detected"], row["detected interval"], row["successful on M"])):
            if n:
                results.record(f"{key}.{name}", value, n=int(n), interval=interval, note=what)


def finding(table, *, min_successes: int = 30) -> str:
    """Markdown from ``compare_definitions``: per reading and ε, whether recovery on M's successes is above the
    control's (Wilson intervals apart, each on at least ``min_successes`` successes), and W's pull."""
    lines = []
    for _, r in table.iterrows():
        n_m, n_c = int(r["successful on M"]), int(r["successful on C (control)"])
        if min(n_m, n_c) < min_successes:
            word = f"inconclusive (fewer than {min_successes} successes)"
        elif r["recovered interval, M"][0] > r["recovered interval, C (control)"][1]:
            word = "above the control: recovery caused by the attractors"
        elif r["recovered interval, M"][1] < r["recovered interval, C (control)"][0]:
            word = "below the control"
        else:
            word = "not distinguishable from the control"
        rec_m = "—" if not n_m else f"{r['recovered, M']:.2f} {claims.span(r['recovered interval, M'])}"
        rec_c = "—" if not n_c else f"{r['recovered, C (control)']:.2f} {claims.span(r['recovered interval, C (control)'])}"
        lines.append(f"- {r['codewords']}, {r['distance unit']} units, ε {r['eps']:g}: W's pull toward the attractor "
                     f"{r['W pull cosine']:+.2f}; FGSM succeeds on {r['success on M']:.2f} of M vs {r['success on C']:.2f} "
                     f"of C; F_r recovers {rec_m} of M's {n_m} successes vs {rec_c} of C's {n_c}: {word}")
    return ("F_r's recovery of every successful example under each reading of §V-E (section 3c; the same C, secret "
            "and images; Wilson intervals):\n\n" + "\n".join(lines))
