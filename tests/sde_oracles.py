"""Analytic scores for the SDE tests: Gaussian data and a Gaussian mixture, exact at every t.

For x_t = s(t) (x0 + sigma(t) z) and x0 ~ N(mu, diag(v)), p_t = N(s mu, s^2 (v + sigma^2)),
so score(x, t) = -(x - s mu) / (s^2 (v + sigma^2)); a mixture sum_k w_k N(mu_k, diag v_k)
stays a mixture with the same weights and score = sum_k r_k(x) score_k(x) (r_k: responsibilities).
"""

from __future__ import annotations

import math

import torch


def _broadcast(value, x):
    return value.to(device=x.device, dtype=torch.float64).reshape(-1, 1, 1, 1)


class GaussianMixtureScore:
    """score(x, t) of p_t for p_0 = sum_k weights[k] N(means[k], diag(variances[k])); means and
    variances (K, C, H, W)."""

    def __init__(self, process, means, variances, weights=None):
        self.process = process
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.variances = torch.as_tensor(variances, dtype=torch.float64)
        k = len(self.means)
        self.weights = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None \
            else torch.as_tensor(weights, dtype=torch.float64)

    def marginal_moments(self, t):
        """Mean and variance (C, H, W) of p_t at scalar t."""
        t = torch.tensor(float(t), dtype=torch.float64)
        s, sigma = float(self.process.scale(t)), float(self.process.sigma(t))
        w = self.weights.reshape(-1, 1, 1, 1)
        mean = (w * s * self.means).sum(0)
        second = (w * (s**2 * (self.variances + sigma**2) + (s * self.means) ** 2)).sum(0)
        return mean, second - mean**2

    def __call__(self, x, t):
        x64 = x.to(torch.float64)
        t = t.to(torch.float64)
        s = _broadcast(self.process.scale(t), x)
        sigma2 = _broadcast(self.process.sigma(t), x) ** 2
        if len(self.means) == 1:
            return (-(x64 - s * self.means[0]) / (s**2 * (self.variances[0] + sigma2))).to(x.dtype)
        log_terms, scores = [], []
        for mean, var, weight in zip(self.means, self.variances, self.weights):
            total = s**2 * (var + sigma2)
            diff = x64 - s * mean
            scores.append(-diff / total)
            log_terms.append(math.log(weight) - 0.5 * (diff**2 / total + total.log()).flatten(1).sum(1))
        # responsibilities by elementwise ops: torch.softmax / max(dim) on these tiny tensors were
        # measured at 10-15 ms a call on the shared test machine
        largest = log_terms[0]
        for term in log_terms[1:]:
            largest = torch.maximum(largest, term)
        r = [(term - largest).exp() for term in log_terms]
        total = sum(r)
        return sum((rk / total).reshape(-1, 1, 1, 1) * sk for rk, sk in zip(r, scores)).to(x.dtype)


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
