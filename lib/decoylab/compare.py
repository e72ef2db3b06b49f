"""Every defense through the shared interface (``decoylab.defenses.base.Defense``) on the same attacks.

Notebook 41 overlays the ROC curves of all the kit's defenses, each beside its control; the
comparison notebook (90) builds on the same helpers. A defense whose detector learns from
adversarial examples (HoneyModels) gets them from a separate set of images, so every ROC curve
is measured on images no detector has seen.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from decoylab import attacks, metrics, params
from decoylab.defenses.base import Defense

AttackSpecs = dict[str, tuple[str, dict[str, Any]]]

# The adaptive attacks' L∞ budget when it differs from the attacks' own (notebook 90): data range (0, 1].
# Notebook 41's overlay (section 5): notebook 90's settings under their own names.


def attack_sets(model, x: torch.Tensor, y: torch.Tensor, specs: AttackSpecs, *, seed: int = 0, cache=None):
    """``{label: AttackResult}`` for every ``(registry name, settings)`` in ``specs``."""
    return {label: attacks.run(name, model, x, y, seed=seed, cache=cache, **settings)
            for label, (name, settings) in specs.items()}


def prepare(defense: Defense, x_fit: torch.Tensor, y_fit: torch.Tensor, specs: AttackSpecs, *, seed: int = 0,
            cache=None) -> Defense:
    """Train a defense's detector where it learns from adversarial examples (``fit_detector``:
    HoneyModels), on ``x_fit`` and the same attacks; defenses with a fixed score are left as they are."""
    if hasattr(defense, "fit_detector"):
        adv = attack_sets(defense.attacked_model, x_fit, y_fit, specs, seed=seed, cache=cache)
        defense.fit_detector(x_fit, {label: (r.x_adv, r.success) for label, r in adv.items()}, seed=seed)
    return defense


def roc_entries(defense: Defense, x: torch.Tensor, y: torch.Tensor, specs: AttackSpecs, *, seed: int = 0,
                cache=None) -> dict[str, dict[str, Any]]:
    """Per attack crafted on ``defense.attacked_model``: the ROC curve and AUC of ``defense.score``
    on clean ``x`` vs the *successful* adversarial examples, and the attack's success rate
    (``detection_rows`` without the thresholds)."""
    rows = detection_rows(defense, defense.attacked_model, x, y, x, specs, [0.05], seed=seed, cache=cache)
    return {label: {k: r[k] for k in ("roc", "auc", "success")} for label, r in rows.items()}


# --- The comparison notebook (90): every defense on equal terms, then attacked adaptively --------------
DEFENSE_NAMES = ("undefended", "feature_squeezing", "honeymodels", "attractors", "luring", "fingerprints")
#: The comparison's attacks: registry name and settings for MNIST-like data (eps on [0, 1] pixels);
#: ``attack_specs`` rescales the L∞ budgets for colour images.
COMPARISON_ATTACKS = {
    "fgsm": ("fgsm", {"eps": 0.3}),
    "pgd": ("pgd", {"eps": 0.3, "step_size": 0.01, "steps": 40, "random_start": True}),
    "cw2": ("cw2", {"max_iter": 100, "binary_search_steps": 5, "learning_rate": 0.1, "initial_const": 1.0,
            "optimizer": "adam"}),
    "deepfool": ("deepfool", {}),
}
COLOUR_EPS = {"fgsm": 8 / 255, "pgd": 8 / 255}


def check_comparison(*, defenses: Any = None, attacks_: Any = None, fprs: Any = None) -> None:
    """A clear error naming the parameter and what is allowed, before any computation."""
    if defenses is not None:
        if not isinstance(defenses, (list, tuple)) or not defenses:
            raise ValueError(f"DEFENSES={defenses!r} is not allowed; give a non-empty list from {', '.join(DEFENSE_NAMES)}")
        unknown = [d for d in defenses if d not in DEFENSE_NAMES]
        if unknown:
            raise ValueError(f"DEFENSES: unknown defense(s) {unknown}; allowed: {', '.join(DEFENSE_NAMES)}")
        if "undefended" not in defenses:
            raise ValueError("DEFENSES must include 'undefended': every cost is measured against it")
    if attacks_ is not None:
        if not isinstance(attacks_, (list, tuple)) or not attacks_:
            raise ValueError(f"ATTACKS={attacks_!r} is not allowed; give a non-empty list from {', '.join(COMPARISON_ATTACKS)}")
        unknown = [a for a in attacks_ if a not in COMPARISON_ATTACKS]
        if unknown:
            raise ValueError(f"ATTACKS: unknown attack(s) {unknown}; allowed: {', '.join(COMPARISON_ATTACKS)}")
    if fprs is not None:
        if not isinstance(fprs, (list, tuple)) or not fprs:
            raise ValueError(f"FPRS={fprs!r} is not allowed; give a non-empty list of rates in (0, 1)")
        for f in fprs:
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1:
                raise ValueError(f"FPRS: {f!r} is not allowed; every false-positive rate must lie in (0, 1)")


def attack_specs(names, dataset_channels: int, *, pgd_steps: int | None = None, cw_max_iter: int | None = None,
                 cw_binary_steps: int | None = None) -> AttackSpecs:
    """``{label: (registry name, settings)}`` for ``names`` (keys of ``COMPARISON_ATTACKS``)."""
    check_comparison(attacks_=list(names))
    specs = {}
    for label in names:
        name, settings = COMPARISON_ATTACKS[label]
        settings = dict(settings)
        if dataset_channels == 3 and label in COLOUR_EPS:
            settings["eps"] = COLOUR_EPS[label]
            if label == "pgd":
                settings.update(step_size=2 / 255, steps=20)
        if label == "pgd" and pgd_steps is not None:
            settings["steps"] = pgd_steps
        if label == "cw2":
            settings.update({k: v for k, v in (("max_iter", cw_max_iter), ("binary_search_steps", cw_binary_steps))
                             if v is not None})
        specs[label] = (name, settings)
    return specs


class DetectorOnModel(Defense):
    """A control: ``detector``'s score, with a different model under attack — e.g. the Attractors'
    F_d on examples crafted on C alone, where the attacker's gradients never pass through W."""

    def __init__(self, detector: Defense, model: nn.Module, name: str):
        super().__init__()
        self.detector, self.model, self.name = detector, model, name

    def fit(self, train_set) -> "DetectorOnModel":
        return self

    @property
    def attacked_model(self) -> nn.Module:
        return self.model

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.detector.score(x)


@dataclass
class Contender:
    """One column of the comparison: the deployed classifier, its detector (None: undefended) and
    the detector's control, with the seconds it took to build (cached entries report the time
    they took when built)."""
    name: str
    classifier: nn.Module
    defense: Defense | None
    control: Defense | None = None
    control_label: str = ""
    train_seconds: float = 0.0


def _timed(cache, build):
    """``build()`` and its cost in seconds: when it went through the cache, the seconds its entries took
    to build (measured now on a miss, recorded with the entry on a hit — the same on a re-run);
    otherwise its wall time."""
    before, entries, start = cache.build_seconds, cache.hits + cache.misses, time.perf_counter()
    out = build()
    if cache.hits + cache.misses > entries:
        return out, cache.build_seconds - before
    return out, time.perf_counter() - start


def build_contenders(names, train_set, *, model_name: str, train_config, seed: int, cache, settings: dict[str, Any],
                     log=print) -> dict[str, Contender]:
    """Build (or load from the cache) every defense in ``names`` around one base architecture.

    The undefended model, HoneyModels' benign twin, NeuralFP's plain twin, the Attractors' C and
    Luring's target M are the same network (same architecture, data, training and seed, hence the
    same cache entry). ``settings``: watermark_size, poison_percent, fp_n, fp_eps, luring_component,
    luring_component_epochs, luring_component_init, attractor_strength."""
    from decoylab import train as train_mod
    from decoylab.defenses import attractors as at
    from decoylab.defenses import feature_squeezing as fs
    from decoylab.defenses import fingerprints as nf
    from decoylab.defenses import honeymodels as hm
    from decoylab.defenses import luring as lu

    check_comparison(defenses=list(names))
    shape, k = tuple(train_set.x.shape[1:]), train_set.info.num_classes
    common = dict(model_name=model_name, train_config=train_config, seed=seed, cache=cache, log=log)
    base, base_seconds = _timed(cache, lambda: train_mod.train_or_load(
        model_name, train_set.x, train_set.y, k, train_config, seed=seed, cache=cache, log=log))
    out = {"undefended": Contender("undefended", base, None, train_seconds=base_seconds)}
    for name in names:
        if name == "feature_squeezing":
            detector = fs.FeatureSqueezingDetector.for_dataset(base, "cifar10" if shape[0] == 3 else "mnist")
            out[name] = Contender(name, base, detector, None, "none: a detector on the undefended model is itself "
                                  "the baseline; see the clean-vs-clean column", base_seconds)
        elif name == "honeymodels":
            honey = hm.HoneyModel.create(shape, watermark_size=settings["watermark_size"],
                                         poison_percent=settings["poison_percent"], key_seed=seed, **common)
            honey, seconds = _timed(cache, lambda: honey.fit(train_set))
            out[name] = Contender(name, honey.model, honey, honey.benign_twin().fit(train_set),
                                  "the same detector pipeline on the benign model (same key, no poisoning)", seconds)
        elif name == "attractors":
            defense = at.Attractors(strength=settings["attractor_strength"], key_seed=seed, **common)
            defense, seconds = _timed(cache, lambda: defense.protect(base, shape, k))
            out[name] = Contender(name, defense.model, defense, DetectorOnModel(defense, base, "F_d, crafted on C"),
                                  "F_d on examples crafted on C alone (gradients never pass through W)",
                                  base_seconds + seconds)
        elif name == "luring":
            fast_init = settings["luring_component_init"] == "auto"
            luring = lu.Luring("luring", weight=lu.PAPER_WEIGHT[lu.paper_dataset(train_set.info.name) or "mnist"],
                               target_name=model_name, component_name=settings["luring_component"],
                               component_init=settings["luring_component_init"], seed=seed, cache=cache, log=log,
                               target_config=train_config,
                               train_config=train_mod.TrainConfig(epochs=settings["luring_component_epochs"],
                                                                  batch_size=32 if fast_init else 64,
                                                                  lr=3e-3 if fast_init else 1e-3))
            luring, seconds = _timed(cache, lambda: luring.fit(train_set))
            out[name] = Contender(name, luring.model, luring, luring.twin("ce").fit(train_set),
                                  "the C_E baseline: the same M and P trained to mimic M, no luring loss", seconds)
        elif name == "fingerprints":
            nfp = nf.NeuralFingerprinting.create(shape, k, n=settings["fp_n"], eps=settings["fp_eps"],
                                                 fingerprint_seed=seed, **common)
            nfp, seconds = _timed(cache, lambda: nfp.fit(train_set))
            out[name] = Contender(name, nfp.model, nfp, nfp.plain_twin().fit(train_set),
                                  "the same probes on the net trained without fingerprints", seconds)
    return out


def comparison_splits(num_test: int, *, n_calibration: int, n_detector_fit: int, n_attack: int,
                      seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three disjoint, seeded index sets of the test split: calibration (thresholds), detector-fit
    (HoneyModels' detector and the adaptive attacker's own data) and the attack pool (everything
    else, from which the attacked images are drawn)."""
    needed = n_calibration + n_detector_fit + n_attack
    if needed > num_test:
        raise ValueError(f"n_calibration + n_detector_fit + n_attack = {needed} but the test split has only "
                         f"{num_test} images; lower N_CALIBRATION, N_DETECTOR_FIT or N_ATTACK")
    order = torch.randperm(num_test, generator=torch.Generator().manual_seed(seed))
    return order[:n_calibration], order[n_calibration:n_calibration + n_detector_fit], order[n_calibration + n_detector_fit:]


def calibrate_and_prepare(contenders: dict[str, Contender], x_cal: torch.Tensor, x_fit: torch.Tensor,
                          y_fit: torch.Tensor, specs: AttackSpecs, fpr: float, *, seed: int = 0, cache=None) -> None:
    """Each detector (and its control) on its own splits: clean statistics from the calibration images
    (Attractors' C1-C3), detectors that learn from adversarial examples from the detector-fit images."""
    for c in contenders.values():
        for d in (c.defense, c.control):
            if d is not None and hasattr(d, "reference"):
                d.calibrate(x_cal, fpr)
            if d is not None:
                prepare(d, x_fit, y_fit, specs, seed=seed, cache=cache)


def correct_everywhere(contenders: dict[str, Contender], x: torch.Tensor, y: torch.Tensor,
                       minimum: int = 10) -> torch.Tensor:
    """Mask of the images every contender's classifier gets right (the attacked images are drawn from
    them, so a success rate means the same thing for every defense); a clear error below ``minimum``."""
    from decoylab import train as train_mod

    correct = {name: train_mod.predict(c.classifier, x).argmax(1) == y for name, c in contenders.items()}
    everywhere = torch.stack(list(correct.values())).all(0)
    if int(everywhere.sum()) < minimum:
        raise RuntimeError(f"fewer than {minimum} pool images are classified correctly by every contender; pool "
                           "accuracy: " + ", ".join(f"{n} {float(v.float().mean()):.2f}" for n, v in correct.items())
                           + ". Train longer (EPOCHS, N_TRAIN) or leave the weakest defense out of DEFENSES.")
    return everywhere


def component_for(shape: tuple[int, ...], preferred: str, dataset: str) -> str:
    """Luring's component P for images shaped ``shape``: ``preferred`` when it takes them, else the
    paper's component for ``dataset`` (Appendix B), else the first one that does. A clear error when
    none does."""
    from decoylab import models
    from decoylab.defenses import luring as lu

    paper = lu.PAPER_ARCHITECTURES.get(lu.paper_dataset(dataset) or "", (None, None))[1]
    for name in dict.fromkeys([preferred, paper, *models.COMPONENTS]):
        if name is None:
            continue
        try:
            models.build_component(name, shape)
        except (ValueError, RuntimeError):
            continue
        return name
    raise ValueError(f"no Luring component takes {dataset} images shaped {tuple(shape)} "
                     f"(allowed components: {', '.join(models.COMPONENTS)}); leave 'luring' out of DEFENSES")


@dataclass
class ComparisonSetup:
    """Everything sections 1-2 of notebook 90 build for one dataset: the contenders and the three splits."""
    dataset: str
    train_set: Any
    test_set: Any
    contenders: dict[str, Contender]
    specs: AttackSpecs
    settings: dict[str, Any]
    x_cal: torch.Tensor
    x_fit: torch.Tensor
    y_fit: torch.Tensor
    x_att: torch.Tensor
    y_att: torch.Tensor
    pool_size: int
    pool_correct: int


def prepare_comparison(dataset: str, *, defenses, attacks_, model_name: str, train_config, settings: dict[str, Any],
                       n_train: int | None, n_calibration: int, n_detector_fit: int, n_attack: int, fpr: float,
                       pgd_steps: int | None = None, cw_max_iter: int | None = None, cw_binary_steps: int | None = None,
                       data_root=None, seed: int = 0, cache=None, log=None) -> ComparisonSetup:
    """Sections 1-2 of notebook 90 for one dataset in one call (the notebook's dataset widget runs it for
    the datasets the parameters did not name): data, splits, contenders, detectors calibrated and fitted,
    attacked images. A Luring component that cannot take the dataset's images is replaced by one that can
    (``component_for``). Bad names raise before any data is read."""
    from decoylab import data

    check_comparison(defenses=list(defenses), attacks_=list(attacks_), fprs=[fpr])
    data.check_name(dataset, "dataset")
    train_set = data.load(dataset, "train", n=n_train, seed=seed, data_root=data_root)
    test_set = data.load(dataset, "test", seed=seed, data_root=data_root)
    shape = tuple(train_set.x.shape[1:])
    cal_idx, fit_idx, pool_idx = comparison_splits(len(test_set.y), n_calibration=n_calibration,
                                                   n_detector_fit=n_detector_fit, n_attack=n_attack, seed=seed)
    if "luring" in defenses:
        settings = {**settings, "luring_component": component_for(shape, settings["luring_component"], dataset)}
    contenders = build_contenders(defenses, train_set, model_name=model_name, train_config=train_config, seed=seed,
                                  cache=cache, settings=settings, log=log)
    specs = attack_specs(attacks_, shape[0], pgd_steps=pgd_steps, cw_max_iter=cw_max_iter,
                         cw_binary_steps=cw_binary_steps)
    x_cal, x_fit, y_fit = test_set.x[cal_idx], test_set.x[fit_idx], test_set.y[fit_idx]
    calibrate_and_prepare(contenders, x_cal, x_fit, y_fit, specs, fpr, seed=seed, cache=cache)
    pool_x, pool_y = test_set.x[pool_idx], test_set.y[pool_idx]
    keep = correct_everywhere(contenders, pool_x, pool_y)
    return ComparisonSetup(dataset, train_set, test_set, contenders, specs, settings, x_cal, x_fit, y_fit,
                           pool_x[keep][:n_attack], pool_y[keep][:n_attack], len(pool_y), int(keep.sum()))


def clean_accuracy(contender: Contender, x: torch.Tensor, y: torch.Tensor) -> float:
    from decoylab import train as train_mod

    return train_mod.accuracy(contender.classifier, x, y)


def inference_seconds(contender: Contender, x: torch.Tensor, repeats: int = 2) -> float:
    """Best of ``repeats`` wall times to classify *and* score ``x`` (the deployed cost)."""
    from decoylab import train as train_mod

    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        train_mod.predict(contender.classifier, x)
        if contender.defense is not None:
            contender.defense.score(x)
        best = min(best, time.perf_counter() - start)
    return best


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
        model = c.classifier if c.defense is None else c.defense.attacked_model
        adv = attack_sets(model, setup.x_att, setup.y_att, setup.specs, seed=seed, cache=cache)
        measured = detection_rows(c.defense, model, setup.x_att, setup.y_att, setup.x_cal, setup.specs, fprs,
                                  seed=seed, adversarial=adv) if c.defense is not None else {}
        control = detection_rows(c.control, c.control.attacked_model, setup.x_att, setup.y_att, setup.x_cal,
                                 setup.specs, fprs, seed=seed, cache=cache) if c.control is not None else {}
        clean_control = clean_vs_clean_auc(c.defense, setup.x_cal, seed=seed) if c.defense is not None else np.nan
        for attack, r in adv.items():
            m, k = measured.get(attack, {}), control.get(attack, {})
            rows.append({"defense": name, "attack": attack, "success": r.success_rate,
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

class FrozenFeatures(nn.Module):
    """``model`` with the gradient on some input features held at zero (a key-avoiding attacker):
    the forward pass is unchanged; sign-gradient and Adam attacks then never move those features."""

    def __init__(self, model: nn.Module, feature_indices: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("feature_indices", feature_indices.long().clone())  # part of the state (cache keys)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(x[0].numel(), device=x.device)
        mask[self.feature_indices] = 1.0
        mask = mask.view_as(x[0])
        return self.model(x * (1 - mask) + x.detach() * mask)


def estimate_watermark_key(model: nn.Module, x_shadow: torch.Tensor, y_shadow: torch.Tensor, size: int,
                           attack: tuple[str, dict[str, Any]], *, seed: int = 0, cache=None) -> torch.Tensor:
    """The averaging attack against an additive watermark (Injected Attractors §IV-C, on HoneyModels):
    attack the attacker's own images, average the perturbations of the successful ones, and take
    the ``size`` features with the largest mean |δ| as the estimated key. Returns flat indices."""
    name, settings = attack
    r = attacks.run(name, model, x_shadow, y_shadow, seed=seed, cache=cache, **settings)
    keep = r.success if r.success.any() else torch.ones_like(r.success)
    mean_delta = (r.x_adv[keep] - x_shadow[keep].cpu()).flatten(1).mean(0)
    return mean_delta.abs().topk(size).indices.sort().values


def luring_agreement_loss(luring, weight: float):
    """Extra loss for a Luring-aware attacker on M∘P: make M fail too (−CE of M on the labels) and
    keep M∘P's and M's outputs alike (KL), so the disagreement detector sees nothing."""
    target = luring.target

    def loss(adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        log_m = F.log_softmax(target(adv), 1)
        log_mp = F.log_softmax(luring.model(adv), 1)
        agreement = (log_mp.exp() * (log_mp - log_m)).sum(1)
        return weight * (agreement - F.nll_loss(log_m, labels, reduction="none"))
    return loss


@dataclass
class AdaptiveStep:
    """One point of a security curve: what the attacker knows, and how it attacks."""
    knowledge: str
    model: nn.Module
    loss_for: Any = None  # weight -> extra_loss for the attack engine's hook (None: no defense-aware term)
    loss_key_for: Any = None  # weight -> what that term depends on, so the attack is cached (attacks.run)
    success_model: nn.Module | None = None  # where success is judged (default: the deployed classifier)
    note: str = ""


def adaptive_steps(contender: Contender, *, x_shadow: torch.Tensor, y_shadow: torch.Tensor,
                   attack: tuple[str, dict[str, Any]], seed: int = 0, cache=None) -> list[AdaptiveStep]:
    """The issue's adaptive attacks, ordered by what the attacker knows (level 0 = oblivious)."""
    import sys

    from decoylab.attacks import BPDA
    from decoylab.cache import code_version, model_identity
    from decoylab.defenses import attractors as at

    d, name = contender.defense, contender.name
    oblivious = AdaptiveStep("0 · oblivious (white-box on the deployed model)", contender.classifier)
    if name == "honeymodels":
        estimate = estimate_watermark_key(d.model, x_shadow, y_shadow, len(d.key.indices), attack, seed=seed,
                                          cache=cache)
        overlap = len(set(estimate.tolist()) & set(d.key.indices.tolist())) / len(d.key.indices)
        return [oblivious,
                AdaptiveStep("1 · estimates the key by averaging perturbations", FrozenFeatures(d.model, estimate),
                             note=f"estimated key overlaps the true key on {100 * overlap:.0f} % of its features "
                                  f"(chance {100 * len(estimate) / x_shadow[0].numel():.0f} %)"),
                AdaptiveStep("2 · knows the key, leaves its features alone", FrozenFeatures(d.model, d.key.indices))]

    def term_key(term: str, **depends_on):
        """What a defense-aware term computes from (besides the attacked model), for the attack cache."""
        code = code_version(sys.modules[__name__], sys.modules[type(d).__module__])
        return lambda weight: {"term": term, "weight": weight, "code": code, **depends_on}

    if name == "attractors":
        served = BPDA(d.integrated_model(), at.quantise_8bit)
        return [oblivious,
                AdaptiveStep("1 · BPDA on the integrated model M_(d,r) behind 8-bit input", served,
                             success_model=served, note="success judged on M_(d,r) (recovery included)"),
                AdaptiveStep("2 · knows the decomposition: attacks C alone", d.classifier),
                AdaptiveStep("3 · attacks C and keeps W's statistics clean", d.classifier,
                             loss_for=d.adaptive_loss,
                             loss_key_for=term_key("attractors_detector_score", combined=model_identity(d.model),
                                                   reference=d.reference))]
    if name == "luring":
        return [AdaptiveStep("0 · the paper's setting: white-box on M∘P, M hidden", contender.classifier),
                AdaptiveStep("1 · knows M: attacks M directly", d.target),
                AdaptiveStep("2 · knows M and P: M∘P with an agreement term", contender.classifier,
                             loss_for=lambda w: luring_agreement_loss(d, w),
                             loss_key_for=term_key("luring_agreement"))]  # M is part of M∘P, the attacked model
    if name == "fingerprints":
        fingerprints = {"dx": d.fingerprints.dx, "dy": d.fingerprints.dy}
        return [oblivious,
                AdaptiveStep("1 · the paper's adaptive term (L_fp of the true labels)", contender.classifier,
                             loss_for=lambda w: d.adaptive_loss("attack_labels", w),
                             loss_key_for=term_key("fingerprints_attack_labels", **fingerprints)),
                AdaptiveStep("2 · minimises min over classes of D", contender.classifier,
                             loss_for=lambda w: d.adaptive_loss("min_class", w),
                             loss_key_for=term_key("fingerprints_min_class", **fingerprints))]
    return []


def security_curve(contender: Contender, x: torch.Tensor, y: torch.Tensor, x_calibration: torch.Tensor, fpr: float,
                   *, attack: tuple[str, dict[str, Any]], weights, x_shadow: torch.Tensor, y_shadow: torch.Tensor,
                   seed: int = 0, cache=None) -> list[dict[str, Any]]:
    """Detection (TPR at ``fpr`` on successful examples), success and overall success per knowledge
    level, with the attacker's cost: gradient steps (summed over the weights tried) and mean L2 of
    successful examples. Where the attacker adds a defense-aware term, it tries every weight in
    ``weights`` and keeps the one with the highest overall success — it knows the detector, so it can
    measure that itself (Carlini & Wagner 2017's practice for adaptive attacks). With a ``cache``, every
    attack is cached: the engine keys it by model and images, and a defense-aware term by what
    ``adaptive_steps`` says it depends on (the defense's secrets and weights, the weight, the code)."""
    from decoylab import train as train_mod

    d = contender.defense
    threshold = metrics.threshold_at_fpr(d.score(x_calibration), fpr)
    name, settings = attack
    rows = []
    for level, step in enumerate(adaptive_steps(contender, x_shadow=x_shadow, y_shadow=y_shadow, attack=attack,
                                                seed=seed, cache=cache)):
        tried, spent = [], 0
        for weight in (weights if step.loss_for is not None else [None]):
            extra = step.loss_for(weight) if weight is not None else None
            key = step.loss_key_for(weight) if weight is not None and step.loss_key_for is not None else None
            r = attacks.run(name, step.model, x, y, seed=seed, extra_loss=extra, extra_loss_key=key, cache=cache,
                            **settings)
            spent += r.grad_steps
            success = train_mod.predict(step.success_model or contender.classifier, r.x_adv).argmax(1) != y.cpu()
            flagged = d.score(r.x_adv[success]) > threshold if success.any() else torch.zeros(0, dtype=torch.bool)
            detection = float(flagged.float().mean()) if len(flagged) else float("nan")
            rate = float(success.float().mean())
            overall = rate * (1 - (detection if detection == detection else 0.0))
            tried.append((overall, weight, rate, detection, float(r.l2[success].mean()) if success.any() else float("nan")))
        overall, weight, rate, detection, l2 = max(tried, key=lambda t: t[0])
        rows.append({"defense": contender.name, "level": level, "knowledge": step.knowledge, "success": rate,
                     "detection": detection, "overall": overall, "weight": weight, "mean_l2": l2,
                     "grad_steps": spent, "note": step.note})
    return rows
