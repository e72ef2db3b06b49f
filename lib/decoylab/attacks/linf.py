"""The L∞ sign-gradient family (FGSM, R+FGSM, BIM/BIM-a, PGD, MIM, DIM, MIM-TI, DIM-TI, the
least-likely-class attacks, TMI-FGSM) and MIM's L2 variant, with their registry entries."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from decoylab.attacks import art_backend
from decoylab.attacks.entry import COUNT, EPS, FLAG, LURING_PRESETS, NONNEG, PROB, RATE, AttackEntry
from decoylab.attacks.primitives import ExtraLoss, batches, objective_grad, objective_grad_and_logits, project_linf


def iterative_linf(model, x, labels, *, targeted, eps, step_size, steps, random_start=False, momentum=0.0,
                   early_stop=False, diversity_prob=0.0, ti_kernel=1, seed=0, batch_size=256,
                   extra_loss: ExtraLoss = None):
    """The L∞ sign-gradient family: FGSM (1 step of eps), BIM/I-FGSM (Kurakin et al. 2017),
    PGD (Madry et al. 2018, uniform random start) and MI-FGSM (Dong et al. 2018, eq. 6:
    g ← μ·g + ∇/‖∇‖₁, step along sign(g)), with the transfer tricks the Luring paper's MIM-W
    combines: DIM (Xie et al. 2018: with probability ``diversity_prob`` the gradient is taken
    through a random shrink-and-pad of the input) and TI (Dong et al. 2019: the gradient is
    smoothed by a ``ti_kernel`` x ``ti_kernel`` Gaussian before the step).

    ``early_stop`` freezes each sample as soon as it is misclassified (or reaches its target):
    NeuralFP's BIM-a (§3, "iterates until misclassification"), against BIM-b's fixed step count.
    Returns the number of gradient steps of the longest-running sample."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    smooth = _ti_smoother(ti_kernel, x.shape[1], x.device) if ti_kernel > 1 else None
    out, used = [], 0
    for xb, lb in batches(x, labels, batch_size):
        adv = xb.clone()
        if random_start:
            adv = project_linf(adv + (torch.rand(xb.shape, generator=g) * 2 - 1).to(xb.device) * eps, xb, eps)
        velocity = torch.zeros_like(xb)
        running = torch.ones(len(xb), dtype=torch.bool, device=xb.device)
        for step in range(steps):
            diversify = _input_diversity(g) if diversity_prob and float(torch.rand(1, generator=g)) < diversity_prob \
                else None
            grad, logits = objective_grad_and_logits(model, adv, lb, targeted, extra_loss, diversify)
            if early_stop:  # the gradient's forward pass tells which samples are still correct
                pred = logits.argmax(1)
                running &= (pred != lb) if targeted else (pred == lb)
                if not running.any():
                    break
            if smooth is not None:
                grad = smooth(grad)
            if momentum:
                velocity = momentum * velocity + _l1_normalised(grad)
                grad = velocity
            stepped = project_linf(adv + step_size * grad.sign(), xb, eps)
            adv = torch.where(running.view(-1, 1, 1, 1), stepped, adv) if early_stop else stepped
            used = max(used, step + 1)
        out.append(adv.detach())
    return torch.cat(out), used


def _l1_normalised(grad: torch.Tensor) -> torch.Tensor:
    return grad / grad.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, 1, 1, 1)


DIVERSITY_SHRINK = 0.9  # DIM's resize range relative to the image side (torchattacks' resize_rate)


def _input_diversity(g: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
    """DIM's transform T(x; p) for fixed-size inputs: resize to a random side in [0.9·H, H), then
    zero-pad back to H at a random offset (one draw per step, as the reference code)."""
    def transform(x: torch.Tensor) -> torch.Tensor:
        side = x.shape[-1]
        low = max(1, int(side * DIVERSITY_SHRINK))
        new = int(torch.randint(low, side, (1,), generator=g)) if low < side else side
        shrunk = F.interpolate(x, size=(new, new), mode="nearest")
        pad = side - new
        left = int(torch.randint(0, pad + 1, (1,), generator=g))
        top = int(torch.randint(0, pad + 1, (1,), generator=g))
        return F.pad(shrunk, (left, pad - left, top, pad - top))
    return transform


def _ti_smoother(kernel: int, channels: int, device) -> Callable[[torch.Tensor], torch.Tensor]:
    """TI's gradient smoothing (Dong et al. 2019, eq. 8): a depthwise convolution with a
    normalised Gaussian over ±3σ, the reference code's ``gkern(kernlen, nsig=3)``."""
    ticks = torch.linspace(-3, 3, kernel, device=device)
    g1 = torch.exp(-ticks ** 2 / 2)
    weight = (g1[:, None] * g1[None, :])
    weight = (weight / weight.sum()).expand(channels, 1, kernel, kernel).contiguous()
    left = (kernel - 1) // 2

    def smooth(grad: torch.Tensor) -> torch.Tensor:
        padded = F.pad(grad, (left, kernel - 1 - left, left, kernel - 1 - left))
        return F.conv2d(padded, weight, groups=channels)
    return smooth


def iterative_l2(model, x, labels, *, targeted, eps, eps_l2, step_size, steps, momentum=1.0, batch_size=256,
                 extra_loss: ExtraLoss = None):
    """MIM in L2 (Dong et al. 2018, the cleverhans ``ord=2`` variant): momentum on the
    L1-normalised gradient, a step of ``step_size`` along g/‖g‖₂, projection on the L2 ball of
    radius ``eps_l2`` — then clipped to the L∞ ball ``eps``, as the Luring paper reports MIML2
    (Appendix D.1: "clipped to respect the threat model with regards to ε")."""
    out = []
    for xb, lb in batches(x, labels, batch_size):
        adv, velocity = xb.clone(), torch.zeros_like(xb)
        for _ in range(steps):
            grad = objective_grad(model, adv, lb, targeted, extra_loss)
            velocity = momentum * velocity + _l1_normalised(grad) if momentum else grad
            direction = velocity / velocity.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            delta = adv + step_size * direction - xb
            norms = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            delta = delta * (eps_l2 / norms).clamp(max=1.0)
            adv = project_linf(xb + delta, xb, eps).detach()
        out.append(adv)
    return torch.cat(out), steps


def fgsm(model, x, labels, *, targeted, eps, batch_size=256, extra_loss: ExtraLoss = None):
    """FGSM (Goodfellow et al. 2015): x + ε·sign(∇)."""
    return iterative_linf(model, x, labels, targeted=targeted, eps=eps, step_size=eps, steps=1,
                          batch_size=batch_size, extra_loss=extra_loss)


def rfgsm(model, x, labels, *, targeted, eps, alpha, seed=0, batch_size=256, extra_loss: ExtraLoss = None):
    """R+FGSM (Tramèr et al. 2018, eq. 9): a random sign step of α, then a gradient sign step of ε − α."""
    if alpha >= eps:
        raise ValueError(f"alpha={alpha} is not allowed; R+FGSM needs alpha < eps ({eps})")
    g = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    for xb, lb in batches(x, labels, batch_size):
        start = (xb + alpha * torch.randn(xb.shape, generator=g).sign().to(xb.device)).clamp(0, 1)
        grad = objective_grad(model, start, lb, targeted, extra_loss)
        out.append(project_linf(start + (eps - alpha) * grad.sign(), xb, eps).detach())
    return torch.cat(out), 1


# ----- registry entries -----
# Presets name the paper table they come from: honeymodels = HoneyModels appendix C (Tables II-IV);
# deepsec_* = Attractors paper Table VII (DEEPSEC); nfp_mnist / nfp_cifar10 = NeuralFP code (inputs on
# [0, 1] here, so its eps on the [-0.5, 0.5] scale carries over unchanged); luring_* = Luring
# paper Appendices D.1 and F (its inputs are on [0, 1] too).

_LINF_ITER = {"eps": EPS, "step_size": EPS, "steps": COUNT}
_MIM = {**_LINF_ITER, "momentum": NONNEG}
_MIM_DEFAULTS = {"eps": 0.3, "step_size": 0.05, "steps": 15, "momentum": 1.0}
_LURING_MIM = {"luring_mnist": {"step_size": 0.01, "steps": 1000, "momentum": 1.0},
               "luring_svhn": {"step_size": 0.01, "steps": 500, "momentum": 1.0},
               "luring_cifar10": {"step_size": 0.01, "steps": 100, "momentum": 1.0}}
_LURING_P = {"luring_mnist": 1.0, "luring_svhn": 1.0, "luring_cifar10": 0.6}
_LURING_KERNEL = {"luring_mnist": 5, "luring_svhn": 10, "luring_cifar10": 3}
_DEEPSEC_ITER = {"deepsec_mnist": {"eps": 0.3, "step_size": 0.05, "steps": 15},
                 "deepsec_cifar10": {"eps": 0.1, "step_size": 0.01, "steps": 15}}

ENTRIES = [
    AttackEntry("fgsm", "linf", "optional", {"eps": 0.3}, {"eps": EPS}, {"fast": fgsm, "art": art_backend.fgsm},
                {"deepsec_mnist": {"eps": 0.3}, "deepsec_cifar10": {"eps": 0.1}, "nfp_mnist": {"eps": 0.4},
                 "nfp_cifar10": {"eps": 0.05},
                 # Luring sweeps eps (Fig. 2); FGSM has no other setting.
                 **{k: {} for k in LURING_PRESETS}}),
    AttackEntry("rfgsm", "linf", "optional", {"eps": 0.3, "alpha": 0.15}, {"eps": EPS, "alpha": EPS}, {"fast": rfgsm},
                {"deepsec_mnist": {"eps": 0.3, "alpha": 0.15}, "deepsec_cifar10": {"eps": 0.1, "alpha": 0.05}}),
    AttackEntry("bim", "linf", "optional", {"eps": 0.3, "step_size": 0.05, "steps": 15}, _LINF_ITER,
                {"fast": iterative_linf, "art": art_backend.bim},
                {**_DEEPSEC_ITER, "nfp_mnist": {"eps": 0.4, "step_size": 0.01, "steps": 50},
                 "nfp_cifar10": {"eps": 0.05, "step_size": 0.005, "steps": 50}}),
    # NeuralFP's BIM-a: BIM that stops each sample at its first misclassification (BIM-b = "bim").
    AttackEntry("bim_a", "linf", "optional", {"eps": 0.3, "step_size": 0.05, "steps": 15}, _LINF_ITER,
                {"fast": iterative_linf}, {"nfp_mnist": {"eps": 0.4, "step_size": 0.01, "steps": 50},
                                           "nfp_cifar10": {"eps": 0.05, "step_size": 0.005, "steps": 50}},
                fixed={"early_stop": True}),
    # HoneyModels used ART's PGD defaults besides eps and max_iter: eps_step 0.1, num_random_init 0.
    AttackEntry("pgd", "linf", "optional", {"eps": 0.3, "step_size": 0.01, "steps": 40, "random_start": True},
                {**_LINF_ITER, "random_start": FLAG}, {"fast": iterative_linf, "art": art_backend.pgd},
                {"honeymodels": {"eps": 0.3, "step_size": 0.1, "steps": 5, "random_start": False}, **_DEEPSEC_ITER,
                 # Table VIII: the Trapdoor paper's PGD* (and BPDA) settings.
                 "trapdoor": {"eps": 0.3, "step_size": 0.04, "steps": 100},
                 # Luring Appendix D.1: 1000 iterations of 0.01 for every data set.
                 **{k: {"step_size": 0.01, "steps": 1000} for k in LURING_PRESETS}}),
    AttackEntry("mim", "linf", "optional", dict(_MIM_DEFAULTS), _MIM, {"fast": iterative_linf, "art": art_backend.mim},
                {**_DEEPSEC_ITER, **_LURING_MIM}),
    # The Luring paper's MIM-W family (§4.2, Appendix F.2): MIM with input diversity (DIM), with
    # translation-invariant gradients (MIM-TI) or both (DIM-TI). Presets: iterations 1000 / 500 / 100
    # on MNIST / SVHN / CIFAR-10, μ = 1, DIM's p = 1.0 / 1.0 / 0.6, the kernel the paper found best
    # for its Luring model (Tables 11-13: 5 / 10 / 3); eps is each experiment's budget.
    AttackEntry("dim", "linf", "optional", {**_MIM_DEFAULTS, "diversity_prob": 1.0},
                {**_MIM, "diversity_prob": PROB}, {"fast": iterative_linf},
                {k: {**v, "diversity_prob": _LURING_P[k]} for k, v in _LURING_MIM.items()}),
    AttackEntry("mim_ti", "linf", "optional", {**_MIM_DEFAULTS, "ti_kernel": 5},
                {**_MIM, "ti_kernel": COUNT}, {"fast": iterative_linf},
                {k: {**v, "ti_kernel": _LURING_KERNEL[k]} for k, v in _LURING_MIM.items()}),
    AttackEntry("dim_ti", "linf", "optional", {**_MIM_DEFAULTS, "diversity_prob": 1.0, "ti_kernel": 5},
                {**_MIM, "diversity_prob": PROB, "ti_kernel": COUNT}, {"fast": iterative_linf},
                {k: {**v, "diversity_prob": _LURING_P[k], "ti_kernel": _LURING_KERNEL[k]}
                 for k, v in _LURING_MIM.items()}),
    # MIML2 (Luring Appendix D.1): L2 bound 30 (MNIST) / 2 (SVHN, CIFAR-10), step 0.01, 1000
    # iterations, μ = 1, clipped to the L∞ budget eps.
    AttackEntry("mim_l2", "l2", "optional", {"eps": 0.3, "eps_l2": 3.0, "step_size": 0.1, "steps": 15, "momentum": 1.0},
                {"eps": EPS, "eps_l2": RATE, "step_size": RATE, "steps": COUNT, "momentum": NONNEG},
                {"fast": iterative_l2},
                {"luring_mnist": {"eps_l2": 30.0, "step_size": 0.01, "steps": 1000},
                 "luring_svhn": {"eps_l2": 2.0, "step_size": 0.01, "steps": 1000},
                 "luring_cifar10": {"eps_l2": 2.0, "step_size": 0.01, "steps": 1000}}),
    # The least-likely-class family (Kurakin et al. 2017): targeted at argmin of the clean logits.
    AttackEntry("llc", "linf", "least_likely", {"eps": 0.3}, {"eps": EPS}, {"fast": fgsm},
                {"deepsec_mnist": {"eps": 0.3}, "deepsec_cifar10": {"eps": 0.1}}),
    # DEEPSEC's (R)LLC steps α at random, then ε along the gradient (total α + ε); here eps is the
    # total, so Table VII's ε = α = 0.15 / 0.05 reads eps 0.3 / 0.1.
    AttackEntry("rllc", "linf", "least_likely", {"eps": 0.15, "alpha": 0.075}, {"eps": EPS, "alpha": EPS},
                {"fast": rfgsm},
                {"deepsec_mnist": {"eps": 0.3, "alpha": 0.15}, "deepsec_cifar10": {"eps": 0.1, "alpha": 0.05}}),
    AttackEntry("illc", "linf", "least_likely", {"eps": 0.3, "step_size": 0.05, "steps": 15}, _LINF_ITER,
                {"fast": iterative_linf}, dict(_DEEPSEC_ITER)),
    AttackEntry("tmifgsm", "linf", "always", {"eps": 0.3, "step_size": 0.05, "steps": 15, "momentum": 1.0}, _MIM,
                {"fast": iterative_linf}, dict(_DEEPSEC_ITER)),
]
