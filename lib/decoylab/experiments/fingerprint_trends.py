"""Why Fig. 3's trends come out as they do (Dathathri, Zheng, Murray, Yue, "Detecting Adversarial Examples via
Neural Fingerprinting", 2018, §3.2, Fig. 3): the AUC's change from one end of the N or ε grid to the other,
measured again under settings the paper does not fix, each on several fingerprint sets.

- ``by_training_length``: the same trend after each training length (every point of a sweep trains for the same
  epochs, while each added fingerprint, and each smaller ε, is a harder target to fit; notebook 41, section 3b);
- ``by_input_offset``: the same trend with the net trained and read on the authors' [−0.5, 0.5] inputs
  (offset −0.5) beside the kit's [0, 1] (notebook 41, section 3c);
- ``sentences``: the rows as Markdown, each change read from its interval.

Every point is a cached ``sweep_point``, so the grid's ends already measured by the sweep are not recomputed.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import pandas as pd

from decoylab import claims, results
from decoylab.experiments.fingerprint_claims import (SUCCESSFUL_ONLY, _point_scores, attack_key, fingerprints_unlearned,
                                                    trend_over_sets)
from decoylab.experiments.fingerprints import UNLEARNED_FIT, SweepSettings, sweep_point

OVER = ("N", "ε")


def trend_table(train_set, test_set, variants: Mapping[str, tuple[str, SweepSettings]], *, over: str, grid, n: int,
                eps: float, sets: int, cache=None) -> pd.DataFrame:
    """Per variant (label → (short key for the recorded name, settings)) and attack: the AUC at the grid's largest
    value minus at its smallest (``over`` "N" with ε = ``eps``, or "ε" with N = ``n``), the mean over ``sets``
    fingerprint sets with ``trend_over_sets``'s interval, the fewest successful examples behind it, and the nets'
    mean test accuracy and fingerprint fit (``sweep_point``'s "fit": mean D of the true class, ≈ 1 unlearned) at
    both ends. Each row is recorded as ``trend_<n|eps>_<attack>_<key>``."""
    if over not in OVER:
        raise ValueError(f"over={over!r} is not allowed; allowed: {', '.join(OVER)}")
    if len(set(grid)) < 2:
        raise ValueError(f"grid={list(grid)!r} is not allowed: a trend needs at least two distinct values")
    low, high = min(grid), max(grid)
    images, rows = None, []
    for label, (key, settings) in variants.items():
        images = min(settings.n_pretest, len(test_set.y))
        points = {(v, k): sweep_point(train_set, test_set, settings, n=v if over == "N" else n,
                                      eps=eps if over == "N" else v, fingerprint_seed=k, cache=cache,
                                      with_evidence=True) for v in (low, high) for k in range(sets)}
        accuracy, fit = ({v: float(np.mean([points[(v, k)][what] for k in range(sets)])) for v in (low, high)}
                         for what in ("accuracy", "fit"))
        held = f"ε {eps}" if over == "N" else f"N {n}"
        for attack in settings.attack_names:
            m = trend_over_sets([(_point_scores(points[(high, k)], attack), _point_scores(points[(low, k)], attack))
                                 for k in range(sets)], labels=(f"{over} {high}", f"{over} {low}"), images=images,
                                seeds=tuple(range(sets)), note="")
            note = (f"AUC at {over} {high} minus at {over} {low}, {held}, {label}, "
                    + (f"mean over {sets} fingerprint sets, interval: hull of Student's t over the sets and a bootstrap "
                       "over the images" if sets > 1
                       else "fingerprint set 0, bootstrap over the images")
                    + f"; {SUCCESSFUL_ONLY} (n: the fewest successful examples behind it, of {images} pre-test points)")
            results.record(f"trend_{'n' if over == 'N' else 'eps'}_{attack_key(attack)}_{key}", m.value,
                           n=m.n_successful, interval=m.interval, note=note)
            low_end, high_end = m.interval if m.interval else (None, None)
            rows.append({"setting": label, "over": over, "from": low, "to": high, "attack": attack,
                         "AUC change": m.value, "low": low_end, "high": high_end, "successful": m.n_successful,
                         "accuracy at the smallest": accuracy[low], "accuracy at the largest": accuracy[high],
                         "fit at the smallest": fit[low], "fit at the largest": fit[high]})
    return pd.DataFrame(rows)


def by_training_length(train_set, test_set, settings: SweepSettings, *, over: str, grid, n: int, eps: float,
                       epochs_list, sets: int, cache=None) -> pd.DataFrame:
    """``trend_table`` after each training length in ``epochs_list``: should a trend shrink or vanish with longer
    training, it says how well the nets were fitted, not what the defense does."""
    variants = {f"{int(e)} epochs": (f"{int(e)}ep", dataclasses.replace(
        settings, train_config=dataclasses.replace(settings.train_config, epochs=int(e)))) for e in epochs_list}
    return trend_table(train_set, test_set, variants, over=over, grid=grid, n=n, eps=eps, sets=sets, cache=cache)


def by_input_offset(train_set, test_set, settings: SweepSettings, *, over: str, grid, n: int, eps: float, offsets,
                    sets: int, cache=None) -> pd.DataFrame:
    """``trend_table`` with the net trained and read on inputs shifted by each offset (``ShiftedInputs``: −0.5 is
    the authors' [−0.5, 0.5]); probes, attacks and ε stay on the same pixel scale. What differs: where a
    convolution pads, what the padding means (black on [0, 1], mid-grey on [−0.5, 0.5]); where none does
    (``nfp_mnist``), only the training's path, since a shifted input is a shifted first-layer bias."""
    variants = {f"inputs on [{o:g}, {1 + o:g}]": (f"offset{o:g}", dataclasses.replace(settings, input_offset=float(o)))
                for o in offsets}
    return trend_table(train_set, test_set, variants, over=over, grid=grid, n=n, eps=eps, sets=sets, cache=cache)


def _reading(row) -> str:
    if pd.isna(row["AUC change"]) or pd.isna(row["low"]):
        return "not measured (no successful example, or one set without spread)"
    if row["successful"] < claims.DETECTION_MIN_SUCCESSES:
        return (f"{row['AUC change']:+.3f}, inconclusive: {row['successful']} successful examples "
                f"(fewer than {claims.DETECTION_MIN_SUCCESSES})")
    word = "falls" if row["high"] < 0 else "rises" if row["low"] > 0 else "no change the interval can tell"
    return f"{row['AUC change']:+.3f} {claims.span((row['low'], row['high']))} ({word}; {row['successful']} successful)"


def sentences(table: pd.DataFrame) -> str:
    """Markdown for ``trend_table``'s rows: per trend and attack, the change under each setting read from its
    interval (falls, rises, or no change the interval can tell; inconclusive on fewer than 30 successful
    examples), then the nets' test accuracy at both ends per setting."""
    blocks = []
    for (over, low, high), rows in table.groupby(["over", "from", "to"], sort=False):
        low, high = f"{low:g}", f"{high:g}"  # N is read back as a float where a table holds both trends
        lines = [f"AUC at {over} {high} minus at {over} {low}:", ""]
        for attack, by_attack in rows.groupby("attack", sort=False):
            lines.append(f"- **{attack}**: " + "; ".join(f"{r['setting']} {_reading(r)}" for _, r in by_attack.iterrows()))
        per_setting = rows.drop_duplicates("setting")
        for what, title in (("accuracy", "test accuracy"),
                            ("fit", f"fingerprint fit (mean D of the true class; ≈ 1 unlearned, learned below "
                                    f"{UNLEARNED_FIT:g})")):
            lines.append(f"- {title}: " + "; ".join(
                f"{r['setting']} {over} {low} {r[what + ' at the smallest']:.3f}, {over} {high} "
                f"{r[what + ' at the largest']:.3f}" for _, r in per_setting.iterrows()))
        unfit = [r["setting"] for _, r in per_setting.iterrows()
                 if fingerprints_unlearned(max(r["fit at the smallest"], r["fit at the largest"]))]
        if unfit:
            lines.append(f"- where the fingerprints at one end were not learned ({', '.join(unfit)}), the change "
                         "compares a fingerprinted net with one that is not: it says how well the nets fitted")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
