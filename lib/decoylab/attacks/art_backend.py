"""ART 1.20 backend: the field's reference implementations, wrapped with explicit batch sizes."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from decoylab import config


def classifier(model: nn.Module, input_shape: tuple[int, ...], num_classes: int):
    """An ART ``PyTorchClassifier`` over ``model`` for inputs in [0, 1]."""
    from art.estimators.classification import PyTorchClassifier

    device = next(model.parameters()).device
    return PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(input_shape),
                             nb_classes=num_classes, clip_values=(0.0, 1.0),
                             device_type="gpu" if device.type == "cuda" else "cpu")


def _labels(labels: torch.Tensor, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[labels.cpu().numpy()]


def fgsm(model, x, labels, *, targeted, eps, num_classes, batch_size, **_):
    from art.attacks.evasion import FastGradientMethod

    attack = FastGradientMethod(classifier(model, x.shape[1:], num_classes), norm=np.inf, eps=eps,
                                targeted=targeted, batch_size=batch_size)
    adv = attack.generate(x.cpu().numpy(), y=_labels(labels, num_classes))
    return torch.from_numpy(adv.astype(np.float32)), 1


def pgd(model, x, labels, *, targeted, eps, step_size, steps, random_start, num_classes, batch_size, **_):
    from art.attacks.evasion import ProjectedGradientDescent

    attack = ProjectedGradientDescent(
        classifier(model, x.shape[1:], num_classes), norm=np.inf, eps=eps, eps_step=step_size,
        max_iter=steps, targeted=targeted, num_random_init=1 if random_start else 0,
        batch_size=batch_size, verbose=not config.is_batch())
    adv = attack.generate(x.cpu().numpy(), y=_labels(labels, num_classes))
    return torch.from_numpy(adv.astype(np.float32)), steps
