"""Exact scores of Gaussian (mixture) data, for judging samplers without a network's error.

For data x0 ~ N(mu, diag(v)) and the forward process x_t = s(t) (x0 + sigma(t) z) (Karras et al.
2022, eq. 7), every marginal is Gaussian, p_t = N(s mu, s^2 (v + sigma^2)), so

    score(x, t) = -(x - s mu) / (s^2 (v + sigma^2)).

A mixture sum_k w_k N(mu_k, diag v_k) stays a mixture with the same weights, and its score is
sum_k r_k(x) score_k(x) with r_k the responsibilities. A sampler given this score has only its own
discretization (and Monte Carlo) error; `marginal_moments` gives the exact mean and variance of
p_t to compare against.
"""

from __future__ import annotations

import math

import torch


def _broadcast(value, x):
    return value.to(device=x.device, dtype=torch.float64).reshape(-1, 1, 1, 1)


class GaussianMixtureScore:
    """score(x, t) of p_t for p_0 = sum_k weights[k] N(means[k], diag(variances[k])).

    process: a `ForwardProcess`; means, variances: (K, C, H, W) (per-pixel, so a sample (C, H, W)
    has independent pixels); weights: (K,), default equal. Called as score(x (B, C, H, W),
    t (B,)) -> (B, C, H, W) in x's dtype (computed in float64)."""

    def __init__(self, process, means, variances, weights=None):
        self.process = process
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.variances = torch.as_tensor(variances, dtype=torch.float64)
        k = len(self.means)
        self.weights = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None \
            else torch.as_tensor(weights, dtype=torch.float64)

    @classmethod
    def gaussian(cls, process, mean: float, variance: float, shape) -> "GaussianMixtureScore":
        """One Gaussian, every pixel of a (C, H, W) sample independent ~ N(mean, variance)."""
        shape = tuple(int(v) for v in shape)
        return cls(process, torch.full((1, *shape), float(mean), dtype=torch.float64),
                   torch.full((1, *shape), float(variance), dtype=torch.float64))

    def marginal_moments(self, t):
        """Mean and variance (C, H, W) of p_t at scalar t, float64."""
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
        means, variances = self.means.to(x.device), self.variances.to(x.device)
        if len(means) == 1:
            return (-(x64 - s * means[0]) / (s**2 * (variances[0] + sigma2))).to(x.dtype)
        log_terms, scores = [], []
        for mean, var, weight in zip(means, variances, self.weights.tolist()):
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


def gaussian_w2(x: torch.Tensor, mean: float, variance: float) -> float:
    """Wasserstein-2 distance between N(m, s^2) fitted to all values of `x` (treated as draws of one
    scalar) and the exact N(mean, variance), over the exact std:

        W2 / std = sqrt((m - mean)^2 + (s - std)^2) / std.

    Exact (up to Monte Carlo error) when the values are Gaussian, as the output of any sampler on a
    Gaussian oracle is: it is linear in the prior draw and the noise. Monte Carlo noise floor for
    M independent values: about sqrt(1.5 / M) (mean and std errors 1/sqrt(M), 1/sqrt(2M))."""
    values = x.detach().to(torch.float64).flatten()
    std = math.sqrt(variance)
    return math.hypot(float(values.mean()) - mean, float(values.std()) - std) / std


__all__ = ["GaussianMixtureScore", "gaussian_w2"]
