"""Is Injected Attractors' detection caused by the attractors? (J. Zhang, E.-C. Chang, H. K. Lee, "Detection and
Recovery of Adversarial Attacks with Injected Attractors", §V-C's detector F_d; notebook 20, section 3b.)

The paper runs no control for F_d. Here F_d's flag rate is measured on perturbations of shrinking L∞ size ε that
know nothing of the attractors — random-sign noise x + ε·s (s uniform on {−1, 1} per pixel, the pattern of a sign
attack) and uniform noise x + U(−ε, ε) — beside FGSM crafted on C alone (the gradients never pass through W: the
kit's control) and FGSM crafted on the combined model M (through W). Where noise and the C-crafted examples are
flagged as often as the M-crafted ones, F_d detects that the image was perturbed, not that an attacker followed
an attractor; the ε below which the M-crafted examples are flagged more is where the attractors act.
"""
from __future__ import annotations

from typing import Sequence

import torch

from decoylab import claims, params, results, stats
from decoylab.defenses.attractors import Attractors
from decoylab.specs.base import list_of
from decoylab.specs.common import UNIT

EPS_LIST = list_of(UNIT)

PERTURBATIONS = ("random sign", "uniform", "FGSM on C (control)", "FGSM on M")


def perturbed(x: torch.Tensor, eps: float, kind: str, seed: int) -> torch.Tensor:
    """x moved by noise of L∞ size ``eps`` (``kind``: "random sign" or "uniform"), clipped to [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    if kind == "random sign":
        step = torch.randint(0, 2, x.shape, generator=g).to(x.dtype).mul(2).sub(1)
    elif kind == "uniform":
        step = torch.rand(x.shape, generator=g).to(x.dtype).mul(2).sub(1)
    else:
        raise ValueError(f"kind={kind!r} is not allowed; allowed: random sign, uniform")
    return (x + eps * step.to(x.device)).clamp(0, 1)


def flag_rates_against_eps(defense: Attractors, x: torch.Tensor, y: torch.Tensor, eps_list: Sequence[float], *,
                           seed: int = 0, cache=None):
    """F_d's flag rate (at its calibrated threshold) per ε (each once, largest first) and perturbation of
    ``PERTURBATIONS`` on the images ``x`` (labels ``y``, classified correctly by C), with Wilson's interval: over
    every perturbed image, and for the two FGSM rows also their successes and the rate over those only. The
    first row is the same images unperturbed (ε 0), the false-alarm baseline. Needs ``defense.calibrate``."""
    import pandas as pd

    from decoylab import attacks

    params.check("eps_list", list(eps_list), EPS_LIST)
    control = defense.control()
    clean = defense.flags(defense.correlations(x))
    rows = [{"eps": 0.0, "perturbation": "none (clean)", "n": len(x), "flagged": float(clean.float().mean()),
             "interval": stats.wilson(int(clean.sum()), len(x))}]
    for eps in sorted(set(eps_list), reverse=True):
        crafted = {"FGSM on C (control)": attacks.run("fgsm", control.attacked_model, x, y, eps=eps, seed=seed,
                                                      cache=cache),
                   "FGSM on M": attacks.run("fgsm", defense.attacked_model, x, y, eps=eps, seed=seed, cache=cache)}
        for kind in PERTURBATIONS:
            run = crafted.get(kind)
            x_moved = run.x_adv if run is not None else perturbed(x, eps, kind, seed)
            flagged = defense.flags(defense.correlations(x_moved))
            row = {"eps": eps, "perturbation": kind, "n": len(x), "flagged": float(flagged.float().mean()),
                   "interval": stats.wilson(int(flagged.sum()), len(x))}
            if run is not None:
                hit = run.success.cpu()
                k = int(hit.sum())
                row.update(successful=k, flagged_successful=float(flagged[hit].float().mean()) if k else float("nan"),
                           interval_successful=stats.wilson(int(flagged[hit].sum()), k) if k else None)
            rows.append(row)
    return pd.DataFrame(rows)


def record_flag_rates(table, *, dataset: str) -> None:
    """Record each row of ``flag_rates_against_eps`` (n and Wilson interval; the FGSM rows also on their successes)."""
    for _, row in table.iterrows():
        key = row["perturbation"].split(" (")[0].lower().replace(" ", "_")
        name = f"flag_rate_{key}_eps{row['eps']:g}"
        results.record(name, row["flagged"], n=int(row["n"]), interval=row["interval"],
                       note=f"F_d's flag rate on {row['perturbation']} of L∞ size {row['eps']:g}, every perturbed "
                            f"image, {dataset}; no paper value (the paper runs no such control)")
        if "successful" in row and row["successful"] == row["successful"] and row["successful"] > 0:
            results.record(f"{name}_successful", row["flagged_successful"], n=int(row["successful"]),
                           interval=row["interval_successful"],
                           note=f"the same, on the {int(row['successful'])} successful examples only")


def finding(table) -> str:
    """Markdown: at each ε, M-crafted FGSM's flag rate against the highest of the three perturbations without the
    attractors, read from their Wilson intervals (above, indistinguishable, or below)."""
    lines = []
    clean = table[table.perturbation == "none (clean)"]
    if len(clean):
        row = clean.iloc[0]
        lines.append(f"- unperturbed: {row['flagged']:.3f} {claims.span(row['interval'])} of the same "
                     f"{int(row['n'])} images flagged (the false-alarm baseline)")
    for eps, rows in table[table.perturbation != "none (clean)"].groupby("eps", sort=False):
        by = rows.set_index("perturbation")
        m_low, m_high = by.loc["FGSM on M", "interval"]
        others = by.drop(index="FGSM on M")
        best = others["flagged"].idxmax()
        o_low, o_high = others.loc[best, "interval"]
        word = ("above" if m_low > o_high else "below" if m_high < o_low else "not distinguishable from")
        successes = {k: int(by.loc[k, "successful"]) for k in ("FGSM on M", "FGSM on C (control)")}
        lines.append(f"- ε {eps:g}: FGSM crafted on M is flagged {by.loc['FGSM on M', 'flagged']:.3f} "
                     f"{claims.span((m_low, m_high))}, {word} {best} ({others.loc[best, 'flagged']:.3f} "
                     f"{claims.span((o_low, o_high))}), n {int(by.loc['FGSM on M', 'n'])} each; FGSM succeeded on "
                     f"{successes['FGSM on M']} (on M) and {successes['FGSM on C (control)']} (on C) of them")
    return ("F_d's flag rate with and without the attractors, by ε (section 3b; every perturbed image, successful "
            "or not; \"above\" and \"below\" need the two Wilson intervals apart, a conservative reading for rates "
            "paired on the same images):\n\n" + "\n".join(lines))

