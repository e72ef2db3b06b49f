"""One training loop for every paper: seeded, device-aware, with a pluggable loss.

HoneyModels plug in through the data (poisoned images and flipped labels); Neural
Fingerprinting through ``loss_fn`` (eq. 13 adds the fingerprint term to cross-entropy).
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from decoylab import config, costprobe

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "step", "cosine")


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class TrainConfig:
    """Everything that determines the trained weights besides data, architecture and seed.

    It is part of the cache key, so two runs with equal configs share one checkpoint.
    """
    epochs: int = 1
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"
    milestones: Sequence[int] = ()  # epochs (steps when ``steps`` is set) at which "step" changes the lr
    gamma: float = 0.1
    # The lr from each milestone on, when a paper gives values rather than a factor (the Luring code:
    # 0.001, then 0.0002 at step 35 000 and 0.0004 at 45 000); empty: multiply by gamma at each milestone.
    milestone_lrs: Sequence[float] = ()
    # Optimiser steps in all; when set, training stops after this many batches (epochs is then ignored)
    # and the milestones count steps. The Luring code trains P for 50 000 steps whatever the data's size.
    steps: int | None = None

    def __post_init__(self):
        problems = []
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            problems.append(f"epochs={self.epochs!r}: must be an integer >= 1")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            problems.append(f"batch_size={self.batch_size!r}: must be an integer >= 1")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer={self.optimizer!r}: allowed {', '.join(OPTIMIZERS)}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"lr={self.lr!r}: must be a finite number > 0")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule={self.schedule!r}: allowed {', '.join(SCHEDULES)}")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1):
            problems.append(f"steps={self.steps!r}: must be None or an integer >= 1")
        if list(self.milestones) != sorted(self.milestones):
            problems.append(f"milestones={list(self.milestones)!r}: must be in increasing order")
        if self.milestone_lrs and len(self.milestone_lrs) != len(self.milestones):
            problems.append(f"milestone_lrs={list(self.milestone_lrs)!r}: needs one lr per milestone "
                            f"({len(self.milestones)} milestones)")
        if any(not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0) for v in self.milestone_lrs):
            problems.append(f"milestone_lrs={list(self.milestone_lrs)!r}: each must be a finite number > 0")
        if not (_is_real(self.momentum) and 0 <= self.momentum < 1):
            problems.append(f"momentum={self.momentum!r}: must be in [0, 1)")
        if not (_is_real(self.weight_decay) and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            problems.append(f"weight_decay={self.weight_decay!r}: must be a finite number >= 0")
        if not (_is_real(self.gamma) and math.isfinite(self.gamma) and self.gamma > 0):
            problems.append(f"gamma={self.gamma!r}: must be a finite number > 0 (the factor at each milestone)")
        if problems:
            raise ValueError("invalid training settings: " + "; ".join(problems))
        self.milestones = tuple(int(m) for m in self.milestones)
        self.milestone_lrs = tuple(float(v) for v in self.milestone_lrs)

    def epochs_for(self, n: int) -> int:
        """Epochs the loop runs over ``n`` examples: ``epochs``, or enough to hold ``steps`` batches."""
        return self.epochs if self.steps is None else math.ceil(self.steps / math.ceil(n / self.batch_size))


@dataclass
class TrainHistory:
    epoch_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    selection: list[float] = field(default_factory=list)  # ``select``'s score after each epoch
    best_epoch: int | None = None  # the epoch whose weights were kept


def _optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


def _scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer):
    if cfg.schedule == "step" and cfg.milestone_lrs:
        def factor(t: int) -> float:
            passed = sum(t >= m for m in cfg.milestones)
            return 1.0 if passed == 0 else cfg.milestone_lrs[passed - 1] / cfg.lr
        return torch.optim.lr_scheduler.LambdaLR(opt, factor)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=cfg.gamma)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps or cfg.epochs)
    return None


def _progress(iterable, total: int, desc: str, show: bool | None):
    if show is None:
        show = not config.is_batch()
    if not show:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig | None = None, *,
        loss_fn: LossFn = cross_entropy, seed: int = 0, device: str | torch.device | None = None,
        progress: bool | None = None, log: Callable[[str], None] | None = print,
        select: Callable[[nn.Module], float] | None = None) -> TrainHistory:
    """Train ``model`` in place on (x, y) with ``cfg``; returns the per-epoch mean loss.

    The run is reproducible on CPU for a given seed: the seed fixes both the batch
    order and the randomness inside the model (dropout). In batch runs (``DECOYLAB_BATCH``)
    there are no progress bars, only one log line per epoch. ``select(model)``, when given,
    scores the model (in eval mode) after every epoch and the best-scoring epoch's weights are
    kept (the Luring code keeps the checkpoint with the best validation accuracy).
    """
    cfg = cfg or TrainConfig()
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    dev = device if isinstance(device, torch.device) else config.device(device)
    model.to(dev).train()
    if dev.type == "cpu":
        # oneDNN's convolutions run up to 1.5x faster per training step in channels-last on CPU (NeuralFP's
        # net; about as fast for the others: `python -m decoylab.tools.bench training`); back to the default layout after
        # training, so a trained model is the same object whether trained now or loaded from the cache
        model.to(memory_format=torch.channels_last)
    x, y = x.to(dev), y.to(dev)
    opt = _optimizer(cfg, model.parameters())
    sched = _scheduler(cfg, opt)
    order_rng = torch.Generator().manual_seed(seed)
    history = TrainHistory()
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        epochs, steps_left = cfg.epochs_for(len(x)), cfg.steps
        if costprobe.log_path() is not None and _full_steps(cfg, len(x)) > costprobe.WARMUP_STEPS + costprobe.MAX_STEPS:
            return _probe_fit(model, x, y, cfg, opt, loss_fn, order_rng, select, epochs, history)
        for epoch in range(epochs):
            perm = torch.randperm(len(x), generator=order_rng).to(dev)
            batches = perm.split(cfg.batch_size)
            if steps_left is not None:
                batches, steps_left = batches[:steps_left], steps_left - min(steps_left, len(batches))
            total, count = 0.0, 0
            for idx in _progress(batches, len(batches), f"epoch {epoch + 1}/{epochs}", progress):
                loss = loss_fn(model, x[idx], y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None and cfg.steps is not None:
                    sched.step()  # milestones count steps
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            if sched is not None and cfg.steps is None:
                sched.step()
            history.epoch_loss.append(total / max(count, 1))
            note = ""
            if select is not None:
                model.eval()
                with torch.no_grad():
                    value = float(select(model))
                model.train()
                history.selection.append(value)
                if value >= max(history.selection):
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    history.best_epoch = epoch + 1
                note = f", selection score {value:.4f}"
            if log is not None and config.is_batch():
                log(f"epoch {epoch + 1}/{epochs}: loss {history.epoch_loss[-1]:.4f}{note}")
    if select is not None:
        model.load_state_dict(best_state)
    history.seconds = time.perf_counter() - start
    model.to(memory_format=torch.contiguous_format).eval()
    return history


def _full_steps(cfg: TrainConfig, n: int) -> int:
    return cfg.epochs * math.ceil(n / cfg.batch_size) if cfg.steps is None else cfg.steps


def _probe_fit(model, x, y, cfg, opt, loss_fn, order_rng, select, epochs, history) -> TrainHistory:
    """``fit`` under the cost probe (``decoylab.costprobe``): train and time up to ``MAX_STEPS`` steps (at least
    ``MIN_STEPS``, at most ``TRAIN_SECONDS`` beyond them) and one ``select`` pass, record what the whole training
    would run, and stop with the briefly trained model."""
    full_steps = _full_steps(cfg, len(x))
    batches = torch.randperm(len(x), generator=order_rng).to(x.device).split(cfg.batch_size)
    probe_start = time.perf_counter()
    timed = 0
    for i in range(min(full_steps, costprobe.WARMUP_STEPS + costprobe.MAX_STEPS)):
        if i == costprobe.WARMUP_STEPS:
            start = time.perf_counter()
        idx = batches[i % len(batches)]
        loss = loss_fn(model, x[idx], y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        timed = i + 1 - costprobe.WARMUP_STEPS
        if timed >= costprobe.MIN_STEPS and time.perf_counter() - probe_start > costprobe.TRAIN_SECONDS:
            break
    per_step = (time.perf_counter() - start) / timed
    history.epoch_loss.append(float(loss.detach()))
    costprobe.record("train", f"{type(model).__name__} on {len(x)} inputs", per_step, full_steps, "steps",
                     time.perf_counter() - probe_start, timed)
    if select is not None:
        model.eval()
        start = time.perf_counter()
        with torch.no_grad():
            history.selection.append(float(select(model)))
        seconds = time.perf_counter() - start
        costprobe.record("validation", f"{type(model).__name__} selection", seconds, epochs, "epochs", seconds, 1)
        history.best_epoch = 1
    model.to(memory_format=torch.contiguous_format).eval()
    return history


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int | None = None,
            device: str | torch.device | None = None) -> torch.Tensor:
    """Logits of ``model`` on ``x`` (in eval mode), computed in batches (default: ``config.batch_size``
    of the model's device); returned on the CPU."""
    dev = device if isinstance(device, torch.device) else next(model.parameters()).device
    batch_size = batch_size or config.batch_size(dev)
    model.eval()
    return torch.cat([model(xb.to(dev)).cpu() for xb in x.split(batch_size)]) if len(x) else torch.zeros(0)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y``."""
    if len(x) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float((predict(model, x, batch_size).argmax(1) == y.cpu()).float().mean())


def train_or_load(model_name: str, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                  cfg: TrainConfig | None = None, *, seed: int = 0, loss_fn: LossFn = cross_entropy,
                  loss_key: dict | None = None, cache=None, device: str | None = None,
                  log: Callable[[str], None] | None = print) -> nn.Module:
    """Build ``model_name`` and train it on (x, y), or load it if this exact training ran before.

    The cache key holds the data themselves (their SHA-256), the architecture, ``cfg``,
    the seed and ``loss_key`` (whatever parameterises ``loss_fn``), so poisoned data or a
    different fingerprint set give a different entry.
    """
    from decoylab import models
    from decoylab.cache import Cache, code_version

    cfg = cfg or TrainConfig()
    cache = cache or Cache()
    model = models.build(model_name, tuple(x.shape[1:]), num_classes, seed=seed)
    if loss_fn is not cross_entropy and loss_key is None:
        raise ValueError("a custom loss_fn needs a loss_key naming its parameters, or the cache could mix them up")
    parts = {"model": model_name, "x": x, "y": y, "num_classes": num_classes, "train": cfg, "seed": seed,
             "loss": loss_key or "cross_entropy", "code": code_version(models, sys.modules[__name__])}
    trained = []

    def train(m: nn.Module) -> None:
        history = fit(m, x, y, cfg, loss_fn=loss_fn, seed=seed, device=device, log=log)
        trained.append(history)

    model = cache.model(model, parts, train)
    if log is not None:
        log(f"{model_name}: trained in {trained[0].seconds:.1f} s" if trained else f"{model_name}: loaded from cache")
    return model.to(config.device(device))


def correct_subset(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int | None, seed: int = 0) -> torch.Tensor:
    """Indices of up to ``n`` inputs that ``model`` classifies correctly, stratified by class and seeded.

    The papers attack only correctly classified test points (DEEPSEC: 1000, seed 100;
    Luring: 1000), so that an attack's success is the attack's doing.
    """
    from decoylab.data import stratified_indices

    correct = (predict(model, x).argmax(1) == y.cpu()).nonzero().flatten()
    if n is None or n >= len(correct):
        return correct
    return correct[torch.from_numpy(stratified_indices(y[correct].cpu().numpy(), n, seed))]
