"""Attack registry, target selection and per-sample bookkeeping shared by both backends."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from decoylab import config
from decoylab.attacks import art_backend, fast

BACKENDS = ("fast", "art")
TARGET_MODES = ("random", "least_likely")


# A parameter's allowed range: (low, high, kind), kind "float" (low exclusive), "int" (low inclusive)
# or "bool"; None means unbounded.
Range = tuple[float | None, float | None, str]
EPS: Range = (0.0, 1.0, "float")
RATE: Range = (0.0, None, "float")
COUNT: Range = (1, None, "int")
NONNEG: Range = (0.0, None, "float0")
FLAG: Range = (None, None, "bool")


@dataclass(frozen=True)
class AttackEntry:
    name: str
    norm: str  # "linf", "l2" or "l0"
    targeting: str  # "optional", "never", "always" or "least_likely" (the LLC family)
    defaults: dict[str, Any]
    ranges: dict[str, Range]
    backends: dict[str, Callable]
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)  # settings a variant pins (e.g. MIM's momentum)
    uses_gradient_loss: bool = True  # accepts ``extra_loss`` (the adaptive hook)


_LINF_ITER = {"eps": EPS, "step_size": EPS, "steps": COUNT}
_CW = {"confidence": NONNEG, "learning_rate": RATE, "max_iter": COUNT, "binary_search_steps": COUNT,
       "initial_const": RATE, "optimizer": (None, None, "choice:line_search|adam")}
_CW_DEFAULTS = {"confidence": 0.0, "learning_rate": 0.01, "max_iter": 10, "binary_search_steps": 10,
                "initial_const": 0.01, "optimizer": "line_search"}  # ART 1.20's defaults and its optimiser

PROB: Range = (0.0, 1.0, "float0")
# The Adam-based C&W family (EAD, OptMargin): confidence κ, Adam's learning rate, iterations per
# binary-search step, binary-search steps, the starting constant c.
_CW_ADAM = {k: v for k, v in _CW.items() if k != "optimizer"}
_CW_ADAM_DEFAULTS = {"confidence": 0.0, "learning_rate": 0.01, "max_iter": 100, "binary_search_steps": 5,
                     "initial_const": 0.01}
_MIM_DEFAULTS = {"eps": 0.3, "step_size": 0.05, "steps": 15, "momentum": 1.0}
_LURING_MIM = {"luring_mnist": {"step_size": 0.01, "steps": 1000, "momentum": 1.0},
               "luring_svhn": {"step_size": 0.01, "steps": 500, "momentum": 1.0},
               "luring_cifar10": {"step_size": 0.01, "steps": 100, "momentum": 1.0}}
_LURING_P = {"luring_mnist": 1.0, "luring_svhn": 1.0, "luring_cifar10": 0.6}
_LURING_KERNEL = {"luring_mnist": 5, "luring_svhn": 10, "luring_cifar10": 3}

# Presets name the paper table they come from: honeymodels = HoneyModels appendix C (Tables II-IV);
# deepsec_* = Attractors paper Table VII (DEEPSEC); nfp_mnist / nfp_cifar10 = NeuralFP code (inputs on
# [0, 1] here, so its eps on the [-0.5, 0.5] scale carries over unchanged); luring_* = Luring
# paper Appendices D.1 and F (its inputs are on [0, 1] too).
REGISTRY: dict[str, AttackEntry] = {
    "fgsm": AttackEntry("fgsm", "linf", "optional", {"eps": 0.3}, {"eps": EPS},
                        {"fast": fast.fgsm, "art": art_backend.fgsm},
                        {"deepsec_mnist": {"eps": 0.3}, "deepsec_cifar10": {"eps": 0.1}, "nfp_mnist": {"eps": 0.4},
                         "nfp_cifar10": {"eps": 0.05},
                         # Luring sweeps eps (Fig. 2); FGSM has no other setting.
                         **{k: {} for k in _LURING_MIM}}),
    "rfgsm": AttackEntry("rfgsm", "linf", "optional", {"eps": 0.3, "alpha": 0.15}, {"eps": EPS, "alpha": EPS},
                         {"fast": fast.rfgsm}, {"deepsec_mnist": {"eps": 0.3, "alpha": 0.15},
                                                 "deepsec_cifar10": {"eps": 0.1, "alpha": 0.05}}),
    "bim": AttackEntry("bim", "linf", "optional", {"eps": 0.3, "step_size": 0.05, "steps": 15}, _LINF_ITER,
                       {"fast": fast.iterative_linf, "art": art_backend.bim},
                       {"deepsec_mnist": {"eps": 0.3, "step_size": 0.05, "steps": 15},
                        "deepsec_cifar10": {"eps": 0.1, "step_size": 0.01, "steps": 15},
                        "nfp_mnist": {"eps": 0.4, "step_size": 0.01, "steps": 50},
                        "nfp_cifar10": {"eps": 0.05, "step_size": 0.005, "steps": 50}}),
    # NeuralFP's BIM-a: BIM that stops each sample at its first misclassification (BIM-b = "bim").
    "bim_a": AttackEntry("bim_a", "linf", "optional", {"eps": 0.3, "step_size": 0.05, "steps": 15}, _LINF_ITER,
                         {"fast": fast.iterative_linf}, {"nfp_mnist": {"eps": 0.4, "step_size": 0.01, "steps": 50},
                                                         "nfp_cifar10": {"eps": 0.05, "step_size": 0.005, "steps": 50}},
                         fixed={"early_stop": True}),
    # HoneyModels used ART's PGD defaults besides eps and max_iter: eps_step 0.1, num_random_init 0.
    "pgd": AttackEntry("pgd", "linf", "optional", {"eps": 0.3, "step_size": 0.01, "steps": 40, "random_start": True},
                       {**_LINF_ITER, "random_start": FLAG}, {"fast": fast.iterative_linf, "art": art_backend.pgd},
                       {"honeymodels": {"eps": 0.3, "step_size": 0.1, "steps": 5, "random_start": False},
                        "deepsec_mnist": {"eps": 0.3, "step_size": 0.05, "steps": 15},
                        "deepsec_cifar10": {"eps": 0.1, "step_size": 0.01, "steps": 15},
                        # Table VIII: the Trapdoor paper's PGD* (and BPDA) settings.
                        "trapdoor": {"eps": 0.3, "step_size": 0.04, "steps": 100},
                        # Luring Appendix D.1: 1000 iterations of 0.01 for every data set.
                        **{k: {"step_size": 0.01, "steps": 1000} for k in _LURING_MIM}}),
    "mim": AttackEntry("mim", "linf", "optional", dict(_MIM_DEFAULTS),
                       {**_LINF_ITER, "momentum": NONNEG}, {"fast": fast.iterative_linf, "art": art_backend.mim},
                       {"deepsec_mnist": {"eps": 0.3, "step_size": 0.05, "steps": 15},
                        "deepsec_cifar10": {"eps": 0.1, "step_size": 0.01, "steps": 15}, **_LURING_MIM}),
    # The Luring paper's MIM-W family (§4.2, Appendix F.2): MIM with input diversity (DIM), with
    # translation-invariant gradients (MIM-TI) or both (DIM-TI). Presets: iterations 1000 / 500 / 100
    # on MNIST / SVHN / CIFAR-10, μ = 1, DIM's p = 1.0 / 1.0 / 0.6, the kernel the paper found best
    # for its Luring model (Tables 11-13: 5 / 10 / 3); eps is each experiment's budget.
    "dim": AttackEntry("dim", "linf", "optional", {**_MIM_DEFAULTS, "diversity_prob": 1.0},
                       {**_LINF_ITER, "momentum": NONNEG, "diversity_prob": PROB}, {"fast": fast.iterative_linf},
                       {k: {**v, "diversity_prob": _LURING_P[k]} for k, v in _LURING_MIM.items()}),
    "mim_ti": AttackEntry("mim_ti", "linf", "optional", {**_MIM_DEFAULTS, "ti_kernel": 5},
                          {**_LINF_ITER, "momentum": NONNEG, "ti_kernel": COUNT}, {"fast": fast.iterative_linf},
                          {k: {**v, "ti_kernel": _LURING_KERNEL[k]} for k, v in _LURING_MIM.items()}),
    "dim_ti": AttackEntry("dim_ti", "linf", "optional", {**_MIM_DEFAULTS, "diversity_prob": 1.0, "ti_kernel": 5},
                          {**_LINF_ITER, "momentum": NONNEG, "diversity_prob": PROB, "ti_kernel": COUNT},
                          {"fast": fast.iterative_linf},
                          {k: {**v, "diversity_prob": _LURING_P[k], "ti_kernel": _LURING_KERNEL[k]}
                           for k, v in _LURING_MIM.items()}),
    # MIML2 (Luring Appendix D.1): L2 bound 30 (MNIST) / 2 (SVHN, CIFAR-10), step 0.01, 1000
    # iterations, μ = 1, clipped to the L∞ budget eps.
    "mim_l2": AttackEntry("mim_l2", "l2", "optional",
                          {"eps": 0.3, "eps_l2": 3.0, "step_size": 0.1, "steps": 15, "momentum": 1.0},
                          {"eps": EPS, "eps_l2": RATE, "step_size": RATE, "steps": COUNT, "momentum": NONNEG},
                          {"fast": fast.iterative_l2},
                          {"luring_mnist": {"eps_l2": 30.0, "step_size": 0.01, "steps": 1000},
                           "luring_svhn": {"eps_l2": 2.0, "step_size": 0.01, "steps": 1000},
                           "luring_cifar10": {"eps_l2": 2.0, "step_size": 0.01, "steps": 1000}}),
    # Score-based black-box attacks (Luring §4.2, Appendix F.1; the authors' code for SPSA's delta):
    # queries only, no gradient, so no adaptive hook.
    "spsa": AttackEntry("spsa", "linf", "optional",
                        {"eps": 0.3, "learning_rate": 0.01, "delta": 0.01, "samples": 128, "steps": 100},
                        {"eps": EPS, "learning_rate": RATE, "delta": RATE, "samples": (2, None, "int"),
                         "steps": COUNT}, {"fast": fast.spsa},
                        {**{k: {"learning_rate": 0.1, "delta": 0.01, "samples": 128, "steps": 100}
                            for k in ("luring_mnist", "luring_svhn", "luring_cifar10")},
                         # Attractors paper Table VIII (the Trapdoor paper's SPSA): eps 0.3, lr 0.1, 500 iterations.
                         "trapdoor": {"eps": 0.3, "learning_rate": 0.1, "delta": 0.01, "samples": 128, "steps": 500}},
                        uses_gradient_loss=False),
    "eco": AttackEntry("eco", "linf", "optional",
                       {"eps": 0.3, "max_queries": 2000, "block_size": 4, "candidates": 64},
                       {"eps": EPS, "max_queries": COUNT, "block_size": COUNT, "candidates": COUNT}, {"fast": fast.eco},
                       {"luring_mnist": {"max_queries": 20000, "block_size": 2},
                        "luring_svhn": {"max_queries": 20000, "block_size": 8},
                        "luring_cifar10": {"max_queries": 20000, "block_size": 4}},
                       uses_gradient_loss=False),
    # The least-likely-class family (Kurakin et al. 2017): targeted at argmin of the clean logits.
    "llc": AttackEntry("llc", "linf", "least_likely", {"eps": 0.3}, {"eps": EPS}, {"fast": fast.fgsm},
                       {"deepsec_mnist": {"eps": 0.3}, "deepsec_cifar10": {"eps": 0.1}}),
    "rllc": AttackEntry("rllc", "linf", "least_likely", {"eps": 0.15, "alpha": 0.075}, {"eps": EPS, "alpha": EPS},
                        {"fast": fast.rfgsm}, # DEEPSEC's (R)LLC steps α at random, then ε along the gradient (total α + ε); here
                        # eps is the total, so Table VII's ε = α = 0.15 / 0.05 reads eps 0.3 / 0.1.
                        {"deepsec_mnist": {"eps": 0.3, "alpha": 0.15}, "deepsec_cifar10": {"eps": 0.1, "alpha": 0.05}}),
    "illc": AttackEntry("illc", "linf", "least_likely", {"eps": 0.3, "step_size": 0.05, "steps": 15}, _LINF_ITER,
                        {"fast": fast.iterative_linf},
                        {"deepsec_mnist": {"eps": 0.3, "step_size": 0.05, "steps": 15},
                         "deepsec_cifar10": {"eps": 0.1, "step_size": 0.01, "steps": 15}}),
    "tmifgsm": AttackEntry("tmifgsm", "linf", "always",
                           {"eps": 0.3, "step_size": 0.05, "steps": 15, "momentum": 1.0},
                           {**_LINF_ITER, "momentum": NONNEG}, {"fast": fast.iterative_linf},
                           {"deepsec_mnist": {"eps": 0.3, "step_size": 0.05, "steps": 15},
                            "deepsec_cifar10": {"eps": 0.1, "step_size": 0.01, "steps": 15}}),
    "cw2": AttackEntry("cw2", "l2", "optional", dict(_CW_DEFAULTS), _CW,
                       {"fast": fast.cw_l2, "art": art_backend.cw_l2},
                       {"honeymodels": {"confidence": 0.5, "max_iter": 5},
                        # DEEPSEC's CW2 is the Adam loop (Table VII: lr 0.02, 10000 iterations, c0 0.001).
                        "deepsec_mnist": {"optimizer": "adam", "learning_rate": 0.02, "max_iter": 10000,
                                          "binary_search_steps": 10, "initial_const": 0.001},
                        "deepsec_cifar10": {"optimizer": "adam", "learning_rate": 0.02, "max_iter": 10000,
                                            "binary_search_steps": 10, "initial_const": 0.001},
                        # Table VIII: the Trapdoor paper's CW2* (cleverhans, Adam).
                        "trapdoor": {"optimizer": "adam", "learning_rate": 0.1, "max_iter": 500,
                                     "binary_search_steps": 20, "initial_const": 0.001},
                        # NeuralFP states no CW settings: Carlini & Wagner's reference implementation's
                        # defaults (Adam, lr 0.01, 1000 iterations, 9 binary-search steps from c = 0.001).
                        "nfp_mnist": {"optimizer": "adam", "learning_rate": 0.01, "max_iter": 1000,
                                      "binary_search_steps": 9, "initial_const": 0.001},
                        "nfp_cifar10": {"optimizer": "adam", "learning_rate": 0.01, "max_iter": 1000,
                                        "binary_search_steps": 9, "initial_const": 0.001},
                        # Luring Appendix D.2 (Table 9): 10 binary steps, lr 0.1, c0 0.5, 500 iterations;
                        # the authors ran cleverhans' CW-L2, i.e. the Adam loop.
                        **{k: {"optimizer": "adam", "learning_rate": 0.1, "max_iter": 500, "binary_search_steps": 10,
                               "initial_const": 0.5} for k in _LURING_MIM}}),
    "deepfool": AttackEntry("deepfool", "l2", "never", {"max_iter": 50, "overshoot": 0.02},
                            {"max_iter": COUNT, "overshoot": NONNEG}, {"fast": fast.deepfool, "art": art_backend.deepfool},
                            {"deepsec_mnist": {"max_iter": 50, "overshoot": 0.02},
                             "deepsec_cifar10": {"max_iter": 50, "overshoot": 0.02}}, uses_gradient_loss=False),
    "jsma": AttackEntry("jsma", "l0", "always", {"theta": 1.0, "gamma": 0.1, "saliency": "pairs"},
                        {"theta": (-1.0, 1.0, "float"), "gamma": EPS, "saliency": (None, None, "choice:pairs|target_top2")}, {"fast": fast.jsma, "art": art_backend.jsma},
                        # HoneyModels ran ART's JSMA: its saliency, and ART's default gamma 1.0.
                        {"honeymodels": {"theta": 0.3, "gamma": 1.0, "saliency": "target_top2"},
                         "deepsec_mnist": {"theta": 1.0, "gamma": 0.1},
                         "deepsec_cifar10": {"theta": 1.0, "gamma": 0.1},
                         "nfp_mnist": {"theta": 1.0, "gamma": 0.1},
                         "nfp_cifar10": {"theta": 1.0, "gamma": 0.1}}, uses_gradient_loss=False),
    # The Attractors paper's Table VII (DEEPSEC) for the attacks below; MNIST rows unless named cifar10.
    "ead": AttackEntry("ead", "l1", "optional", {**_CW_ADAM_DEFAULTS, "beta": 1e-3, "decision_rule": "en"},
                       {**_CW_ADAM, "beta": NONNEG, "decision_rule": (None, None, "choice:en|l1")},
                       {"fast": fast.ead, "art": art_backend.ead},
                       {"deepsec_mnist": {"learning_rate": 0.02, "max_iter": 10000, "binary_search_steps": 10,
                                          "initial_const": 0.001, "beta": 1e-3},
                        "deepsec_cifar10": {"learning_rate": 0.02, "max_iter": 10000, "binary_search_steps": 10,
                                            "initial_const": 0.001, "beta": 1e-3},
                        # Table VIII (the Trapdoor paper's settings, EAD*).
                        "trapdoor": {"learning_rate": 0.5, "max_iter": 500, "binary_search_steps": 20,
                                     "initial_const": 0.001, "beta": 1e-3}}),
    "optmargin": AttackEntry("optmargin", "l2", "never",
                             {**_CW_ADAM_DEFAULTS, "noise_count": 20, "noise_magnitude": 0.3},
                             {**_CW_ADAM, "noise_count": COUNT, "noise_magnitude": EPS}, {"fast": fast.optmargin},
                             {"deepsec_mnist": {"initial_const": 0.02, "binary_search_steps": 4, "learning_rate": 0.2,
                                                "max_iter": 1000, "noise_count": 20, "noise_magnitude": 0.3},
                              "deepsec_cifar10": {"initial_const": 1.0, "binary_search_steps": 4,
                                                  "learning_rate": 0.02, "max_iter": 1000, "noise_count": 20,
                                                  "noise_magnitude": 0.3}}),
    "blb": AttackEntry("blb", "l2", "always", {"max_iter": 1000, "binary_search_steps": 5, "initial_const": 0.01},
                       {"max_iter": COUNT, "binary_search_steps": COUNT, "initial_const": RATE}, {"fast": fast.blb},
                       {"deepsec_mnist": {"max_iter": 1000, "binary_search_steps": 5, "initial_const": 0.01},
                        "deepsec_cifar10": {"max_iter": 1000, "binary_search_steps": 5, "initial_const": 0.01}}),
    "uap": AttackEntry("uap", "linf", "never",
                       {"eps": 0.3, "fooling_rate": 0.3, "max_passes": 5, "deepfool_iter": 10, "overshoot": 0.02},
                       {"eps": EPS, "fooling_rate": EPS, "max_passes": COUNT, "deepfool_iter": COUNT,
                        "overshoot": NONNEG}, {"fast": fast.uap, "art": art_backend.uap},
                       {"deepsec_mnist": {"eps": 0.3, "fooling_rate": 0.3},
                        "deepsec_cifar10": {"eps": 0.1, "fooling_rate": 0.3}}, uses_gradient_loss=False),
}


def art_version() -> str:
    from importlib.metadata import version

    return version("adversarial-robustness-toolbox")


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def accepted(name: str, **candidates: Any) -> dict[str, Any]:
    """The subset of ``candidates`` that attack ``name`` takes, so one notebook parameter set
    (EPS, STEPS, STEP_SIZE, ...) can drive any attack."""
    if name not in REGISTRY:
        raise ValueError(f"attack={name!r} is not known; allowed: {', '.join(REGISTRY)}")
    return {k: v for k, v in candidates.items() if k in REGISTRY[name].defaults}


def catalogue() -> list[dict[str, Any]]:
    """One row per attack: norm, targeting, parameters with defaults and ranges, presets."""
    return [{"name": e.name, "norm": e.norm, "targeting": e.targeting, "defaults": dict(e.defaults),
             "ranges": {k: _describe(r) for k, r in e.ranges.items()}, "backends": tuple(e.backends),
             "presets": dict(e.presets), "adaptive_hook": e.uses_gradient_loss} for e in REGISTRY.values()]


def catalogue_entry(name: str) -> dict[str, Any]:
    """One attack's row of ``catalogue()``."""
    accepted(name)  # validates the name
    return next(row for row in catalogue() if row["name"] == name)


def _describe(r: Range) -> str:
    low, high, kind = r
    if kind == "bool":
        return "true or false"
    if kind.startswith("choice:"):
        return "one of " + ", ".join(kind[len("choice:"):].split("|"))
    if kind == "int":
        return f"an integer >= {low}"
    left = "[" if kind == "float0" else "("
    return f"a number in {left}{low}, {'inf' if high is None else high}]"


def _check_setting(attack: str, key: str, value: Any, r: Range) -> None:
    low, high, kind = r
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind.startswith("choice:"):
        ok = value in kind[len("choice:"):].split("|")
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and (value >= low if kind == "float0" else value > low) and (high is None or value <= high)
    if not ok:
        raise ValueError(f"{key}={value!r} is not allowed for {attack}; {key} must be {_describe(r)}")


def checked_settings(name: str, preset: str | None = None, **params: Any) -> dict[str, Any]:
    """The settings ``run(name, ..., preset=preset, **params)`` attacks with: the defaults, then the
    preset, then ``params``; an unknown parameter or a value out of range raises a ValueError naming it."""
    entry = REGISTRY[name]
    unknown = set(params) - set(entry.defaults)
    if unknown:
        raise ValueError(f"{name} has no parameter(s) {sorted(unknown)}; allowed: {', '.join(entry.defaults)}")
    settings = {**entry.defaults, **(entry.presets.get(preset, {}) if preset else {}), **params}
    for key, value in settings.items():
        _check_setting(name, key, value, entry.ranges[key])
    return settings


@dataclass
class AttackResult:
    """Adversarial batch and per-sample information (norms over the flattened perturbation)."""
    x_adv: torch.Tensor
    success: torch.Tensor  # bool per sample: misclassified (untargeted) or target reached
    target: torch.Tensor | None
    l0: torch.Tensor
    l2: torch.Tensor
    linf: torch.Tensor
    grad_steps: int

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if len(self.success) else 0.0


def _resolve_target(model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: Any, num_classes: int,
                    seed: int) -> torch.Tensor:
    if isinstance(target, torch.Tensor):
        if target.shape != y.shape:
            raise ValueError(f"target has shape {tuple(target.shape)}; it must match y's {tuple(y.shape)}")
        return target.to(torch.int64)
    if target == "random":
        # A uniformly random class different from the label: y + U{1..K-1} mod K.
        g = torch.Generator().manual_seed(seed)
        shift = torch.randint(1, num_classes, y.shape, generator=g)
        return (y.cpu() + shift) % num_classes
    if target == "least_likely":
        with torch.no_grad():
            return model(x).argmin(1).cpu()
    raise ValueError(f"target={target!r} is not allowed; use a tensor of classes, 'random' or 'least_likely'")


def run(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, targeted: bool = False,
        target: Any = None, backend: str = "fast", preset: str | None = None, seed: int = 0,
        batch_size: int | None = None, num_classes: int | None = None, cache=None, extra_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        extra_loss_key: dict[str, Any] | None = None, **params: Any) -> AttackResult:
    """Run attack ``name`` on ``model`` (any ``nn.Module`` returning logits) for inputs in [0, 1].

    ``preset`` names settings from a paper table (see ``catalogue()``); ``params`` override it.
    Arguments are checked before any gradient is computed. With a ``decoylab.cache.Cache``,
    the result is stored under a key made of the attack, its settings, the seed, the
    target, the inputs and the model's architecture and weights, so a re-run does not re-attack.
    ``extra_loss(x_adv, labels)`` returns one penalty per sample that gradient attacks also minimise
    (``labels``: the true classes, or the targets of a targeted run)
    (the adaptive-attack hook). A function cannot be keyed, so runs with it are cached only when
    ``extra_loss_key`` describes the term: everything it depends on beyond the attacked model
    (its kind, weight, the defense's secrets and weights, the code that computes it), which the
    caller vouches for. ``num_classes``, when given, is checked against the width of the model's output.
    """
    if name not in REGISTRY:
        raise ValueError(f"attack={name!r} is not known; allowed: {', '.join(REGISTRY)}")
    entry = REGISTRY[name]
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not allowed; allowed: {', '.join(BACKENDS)}")
    if backend not in entry.backends:
        raise ValueError(f"attack {name!r} has no {backend!r} backend; it has {', '.join(entry.backends)}")
    if preset is not None and preset not in entry.presets:
        raise ValueError(f"preset={preset!r} is not known for {name!r}; allowed: {', '.join(entry.presets) or 'none'}")
    settings = checked_settings(name, preset, **params)
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    if len(x) == 0:
        raise ValueError("x is empty: there is nothing to attack (was a subset of correctly classified inputs empty?)")
    if entry.targeting == "never" and targeted:
        raise ValueError(f"attack {name!r} cannot be targeted")
    if entry.targeting == "always" and not targeted:
        raise ValueError(f"attack {name!r} is targeted only; pass targeted=True (and a target, default 'random')")
    if entry.targeting == "least_likely":
        if targeted and target not in (None, "least_likely"):
            raise ValueError(f"attack {name!r} always targets the least likely class; leave target unset")
        targeted, target = True, "least_likely"
    if target is not None and not targeted:
        raise ValueError("a target was given but targeted=False; pass targeted=True")
    if extra_loss is not None and not entry.uses_gradient_loss:
        hooks = [n for n, e in REGISTRY.items() if e.uses_gradient_loss]
        raise ValueError(f"attack {name!r} has no loss to add extra_loss to; attacks with the hook: {', '.join(hooks)}")
    if extra_loss is not None and backend == "art":
        raise ValueError("extra_loss needs backend='fast': ART's attacks have no hook for an extra loss")
    if extra_loss_key is not None and (extra_loss is None or not isinstance(extra_loss_key, dict)):
        raise ValueError("extra_loss_key is not allowed here: give it as a dict, and only together with extra_loss")
    settings = {**settings, **entry.fixed}

    model.eval()
    weights = next(model.parameters(), None)
    device = weights.device if weights is not None else x.device
    x, y = x.to(device), y.to(device)
    if batch_size is None:  # small on CPU, large on a GPU (config.batch_size says why)
        batch_size = config.batch_size(device)
    elif isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not allowed; give an integer >= 1 or None (the device's default)")
    with torch.no_grad():
        probe = model(x[:2])
    expected = num_classes
    if probe.dim() != 2 or probe.shape[0] != len(x[:2]) or probe.shape[1] < 2 or \
            (expected is not None and probe.shape[1] != expected):
        raise ValueError(f"the model must return logits shaped (N, {expected or 'num_classes'}); it returned "
                         f"{tuple(probe.shape)} for {len(x[:2])} inputs")
    num_classes = probe.shape[1]
    if int(y.max()) >= num_classes or int(y.min()) < 0:
        raise ValueError(f"labels range over [{int(y.min())}, {int(y.max())}] but the model has {num_classes} classes")
    tgt = _resolve_target(model, x, y, target if target is not None else "random", num_classes, seed) \
        if targeted else None
    if cache is not None and (extra_loss is None or extra_loss_key is not None):
        from decoylab.cache import code_version, model_identity

        implementation = code_version(fast) if backend == "fast" else f"{art_version()}:{code_version(art_backend)}"
        parts = {"attack": name, "backend": backend, "implementation": implementation, "settings": settings,
                 "seed": seed, "targeted": targeted, "target": tgt, "x": x, "y": y, **model_identity(model)}
        if extra_loss_key is not None:
            parts["extra_loss"] = extra_loss_key
        stored = cache.get_or_build("adversarial", parts, lambda: vars(_attack(
            entry, backend, settings, model, x, y, tgt, targeted, seed, batch_size, num_classes, extra_loss)))
        return AttackResult(**stored)
    return _attack(entry, backend, settings, model, x, y, tgt, targeted, seed, batch_size, num_classes, extra_loss)


def _attack(entry: AttackEntry, backend: str, settings: dict[str, Any], model: nn.Module, x: torch.Tensor,
            y: torch.Tensor, tgt: torch.Tensor | None, targeted: bool, seed: int, batch_size: int,
            num_classes: int, extra_loss) -> AttackResult:
    device = x.device
    labels = tgt.to(device) if targeted else y
    hook = {"extra_loss": extra_loss} if extra_loss is not None else {}
    x_adv, steps = entry.backends[backend](model, x, labels, targeted=targeted, seed=seed,
                                           batch_size=batch_size, num_classes=num_classes, **settings, **hook)
    x_adv = x_adv.to(device).clamp(0, 1)
    with torch.no_grad():
        pred = torch.cat([model(b) for b in x_adv.split(batch_size)]).argmax(1)
    success = (pred == labels) if targeted else (pred != y)
    delta = (x_adv - x).flatten(1)
    return AttackResult(x_adv=x_adv.detach().cpu(), success=success.cpu(),
                        target=None if tgt is None else tgt.cpu(),
                        l0=(delta.abs() > 1e-6).sum(1).cpu(), l2=delta.norm(dim=1).cpu(),
                        linf=delta.abs().amax(1).cpu(), grad_steps=steps)


class BPDA(nn.Module):
    """Backward Pass Differentiable Approximation (Athalye et al. 2018, §4.1): ``model(step(x))``
    where ``step`` need not be differentiable (quantisation, JPEG, a detector's hard decision).
    The forward pass uses ``step(x)``; the backward pass differentiates ``approximation(x)``
    instead — the identity by default — via ``approx + (step − approx).detach()``, so every
    gradient attack of the registry runs on the wrapped model unchanged."""

    def __init__(self, model: nn.Module, step: Callable[[torch.Tensor], torch.Tensor],
                 approximation: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        if not callable(step):
            raise ValueError(f"step={step!r} is not allowed; pass the non-differentiable function to wrap")
        if approximation is not None and not callable(approximation):
            raise ValueError(f"approximation={approximation!r} is not allowed; pass a differentiable function or None")
        self.model = model
        self.step = step
        self.approximation = approximation

    def extra_repr(self) -> str:
        # Part of the attack cache's key: two different steps around one model are different models.
        def name(f):
            return "identity" if f is None else f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"
        return f"step={name(self.step)}, approximation={name(self.approximation)}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        smooth = x if self.approximation is None else self.approximation(x)
        with torch.no_grad():
            hard = self.step(x)
        return self.model(smooth + (hard - smooth).detach())
