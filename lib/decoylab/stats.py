"""Intervals and two-sample statistics: 95 % intervals for a proportion (Wilson), a mean, an AUC (Hanley and
McNeil; percentile bootstraps of AUCs, of their differences and of differences of means), and the
Gaussian-kernel MMD with its bootstrap and permutation test (vectorised in torch).

HoneyModels §IV-C (Fig. 5) measures indistinguishability with MMD over bootstrap draws of 50
adversarial samples; here every draw reuses one precomputed kernel matrix over the pooled samples,
so 1000 draws cost a few gathers instead of 1000 kernel evaluations.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927) for ``k`` successes in ``n`` trials; n = 0 gives [0, 1]."""
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"k={k}, n={n}: need 0 <= k <= n")
    if n == 0:
        return 0.0, 1.0
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


def mean_interval(mean: float, sd: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Student's t interval of a mean of ``n`` values with sample standard deviation ``sd`` (ddof 1): t with
    n − 1 degrees of freedom, so that a handful of values (fingerprint sets, seeds) gets its wide interval.
    NaN bounds when ``n`` < 2: one value gives no spread."""
    from scipy.stats import t

    if n < 2 or not math.isfinite(sd):
        return float("nan"), float("nan")
    half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def hanley_mcneil(auc: float, n_positive: int, n_negative: int, z: float = Z95) -> tuple[float, float]:
    """The 95 % interval of an AUC from its standard error alone (Hanley and McNeil, "The meaning and use of the
    area under a receiver operating characteristic (ROC) curve", Radiology 1982, eq. 2), clipped to [0, 1]: for
    rows that keep no scores to bootstrap (the claims bootstrap theirs); NaN bounds without both classes. At AUC
    1.0 it has zero width, as a bootstrap of separated scores has."""
    if n_positive < 1 or n_negative < 1 or not math.isfinite(auc):
        return float("nan"), float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (n_positive - 1) * (q1 - auc * auc)
                + (n_negative - 1) * (q2 - auc * auc)) / (n_positive * n_negative)
    half = z * math.sqrt(max(variance, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def median_interval(values, level: float = 0.95) -> tuple[float, float]:
    """The distribution-free interval of a median: the order statistics X(r) and X(n + 1 − r), r the largest rank
    whose binomial(n, ½) tail stays within (1 − ``level``)/2 (Conover, "Practical Nonparametric Statistics",
    §3.2), so the coverage is at least ``level``. NaN bounds below 6 values (no such r)."""
    from scipy.stats import binom

    ordered = np.sort(np.asarray(values, dtype=float).ravel())
    n = len(ordered)
    r = int(binom.ppf((1 - level) / 2, n, 0.5))  # P(B < r) <= (1 - level)/2 for B ~ binomial(n, 1/2)
    if n < 6 or r < 1:
        return float("nan"), float("nan")
    return float(ordered[r - 1]), float(ordered[n - r])


def percentile_interval(draws, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap draws (non-finite draws left out). The draws
    of ``stats.bootstrap_mmd`` are such a sample: ``percentile_interval(boot.benign_honey)``."""
    finite = np.asarray(draws, dtype=float).ravel()
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        raise ValueError("no finite bootstrap draw")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def _auc_rows(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUC of each row (Mann–Whitney U / (n₁n₀), ties counted half), positives scoring higher."""
    from scipy.stats import rankdata

    n1, n0 = pos.shape[1], neg.shape[1]
    ranks = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    return (ranks[:, :n1].sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def _split(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = np.asarray(labels).astype(bool).ravel(), np.asarray(scores, dtype=float).ravel()
    if labels.shape != scores.shape or labels.all() or not labels.any():
        raise ValueError("an AUC needs labels and scores of one length, with both classes present")
    return scores[labels], scores[~labels]


def _chunks(draws: int, width: int) -> Iterable[int]:
    """Draw counts per batch so that one batch holds about two million numbers."""
    size = max(1, 2_000_000 // max(width, 1))
    return [min(size, draws - start) for start in range(0, draws, size)]


def bootstrap_auc(labels, scores, *, draws: int = 1000, seed: int = 0,
                  level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """(AUC, percentile-bootstrap interval) of ``scores`` (higher = more adversarial) against ``labels``
    (1 = adversarial). Resampled within each class, so every draw keeps both classes at their sizes."""
    pos, neg = _split(labels, scores)
    rng = np.random.default_rng(seed)
    boot = [_auc_rows(pos[rng.integers(0, len(pos), (d, len(pos)))], neg[rng.integers(0, len(neg), (d, len(neg)))])
            for d in _chunks(draws, len(pos) + len(neg))]
    return float(_auc_rows(pos[None], neg[None])[0]), percentile_interval(np.concatenate(boot), level)


def bootstrap_auc_difference(labels, scores, control_scores, *, control_labels=None, draws: int = 1000,
                             seed: int = 0, level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """(AUC(scores) − AUC(control_scores), percentile-bootstrap interval). Without ``control_labels`` both
    score the same examples and each draw resamples the same examples for both (paired); with them the
    two samples are independent and resampled separately."""
    value, boot = bootstrap_auc_difference_draws(labels, scores, control_scores, control_labels=control_labels,
                                                 draws=draws, seed=seed)
    return value, percentile_interval(boot, level)


def bootstrap_auc_difference_draws(labels, scores, control_scores, *, control_labels=None, draws: int = 1000,
                                   seed: int = 0) -> tuple[float, np.ndarray]:
    """``bootstrap_auc_difference``'s value and its ``draws`` bootstrap replicates (to combine several
    differences draw by draw, e.g. a mean over fingerprint sets)."""
    pos, neg = _split(labels, scores)
    paired = control_labels is None
    cpos, cneg = _split(labels if paired else control_labels, control_scores)
    rng = np.random.default_rng(seed)
    boot = []
    for d in _chunks(draws, 2 * (len(pos) + len(neg))):
        ip, ineg = rng.integers(0, len(pos), (d, len(pos))), rng.integers(0, len(neg), (d, len(neg)))
        icp, icneg = (ip, ineg) if paired else (rng.integers(0, len(cpos), (d, len(cpos))),
                                                rng.integers(0, len(cneg), (d, len(cneg))))
        boot.append(_auc_rows(pos[ip], neg[ineg]) - _auc_rows(cpos[icp], cneg[icneg]))
    value = _auc_rows(pos[None], neg[None])[0] - _auc_rows(cpos[None], cneg[None])[0]
    return float(value), np.concatenate(boot)


def bootstrap_mean_difference(a, b, *, paired: bool = False, draws: int = 1000, seed: int = 0,
                              level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """(mean(a) − mean(b), percentile-bootstrap interval); ``paired``: a[i] and b[i] belong together."""
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if not len(a) or not len(b) or (paired and len(a) != len(b)):
        raise ValueError(f"samples of {len(a)} and {len(b)}: need both non-empty (and equal when paired)")
    rng = np.random.default_rng(seed)
    boot = []
    for d in _chunks(draws, len(a) + len(b)):
        ia = rng.integers(0, len(a), (d, len(a)))
        ib = ia if paired else rng.integers(0, len(b), (d, len(b)))
        boot.append(a[ia].mean(axis=1) - b[ib].mean(axis=1))
    return float(a.mean() - b.mean()), percentile_interval(np.concatenate(boot), level)



def median_bandwidth(pooled: torch.Tensor) -> float:
    """The median heuristic (Gretton et al. 2012): σ = median pairwise Euclidean distance
    over the pooled samples (zero distances of a point to itself left out)."""
    flat = pooled.flatten(1).double()
    d = torch.cdist(flat, flat)
    off = d[~torch.eye(len(flat), dtype=torch.bool)]
    sigma = float(off.median()) if len(off) else 0.0
    if sigma <= 0:
        raise ValueError("all samples are identical: the median heuristic gives bandwidth 0")
    return sigma


def gaussian_kernel(pooled: torch.Tensor, sigma: float) -> torch.Tensor:
    """k(a, b) = exp(−‖a − b‖² / (2σ²)) over every pair of rows of ``pooled``."""
    flat = pooled.flatten(1).double()
    return torch.exp(-torch.cdist(flat, flat).pow(2) / (2 * sigma ** 2))


def _mmd_from_kernel(kernel: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Biased MMD (the square root of the V-statistic, Gretton et al. 2012 eq. 5) for each row
    of index sets ``a`` (D, n) and ``b`` (D, m) into the pooled kernel matrix."""
    kaa = kernel[a[:, :, None], a[:, None, :]].mean((1, 2))
    kbb = kernel[b[:, :, None], b[:, None, :]].mean((1, 2))
    kab = kernel[a[:, :, None], b[:, None, :]].mean((1, 2))
    return (kaa + kbb - 2 * kab).clamp_min(0).sqrt()


def mmd(x: torch.Tensor, y: torch.Tensor, sigma: float | None = None) -> float:
    """Gaussian-kernel MMD between samples ``x`` and ``y`` (bandwidth: median heuristic by default)."""
    pooled = torch.cat([x, y])
    sigma = sigma or median_bandwidth(pooled)
    kernel = gaussian_kernel(pooled, sigma)
    a = torch.arange(len(x))[None]
    b = torch.arange(len(x), len(pooled))[None]
    return float(_mmd_from_kernel(kernel, a, b)[0])


@dataclass
class BootstrapMMD:
    """MMD values of ``draws`` bootstrap draws for the three pairings of HoneyModels Fig. 5."""
    benign_benign: np.ndarray
    honey_honey: np.ndarray
    benign_honey: np.ndarray
    sigma: float
    sample_size: int

    def overlap_accuracy(self) -> float:
        """Best single-threshold accuracy at telling benign–honey draws (above the threshold) from
        within-model draws (benign–benign and honey–honey), each side weighted equally: 0.5 means
        the distributions overlap completely (indistinguishable), 1.0 that they are disjoint."""
        within = np.concatenate([self.benign_benign, self.honey_honey])
        across = self.benign_honey
        cuts = np.unique(np.concatenate([within, across]))
        # For a cut t: flag "across" when value > t. Balanced accuracy over both groups.
        within_sorted, across_sorted = np.sort(within), np.sort(across)
        below_within = np.searchsorted(within_sorted, cuts, side="right") / len(within)
        above_across = 1 - np.searchsorted(across_sorted, cuts, side="right") / len(across)
        best = (below_within + above_across) / 2
        return float(max(best.max(initial=0.5), 0.5))


def bootstrap_mmd(benign: torch.Tensor, honey: torch.Tensor, *, sample_size: int = 50, draws: int = 1000,
                  seed: int = 0, sigma: float | None = None) -> BootstrapMMD:
    """HoneyModels Fig. 5: draw ``sample_size`` samples with replacement ``draws`` times and compute
    MMD benign–benign (two independent draws from the benign model's adversarial samples),
    honey–honey, and benign–honey. One kernel matrix over the pooled samples serves every draw."""
    if sample_size < 2 or draws < 1:
        raise ValueError(f"sample_size={sample_size} and draws={draws}: need sample_size >= 2 and draws >= 1")
    if len(benign) < 2 or len(honey) < 2:
        raise ValueError(f"need at least 2 samples on each side; got {len(benign)} benign and {len(honey)} honey")
    pooled = torch.cat([benign, honey])
    sigma = sigma or median_bandwidth(pooled)
    kernel = gaussian_kernel(pooled, sigma)
    g = torch.Generator().manual_seed(seed)
    nb, nh = len(benign), len(honey)

    def draw(n: int, offset: int) -> torch.Tensor:
        return torch.randint(0, n, (draws, sample_size), generator=g) + offset

    bb = _mmd_from_kernel(kernel, draw(nb, 0), draw(nb, 0))
    hh = _mmd_from_kernel(kernel, draw(nh, nb), draw(nh, nb))
    bh = _mmd_from_kernel(kernel, draw(nb, 0), draw(nh, nb))
    return BootstrapMMD(bb.numpy(), hh.numpy(), bh.numpy(), sigma, sample_size)


def permutation_test(x: torch.Tensor, y: torch.Tensor, *, permutations: int = 1000, seed: int = 0,
                     sigma: float | None = None) -> tuple[float, float]:
    """MMD two-sample permutation test: (observed MMD, p-value = (1 + #{perm ≥ obs}) / (1 + P))."""
    pooled = torch.cat([x, y])
    sigma = sigma or median_bandwidth(pooled)
    kernel = gaussian_kernel(pooled, sigma)
    n = len(pooled)
    observed = _mmd_from_kernel(kernel, torch.arange(len(x))[None], torch.arange(len(x), n)[None])[0]
    g = torch.Generator().manual_seed(seed)
    perms = torch.stack([torch.randperm(n, generator=g) for _ in range(permutations)])
    null = torch.cat([_mmd_from_kernel(kernel, chunk[:, :len(x)], chunk[:, len(x):])
                      for chunk in perms.split(50)])
    return float(observed), float((1 + (null >= observed).sum()) / (1 + permutations))
