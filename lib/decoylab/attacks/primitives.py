"""What the fast backend's attacks share: the attacker's objective and its gradient, margins,
batching, the L∞ projection and the channels-last copy for cheaper passes.

Every fast attack takes ``(model, x, labels, *, targeted, ...)`` where ``labels`` are the true
classes (untargeted) or the targets, and returns ``(x_adv, gradient_steps)``: whole batches per
gradient step, on any device. Gradient attacks accept ``extra_loss(x_adv, labels)``: a function of
the adversarial batch and the labels the attack works with (true classes untargeted, targets when
targeted) returning one penalty per sample (e.g. a weighted detection score) that the attacker
minimises besides its own objective — the hook the adaptive attacks use. CW weights it by its
constant c like its own margin term (Dathathri et al. 2018, "Detecting Adversarial Examples via
Neural Fingerprinting", Adaptive-CW-L2, eq. 29: γ·(L_CW + L_fp)).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

ExtraLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None


def objective_grad(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool,
                   extra_loss: ExtraLoss) -> torch.Tensor:
    """Gradient of what the attacker ascends: CE on the label (untargeted) or -CE on the
    target (targeted), minus the per-sample ``extra_loss``."""
    return objective_grad_and_logits(model, x, labels, targeted, extra_loss)[0]


def objective_grad_and_logits(model, x, labels, targeted, extra_loss, transform=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``objective_grad`` and the logits at ``x`` from the same forward pass; ``transform``
    (DIM's input diversity) is applied inside the differentiated graph."""
    x = x.detach().requires_grad_(True)
    logits = model(transform(x) if transform is not None else x)
    ce = F.cross_entropy(logits, labels, reduction="sum")
    objective = -ce if targeted else ce
    if extra_loss is not None:
        objective = objective - extra_loss(x, labels).sum()
    (grad,) = torch.autograd.grad(objective, x)
    return grad, logits.detach()


def batches(x: torch.Tensor, labels: torch.Tensor, batch_size: int):
    return zip(x.split(batch_size), labels.split(batch_size))


def project_linf(adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)


def logit_margin(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """What a score-based attacker minimises: z_y − max_{j≠y} z_j (untargeted) or
    max_{j≠t} z_j − z_t (targeted); below 0 means the attack has succeeded."""
    own = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    other = logits.masked_fill(F.one_hot(labels, logits.shape[-1]).bool(), float("-inf")).amax(-1)
    return other - own if targeted else own - other


def margin(logits: torch.Tensor, labels: torch.Tensor, targeted: bool, confidence: float) -> torch.Tensor:
    """C&W's f6 (Carlini & Wagner 2017, eq. for f6): how far the input is from being adversarial
    with margin κ; 0 when it is."""
    return (logit_margin(logits, labels, targeted) + confidence).clamp_min(0)


def channels_last_copy(model: nn.Module, x: torch.Tensor):
    """``models.channels_last_twin(model)`` as a function of NCHW batches, for the passes of the CW
    line search and JSMA and the query attacks' queries: on CPU convolutions and pooling it runs a
    forward pass about 1.4x and a forward+backward pass about 1.15x faster than ``model``
    (``python -m decoylab.tools.bench attacks``). Falls back to ``model`` itself where it cannot be
    copied or the input is not an image batch."""
    if x.dim() != 4:
        return model
    from decoylab.models import channels_last_twin

    try:
        twin = channels_last_twin(model)
    except Exception:  # a model holding something that cannot be copied: use it as it is
        return model
    return lambda batch: twin(batch.contiguous(memory_format=torch.channels_last))
