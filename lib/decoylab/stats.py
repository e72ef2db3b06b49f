"""Two-sample statistics: Gaussian-kernel MMD, its bootstrap and permutation test (vectorised in torch).

HoneyModels §IV-D (Fig. 5) measures indistinguishability with MMD over bootstrap draws of 50
adversarial samples; here every draw reuses one precomputed kernel matrix over the pooled samples,
so 1000 draws cost a few gathers instead of 1000 kernel evaluations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


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
