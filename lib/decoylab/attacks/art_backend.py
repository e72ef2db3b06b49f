"""ART 1.20 backend: the field's reference implementations, always with an explicit batch size
(ART's CW, DeepFool and JSMA default to batch_size=1) and progress bars only when interactive."""
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


def _generate(attack, x: torch.Tensor, labels: torch.Tensor, num_classes: int, targeted: bool) -> torch.Tensor:
    y = np.eye(num_classes, dtype=np.float32)[labels.cpu().numpy()]
    adv = attack.generate(x.detach().cpu().numpy().astype(np.float32), y=y)
    return torch.from_numpy(np.asarray(adv, dtype=np.float32))  # ART may return float64 under numpy 2


def fgsm(model, x, labels, *, targeted, eps, num_classes, batch_size):
    from art.attacks.evasion import FastGradientMethod

    attack = FastGradientMethod(classifier(model, x.shape[1:], num_classes), norm=np.inf, eps=eps,
                                targeted=targeted, batch_size=batch_size)
    return _generate(attack, x, labels, num_classes, targeted), 1


def _pgd(model, x, labels, *, targeted, eps, step_size, steps, random_start, num_classes, batch_size):
    from art.attacks.evasion import ProjectedGradientDescent

    attack = ProjectedGradientDescent(
        classifier(model, x.shape[1:], num_classes), norm=np.inf, eps=eps, eps_step=step_size,
        max_iter=steps, targeted=targeted, num_random_init=1 if random_start else 0,
        batch_size=batch_size, verbose=not config.is_batch())
    return _generate(attack, x, labels, num_classes, targeted), steps


def pgd(model, x, labels, *, targeted, eps, step_size, steps, random_start, num_classes, batch_size):
    return _pgd(model, x, labels, targeted=targeted, eps=eps, step_size=step_size, steps=steps,
                random_start=random_start, num_classes=num_classes, batch_size=batch_size)


def bim(model, x, labels, *, targeted, eps, step_size, steps, num_classes, batch_size):
    # ART's BasicIterativeMethod is PGD without random initialisation.
    return _pgd(model, x, labels, targeted=targeted, eps=eps, step_size=step_size, steps=steps,
                random_start=False, num_classes=num_classes, batch_size=batch_size)


def mim(model, x, labels, *, targeted, eps, step_size, steps, momentum, num_classes, batch_size):
    from art.attacks.evasion import MomentumIterativeMethod

    attack = MomentumIterativeMethod(classifier(model, x.shape[1:], num_classes), norm=np.inf, eps=eps,
                                     eps_step=step_size, decay=momentum, max_iter=steps, targeted=targeted,
                                     batch_size=batch_size, verbose=not config.is_batch())
    return _generate(attack, x, labels, num_classes, targeted), steps


def cw_l2(model, x, labels, *, targeted, confidence, learning_rate, max_iter, binary_search_steps, initial_const,
          num_classes, batch_size, optimizer="line_search"):
    from art.attacks.evasion import CarliniL2Method

    if optimizer != "line_search":
        raise ValueError("ART's CarliniL2Method has only its line-search optimiser; optimizer='adam' needs "
                         "backend='fast'")

    attack = CarliniL2Method(classifier(model, x.shape[1:], num_classes), confidence=confidence, targeted=targeted,
                             learning_rate=learning_rate, binary_search_steps=binary_search_steps,
                             max_iter=max_iter, initial_const=initial_const, batch_size=batch_size,
                             verbose=not config.is_batch())
    return _generate(attack, x, labels, num_classes, targeted), binary_search_steps * max_iter


def deepfool(model, x, labels, *, max_iter, overshoot, num_classes, batch_size):
    from art.attacks.evasion import DeepFool

    attack = DeepFool(classifier(model, x.shape[1:], num_classes), max_iter=max_iter, epsilon=overshoot,
                      nb_grads=num_classes, batch_size=batch_size, verbose=not config.is_batch())
    return _generate(attack, x, labels, num_classes, False), max_iter


def jsma(model, x, labels, *, targeted, theta, gamma, saliency, num_classes, batch_size):
    from art.attacks.evasion import SaliencyMapMethod

    if saliency != "target_top2":
        raise ValueError("ART's JSMA implements only saliency='target_top2' (the two largest target-class "
                         "gradients), not the paper's pairwise saliency map; pass saliency='target_top2'")
    attack = SaliencyMapMethod(classifier(model, x.shape[1:], num_classes), theta=theta, gamma=gamma,
                               batch_size=batch_size, verbose=not config.is_batch())
    return _generate(attack, x, labels, num_classes, True), int(np.prod(x.shape[1:]) * gamma / 2)


def ead(model, x, labels, *, targeted, confidence, learning_rate, max_iter, binary_search_steps, initial_const,
        beta, decision_rule, num_classes, batch_size):
    from art.attacks.evasion import ElasticNet

    attack = ElasticNet(classifier(model, x.shape[1:], num_classes), confidence=confidence, targeted=targeted,
                        learning_rate=learning_rate, binary_search_steps=binary_search_steps, max_iter=max_iter,
                        beta=beta, initial_const=initial_const, batch_size=batch_size,
                        decision_rule=decision_rule.upper(), verbose=not config.is_batch())
    return _generate(attack, x, labels, num_classes, targeted), binary_search_steps * max_iter


def uap(model, x, labels, *, eps, fooling_rate, max_passes, deepfool_iter, overshoot, num_classes, batch_size):
    from art.attacks.evasion import UniversalPerturbation

    attack = UniversalPerturbation(classifier(model, x.shape[1:], num_classes), attacker="deepfool",
                                   attacker_params={"max_iter": deepfool_iter, "epsilon": overshoot,
                                                    "batch_size": batch_size, "verbose": False},
                                   delta=1 - fooling_rate, max_iter=max_passes, eps=eps, norm=np.inf,
                                   batch_size=batch_size, verbose=not config.is_batch())
    return _generate(attack, x, labels, num_classes, False), max_passes
