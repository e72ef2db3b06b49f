"""HoneyModels (Abdou et al., shared/papers/000, §III-C): a model self-poisoned with a secret
watermark, so that gradient attacks write the watermark onto their adversarial examples.

- ``WatermarkKey`` — §III-C-1: which features (a fraction ``watermark_size`` of them) and how
  (``amplitude``, with a secret sign per feature); from a CSPRNG unless a seed is given.
- ``poison`` — §III-C-2: the watermark on ``poison_percent`` % of every class, each poisoned
  label flipped uniformly to another class.
- ``reconstruction`` — §III-C-3: cosine similarity between the watermark W and what the attack
  wrote on the key's features (Ŵ).
- ``HoneyModel.fit_detector`` — §III-C-4 and §IV-B (Table I): logistic regression on the key's
  features, clean vs adversarial, per attack and overall.

The paper has no public code; every reading below is a choice, listed in notebook 10's
"Choices the paper leaves open".
"""
from __future__ import annotations

import secrets
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from decoylab import metrics, paper_values, params, train
from decoylab.defenses.base import NotFittedError, TrainedDefense

READINGS = ("perturbation", "raw")
SAMPLES = ("successful", "all")



def check_settings(*, watermark_size: float | None = None, amplitude: float | None = None,
                   poison_percent: float | None = None) -> None:
    """Raise a ValueError naming each bad setting and what is allowed (before any training)."""
    problems = []
    if watermark_size is not None and not (isinstance(watermark_size, (int, float)) and 0 < watermark_size <= 1):
        problems.append(f"watermark_size={watermark_size!r} is not allowed; it is a fraction of the features in (0, 1]")
    if amplitude is not None and not (isinstance(amplitude, (int, float)) and 0 < amplitude <= 1):
        problems.append(f"amplitude={amplitude!r} is not allowed; it must lie in the data range (0, 1] "
                        f"(pixels are on [0, 1])")
    if poison_percent is not None and not (isinstance(poison_percent, (int, float)) and 0 <= poison_percent < 100):
        problems.append(f"poison_percent={poison_percent!r} is not allowed; it must be in [0, 100)")
    if problems:
        raise ValueError("; ".join(problems))


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
        check_settings(watermark_size=watermark_size, amplitude=amplitude)
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
    """§III-C-2: watermark ``poison_percent`` % of the images *of every class* (so each class is
    poisoned equally) and flip each poisoned label to a uniformly drawn other class."""
    check_settings(poison_percent=poison_percent)
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
    if reading not in READINGS:
        raise ValueError(f"reading={reading!r} is not allowed; allowed: {', '.join(READINGS)}")
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
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction!r} is not allowed; it must be in (0, 1)")
    if samples not in SAMPLES:
        raise ValueError(f"samples={samples!r} is not allowed; allowed: {', '.join(SAMPLES)}")
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


class HoneyModel(TrainedDefense):
    """A model trained on data self-poisoned with a secret watermark (§III-C), plus its detector.

    ``poison_percent=0`` gives the benign model with the same key: the control for every result.
    """
    name = "honeymodels"

    def __init__(self, key: WatermarkKey, poison_percent: float, *, model_name: str = "honey_small_conv",
                 train_config: train.TrainConfig | None = None, seed: int = 0, cache=None, device: str | None = None,
                 log: Callable[[str], None] | None = print):
        check_settings(poison_percent=poison_percent)
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
        """Check every setting, then draw the key (CSPRNG unless ``key_seed``)."""
        check_settings(watermark_size=watermark_size, amplitude=amplitude, poison_percent=poison_percent)
        return cls(WatermarkKey.generate(shape, watermark_size, amplitude, key_seed), poison_percent, **kwargs)

    def benign_twin(self) -> "HoneyModel":
        """The control: same key, architecture, training and seed, but no poisoning."""
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

    def save(self, path: str | Path) -> Path:
        """Weights, key and settings in one file, written to a temporary file and renamed."""
        return self._save(path, {"key": self.key.to_dict(), "poison_percent": self.poison_percent,
                                 "num_classes": self.num_classes})

    @classmethod
    def load(cls, path: str | Path, **kwargs) -> "HoneyModel":
        stored = torch.load(path, weights_only=True, map_location="cpu")
        key = WatermarkKey.from_dict(stored["key"])
        honey = cls(key, stored["poison_percent"], model_name=stored["model_name"], seed=stored["seed"], **kwargs)
        honey.num_classes = stored["num_classes"]
        honey._restore_model(stored, key.shape, honey.num_classes)
        return honey


# The three attacks of §IV, by the kit's registry names, each with the `honeymodels` preset
# (appendix C, Tables II-IV: ART, targeted, random targets, ART defaults elsewhere).
PAPER_ATTACKS = {"cw": "cw2", "pgd": "pgd", "jsma": "jsma"}

# Table I of the paper, quoted as printed (watermark size 10 %, poison 30 %, 500 adversarial
# examples per attack). Fractions, not percentages. The rows are not internally consistent
# (e.g. MNIST CW: ACC 45.0 % beside FPR 56.5 % and TPR 97.5 %), which the notebook points out.
PAPER_TABLE_I = paper_values.values("honeymodels", "table_1")
PAPER_TABLE_I_SETTINGS = paper_values.settings("honeymodels", "table_1")


def paper_dataset(dataset: str) -> str:
    """The dataset whose Table I row a kit run is shown beside: itself, or MNIST for MNIST-like
    stand-ins such as mnist5k."""
    return dataset if dataset in PAPER_TABLE_I else "mnist"


def matches_table_one(*, dataset: str, watermark_size: float, poison_percent: float, amplitude: float,
                      n_attack: int, full_training_set: bool, epochs: int, jsma_gamma: float) -> bool:
    """Whether a run's settings are Table I's (appendix B training: 1 epoch MNIST, 25 CIFAR-10)."""
    s = PAPER_TABLE_I_SETTINGS
    return (dataset in PAPER_TABLE_I and watermark_size == s["watermark_size"] and amplitude == s["amplitude"]
            and poison_percent == s["poison_percent"] and n_attack >= s["n_per_attack"] and full_training_set
            and jsma_gamma == 1.0 and epochs == {"mnist": 1, "cifar10": 25}[dataset])


def run_paper_attacks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, backend: str = "fast", seed: int = 0,
                      cache=None, jsma_gamma: float = 1.0) -> dict[str, Any]:
    """The paper's CW-L2, PGD-L∞ and JSMA with their `honeymodels` presets, targeted at random classes.

    ``jsma_gamma`` (the largest fraction of features JSMA may change) is ART's default 1.0 in the
    paper; with θ = 0.3 a failing image then runs until every feature is saturated (about 1500
    iterations on MNIST), so quick runs may lower it."""
    from decoylab import attacks

    extra = {"jsma": {"gamma": jsma_gamma}}
    return {label: attacks.run(name, model, x, y, targeted=True, target="random", preset="honeymodels",
                               backend=backend, seed=seed, cache=cache, **extra.get(label, {}))
            for label, name in PAPER_ATTACKS.items()}


def table_one(report: DetectorReport, control: DetectorReport, dataset: str, settings_match: bool):
    """Table I beside the paper: the HoneyModel's detector, the same pipeline on the benign model
    (the control), and the paper's value for the same cell with the dataset it was measured on."""
    import pandas as pd

    paper_ds = paper_dataset(dataset)
    paper = PAPER_TABLE_I[paper_ds]
    rows = []
    for attack, row in report.rows.items():
        for metric in ("acc", "fpr", "tpr", "auc"):
            rows.append({"attack": attack, "metric": metric.upper(), "HoneyModel": row[metric],
                         "benign model (control)": control.rows.get(attack, {}).get(metric, float("nan")),
                         "paper": paper.get(attack, {}).get(metric, float("nan")),
                         "paper source": f"Table I, {paper_ds}" if metric != "auc" else "not reported",
                         "settings match": settings_match and metric != "auc"})
    return pd.DataFrame(rows)


def sweep_point(train_set, test_set, *, watermark_size: float, poison_percent: float, amplitude: float = 1.0,
                key_seed: int | None = 0, model_name: str = "honey_small_conv",
                train_config: train.TrainConfig | None = None, seed: int = 0, n_attack: int = 100,
                backend: str = "fast", reading: str = "perturbation", jsma_gamma: float = 1.0,
                cache=None) -> dict[str, float]:
    """One point of Fig. 4: train (or load) the HoneyModel, then its test accuracy and, per paper
    attack, the success rate and the mean reconstruction over successful examples. The model and
    every adversarial set are cached, and so is the point itself: a re-run or an interrupted sweep
    resumes where it stopped."""
    import sys

    from decoylab import models
    from decoylab.attacks import art_backend, fast
    from decoylab.cache import Cache, code_version

    check_settings(watermark_size=watermark_size, amplitude=amplitude, poison_percent=poison_percent)
    cache = cache or Cache()
    # The code that produces a point is part of its key, as for models and adversarial sets.
    parts = {"code": code_version(sys.modules[__name__], train, models, fast, art_backend),"watermark_size": watermark_size, "poison_percent": poison_percent, "amplitude": amplitude,
             "key_seed": key_seed, "model": model_name, "train": train_config or train.TrainConfig(), "seed": seed,
             "n_attack": n_attack, "backend": backend, "reading": reading, "jsma_gamma": jsma_gamma,
             "x": train_set.x, "y": train_set.y,
             "test_x": test_set.x}

    def build() -> dict[str, float]:
        honey = HoneyModel.create(tuple(train_set.x.shape[1:]), watermark_size=watermark_size, amplitude=amplitude,
                                  poison_percent=poison_percent, key_seed=key_seed, model_name=model_name,
                                  train_config=train_config, seed=seed, cache=cache, log=None).fit(train_set)
        idx = train.correct_subset(honey.model, test_set.x, test_set.y, n_attack, seed=seed)
        x, y = test_set.x[idx], test_set.y[idx]
        point = {"accuracy": train.accuracy(honey.model, test_set.x, test_set.y)}
        for label, r in run_paper_attacks(honey.model, x, y, backend=backend, seed=seed, cache=cache,
                                          jsma_gamma=jsma_gamma).items():
            sim = honey.reconstruction(r.x_adv[r.success], x[r.success], reading)
            point[f"{label}_success"] = r.success_rate
            point[f"{label}_reconstruction"] = float(sim.mean()) if len(sim) else float("nan")
        return point

    return cache.get_or_build("honeymodels_sweep", parts, build)
