"""JSMA (Papernot et al. 2016, "The Limitations of Deep Learning in Adversarial Settings", Alg. 3):
the pairwise saliency map and ART 1.20's top-2 variant, with its registry entry."""
from __future__ import annotations

import torch

from decoylab.attacks import art_backend
from decoylab.attacks.entry import EPS, AttackEntry
from decoylab.attacks.primitives import batches, channels_last_copy
from decoylab.params import choice, number


# A backward pass costs about two forward passes: when at least this fraction of the rows goes on,
# back-propagating the stopped rows as well costs less than a new forward pass of the others.
_REUSE_FORWARD_FRACTION = 2 / 3


def jsma(model, x, labels, *, targeted, theta, gamma, saliency="pairs", batch_size=64):
    """JSMA (Papernot et al. 2016, Alg. 3, increasing features): each iteration raises the pair of
    features maximising α·|β| with α = ∂Z_t/∂x_p + ∂Z_t/∂x_q > 0 and β (the other classes) < 0,
    by θ, until the target is reached or a fraction γ of the features has been changed; a changed
    feature leaves the search domain. ``saliency="target_top2"`` is ART 1.20's variant: the two
    features with the largest target-class gradient, and a feature stays searchable until it
    reaches the clip bound (so with θ < 1 it can be raised several times).
    Only the samples still running are evaluated at each iteration."""
    if not targeted:
        raise ValueError("jsma is a targeted attack here; pass targeted=True (target='random' as in the papers)")
    model = channels_last_copy(model, x)  # every pass on the channels-last twin: cheaper on CPU
    out, used = [], 0
    bound = 1.0 if theta > 0 else 0.0
    for xb, lb in batches(x, labels, batch_size):
        shape = xb.shape
        adv = xb.flatten(1).clone()
        domain = adv < 1.0 if theta > 0 else adv > 0.0
        changed = torch.zeros_like(domain)
        running = domain.sum(1) >= 2
        it = 0
        while running.any():
            rows = running.nonzero().flatten()
            xin = adv[rows].view(-1, *shape[1:]).detach().requires_grad_(True)
            logits = model(xin)
            target = lb[rows]
            # The forward pass that the gradient needs also says who has reached the target (no
            # separate prediction pass): as ART, keep going while the target is not reached and the
            # changed fraction is <= gamma.
            going = (logits.argmax(1) != target) & (changed[rows].float().mean(1) <= gamma)
            running[rows] = going
            if not going.any():
                break
            it += 1
            keep = slice(None)  # the rows of this forward pass whose gradients are used
            if not going.all():
                if going.float().mean() < _REUSE_FORWARD_FRACTION:
                    rows, target = rows[going], target[going]
                    xin = adv[rows].view(-1, *shape[1:]).detach().requires_grad_(True)
                    logits = model(xin)
                else:
                    # Most rows go on: back-propagating the stopped ones too and dropping their
                    # gradients (samples are independent in eval mode) costs less than a new forward.
                    keep, rows = going, rows[going]
            g_t = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), xin,
                                      retain_graph=saliency != "target_top2")[0].flatten(1)[keep]
            if saliency == "target_top2":
                p, q = _top2(g_t, domain[rows], theta)
                has_pair = torch.ones(len(rows), dtype=torch.bool, device=x.device)
            else:
                g_all = torch.autograd.grad(logits.sum(), xin)[0].flatten(1)[keep]
                p, q, has_pair = _best_pair(g_t, g_all - g_t, domain[rows], theta)
            moved = rows[has_pair]
            for feature in (p[has_pair], q[has_pair]):
                adv[moved, feature] = (adv[moved, feature] + theta).clamp(0, 1)
                changed[moved, feature] = True
                domain[moved, feature] = (adv[moved, feature] != bound) if saliency == "target_top2" else False
            domain[rows[~has_pair]] = False  # no admissible pair left: this sample stops
            running[rows] = domain[rows].sum(1) >= 2
        used = max(used, it)
        out.append(adv.view(shape).detach())
    return torch.cat(out), used


def _top2(g_t: torch.Tensor, domain: torch.Tensor, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    sign = 1.0 if theta > 0 else -1.0
    score = torch.where(domain, sign * g_t, torch.full_like(g_t, float("-inf")))
    top = score.topk(2, dim=1).indices
    return top[:, 0], top[:, 1]


def _pair_scores(alpha_f: torch.Tensor, beta_f: torch.Tensor, domain: torch.Tensor, theta: float) -> torch.Tensor:
    """(N, F, F) saliency α·|β| of every feature pair, 0 where the pair is not admissible."""
    n_features = alpha_f.shape[1]
    alpha = alpha_f[:, :, None] + alpha_f[:, None, :]
    beta = beta_f[:, :, None] + beta_f[:, None, :]
    pair_ok = domain[:, :, None] & domain[:, None, :]
    pair_ok &= ~torch.eye(n_features, dtype=torch.bool, device=alpha_f.device)[None]
    good = (alpha > 0) & (beta < 0) & pair_ok if theta > 0 else (alpha < 0) & (beta > 0) & pair_ok
    return torch.where(good, alpha.abs() * beta.abs(), torch.zeros_like(alpha))


def _best_pair(alpha_f: torch.Tensor, beta_f: torch.Tensor, domain: torch.Tensor, theta: float,
               probe: int = 32):
    """The admissible feature pair with the largest saliency α·|β| (Papernot et al. 2016, Alg. 3).

    Exact, without scoring all F² pairs: with a = ±α_p and b = ∓β_p signed so that an admissible
    pair has a_p + a_q > 0 and b_p + b_q > 0, a pair's score is at most ub(p) = (a_p + max a)⁺ ·
    (b_p + max b)⁺. The best pair among the ``probe`` features of largest ub is a lower bound LB;
    a feature with ub < LB is in no pair that reaches it, so only pairs of the others are scored.
    Kept features stay in index order, so ties go to the same pair as the full F×F argmax."""
    n_features = alpha_f.shape[1]
    sign = 1.0 if theta > 0 else -1.0
    a, b = sign * alpha_f, -sign * beta_f
    neg_inf = torch.tensor(float("-inf"), device=a.device)
    a_max = torch.where(domain, a, neg_inf).amax(1, keepdim=True)
    b_max = torch.where(domain, b, neg_inf).amax(1, keepdim=True)
    upper = torch.where(domain, (a + a_max).clamp_min(0) * (b + b_max).clamp_min(0), neg_inf)

    def best_among(keep: torch.Tensor, width: int):
        """Best pair among the ``width`` features of largest ``upper`` where ``keep``, in index order."""
        picked = torch.where(keep, upper, neg_inf).topk(width, dim=1).indices.sort(dim=1).values
        valid = keep.gather(1, picked) & domain.gather(1, picked)
        score = _pair_scores(alpha_f.gather(1, picked), beta_f.gather(1, picked), valid, theta).flatten(1)
        best = score.argmax(1)
        return picked.gather(1, (best // width)[:, None])[:, 0], picked.gather(1, (best % width)[:, None])[:, 0], \
            score.amax(1)

    width = min(probe, n_features)
    lower = best_among(domain, width)[2]
    keep = domain & (upper >= lower[:, None])
    width = max(2, int(keep.sum(1).max()))
    if width >= n_features // 2:  # little to prune: the full matrix is as cheap
        return _best_pair_full(alpha_f, beta_f, domain, theta)
    p, q, top = best_among(keep, width)
    return p, q, top > 0


def _best_pair_full(alpha_f: torch.Tensor, beta_f: torch.Tensor, domain: torch.Tensor, theta: float):
    """``_best_pair`` by scoring all F×F pairs: (p, q, whether an admissible pair exists)."""
    n_features = alpha_f.shape[1]
    score = _pair_scores(alpha_f, beta_f, domain, theta).flatten(1)
    best = score.argmax(1)
    return best // n_features, best % n_features, score.amax(1) > 0


# ----- registry entry -----
ENTRIES = [
    AttackEntry("jsma", "l0", "always", {"theta": 1.0, "gamma": 0.1, "saliency": "pairs"},
                {"theta": number(-1, 1, low_open=True), "gamma": EPS, "saliency": choice(("pairs", "target_top2"))},
                {"fast": jsma, "art": art_backend.jsma},
                # HoneyModels ran ART's JSMA: its saliency, and ART's default gamma 1.0.
                {"honeymodels": {"theta": 0.3, "gamma": 1.0, "saliency": "target_top2"},
                 "deepsec_mnist": {"theta": 1.0, "gamma": 0.1},
                 "deepsec_cifar10": {"theta": 1.0, "gamma": 0.1},
                 "nfp_mnist": {"theta": 1.0, "gamma": 0.1},
                 "nfp_cifar10": {"theta": 1.0, "gamma": 0.1}}, uses_gradient_loss=False),
]
