"""How detection is measured in the comparison: each detector beside its control on the same attacks
(``comparison_table``, notebooks 41 and 90), and against attackers who know the defense, at rising
knowledge (``security_curve``, notebook 90 section 4).

Only successful adversarial examples count as positives; thresholds are set on clean calibration images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from decoylab import attacks, metrics, params, results
from decoylab.defenses.base import AdaptiveAttack, Defense
from decoylab.experiments.compare import AttackSpecs, ComparisonSetup, Contender, attack_sets
from decoylab.specs import compare as compare_specs


@dataclass
class DetectionScores:
    """A detector's scores on clean, calibration and (per attack) successful adversarial images: what
    ``detection_rows`` measures at any FPR without scoring again (the comparison panel's slider)."""
    clean: torch.Tensor
    calibration: torch.Tensor
    adversarial: dict[str, Any]  # label -> AttackResult
    successful: dict[str, torch.Tensor]  # label -> scores of the successful examples


def detection_scores(defense: Defense, model_attacked: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     x_calibration: torch.Tensor, specs: AttackSpecs, *, seed: int = 0, cache=None,
                     adversarial: dict | None = None) -> DetectionScores:
    """``defense.score`` on clean ``x``, on ``x_calibration`` and on the successful examples of each
    attack in ``specs`` crafted on ``model_attacked`` (or the given ``adversarial`` sets)."""
    adv = adversarial or attack_sets(model_attacked, x, y, specs, seed=seed, cache=cache)
    clean = defense.score(x)
    return DetectionScores(clean, clean if x_calibration is x else defense.score(x_calibration), adv,
                           {label: defense.score(r.x_adv[r.success]) if r.success.any() else torch.zeros(0)
                            for label, r in adv.items()})


def rows_at(scores: DetectionScores, fprs) -> dict[str, dict[str, Any]]:
    """``detection_rows``'s measurements from scores already computed, thresholds at each of ``fprs``."""
    out = {}
    for label, r in scores.adversarial.items():
        adv_scores = scores.successful[label]
        row = {"success": r.success_rate, "n_successful": int(r.success.sum()),
               "mean_l2": float(r.l2[r.success].mean()) if r.success.any() else float("nan"),
               "grad_steps": r.grad_steps}
        for f in fprs:
            threshold = metrics.threshold_at_fpr(scores.calibration, f)
            row[f"tpr@{f:g}"] = float((adv_scores > threshold).float().mean()) if len(adv_scores) else float("nan")
            row[f"fpr@{f:g}"] = float((scores.clean > threshold).float().mean())
        truth = [0] * len(scores.clean) + [1] * len(adv_scores)
        row["auc"] = metrics.auc(truth, torch.cat([scores.clean, adv_scores])) if len(adv_scores) else float("nan")
        row["roc"] = metrics.roc(truth, torch.cat([scores.clean, adv_scores])) if len(adv_scores) else None
        detected = row[f"tpr@{fprs[0]:g}"]
        row["overall"] = r.success_rate * (1 - (detected if detected == detected else 0.0))
        out[label] = row
    return out


def detection_rows(defense: Defense, model_attacked: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   x_calibration: torch.Tensor, specs: AttackSpecs, fprs, *, seed: int = 0, cache=None,
                   adversarial: dict | None = None) -> dict[str, dict[str, Any]]:
    """Per attack: success on ``model_attacked``; TPR (successful examples flagged) and measured FPR at
    thresholds set on ``x_calibration`` for each FPR; AUC of clean ``x`` vs successful examples;
    overall attack success = success × (1 − TPR at the first FPR); mean L2; gradient steps."""
    return rows_at(detection_scores(defense, model_attacked, x, y, x_calibration, specs, seed=seed, cache=cache,
                                    adversarial=adversarial), fprs)


def comparison_table(setup: ComparisonSetup, fprs, *, seed: int = 0, cache=None):
    """Every contender of ``setup`` against every attack, crafted on that contender's own model (the
    defense's ``attacked_model``; the undefended classifier): success, TPR at each FPR, the FPR
    measured, AUC, overall success, mean L2, and the controls — the same detector on its control
    model, and clean vs clean. Returns (a DataFrame indexed by defense and attack, ``{(defense,
    "defense" | "control", attack): ROC curve or None}``). Notebooks 41 (section 5) and 90 (section 3)."""
    import numpy as np
    import pandas as pd

    fpr_keys = [f"{f:g}" for f in fprs]
    rows, curves = [], {}
    for name, c in setup.contenders.items():
        adv = attack_sets(c.classifier, setup.x_att, setup.y_att, setup.specs, seed=seed, cache=cache)
        measured = detection_rows(c.defense, c.classifier, setup.x_att, setup.y_att, setup.x_cal, setup.specs, fprs,
                                  seed=seed, adversarial=adv) if c.defense is not None else {}
        control = detection_rows(c.control, c.control.attacked_model, setup.x_att, setup.y_att, setup.x_cal,
                                 setup.specs, fprs, seed=seed, cache=cache) if c.control is not None else {}
        clean_control = clean_vs_clean_auc(c.defense, setup.x_cal, seed=seed) if c.defense is not None else np.nan
        for attack, r in adv.items():
            m, k = measured.get(attack, {}), control.get(attack, {})
            rows.append({"defense": name, "attack": attack, "n attacked": len(r.success),
                         "n successful": int(r.success.sum()), "control n successful": k.get("n_successful", 0),
                         "success": r.success_rate,
                         **{f"TPR @ {f}": m.get(f"tpr@{f}", np.nan) for f in fpr_keys},
                         "FPR measured": m.get(f"fpr@{fpr_keys[0]}", np.nan), "AUC": m.get("auc", np.nan),
                         "overall": m.get("overall", r.success_rate),
                         "mean L2": float(r.l2[r.success].mean()) if r.success.any() else np.nan,
                         f"control TPR @ {fpr_keys[0]}": k.get(f"tpr@{fpr_keys[0]}", np.nan),
                         "control AUC": k.get("auc", np.nan), "clean vs clean AUC": clean_control})
            curves[(name, "defense", attack)] = m.get("roc")
            curves[(name, "control", attack)] = k.get("roc")
    return pd.DataFrame(rows).set_index(["defense", "attack"]), curves


def clean_vs_clean_auc(defense: Defense, x: torch.Tensor, seed: int = 0) -> float:
    """The trivial control: the score's AUC between two halves of clean inputs (≈ 0.5 when the score
    carries no information about which half an input came from)."""
    scores = defense.score(x)
    order = torch.randperm(len(scores), generator=torch.Generator().manual_seed(seed))  # data may be sorted
    half = len(scores) // 2
    truth = [0] * half + [1] * (len(scores) - half)
    return metrics.auc(truth, scores[order])


# --- Adaptive attacks: one per defense, each at rising attacker knowledge ------------------------------

def adaptive_attack(specs: AttackSpecs, label: str, *, eps: float | None = None,
                    random_start: bool = False) -> tuple[str, dict[str, Any]]:
    """The attack every adaptive attacker uses: ``specs[label]`` (the comparison's own settings), PGD with
    or without its random start (off: a key-avoiding attacker then really leaves the key alone), and an
    L∞ budget ``eps`` in place of the attack's own where given (L∞ attacks only)."""
    params.check("eps", eps, compare_specs.ADAPTIVE_EPS)
    found = compare_specs.adaptive_rules({"ATTACKS": list(specs), "ADAPTIVE_ATTACK": label, "ADAPTIVE_EPS": eps})
    if found:
        raise params.ParameterError("; ".join(found))
    name, settings = specs[label]
    if name == "pgd":
        settings = {**settings, "random_start": random_start}
    if eps is not None:  # a smaller budget asks whether detection survives when pixels move less
        settings = {**settings, "eps": eps}
    return name, settings


def security_curve(contender: Contender, x: torch.Tensor, y: torch.Tensor, x_calibration: torch.Tensor, fpr: float,
                   *, attack: tuple[str, dict[str, Any]], weights, x_shadow: torch.Tensor, y_shadow: torch.Tensor,
                   seed: int = 0, cache=None) -> list[dict[str, Any]]:
    """Detection (TPR at ``fpr`` on successful examples), success and overall success per knowledge
    level of ``contender.defense.adaptive_attacks`` (``x_shadow, y_shadow``: the attacker's own data),
    with the attacker's cost: gradient steps (summed over the weights tried) and mean L2 of successful
    examples. Where the attacker adds a defense-aware term, it tries every weight in ``weights`` and keeps
    the one with the highest overall success — it knows the detector, so it can measure that itself
    (Carlini & Wagner, *Adversarial Examples Are Not Easily Detected*, AISec 2017: adaptive attacks). With a
    ``cache``, every attack is cached: the engine keys it by model and images, and a defense-aware term by
    what the defense says it depends on (its secrets and weights, the weight, the code)."""
    steps = contender.defense.adaptive_attacks(x_shadow=x_shadow, y_shadow=y_shadow, attack=attack, seed=seed,
                                               cache=cache)
    return _curve(contender, steps, x, y, x_calibration, fpr, attack=attack, weights=weights, seed=seed, cache=cache)


def adaptive_run(contender: Contender, step: AdaptiveAttack, x: torch.Tensor, y: torch.Tensor,
                 attack: tuple[str, dict[str, Any]], weight: float | None, *, seed: int = 0, cache=None):
    """One adaptive attack: ``step`` with ``attack``'s settings and its defense-aware term at ``weight`` (None: no
    term), targeted where ``step.targets_for`` names a class per image. Returns the engine's result, success per
    image (``y`` missed, judged on ``step.success_model``, default the deployed classifier) and the defense's scores
    of the successful examples."""
    from decoylab import train

    name, settings = attack
    extra = step.loss_for(weight) if weight is not None and step.loss_for is not None else None
    key = step.loss_key_for(weight) if extra is not None and step.loss_key_for is not None else None
    targeting = {"targeted": True, "target": step.targets_for(x, y)} if step.targets_for is not None else {}
    r = attacks.run(name, step.model, x, y, seed=seed, extra_loss=extra, extra_loss_key=key, cache=cache,
                    **targeting, **settings)
    success = train.predict(step.success_model or contender.classifier, r.x_adv).argmax(1) != y.cpu()
    scores = contender.defense.score(r.x_adv[success]) if success.any() else torch.zeros(0)
    return r, success, scores


def _curve(contender: Contender, steps: list[AdaptiveAttack], x, y, x_calibration, fpr, *, attack, weights, seed,
           cache, more_fprs=()) -> list[dict[str, Any]]:
    d = contender.defense
    clean_scores = d.score(x_calibration)
    threshold = metrics.threshold_at_fpr(clean_scores, fpr)
    more = {f"{f:g}": metrics.threshold_at_fpr(clean_scores, f) for f in more_fprs}
    # The paired control of every level's detection: the same images, clean, at the same threshold
    originals_flagged = d.score(x) > threshold
    rows = []
    for level, step in enumerate(steps):
        if step.targets_for is not None and attacks.registry.lookup(attack[0]).targeting == "never":
            rows.append({"defense": contender.name, "level": level, "knowledge": step.knowledge, "n attacked": len(y),
                         "n successful": 0, "success": float("nan"), "detection": float("nan"),
                         "originals flagged": float("nan"), "overall": float("nan"), "weight": None,
                         "mean_l2": float("nan"), "grad_steps": 0,
                         "note": f"not run: {attack[0]} cannot be targeted (use pgd, fgsm or cw2)"})
            continue
        tried, spent = [], 0
        for weight in (weights if step.loss_for is not None else [None]):
            r, success, scores = adaptive_run(contender, step, x, y, attack, weight, seed=seed, cache=cache)
            spent += r.grad_steps
            flagged = scores > threshold
            detection = float(flagged.float().mean()) if len(flagged) else float("nan")
            rate = float(success.float().mean())
            overall = rate * (1 - (detection if detection == detection else 0.0))
            at_more = {f"detection @ {key}": float((scores > t).float().mean()) if len(scores) else float("nan")
                       for key, t in more.items()}
            clean = float(originals_flagged[success].float().mean()) if success.any() else float("nan")
            tried.append((overall, weight, rate, detection, float(r.l2[success].mean()) if success.any() else float("nan"),
                          int(success.sum()), at_more, clean))
        overall, weight, rate, detection, l2, n_successful, at_more, clean = max(tried, key=lambda t: t[0])
        rows.append({"defense": contender.name, "level": level, "knowledge": step.knowledge, "n attacked": len(y),
                     "n successful": n_successful, "success": rate,
                     "detection": detection, **at_more, "originals flagged": clean, "overall": overall, "weight": weight, "mean_l2": l2,
                     "grad_steps": spent, "note": step.note})
    return rows


def security_table(setup: ComparisonSetup, attack: tuple[str, dict[str, Any]], weights, fpr: float, *, seed: int = 0,
                   cache=None, more_fprs=()):
    """Every defense of ``setup`` that an attacker can learn something about (at least one adaptive attack
    beyond the oblivious one), attacked on the attacked images with the detector-fit images as the
    attacker's own data: one ``security_curve`` per defense, as a DataFrame. ``detection`` is at ``fpr`` (the
    attacker keeps the weight that gets most through at it); ``more_fprs`` add a column each (TPR at 1 % FPR)."""
    import pandas as pd

    params.check("weights", weights, compare_specs.ADAPTIVE_WEIGHTS)
    rows = []
    for c in setup.contenders.values():
        if c.defense is None:
            continue
        steps = c.defense.adaptive_attacks(x_shadow=setup.x_fit, y_shadow=setup.y_fit, attack=attack, seed=seed,
                                           cache=cache)
        if len(steps) > 1:  # no secret to learn (feature squeezing): no curve
            rows += _curve(c, steps, setup.x_att, setup.y_att, setup.x_cal, fpr, attack=attack, weights=weights,
                           seed=seed, cache=cache, more_fprs=more_fprs)
    return pd.DataFrame(rows)


def record_security(security, attack_label: str) -> None:
    """Notebook 90's security curves as named results: detection and overall success per level."""
    for _, row in security.iterrows():
        key, n_successful = f"adaptive.{row['defense']}.level{row['level']}", int(row["n successful"])
        results.record(f"{key}.detection", row["detection"], n=n_successful, proportion=n_successful > 0,
                       note=f"{row['knowledge']}; {attack_label}, best weight {row['weight']}; n: successful examples")
        results.record(f"{key}.overall", row["overall"], n=int(row["n attacked"]), proportion=True,
                       note=row["knowledge"])
