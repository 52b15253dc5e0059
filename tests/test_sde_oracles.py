"""sciscore.sde.oracles: the exact Gaussian score and the W2 error measure of the samplers study."""

import math

import pytest
import torch

from sciscore.sde import EDM, VP, GaussianMixtureScore, gaussian_w2


@pytest.mark.parametrize("process", [EDM(), VP()], ids=["edm", "vp"])
def test_gaussian_score_is_the_analytic_one(process):
    oracle = GaussianMixtureScore.gaussian(process, 0.25, 0.5, (1, 3, 5))
    x = torch.randn(4, 1, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.01, 0.1, 0.5, 0.9], dtype=torch.float64) * process.t_max
    s = process.scale(t).view(-1, 1, 1, 1)
    sigma = process.sigma(t).view(-1, 1, 1, 1)
    expected = -(x - s * 0.25) / (s**2 * (0.5 + sigma**2))
    torch.testing.assert_close(oracle(x, t), expected, rtol=1e-12, atol=0)
    mean, variance = oracle.marginal_moments(0.5 * process.t_max)
    t_half = torch.tensor(0.5 * process.t_max, dtype=torch.float64)
    assert mean.shape == (1, 3, 5)
    assert torch.allclose(mean, process.scale(t_half) * 0.25 * torch.ones(1, 3, 5, dtype=torch.float64))
    assert torch.allclose(variance, process.scale(t_half) ** 2 * (0.5 + process.sigma(t_half) ** 2) * torch.ones(1, 3, 5,
                                                                                                     dtype=torch.float64))


def test_gaussian_w2_is_the_w2_of_the_gaussian_fit():
    z = torch.randn(10_000, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    z = (z - z.mean()) / z.std()                       # sample mean 0, sample std 1 exactly
    mean, variance, a, b = 0.3, 2.0, 0.05, -0.02       # fitted N(mean + a std, ((1 + b) std)^2)
    std = math.sqrt(variance)
    x = mean + std * (a + (1 + b) * z)
    assert gaussian_w2(x.view(100, 1, 10, 10), mean, variance) == pytest.approx(math.hypot(a, b), rel=1e-10)
    assert gaussian_w2(mean + std * z, mean, variance) == pytest.approx(0.0, abs=1e-12)


def test_gaussian_w2_of_exact_draws_is_at_the_stated_noise_floor():
    m = 2**18
    errors = [gaussian_w2(1.0 + 0.5 * torch.randn(m, generator=torch.Generator().manual_seed(seed)), 1.0, 0.25)
              for seed in range(8)]
    floor = math.sqrt(1.5 / m)                          # E[W2^2] = (1 + 1/2) / m for the fit's errors
    rms = math.sqrt(sum(e * e for e in errors) / len(errors))
    assert 0.5 * floor < rms < 1.6 * floor
