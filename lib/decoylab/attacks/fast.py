"""Batched torch attacks ("fast" backend): whole batches per gradient step, on any device."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _loss_grad(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Gradient of the attacker's objective: ascend CE on the label, or descend CE on the target."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), labels, reduction="sum")
    (grad,) = torch.autograd.grad(-loss if targeted else loss, x)
    return grad


def fgsm(model, x, labels, *, targeted, eps, batch_size, **_):
    """Fast Gradient Sign Method (Goodfellow et al. 2015): x + eps * sign(grad)."""
    out = [(xb + eps * _loss_grad(model, xb, lb, targeted).sign()).clamp(0, 1)
           for xb, lb in zip(x.split(batch_size), labels.split(batch_size))]
    return torch.cat(out), 1


def pgd(model, x, labels, *, targeted, eps, step_size, steps, random_start, seed, batch_size, **_):
    """L-inf PGD (Madry et al. 2018): signed gradient steps projected on the eps-ball and [0, 1]."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    for xb, lb in zip(x.split(batch_size), labels.split(batch_size)):
        adv = xb.clone()
        if random_start:
            adv = (adv + (torch.rand(xb.shape, generator=g) * 2 - 1).to(xb.device) * eps).clamp(0, 1)
        for _ in range(steps):
            adv = adv + step_size * _loss_grad(model, adv, lb, targeted).sign()
            adv = torch.min(torch.max(adv, xb - eps), xb + eps).clamp(0, 1)
        out.append(adv.detach())
    return torch.cat(out), steps
