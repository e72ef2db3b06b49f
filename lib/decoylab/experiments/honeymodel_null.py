"""Is it the watermark? The random-key null of HoneyModels (Abdou, Sheatsley, Beugin, Shipp, McDaniel,
"HoneyModels: Machine Learning Honeypots", MILCOM 2021).

The paper's premise (§I, §III-C): an attack on the HoneyModel reproduces *its* watermark, and the detector
(§III-C-4) catches the attacker by reading the secret key's features. Neither the paper nor the benign-model
control (``HoneyModel.control()``) asks whether a key the model never learned would do as well. Here the same
adversarial examples are read with ``n_keys`` random keys of the secret key's size and amplitude on other
pixels: if Sim(W, Ŵ) and the detector's AUC are as high with a random key, what they measure is the attack's
footprint on any set of pixels (PGD moves every pixel by ε; on MNIST's black background a perturbation can
only be positive), not the watermark.

- ``random_keys`` — keys of the secret key's shape, size and amplitude on pixels it does not use;
- ``key_null_table`` — per model, attack and key: mean Sim(W, Ŵ) with its n, and the held-out detector AUC;
- ``key_null_claims`` — per attack, the secret key minus a random key (paired on the same examples), judged.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from decoylab import claims, results, stats
from decoylab.defenses import honeymodels as hm
from decoylab.experiments.honeymodel_claims import PAPER, heldout_images, heldout_scores, setting_differences
from decoylab.experiments.honeymodels import PAPER_ATTACKS

if TYPE_CHECKING:
    import pandas as pd

NULL_SEED_OFFSET = 7_919  # random keys are seeded at seed + offset + i: never the secret key's seed


def random_keys(key: hm.WatermarkKey, count: int, seed: int) -> list[hm.WatermarkKey]:
    """``count`` keys of the secret key's shape, size and amplitude that no model was trained on, each on pixels
    the secret key does not use (a shared pixel would carry the watermark into the null); where the secret key
    covers more than half of the input, the rest is drawn from its pixels. Seeded at ``seed`` + an offset."""
    n_features, size = int(np.prod(key.shape)), len(key.indices)
    outside = np.setdiff1d(np.arange(n_features), key.indices.numpy())
    found = []
    for i in range(count):
        rng = np.random.default_rng(seed + NULL_SEED_OFFSET + i)
        chosen = rng.choice(outside, size=min(size, len(outside)), replace=False)
        if len(chosen) < size:
            chosen = np.concatenate([chosen, rng.choice(key.indices.numpy(), size=size - len(chosen), replace=False)])
        signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=size)
        found.append(hm.WatermarkKey(key.shape, torch.from_numpy(np.sort(chosen)).long(), torch.from_numpy(signs),
                                     key.amplitude, key.watermark_size, True))
    return found


def _pairs(adversarial: Mapping[str, Any]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {name: (r.x_adv, r.success) for name, r in adversarial.items()}


def key_null_table(key: hm.WatermarkKey, attacked: Mapping[str, tuple[torch.Tensor, Mapping[str, Any]]], *,
                   n_keys: int, seed: int, reading: str, samples: str, test_fraction: float = 0.2) -> "pd.DataFrame":
    """One row per model (``attacked``: ``{"HoneyModel": (x, adversarial), "benign model": ...}``), attack and
    key (the secret one, then ``random_keys``): mean Sim(W, Ŵ) over the successful examples with their number,
    and the held-out AUC of a detector trained like Table I's on that key's features."""
    import pandas as pd

    keys = [("secret", key)] + [(f"random {i + 1}", k) for i, k in enumerate(random_keys(key, n_keys, seed))]
    rows = []
    for who, (x, adversarial) in attacked.items():
        for name, k in keys:
            _, report = hm.train_detector(k, x, _pairs(adversarial), test_fraction=test_fraction, seed=seed,
                                          samples=samples)
            for attack, r in adversarial.items():
                sim = hm.reconstruction(k, r.x_adv[r.success], x[r.success], reading)
                rows.append({"model": who, "attack": attack, "key": name,
                             "similarity": float(sim.mean()) if len(sim) else float("nan"), "n": len(sim),
                             "detector AUC": report.rows[attack]["auc"], "n held out": report.rows[attack]["n_test"]})
    return pd.DataFrame(rows)


def key_null_claims(key: hm.WatermarkKey, x: torch.Tensor, adversarial: Mapping[str, Any], params: Mapping[str, Any],
                    *, n_train: int, test_fraction: float = 0.2) -> list[claims.Verdict]:
    """Per paper attack on the HoneyModel (``x`` and its ``adversarial`` results): Sim(W, Ŵ) with the secret key
    minus with the first random key (section 7's table shows the spread over all of them), a paired bootstrap
    over the successful examples; the per-attack detector's held-out AUC with the secret key minus with that
    random key, a paired bootstrap over the held-out images. Where no random key can avoid the secret key's
    pixels (a key over more than half of the input) the claims are not measured."""
    seed, samples, reading = params["SEED"], params["DETECTOR_SAMPLES"], params["RECONSTRUCTION"]
    (other,) = random_keys(key, 1, seed)
    shared = len(set(other.indices.tolist()) & set(key.indices.tolist()))
    overlap = (f"not measured: the secret key covers {100 * key.watermark_size:g} % of the input, so a random key "
               f"of its size shares {shared} of its pixels and carries the watermark into the null") if shared else None
    differences = setting_differences(params, n_train)
    held = heldout_images(len(x), seed, test_fraction)
    by_id = {c.id: c for c in claims.declared(PAPER)}
    verdicts = []
    for attack in PAPER_ATTACKS:
        r = adversarial[attack]
        ok = r.success.bool()
        secret_sim, random_sim = (hm.reconstruction(k, r.x_adv[ok], x[ok], reading).double().numpy()
                                  for k in (key, other))
        note = (f"the same {int(ok.sum())} successful examples read with the secret key and with the first random key "
                f"of its size on other pixels (seed {seed + NULL_SEED_OFFSET}); {reading} reading; {differences}")
        if len(secret_sim) >= 2:
            value, interval = stats.bootstrap_mean_difference(secret_sim, random_sim, paired=True, seed=seed)
            measured = claims.Measurement(value, interval, len(x), len(secret_sim), (seed,), note,
                                          parts={"secret key": _mean(secret_sim, len(x), seed, note),
                                                 "random key": _mean(random_sim, len(x), seed, note)})
        else:
            measured = claims.not_measured(note, n=len(x), n_successful=len(secret_sim))
        verdicts.append(results.record_claim(by_id[f"{PAPER}.premise.{attack}.reconstruction_over_random_key"],
                                             measured, undecided=overlap))
        auc = _auc_difference(key, other, x, attack, r, held, samples, seed, test_fraction,
                              f"held-out {100 * test_fraction:g} % of the attacked images, per-attack detectors; "
                              f"{note}")
        verdicts.append(results.record_claim(by_id[f"{PAPER}.premise.{attack}.auc_over_random_key"], auc,
                                             undecided=overlap))
    return verdicts


def _mean(values: np.ndarray, n_images: int, seed: int, note: str) -> claims.Measurement:
    mean = float(values.mean())
    return claims.Measurement(mean, stats.mean_interval(mean, float(values.std(ddof=1)), len(values)), n_images,
                              len(values), (seed,), note)


def _auc_difference(key: hm.WatermarkKey, other: hm.WatermarkKey, x: torch.Tensor, attack: str, r, held: torch.Tensor,
                    samples: str, seed: int, test_fraction: float, note: str) -> claims.Measurement:
    """The secret key's detector AUC minus the random key's, scored on the same held-out images (the split of
    ``train_detector`` at ``test_fraction``, so neither detector saw them)."""
    scored = []
    for k in (key, other):
        detector, _ = hm.train_detector(k, x, {attack: (r.x_adv, r.success)}, test_fraction=test_fraction, seed=seed,
                                        samples=samples)
        scored.append(heldout_scores(k, detector, x, {attack: r}, held, samples))
    secret, random_key = scored
    if secret.scores is None or random_key.scores is None or secret.labels.min() == secret.labels.max():
        return claims.not_measured(note, n=secret.n_images, n_successful=secret.n_successful)
    value, interval = stats.bootstrap_auc_difference(secret.labels, secret.scores, random_key.scores, seed=seed)
    parts = {name: claims.Measurement(*stats.bootstrap_auc(h.labels, h.scores, seed=seed), h.n_images,
                                      h.n_successful, (seed,), note)
             for name, h in (("secret key", secret), ("random key", random_key))}
    if parts["secret key"].value == parts["random key"].value == 1.0:  # as table_one_claims names its ceiling
        note = (f"ceiling: the random key's detector separates {attack.upper()} perfectly too (AUC 1.0 both), so "
                f"this detection does not need the secret key; {note}")
    return claims.Measurement(value, interval, secret.n_images, secret.n_successful, (seed,), note, parts=parts)


def _pair(v: claims.Verdict) -> str:
    parts = v.measurement.parts
    if not parts:
        return "not measured"
    return (f"{claims.fmt(parts['secret key'].value)} with the secret key, "
            f"{claims.fmt(parts['random key'].value)} with a random one")


def key_null_finding(verdicts) -> str:
    """What the random-key claims of this run say, one sentence per attack, rendered from their verdicts and
    numbers (for notebook 10's Summary)."""
    by_id = {v.claim.id: v for v in verdicts}
    lines = ["**Is it the watermark?** The same adversarial examples read with the secret key and with a key the "
             "model never learned (section 7):", ""]
    for attack in PAPER_ATTACKS:
        sim = by_id.get(f"{PAPER}.premise.{attack}.reconstruction_over_random_key")
        auc = by_id.get(f"{PAPER}.premise.{attack}.auc_over_random_key")
        if sim is None or auc is None:
            continue
        outcomes = {sim.outcome, auc.outcome}
        if outcomes == {claims.REPRODUCED}:
            reading = "the secret key reads more on both counts: the watermark contributes"
        elif outcomes == {claims.NOT_REPRODUCED}:
            reading = ("a key the model never learned does as well" + (" (both detectors at the AUC ceiling)" if
                       auc.measurement.note.startswith("ceiling") else "") +
                       ": this is the attack's footprint, not the watermark")
        else:
            reading = f"reconstruction {sim.outcome}, detection {auc.outcome}: the claims below give each reason"
        lines.append(f"- **{attack.upper()}**: Sim(W, Ŵ) {_pair(sim)}; detector AUC {_pair(auc)}: {reading}.")
    return "\n".join(lines)
