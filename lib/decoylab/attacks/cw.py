"""The Carlini & Wagner family: C&W-L2 (ART 1.20's line search, or the authors' Adam loop), EAD,
OptMargin and box-constrained L-BFGS, with their registry entries."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from decoylab.attacks import art_backend
from decoylab.attacks.entry import COUNT, EPS, LURING_PRESETS, NONNEG, RATE, AttackEntry
from decoylab.attacks.primitives import ExtraLoss, batches, channels_last_copy, logit_margin, margin
from decoylab.params import choice


def cw_l2(model, x, labels, *, targeted, confidence, learning_rate, max_iter, binary_search_steps, initial_const,
          num_classes, optimizer="line_search", batch_size=256, extra_loss: ExtraLoss = None):
    """Carlini-Wagner L2 (Carlini & Wagner 2017, §V): minimise ‖δ‖² + c·f6 in tanh space,
    binary search on c per sample, keep the smallest successful perturbation.

    ``optimizer="line_search"`` (default) is ART 1.20's ``CarliniL2Method`` step for step —
    a gradient step with a per-sample halving/doubling line search on the learning rate — so
    results match ART's at the same settings; ``"adam"`` is the authors' original Adam loop,
    which needs far more iterations than ART's defaults to succeed."""
    if optimizer == "adam":
        return _cw_l2_adam(model, x, labels, targeted=targeted, confidence=confidence, learning_rate=learning_rate,
                           max_iter=max_iter, binary_search_steps=binary_search_steps, initial_const=initial_const,
                           batch_size=batch_size, extra_loss=extra_loss)
    # Every pass, forward-only trials and gradient steps alike, on one channels-last copy.
    twin = channels_last_copy(model, x)
    out = [_cw_l2_line_search(twin, xb, lb, num_classes, targeted, confidence, learning_rate, max_iter,
                              binary_search_steps, initial_const, extra_loss)
           for xb, lb in batches(x, labels, batch_size)]
    return torch.cat(out), binary_search_steps * max_iter


_TANH_SMOOTHER = 0.999999  # ART's constant that keeps arctanh finite at 0 and 1
_C_UPPER_BOUND = 10e10


def _cw_l2_line_search(model, xb, lb, num_classes, targeted, confidence, learning_rate, max_iter,
                       binary_search_steps, initial_const, extra_loss):
    """One batch of ART 1.20's CarliniL2Method.generate, vectorised in torch (same quirks kept)."""
    n, view = len(xb), (-1,) + (1,) * (xb.dim() - 1)
    dev = xb.device
    onehot = F.one_hot(lb, num_classes).bool()

    def evaluate(rows, adv, c):
        """Logits, squared L2 and the objective c·f6 + ‖δ‖² (+ extra) for the given rows."""
        with torch.no_grad():
            logits = model(adv)
            l2 = (adv - xb[rows]).flatten(1).pow(2).sum(1)
            f = margin(logits, lb[rows], targeted, confidence)
            loss = c * f + l2
            if extra_loss is not None:
                loss = loss + c * extra_loss(adv, lb[rows])
        return logits, l2, loss, f

    def to_adv(w):
        return (torch.tanh(w) + 1) / 2

    x_tanh = torch.atanh((xb.clamp(0, 1) * 2 - 1) * _TANH_SMOOTHER)
    c_current = torch.full((n,), float(initial_const), device=dev, dtype=torch.float64)
    c_lower = torch.zeros(n, device=dev, dtype=torch.float64)
    c_double = torch.ones(n, dtype=torch.bool, device=dev)
    best_l2 = torch.full((n,), float("inf"), device=dev)
    best_adv = xb.clone()
    everyone = torch.arange(n, device=dev)
    for _ in range(binary_search_steps):
        if not (c_current < _C_UPPER_BOUND).any():
            break
        c = c_current.float()
        lr = torch.full((n,), float(learning_rate), device=dev)
        adv, w = xb.clone(), x_tanh.clone()
        logits, l2, loss, f = evaluate(everyone, adv, c)
        success = f <= 0
        overall = success.clone()
        for _ in range(max_iter):
            improved = success & (l2 < best_l2)
            best_l2 = torch.where(improved, l2, best_l2)
            best_adv[improved] = adv[improved]
            active = (c_current < _C_UPPER_BOUND) & (lr > 0)
            rows = everyone[active]
            if len(rows) == 0:
                break
            direction = torch.zeros_like(xb)
            direction[rows] = -_cw_gradient(model, xb[rows], adv[rows], w[rows], logits[rows], onehot[rows],
                                            c[rows], targeted, extra_loss)
            prev_loss, best_loss, prev_l2 = loss.clone(), loss.clone(), l2.clone()
            best_lr = torch.zeros(n, device=dev)
            # What the best trial step measured, so the step taken need not be evaluated again.
            kept_logits, kept_l2, kept_f = logits.clone(), l2.clone(), f.clone()

            def trial(mask):
                r = everyone[mask]
                trial_logits, l2[r], loss[r], trial_f = evaluate(r, to_adv(w[r] + lr[r].view(view) * direction[r]), c[r])
                better = loss < best_loss
                best_lr[better], best_loss[better] = lr[better], loss[better]
                won = better[r]
                kept_logits[r[won]], kept_l2[r[won]], kept_f[r[won]] = trial_logits[won], l2[r][won], trial_f[won]

            # ART's first trial: every active row at its current rate.
            trial(active)
            lr[active] /= 2
            # From here ART halves the rate for the rows that trial did not improve (up to 4 more
            # trials) and then doubles it for the rows it did (up to 5). The two groups never mix
            # (a halving row's counter passes 1, a doubling row's stays 1), so both loops run side
            # by side: one forward pass per step for both groups, with bigger batches.
            halve = active & (loss >= prev_loss)
            grow = active & ~halve
            lr[grow] *= 2  # ART's lr[active] *= 2 between its two loops, for the doubling rows
            for step in range(5):
                halving_now = halve & (loss >= prev_loss) & (step < 4)
                doubling_now = grow & (loss <= best_loss)
                if not (halving_now | doubling_now).any():
                    break
                lr[doubling_now] *= 2
                trial(halving_now | doubling_now)
                lr[halving_now] /= 2
            lr[halve] *= 2
            lr[grow] /= 2
            stay = active & (best_lr == 0)  # no step helped: keep the current point's values
            l2[stay], loss[stay] = prev_l2[stay], prev_loss[stay]
            update = everyone[active & (best_lr > 0)]
            if len(update):
                w[update] = w[update] + best_lr[update].view(view) * direction[update]
                adv[update] = to_adv(w[update])  # the point the winning trial measured
                logits[update], l2[update], loss[update], f[update] = \
                    kept_logits[update], kept_l2[update], best_loss[update], kept_f[update]
                success = f <= 0
                overall |= success
        improved = success & (l2 < best_l2)
        best_l2 = torch.where(improved, l2, best_l2)
        best_adv[improved] = adv[improved]
        # ART's update of c, including its aliasing: the lower bound takes the *new* c.
        c_double &= ~overall
        c_current = torch.where(overall, (c_lower + c_current) / 2, c_current)
        grow = ~overall & c_double
        c_current = torch.where(grow, c_current * 2, c_current)
        creep = ~overall & ~c_double
        c_current = torch.where(creep, c_current + (c_current - c_lower) / 2, c_current)
        c_lower = torch.where(~overall, c_current, c_lower)
    return best_adv


def _cw_gradient(model, x, adv, w, logits, onehot, c, targeted, extra_loss):
    """∂/∂w of c·(Z_add − Z_sub) + ‖adv − x‖² (+ extra) with adv = (tanh(w)/s + 1)/2, as ART
    computes it: the margin's gradient is used whether or not the hinge is active."""
    other = logits.masked_fill(onehot, float("-inf")).argmax(1)
    label = onehot.float().argmax(1)
    add, sub = (other, label) if targeted else (label, other)
    adv = adv.detach().requires_grad_(True)
    z = model(adv)
    objective = (c * (z.gather(1, add[:, None]) - z.gather(1, sub[:, None])).squeeze(1)).sum()
    if extra_loss is not None:
        objective = objective + (c * extra_loss(adv, label)).sum()
    (grad,) = torch.autograd.grad(objective, adv)
    grad = grad + 2 * (adv.detach() - x)
    return grad * (1 - torch.tanh(w).pow(2)) / (2 * _TANH_SMOOTHER)


def _cw_l2_adam(model, x, labels, *, targeted, confidence, learning_rate, max_iter, binary_search_steps,
                initial_const, batch_size, extra_loss, noise: torch.Tensor | None = None):
    """C&W's own optimiser (Carlini & Wagner 2017, §V): Adam on the tanh-space modifier, binary
    search on c. With ``noise`` (S, ...) the margin term is summed over the copies x' + vᵢ
    (OptMargin), and success is judged at the last copy, which must be the zero vector."""
    out = []
    count = 1 if noise is None else len(noise)
    for xb, lb in batches(x, labels, batch_size):
        n = len(xb)
        w = torch.atanh((xb * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))
        const = torch.full((n,), float(initial_const), device=xb.device)
        lower, upper = torch.zeros(n, device=xb.device), torch.full((n,), 1e10, device=xb.device)
        best_l2 = torch.full((n,), float("inf"), device=xb.device)
        best_adv = xb.clone()
        for _ in range(binary_search_steps):
            modifier = torch.zeros_like(xb, requires_grad=True)
            opt = torch.optim.Adam([modifier], lr=learning_rate)
            succeeded = torch.zeros(n, dtype=torch.bool, device=xb.device)
            for _ in range(max_iter):
                adv = (torch.tanh(w + modifier) + 1) / 2
                inputs = adv if noise is None else (adv[None] + noise[:, None]).clamp(0, 1).flatten(0, 1)
                logits = model(inputs).view(count, n, -1)
                f = margin(logits, lb[None].expand(count, n), targeted, confidence).sum(0)
                l2 = (adv - xb).flatten(1).pow(2).sum(1)
                loss = l2 + const * f
                if extra_loss is not None:
                    loss = loss + const * extra_loss(adv, lb)
                # the modifier's gradient alone: backward() would also fill every weight's .grad
                modifier.grad, = torch.autograd.grad(loss.sum(), modifier)
                opt.step()
                with torch.no_grad():
                    ok = logit_margin(logits[-1], lb, targeted) + confidence <= 0
                    better = ok & (l2 < best_l2)
                    best_l2 = torch.where(better, l2, best_l2)
                    best_adv[better] = adv[better].detach()
                    succeeded |= ok
            const, lower, upper = _binary_search_c(const, lower, upper, succeeded)
        out.append(best_adv)
    return torch.cat(out), binary_search_steps * max_iter * count


def _binary_search_c(const, lower, upper, succeeded):
    """C&W's per-sample search on c: halve toward the last success, x10 while none."""
    upper = torch.where(succeeded, torch.min(upper, const), upper)
    lower = torch.where(succeeded, lower, torch.max(lower, const))
    return torch.where(upper < 1e9, (lower + upper) / 2, const * 10), lower, upper


def ead(model, x, labels, *, targeted, confidence, learning_rate, max_iter, binary_search_steps, initial_const,
        beta, decision_rule="en", batch_size=256, extra_loss: ExtraLoss = None):
    """EAD (Chen et al. 2018, eq. 5 and Algorithm 1): minimise c·f6(x') + ‖δ‖₂² + β‖δ‖₁ over the box
    by FISTA — a gradient step on the smooth part, then the projected shrinkage-thresholding
    operator S_β (eq. 6), with the learning rate decaying as √(1 − k/K) like the reference code —
    and a binary search on c. The kept example is the successful one with the smallest elastic-net
    cost β‖δ‖₁ + ‖δ‖₂² (``decision_rule="en"``) or L1 (``"l1"``)."""
    out = []
    for xb, lb in batches(x, labels, batch_size):
        n = len(xb)
        const = torch.full((n,), float(initial_const), device=xb.device)
        lower, upper = torch.zeros(n, device=xb.device), torch.full((n,), 1e10, device=xb.device)
        best_cost = torch.full((n,), float("inf"), device=xb.device)
        best_adv = xb.clone()
        for _ in range(binary_search_steps):
            current, slack = xb.clone(), xb.clone()
            succeeded = torch.zeros(n, dtype=torch.bool, device=xb.device)
            for k in range(max_iter):
                lr = learning_rate * (1 - k / max_iter) ** 0.5
                slack = slack.detach().requires_grad_(True)
                logits = model(slack)
                smooth = const * margin(logits, lb, targeted, confidence) + (slack - xb).flatten(1).pow(2).sum(1)
                if extra_loss is not None:
                    smooth = smooth + const * extra_loss(slack, lb)
                (grad,) = torch.autograd.grad(smooth.sum(), slack)
                with torch.no_grad():
                    z = slack - lr * grad - xb
                    # S_β: shrink each coordinate of the perturbation toward 0 by β, within the box.
                    shrunk = torch.where(z > beta, (xb + z - beta).clamp(max=1.0),
                                         torch.where(z < -beta, (xb + z + beta).clamp(min=0.0), xb))
                    slack = shrunk + k / (k + 3) * (shrunk - current)
                    current = shrunk
                    pred_logits = model(current)
                    ok = margin(pred_logits, lb, targeted, confidence) <= 0
                    delta = (current - xb).flatten(1)
                    l1 = delta.abs().sum(1)
                    cost = beta * l1 + delta.pow(2).sum(1) if decision_rule == "en" else l1
                    better = ok & (cost < best_cost)
                    best_cost = torch.where(better, cost, best_cost)
                    best_adv[better] = current[better]
                    succeeded |= ok
            const, lower, upper = _binary_search_c(const, lower, upper, succeeded)
        out.append(best_adv)
    return torch.cat(out), binary_search_steps * max_iter


def optmargin(model, x, labels, *, targeted, confidence, learning_rate, max_iter, binary_search_steps,
              initial_const, noise_count, noise_magnitude, seed=0, batch_size=256,
              extra_loss: ExtraLoss = None):
    """OptMargin (He et al. 2018, §4): C&W-L2 (Adam in tanh space, binary search on c) whose loss
    sums the margin term over ``noise_count`` copies x' + vᵢ, so the example stays adversarial
    under small random perturbations (it defeats region-based classification). The vᵢ are
    orthogonal directions (QR of a Gaussian matrix) scaled so their largest pixel is
    ``noise_magnitude``, the last one zero — as DEEPSEC's implementation the paper ran.
    Success is judged at x' itself. Untargeted."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    features = int(x[0].numel())
    count = min(noise_count, features)
    basis, _ = torch.linalg.qr(torch.randn(features, count, generator=g, dtype=torch.float64))
    noise = (basis / basis.abs().max() * noise_magnitude).T.float().reshape(count, *x.shape[1:]).to(x.device)
    noise[-1] = 0
    return _cw_l2_adam(model, x, labels, targeted=targeted, confidence=confidence, learning_rate=learning_rate,
                       max_iter=max_iter, binary_search_steps=binary_search_steps, initial_const=initial_const,
                       batch_size=batch_size, extra_loss=extra_loss, noise=noise)


def blb(model, x, labels, *, targeted, max_iter, binary_search_steps, initial_const, batch_size=256,
        extra_loss: ExtraLoss = None):
    """Box-constrained L-BFGS (Szegedy et al. 2014, §4.1): minimise c·‖δ‖₂² + CE(x', t) over
    x' ∈ [0, 1]ⁿ with scipy's L-BFGS-B, and search c per sample (larger c while the target is
    reached, smaller otherwise; the best successful example kept). The samples' objectives are
    independent, so one L-BFGS-B run over the whole batch (their sum, bounds per pixel) finds each
    sample's minimiser with one forward-backward pass per evaluation instead of one per sample."""
    import numpy as np
    from scipy.optimize import minimize

    if not targeted:
        raise ValueError("blb is a targeted attack (Szegedy et al.); pass targeted=True")
    out, evaluations = [], 0
    for xb, lb in batches(x, labels, batch_size):
        n, shape = len(xb), xb.shape
        const = torch.full((n,), float(initial_const), device=xb.device, dtype=torch.float64)
        lower, upper = torch.zeros_like(const), torch.full_like(const, 1e10)
        best_l2 = torch.full((n,), float("inf"), device=xb.device)
        best_adv = xb.clone()
        for _ in range(binary_search_steps):
            c = const.float()

            def objective(flat: np.ndarray):
                adv = torch.from_numpy(flat.astype(np.float32)).view(shape).to(xb.device).requires_grad_(True)
                loss = c * (adv - xb).flatten(1).pow(2).sum(1) + F.cross_entropy(model(adv), lb, reduction="none")
                if extra_loss is not None:
                    loss = loss + extra_loss(adv, lb)
                (grad,) = torch.autograd.grad(loss.sum(), adv)
                return float(loss.detach().sum()), grad.flatten().double().cpu().numpy()

            found = minimize(objective, xb.flatten().double().cpu().numpy(), jac=True, method="L-BFGS-B",
                             bounds=[(0.0, 1.0)] * xb.numel(), options={"maxiter": max_iter})
            evaluations += int(found.nfev)
            adv = torch.from_numpy(found.x.astype(np.float32)).view(shape).to(xb.device)
            with torch.no_grad():
                ok = model(adv).argmax(1) == lb
            l2 = (adv - xb).flatten(1).norm(dim=1)
            better = ok & (l2 < best_l2)
            best_l2 = torch.where(better, l2, best_l2)
            best_adv[better] = adv[better]
            # Here c weighs the distance: on success try a larger c (closer example), else a smaller one.
            lower = torch.where(ok, torch.max(lower, const), lower)
            upper = torch.where(ok, upper, torch.min(upper, const))
            const = torch.where(upper < 1e9, (lower + upper) / 2, const * 10)
        out.append(best_adv)
    return torch.cat(out), evaluations


# ----- registry entries -----
# Confidence κ, the learning rate, iterations per binary-search step, binary-search steps, the starting constant c.
_CW_ADAM = {"confidence": NONNEG, "learning_rate": RATE, "max_iter": COUNT, "binary_search_steps": COUNT,
            "initial_const": RATE}
_CW = {**_CW_ADAM, "optimizer": choice(("line_search", "adam"))}
_CW_DEFAULTS = {"confidence": 0.0, "learning_rate": 0.01, "max_iter": 10, "binary_search_steps": 10,
                "initial_const": 0.01, "optimizer": "line_search"}  # ART 1.20's defaults and its optimiser
# The Adam-based family (EAD, OptMargin).
_CW_ADAM_DEFAULTS = {"confidence": 0.0, "learning_rate": 0.01, "max_iter": 100, "binary_search_steps": 5,
                     "initial_const": 0.01}

ENTRIES = [
    AttackEntry("cw2", "l2", "optional", dict(_CW_DEFAULTS), _CW, {"fast": cw_l2, "art": art_backend.cw_l2},
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
                        "initial_const": 0.5} for k in LURING_PRESETS}}),
    # The Attractors paper's Table VII (DEEPSEC) for the attacks below; MNIST rows unless named cifar10.
    AttackEntry("ead", "l1", "optional", {**_CW_ADAM_DEFAULTS, "beta": 1e-3, "decision_rule": "en"},
                {**_CW_ADAM, "beta": NONNEG, "decision_rule": choice(("en", "l1"))},
                {"fast": ead, "art": art_backend.ead},
                {"deepsec_mnist": {"learning_rate": 0.02, "max_iter": 10000, "binary_search_steps": 10,
                                   "initial_const": 0.001, "beta": 1e-3},
                 "deepsec_cifar10": {"learning_rate": 0.02, "max_iter": 10000, "binary_search_steps": 10,
                                     "initial_const": 0.001, "beta": 1e-3},
                 # Table VIII (the Trapdoor paper's settings, EAD*).
                 "trapdoor": {"learning_rate": 0.5, "max_iter": 500, "binary_search_steps": 20,
                              "initial_const": 0.001, "beta": 1e-3}}),
    AttackEntry("optmargin", "l2", "never", {**_CW_ADAM_DEFAULTS, "noise_count": 20, "noise_magnitude": 0.3},
                {**_CW_ADAM, "noise_count": COUNT, "noise_magnitude": EPS}, {"fast": optmargin},
                {"deepsec_mnist": {"initial_const": 0.02, "binary_search_steps": 4, "learning_rate": 0.2,
                                   "max_iter": 1000, "noise_count": 20, "noise_magnitude": 0.3},
                 "deepsec_cifar10": {"initial_const": 1.0, "binary_search_steps": 4, "learning_rate": 0.02,
                                     "max_iter": 1000, "noise_count": 20, "noise_magnitude": 0.3}}),
    AttackEntry("blb", "l2", "always", {"max_iter": 1000, "binary_search_steps": 5, "initial_const": 0.01},
                {"max_iter": COUNT, "binary_search_steps": COUNT, "initial_const": RATE}, {"fast": blb},
                {"deepsec_mnist": {"max_iter": 1000, "binary_search_steps": 5, "initial_const": 0.01},
                 "deepsec_cifar10": {"max_iter": 1000, "binary_search_steps": 5, "initial_const": 0.01}}),
]
