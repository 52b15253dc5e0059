"""Oracle data for the SDE tests; the exact scores are `sciscore.sde.GaussianMixtureScore`."""

from __future__ import annotations

import torch

from sciscore.sde.oracles import GaussianMixtureScore

__all__ = ["GaussianMixtureScore", "gaussian_oracle", "mixture_oracle"]


def gaussian_oracle(process, shape=(1, 4, 4), seed=1):
    """Gaussian data with a non-zero spatial mean pattern and unequal per-pixel variances."""
    g = torch.Generator().manual_seed(seed)
    mean = 1.0 + 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)
    variance = 0.25 + 1.5 * torch.rand(shape, generator=g, dtype=torch.float64)
    return GaussianMixtureScore(process, mean[None], variance[None])


def mixture_oracle(process, shape=(1, 4, 4), seed=2):
    """Two well-separated components with unequal weights and variances."""
    g = torch.Generator().manual_seed(seed)
    means = torch.stack([torch.full(shape, -1.5, dtype=torch.float64),
                         1.5 + 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)])
    variances = torch.stack([torch.full(shape, 0.3, dtype=torch.float64),
                             0.2 + 0.3 * torch.rand(shape, generator=g, dtype=torch.float64)])
    return GaussianMixtureScore(process, means, variances, weights=[0.3, 0.7])
