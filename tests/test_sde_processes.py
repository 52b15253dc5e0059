"""Forward processes, time grids and parametrizations: exact identities and round trips."""

import json
import math

import numpy as np
import pytest
import torch

from sciscore.errors import UserError
from sciscore.sde import (
    EDM, VE, VP, DiscreteVP, SubVP, edm_preconditioning, estimate_sigma_max, from_score, process_from_dict,
    rescale_zero_terminal_snr, score_from_network, time_grid, to_score,
)
from sciscore.sde.processes import _per_sample


def edm_denoiser(raw_net, process, sigma_data):
    """Reference: D(x, t) = c_skip y + c_out F(c_in y; c_noise), y = x / s(t) (Karras et al. 2022,
    eq. 7 and Table 1); ``raw_net(x, c_noise)``."""

    def denoise(x, t):
        t = torch.as_tensor(t).to(x.device)
        y = x / _per_sample(process.scale(t), x)
        c_skip, c_out, c_in, c_noise = edm_preconditioning(process.sigma(t).to(x.dtype), sigma_data)
        return _per_sample(c_skip, x) * y + _per_sample(c_out, x) * raw_net(_per_sample(c_in, x) * y, c_noise)

    return denoise


def edm_training_target(x0, x, sigma, sigma_data):
    """Reference: F's target (x0 - c_skip x) / c_out (Karras et al. 2022, eq. 8), x = x0 + sigma n."""
    c_skip, c_out, _, _ = edm_preconditioning(sigma, sigma_data)
    return (x0 - _per_sample(c_skip, x) * x) / _per_sample(c_out, x)



@pytest.fixture(autouse=True)
def float64_default():
    """float64 inside these tests only (a module-level set_default_dtype would leak into others)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


PROCESSES = [VE(), VE(sigma_min=0.01, sigma_max=1000.0), VP(), VP(schedule="cosine"), SubVP(),
             EDM(), DiscreteVP(), DiscreteVP(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
             DiscreteVP(zero_terminal_snr=True)]
IDS = [json.dumps(p.to_dict()) for p in PROCESSES]


def interior_times(process, n=9):
    return torch.linspace(process.t_min, process.t_max, n + 2, dtype=torch.float64)[1:-1]


@pytest.mark.parametrize("process", PROCESSES, ids=IDS)
def test_dict_round_trip(process):
    assert process_from_dict(json.loads(json.dumps(process.to_dict()))) == process


@pytest.mark.parametrize("process", PROCESSES, ids=IDS)
def test_t_of_sigma_inverts_sigma(process):
    t = interior_times(process)
    torch.testing.assert_close(process.t_of_sigma(process.sigma(t)), t, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("process", PROCESSES, ids=IDS)
def test_sde_coefficients_match_marginals(process):
    """The forward SDE dx = f x dt + g dW has Var' = 2 f Var + g^2 and mean' = f mean; with
    mean = s x0 and Var = (s sigma)^2 both hold exactly (central differences, float64)."""
    t = interior_times(process)
    h = 1e-6
    scale = lambda u: process.scale(u)
    variance = lambda u: process.marginal_std(u) ** 2
    dscale = (scale(t + h) - scale(t - h)) / (2 * h)
    dvariance = (variance(t + h) - variance(t - h)) / (2 * h)
    f, g = process.log_scale_derivative(t), process.diffusion(t)
    if isinstance(process, DiscreteVP):  # piecewise linear in t: stay inside one segment
        t = (torch.floor(t * process.num_timesteps) + 0.5) / process.num_timesteps
        dscale = (scale(t + h) - scale(t - h)) / (2 * h)
        dvariance = (variance(t + h) - variance(t - h)) / (2 * h)
        f, g = process.log_scale_derivative(t), process.diffusion(t)
    torch.testing.assert_close(dscale, f * scale(t), rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(dvariance, 2 * f * variance(t) + g**2, rtol=1e-5, atol=1e-8)


def test_ve_formulas_of_song_et_al():
    process = VE(sigma_min=0.01, sigma_max=1000.0)
    t = torch.tensor([0.0, 0.3, 1.0])
    torch.testing.assert_close(process.sigma(t), 0.01 * (1000.0 / 0.01) ** t)
    torch.testing.assert_close(process.diffusion(t), process.sigma(t) * math.sqrt(2 * math.log(1e5)))
    assert process.prior_std() == pytest.approx(1000.0)


def test_perturb_moments():
    process = VP()
    x0 = torch.full((20000, 1, 2, 2), 2.0)
    t = torch.full((20000,), 0.4)
    xt = process.perturb(x0, t, torch.randn(20000, 1, 2, 2, generator=torch.Generator().manual_seed(0)))
    s, m = float(process.scale(t[0])), float(process.marginal_std(t[0]))
    assert abs(xt.mean().item() - 2 * s) < 4 * m / math.sqrt(80000)
    assert abs(xt.std().item() / m - 1) < 0.02


def test_prior_sample_is_seeded():
    process = EDM()
    a = process.prior_sample((3, 1, 4, 4), torch.Generator().manual_seed(5))
    b = process.prior_sample((3, 1, 4, 4), torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == (3, 1, 4, 4)


def lin_et_al_rescale(betas):
    """Lin et al. (2024), Algorithm 1, transcribed in numpy (betas in, betas out)."""
    alphas = 1 - betas
    alphas_bar_sqrt = np.sqrt(np.cumprod(alphas))
    a0, aT = alphas_bar_sqrt[0].copy(), alphas_bar_sqrt[-1].copy()
    alphas_bar_sqrt -= aT
    alphas_bar_sqrt *= a0 / (a0 - aT)
    alphas_bar = alphas_bar_sqrt**2
    alphas = alphas_bar[1:] / alphas_bar[:-1]
    alphas = np.concatenate([alphas_bar[0:1], alphas])
    return 1 - alphas


def test_zero_terminal_snr_schedule():
    process = DiscreteVP(zero_terminal_snr=True)
    assert process.alpha_bars[-1].item() == 0.0
    assert process.alpha_bar(torch.tensor(1.0)).item() == 0.0
    assert math.isinf(process.sigma(torch.tensor(1.0)).item())
    betas = np.linspace(1e-4, 0.02, 1000)
    published = np.cumprod(1 - lin_et_al_rescale(betas))
    np.testing.assert_allclose(process.alpha_bars.numpy(), published, rtol=1e-12, atol=1e-15)
    # the first alpha_bar is unchanged by the rescaling
    assert process.alpha_bars[0].item() == pytest.approx(DiscreteVP().alpha_bars[0].item(), rel=1e-14)
    torch.testing.assert_close(rescale_zero_terminal_snr(DiscreteVP().alpha_bars), process.alpha_bars)


def test_zero_terminal_snr_refuses_eps_prediction():
    with pytest.raises(UserError, match="v.*x0"):
        score_from_network(lambda x, t: x, DiscreteVP(zero_terminal_snr=True), "eps")


@pytest.mark.parametrize("process", [VE(), VP(), SubVP(), EDM(), DiscreteVP()], ids=lambda p: p.name)
@pytest.mark.parametrize("kind", ["score", "sigma_score", "eps", "x0", "v"])
def test_parametrization_round_trip(process, kind):
    g = torch.Generator().manual_seed(0)
    x, score = torch.randn(5, 2, 3, 3, generator=g), torch.randn(5, 2, 3, 3, generator=g)
    t = interior_times(process, 5)
    prediction = from_score(score, kind, x, t, process)
    torch.testing.assert_close(to_score(prediction, kind, x, t, process), score, rtol=1e-10, atol=1e-10)


def test_parametrizations_of_an_exact_perturbation():
    """x = s x0 + m eps: the eps, x0 and v that produced x are what the conversions give for the
    score -(x - s x0)/m^2 (the conditional score), and v is Salimans & Ho's for VP."""
    process = VP()
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 1, 3, 3, generator=g), torch.randn(4, 1, 3, 3, generator=g)
    t = torch.tensor([0.1, 0.3, 0.6, 0.9])
    x = process.perturb(x0, t, eps)
    s, m = process.scale(t).view(-1, 1, 1, 1), process.marginal_std(t).view(-1, 1, 1, 1)
    score = -(x - s * x0) / m**2
    torch.testing.assert_close(from_score(score, "eps", x, t, process), eps)
    torch.testing.assert_close(from_score(score, "x0", x, t, process), x0)
    torch.testing.assert_close(from_score(score, "v", x, t, process), s * eps - m * x0)  # s^2 + m^2 = 1
    torch.testing.assert_close(from_score(score, "sigma_score", x, t, process), -eps)


def test_score_from_network_uses_the_convention():
    process = VE()
    t = torch.tensor([0.2, 0.7])
    x = torch.ones(2, 1, 2, 2)
    net = lambda x, t: -x  # marginal_std * score
    score = score_from_network(net, process)(x, t)
    torch.testing.assert_close(score, -x / process.marginal_std(t).view(-1, 1, 1, 1))


def test_edm_preconditioning_table_1_and_round_trip():
    sigma, sigma_data = torch.tensor([0.002, 0.5, 80.0]), 0.5
    c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma, sigma_data)
    torch.testing.assert_close(c_skip, sigma_data**2 / (sigma**2 + sigma_data**2))
    torch.testing.assert_close(c_out, sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt())
    torch.testing.assert_close(c_in, 1 / (sigma**2 + sigma_data**2).sqrt())
    torch.testing.assert_close(c_noise, sigma.log() / 4)
    # effective training target has unit variance for data of std sigma_data (EDM eq. 8, appendix B.6)
    g = torch.Generator().manual_seed(3)
    x0 = sigma_data * torch.randn(3, 20000, generator=g).view(3, 1, 100, 200)
    x = x0 + sigma.view(-1, 1, 1, 1) * torch.randn(x0.shape, generator=g)
    target = edm_training_target(x0, x, sigma, sigma_data)
    torch.testing.assert_close(target.flatten(1).std(1), torch.ones(3), rtol=0.02, atol=0)
    # a raw network that outputs the target exactly gives back x0 through D (round trip)
    process = EDM()
    lookup = {}

    def raw_net(x_in, c_noise_in):
        return lookup["F"]

    lookup["F"] = target
    denoised = edm_denoiser(raw_net, process, sigma_data)(x, sigma)
    torch.testing.assert_close(denoised, x0, rtol=1e-10, atol=1e-10)


def test_estimate_sigma_max_is_the_largest_pairwise_distance():
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(50, 1, 4, 4, generator=g)
    flat = samples.flatten(1)
    brute = max(float((flat[i] - flat[j]).norm()) for i in range(50) for j in range(50))
    assert estimate_sigma_max(samples, chunk_size=7) == pytest.approx(brute, rel=1e-12)


def test_time_grids():
    process = EDM()
    t = time_grid(process, 18, "karras")
    i = torch.arange(19, dtype=torch.float64)
    a, b = 80.0 ** (1 / 7), 0.002 ** (1 / 7)
    torch.testing.assert_close(t, (a + i / 18 * (b - a)) ** 7)  # Karras et al. eq. 5
    assert time_grid(VE(), 4, "uniform").tolist() == pytest.approx([1.0, 0.75000250, 0.500005, 0.25000750, 1e-5])
    discrete = DiscreteVP(zero_terminal_snr=True)
    trailing = time_grid(discrete, 10, "trailing")
    assert trailing[0].item() == 1.0 and trailing[1].item() == pytest.approx(0.9)
    leading = time_grid(discrete, 10, "leading")
    # leading: indices 900, 800, ..., 0; the last (t = 1/N) is already t_end, so 9 steps
    assert leading[0].item() == pytest.approx(0.901) and leading[-1].item() == pytest.approx(0.001)
    assert len(leading) == 10 and len(trailing) == 11
    linspace = time_grid(discrete, 10, "linspace")
    assert linspace[0].item() == 1.0 and linspace[1].item() == pytest.approx(0.889) and linspace[-1].item() == pytest.approx(0.001)
    with pytest.raises(UserError, match="DiscreteVP"):
        time_grid(VE(), 10, "trailing")


def test_bad_inputs_are_user_errors():
    with pytest.raises(UserError, match="sigma_min < sigma_max"):
        VE(sigma_min=2.0, sigma_max=1.0)
    with pytest.raises(UserError, match="expected one of"):
        process_from_dict({"name": "nope"})
    with pytest.raises(UserError, match="schedule"):
        VP(schedule="quadratic")
