"""HoneyModels (Abdou, Sheatsley, Beugin, Shipp, McDaniel, "HoneyModels: Machine Learning Honeypots",
MILCOM 2021, §III-C): a model self-poisoned with a secret watermark, so that gradient attacks write the
watermark onto their adversarial examples.

- ``WatermarkKey`` — §III-C-1: which features (a fraction ``watermark_size`` of them) and how
  (``amplitude``, with a secret sign per feature); from a CSPRNG unless a seed is given.
- ``poison`` — §III-C-2: the watermark on ``poison_percent`` % of every class, each poisoned
  label flipped uniformly to another class.
- ``reconstruction`` — §III-C-3: cosine similarity between the watermark W and what the attack
  wrote on the key's features (Ŵ).
- ``train_detector`` / ``HoneyModel.fit_detector`` — §III-C-4 and §IV-B (Table I): logistic regression
  on the key's features, clean vs adversarial, per attack and overall; ``score`` uses the overall one.
- ``HoneyModel`` — the shared defense interface; ``control()`` is the benign model (same key, no
  poisoning); ``adaptive_attacks`` adds a key-estimating and a key-knowing attacker (``FrozenFeatures``).

The paper has no public code; every reading below is a choice, listed in notebook 10's
"Choices the paper leaves open". The paper's tables and experiments are in ``decoylab.experiments.honeymodels``.
"""
from __future__ import annotations

import secrets
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from decoylab import metrics, params, train
from decoylab.defenses.base import AdaptiveAttack, NotFittedError, TrainedDefense
from decoylab.specs import honeymodels as spec

READINGS = spec.READINGS
SAMPLES = spec.SAMPLES


@dataclass(frozen=True)
class WatermarkKey:
    """The secret of §III-C-1: ``indices`` of the watermarked features (flattened) and a sign per
    feature; the watermark moves each of them by ``amplitude`` in its sign's direction (clipped to
    [0, 1]). With amplitude 1.0, the paper's setting, the watermark sets those pixels to 0 or 1."""
    shape: tuple[int, ...]
    indices: torch.Tensor
    signs: torch.Tensor
    amplitude: float
    watermark_size: float
    seeded: bool = field(default=False)

    @classmethod
    def generate(cls, shape: tuple[int, ...], watermark_size: float, amplitude: float = 1.0,
                 seed: int | None = None) -> "WatermarkKey":
        """A new key; from the OS CSPRNG (``secrets``) unless ``seed`` is given for a reproducible study."""
        params.check("watermark_size", watermark_size, spec.WATERMARK_SIZE)
        params.check("amplitude", amplitude, spec.AMPLITUDE)
        n_features = int(np.prod(shape))
        count = max(1, int(round(watermark_size * n_features)))
        rng = np.random.default_rng(seed if seed is not None else secrets.randbits(128))
        indices = np.sort(rng.choice(n_features, size=count, replace=False))
        signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=count)
        return cls(tuple(int(s) for s in shape), torch.from_numpy(indices).long(), torch.from_numpy(signs),
                   float(amplitude), float(watermark_size), seed is not None)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The watermarked copy of ``x`` (N, *shape)."""
        flat = x.flatten(1).clone()
        flat[:, self.indices] = (flat[:, self.indices] + self.amplitude * self.signs.to(x.device)).clamp(0, 1)
        return flat.view_as(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The key's features of each input, (N, k): what the detector sees."""
        return x.flatten(1)[:, self.indices.to(x.device)]

    def pattern(self) -> torch.Tensor:
        """The watermark as a displayable image (Fig. 3), shaped (1, *shape) in [0, 1]: white where the
        key pushes a feature up, black where it pushes down, grey elsewhere."""
        img = torch.full((int(np.prod(self.shape)),), 0.5)
        img[self.indices] = 0.5 + 0.5 * self.signs
        return img.view(1, *self.shape)

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "indices": self.indices, "signs": self.signs, "amplitude": self.amplitude,
                "watermark_size": self.watermark_size, "seeded": self.seeded}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WatermarkKey":
        return cls(tuple(d["shape"]), d["indices"].long(), d["signs"].float(), float(d["amplitude"]),
                   float(d["watermark_size"]), bool(d["seeded"]))


@dataclass
class PoisonedSet:
    x: torch.Tensor
    y: torch.Tensor
    poisoned: torch.Tensor  # bool per training image


def poison(x: torch.Tensor, y: torch.Tensor, key: WatermarkKey, poison_percent: float, num_classes: int,
           seed: int = 0) -> PoisonedSet:
    """§III-C-2: watermark ``poison_percent`` % (in [0, 100), checked by ``HoneyModel``) of the images
    *of every class* (so each class is poisoned equally) and flip each poisoned label to a uniformly
    drawn other class."""
    g = torch.Generator().manual_seed(seed)
    chosen = torch.zeros(len(y), dtype=torch.bool)
    for k in range(num_classes):
        members = (y == k).nonzero().flatten()
        count = int(round(poison_percent / 100 * len(members)))
        chosen[members[torch.randperm(len(members), generator=g)[:count]]] = True
    x_out, y_out = x.clone(), y.clone()
    x_out[chosen] = key.apply(x[chosen])
    shift = torch.randint(1, num_classes, (int(chosen.sum()),), generator=g)
    y_out[chosen] = (y[chosen] + shift) % num_classes
    return PoisonedSet(x_out, y_out, chosen)


def reconstruction(key: WatermarkKey, x_adv: torch.Tensor, x: torch.Tensor,
                   reading: str = "perturbation") -> torch.Tensor:
    """§III-C-3, Sim(W, Ŵ) = W·Ŵ / (‖W‖‖Ŵ‖) per sample, on the key's features.

    ``reading="perturbation"`` (default): W = what the watermark would change on x (key.apply(x) − x),
    Ŵ = what the attack changed (x_adv − x) — does the attack move toward the watermark?
    ``reading="raw"``: W = the watermarked input's values, Ŵ = the adversarial input's raw values;
    this is high even for a clean input (both are mostly image content), so it needs its clean control.
    """
    params.check("reading", reading, spec.READING)
    if x_adv.shape != x.shape:
        raise ValueError(f"x_adv {tuple(x_adv.shape)} and x {tuple(x.shape)} must have the same shape")
    watermarked = key.features(key.apply(x))
    if reading == "raw":
        return metrics.cosine(watermarked, key.features(x_adv))
    original = key.features(x)
    return metrics.cosine(watermarked - original, key.features(x_adv) - original)


@dataclass
class DetectorReport:
    """Held-out detection results (Table I layout): per attack and "overall"."""
    rows: dict[str, dict[str, Any]]

    def frame(self):
        import pandas as pd

        return pd.DataFrame({name: {k: v for k, v in row.items() if k != "roc"} for name, row in self.rows.items()}).T


def _detector(seed: int):
    # The closest public pattern (LID code): LogisticRegressionCV on min-max-scaled features.
    # Balanced class weights, because "overall" sees three adversarial sets per clean set.
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    return make_pipeline(MinMaxScaler(), LogisticRegressionCV(Cs=10, cv=5, max_iter=2000, class_weight="balanced",
                                                              random_state=seed))


def _detector_state(detector) -> list[dict[str, Any]]:
    """The fitted numbers of each pipeline step (arrays as tensors, ints, floats): enough to predict, and
    loadable with ``weights_only=True``; the cross-validation bookkeeping (dicts, object arrays) is left out."""
    def plain(v):
        return (isinstance(v, np.ndarray) and v.dtype != object) or isinstance(v, (int, float))

    return [{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in vars(step).items()
             if k.endswith("_") and plain(v)} for _, step in detector.steps]


def _detector_from_state(state: list[dict[str, Any]]):
    detector = _detector(0)  # the seed only matters for fitting
    for (_, step), fitted in zip(detector.steps, state):
        for k, v in fitted.items():
            setattr(step, k, v.numpy() if isinstance(v, torch.Tensor) else v)
    return detector


def train_detector(key: WatermarkKey, x_clean: torch.Tensor, adversarial: dict[str, tuple[torch.Tensor, torch.Tensor]],
                   *, test_fraction: float = 0.2, seed: int = 0, samples: str = "successful"
                   ) -> tuple[Any, DetectorReport]:
    """Logistic regression on the key's features, clean vs adversarial (§III-C-4, Table I).

    ``adversarial[name] = (x_adv, success)`` holds each attack's output on the *same* images as
    ``x_clean``. ``samples="successful"`` keeps only successful adversarial examples;
    ``"all"`` keeps every output, failures included (for CW, a failure is the unchanged image,
    as ART returns it) — what the paper may have done. The split is by image (80/20 by
    default), so an image's clean and adversarial versions never sit on both sides. One detector
    per attack (clean vs that attack) and one "overall" (clean vs all attacks); the overall one
    is returned for ``score``.
    """
    params.check("test_fraction", test_fraction, spec.TEST_FRACTION)
    params.check("samples", samples, spec.SAMPLE_KIND)
    n = len(x_clean)
    for name, (x_adv, success) in adversarial.items():
        if len(x_adv) != n or len(success) != n:
            raise ValueError(f"adversarial[{name!r}] has {len(x_adv)} inputs; it must hold one per clean input ({n})")
    g = torch.Generator().manual_seed(seed)
    is_test = torch.zeros(n, dtype=torch.bool)
    is_test[torch.randperm(n, generator=g)[:max(1, int(round(test_fraction * n)))]] = True
    clean_f = key.features(x_clean).numpy()
    # Each attack's key features and the examples it contributes, computed once for all detectors.
    adv_f = {name: (key.features(x_adv).numpy(), success.bool() if samples == "successful" else torch.ones(n, dtype=torch.bool))
             for name, (x_adv, success) in adversarial.items()}

    def fit_and_score(names: list[str]):
        def stack(side: torch.Tensor):
            feats = [clean_f[side.numpy()]]
            labels = [np.zeros(int(side.sum()))]
            for name in names:
                feats_all, usable = adv_f[name]
                keep = (side & usable).numpy()
                feats.append(feats_all[keep])
                labels.append(np.ones(int(keep.sum())))
            return np.concatenate(feats), np.concatenate(labels)

        x_tr, y_tr = stack(~is_test)
        x_te, y_te = stack(is_test)
        if y_tr.min() == y_tr.max() or y_te.min() == y_te.max():
            return None, {"acc": float("nan"), "fpr": float("nan"), "tpr": float("nan"), "auc": float("nan"),
                          "n_train": len(y_tr), "n_test": len(y_te), "roc": None}
        with warnings.catch_warnings():  # scikit-learn's notices about future defaults
            warnings.simplefilter("ignore", FutureWarning)
            model = _detector(seed).fit(x_tr, y_tr)
        prob = model.predict_proba(x_te)[:, 1]
        r = metrics.rates(y_te, prob > 0.5)
        return model, {**r.as_dict(), "auc": metrics.auc(y_te, prob), "n_train": len(y_tr), "n_test": len(y_te),
                       "n_test_adversarial": r.n_adversarial, "roc": metrics.roc(y_te, prob)}

    rows = {name: fit_and_score([name])[1] for name in adversarial}
    overall, rows["overall"] = fit_and_score(list(adversarial))
    return overall, DetectorReport(rows)


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
    """The averaging attack against an additive watermark (Zhang, Chang, Lee, "Detection and Recovery of
    Adversarial Attacks with Injected Attractors", §IV-C, applied to HoneyModels): attack the attacker's
    own images, average the perturbations of the successful ones, and take the ``size`` features with the
    largest mean |δ| as the estimated key. Returns flat indices."""
    from decoylab import attacks

    name, settings = attack
    r = attacks.run(name, model, x_shadow, y_shadow, seed=seed, cache=cache, **settings)
    keep = r.success if r.success.any() else torch.ones_like(r.success)
    mean_delta = (r.x_adv[keep] - x_shadow[keep].cpu()).flatten(1).mean(0)
    return mean_delta.abs().topk(size).indices.sort().values


class HoneyModel(TrainedDefense):
    """A model trained on data self-poisoned with a secret watermark (§III-C), plus its detector.

    ``poison_percent=0`` gives the benign model with the same key: the control for every result.
    """
    name = "honeymodels"
    control_description = "the same detector pipeline on the benign model (same key, no poisoning)"

    def __init__(self, key: WatermarkKey, poison_percent: float, *, model_name: str = "honey_small_conv",
                 train_config: train.TrainConfig | None = None, seed: int = 0, cache=None, device: str | None = None,
                 log: Callable[[str], None] | None = print):
        params.check("poison_percent", poison_percent, spec.POISON_PERCENT)
        super().__init__(model_name=model_name, train_config=train_config, seed=seed, cache=cache, device=device,
                         log=log)
        self.key = key
        self.poison_percent = float(poison_percent)
        self.num_classes: int | None = None
        self.poisoned: PoisonedSet | None = None
        self.detector = None
        self.report: DetectorReport | None = None

    @classmethod
    def create(cls, shape: tuple[int, ...], *, watermark_size: float, amplitude: float = 1.0, poison_percent: float,
               key_seed: int | None = None, **kwargs) -> "HoneyModel":
        """Draw the key (CSPRNG unless ``key_seed``) and build the defense; every setting is checked
        before any training (the key's by ``WatermarkKey.generate``, the poison's by the constructor)."""
        return cls(WatermarkKey.generate(shape, watermark_size, amplitude, key_seed), poison_percent, **kwargs)

    def control(self) -> "HoneyModel":
        """The benign model: same key, architecture, training and seed, but no poisoning (unfitted)."""
        return HoneyModel(self.key, 0.0, model_name=self.model_name, train_config=self.train_config, seed=self.seed,
                          cache=self.cache, device=self.device, log=self.log)

    def fit(self, train_set) -> "HoneyModel":
        if tuple(train_set.x.shape[1:]) != self.key.shape:
            raise ValueError(f"the key is for inputs shaped {self.key.shape}; the training set has "
                             f"{tuple(train_set.x.shape[1:])}")
        self.num_classes = train_set.info.num_classes
        self.poisoned = poison(train_set.x, train_set.y, self.key, self.poison_percent, self.num_classes, self.seed)
        self.model = train.train_or_load(self.model_name, self.poisoned.x, self.poisoned.y, self.num_classes,
                                         self.train_config, seed=self.seed, cache=self.cache, device=self.device,
                                         log=self.log)
        return self

    def reconstruction(self, x_adv: torch.Tensor, x: torch.Tensor, reading: str = "perturbation") -> torch.Tensor:
        return reconstruction(self.key, x_adv, x, reading)

    def fit_detector(self, x_clean: torch.Tensor, adversarial: dict[str, tuple[torch.Tensor, torch.Tensor]], *,
                     test_fraction: float = 0.2, seed: int = 0, samples: str = "successful") -> DetectorReport:
        self.detector, self.report = train_detector(self.key, x_clean, adversarial, test_fraction=test_fraction,
                                                    seed=seed, samples=samples)
        return self.report

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """The overall detector's probability that ``x`` is adversarial (from the key's features)."""
        if self.detector is None:
            raise NotFittedError("HoneyModel: call fit_detector(x_clean, adversarial) before score(x)")
        return torch.from_numpy(self.detector.predict_proba(self.key.features(x.cpu()).numpy())[:, 1]).float()

    def adaptive_attacks(self, *, x_shadow: torch.Tensor, y_shadow: torch.Tensor, attack: tuple[str, dict[str, Any]],
                         seed: int = 0, cache=None) -> list[AdaptiveAttack]:
        """Level 1 estimates the key from its own attacks' mean perturbation (``estimate_watermark_key``) and
        leaves those features alone; level 2 knows the key and leaves its features alone (``FrozenFeatures``)."""
        model = self.attacked_model
        estimate = estimate_watermark_key(model, x_shadow, y_shadow, len(self.key.indices), attack, seed=seed,
                                          cache=cache)
        overlap = len(set(estimate.tolist()) & set(self.key.indices.tolist())) / len(self.key.indices)
        return [self.oblivious_attack(),
                AdaptiveAttack("1 · estimates the key by averaging perturbations", FrozenFeatures(model, estimate),
                               note=f"estimated key overlaps the true key on {100 * overlap:.0f} % of its features "
                                    f"(chance {100 * len(estimate) / x_shadow[0].numel():.0f} %)"),
                AdaptiveAttack("2 · knows the key, leaves its features alone", FrozenFeatures(model, self.key.indices))]

    def save(self, path: str | Path) -> Path:
        """Weights, key, settings, training configuration, the fitted detector and the threshold in one file,
        written to a temporary file and renamed."""
        if self.num_classes is None:
            raise NotFittedError("HoneyModel: call fit(train_set) before save(path)")
        config = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.train_config).items()}
        payload = {"key": self.key.to_dict(), "poison_percent": self.poison_percent, "num_classes": self.num_classes,
                   "train_config": config, "threshold": self.threshold, "calibrated_fpr": self.calibrated_fpr}
        if self.detector is not None:
            payload["detector"] = _detector_state(self.detector)
        return self._save(path, payload)

    @classmethod
    def load(cls, path: str | Path, *, cache=None, device: str | None = None,
             log: Callable[[str], None] | None = print) -> "HoneyModel":
        """The defense ``save`` wrote, ready to attack and score (no training)."""
        stored = torch.load(Path(path), weights_only=True, map_location="cpu")
        key = WatermarkKey.from_dict(stored["key"])
        config = {k: tuple(v) if isinstance(v, list) else v for k, v in stored["train_config"].items()}
        honey = cls(key, stored["poison_percent"], model_name=stored["model_name"], seed=stored["seed"],
                    train_config=train.TrainConfig(**config), cache=cache, device=device, log=log)
        honey.num_classes = stored["num_classes"]
        honey._restore_model(stored, key.shape, honey.num_classes)
        if "detector" in stored:
            honey.detector = _detector_from_state(stored["detector"])
        honey.threshold, honey.calibrated_fpr = stored["threshold"], stored["calibrated_fpr"]
        return honey
