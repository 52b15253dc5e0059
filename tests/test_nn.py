"""Score network: shapes, the mean-bypass structure (independent vs coupled), padding, the
constant-mean channels and the EDM preconditioning."""


import pytest
import torch

from sciscore.nn import NetworkConfig, build_network, count_parameters
from sciscore.sde.processes import EDM, VE, VP



SMALL = dict(channels=(8, 16, 16, 32), num_residual=1, embed_dim=32, bypass_width=32)


def make(process=None, **overrides):
    torch.manual_seed(0)
    return build_network(NetworkConfig(**{**SMALL, **overrides}), process or VE(sigma_max=50.0)).eval()


@pytest.mark.parametrize("mode", ["none", "independent", "coupled"])
@pytest.mark.parametrize("shape", [(8, 8), (16, 16), (24, 40), (64, 32)])
def test_output_shape(mode, shape):
    net = make(in_channels=2, mean_bypass=mode)
    x = torch.randn(3, 2, *shape)
    out = net(x, torch.rand(3))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_level_blocks_add_residual_blocks_at_every_finer_level():
    """level_blocks = B: B residual blocks per level above the bottleneck, in the encoder and the
    decoder, with the widths of their level; B = 0 leaves the NCSN U-Net (and its config.json) as it was."""
    plain, deep = make(in_channels=2), make(in_channels=2, level_blocks=2)
    assert plain.unet.enc_blocks is None and "level_blocks" not in plain.config.to_dict()
    assert [[b.conv1.in_channels for b in level] for level in deep.unet.enc_blocks] == [[8, 8], [16, 16], [16, 16]]
    assert [[b.conv1.in_channels for b in level] for level in deep.unet.dec_blocks] == [[16, 16], [16, 16], [8, 8]]
    blocks = sum(p.numel() for name, p in deep.named_parameters() if "_blocks." in name)
    assert count_parameters(deep) - count_parameters(plain) == blocks > 0
    assert NetworkConfig.from_dict(deep.config.to_dict()).level_blocks == 2


def test_attention_blocks_start_as_the_identity_and_round_trip():
    """attention_blocks = A: A self-attention blocks at the bottleneck, their output projection
    zero-initialized, so a network with them computes exactly what the same weights without them
    compute until training moves the projection; A = 0 leaves config.json as it was."""
    from sciscore.errors import UserError

    plain, attended = make(in_channels=2, num_residual=2), make(in_channels=2, num_residual=2, attention_blocks=2)
    assert plain.unet.attention is None and "attention_blocks" not in plain.config.to_dict()
    assert len(attended.unet.attention) == 2 and NetworkConfig.from_dict(attended.config.to_dict()).attention_blocks == 2
    missing, unexpected = attended.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(name.startswith("unet.attention.") for name in missing)
    x, t = torch.randn(3, 2, 16, 16), torch.rand(3)
    with torch.no_grad():
        assert torch.equal(attended(x, t), plain(x, t))
        for block in attended.unet.attention:
            torch.nn.init.normal_(block.proj.weight, std=0.1)
        assert (attended(x, t) - plain(x, t)).abs().max() > 1e-3
    with pytest.raises(UserError, match=r"attention_blocks must be in \[0, num_residual = 1\], got 2"):
        NetworkConfig(**{**SMALL, "attention_blocks": 2})


def test_attention_levels_follow_each_level_block_and_start_as_the_identity():
    """attention_levels = [1]: one self-attention block after each level block at level 1 (half
    resolution), in the encoder and the decoder, with that level's width; zero-initialized
    projections, so the network computes what the same weights without them compute; an empty list
    leaves config.json as it was; levels outside the U-Net or without level blocks are refused."""
    from sciscore.errors import UserError

    plain, attended = make(in_channels=2, level_blocks=2), make(in_channels=2, level_blocks=2, attention_levels=[1])
    assert "attention_levels" not in plain.config.to_dict() and not plain.unet.enc_attention
    assert [b.qkv.in_channels for b in attended.unet.enc_attention["1"]] == [16, 16]
    assert [b.qkv.in_channels for b in attended.unet.dec_attention["1"]] == [16, 16]  # decoder stage 1 = level 1
    assert NetworkConfig.from_dict(attended.config.to_dict()).attention_levels == [1]
    missing, unexpected = attended.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and len(missing) == 4 * 6 and all("_attention." in name for name in missing)
    x, t = torch.randn(3, 2, 16, 16), torch.rand(3)
    with torch.no_grad():
        assert torch.equal(attended(x, t), plain(x, t))
        for name, p in attended.named_parameters():
            if "_attention." in name and name.endswith("proj.weight"):
                torch.nn.init.normal_(p, std=0.1)
        assert (attended(x, t) - plain(x, t)).abs().max() > 1e-3
    with pytest.raises(UserError, match=r"attention_levels must list levels in \[0, 2\]"):
        NetworkConfig(**{**SMALL, "level_blocks": 1, "attention_levels": [3]})
    with pytest.raises(UserError, match="attention_levels needs level_blocks >= 1"):
        NetworkConfig(**{**SMALL, "attention_levels": [1]})


def test_shape_not_divisible_is_refused():
    net = make()
    with pytest.raises(ValueError, match="divisible by 8"):
        net(torch.randn(1, 1, 12, 16), torch.rand(1))


def test_default_network_matches_the_study():
    net = build_network(NetworkConfig(in_channels=1, mean_bypass="none"), VE())
    assert net.config.channels == (32, 64, 128, 256) and len(net.unet.blocks) == 8
    assert net.embedding.frequencies.shape == (128,)
    assert abs(float(net.embedding.frequencies.std()) - 30) < 6  # N(0, 30^2) draws
    # the Fourier frequencies are a buffer: saved, never trained
    assert "embedding.frequencies" in net.state_dict()
    assert all(p is not net.embedding.frequencies for p in net.parameters())
    assert count_parameters(net) > 10_000_000


@pytest.mark.parametrize("mode", ["independent", "coupled"])
def test_bypass_parts(mode):
    net = make(in_channels=2, context_channels=1, mean_bypass=mode)
    x, context = torch.randn(4, 2, 16, 16) + 3.0, torch.randn(4, 1, 16, 16)
    t = torch.rand(4)
    parts = net.parts(x, t, context)
    fluct, mean = parts["fluctuation"], parts["mean"]
    assert mean.shape == (4, 2, 1, 1)  # spatially constant by construction
    assert fluct.mean(dim=(-2, -1)).abs().max() < 1e-6  # U-Net part: zero spatial mean
    out = net(x, t, context)
    torch.testing.assert_close(out, fluct + mean)
    torch.testing.assert_close(out.mean(dim=(-2, -1), keepdim=True), mean, atol=1e-6, rtol=0)


def _shift_mean(x, amount):
    return x + amount[None, :, None, None]


def test_independent_bypass_decouples_mean_and_fluctuation():
    """The paper's bypass (Deck & Bischoff 2023, eq. 14-15): the U-Net part ignores the input's mean and the
    bypass ignores its fluctuation."""
    net = make(in_channels=2, mean_bypass="independent")
    x, t = torch.randn(3, 2, 16, 16), torch.rand(3)
    shifted = _shift_mean(x, torch.tensor([0.7, -1.3]))
    a, b = net.parts(x, t), net.parts(shifted, t)
    torch.testing.assert_close(a["fluctuation"], b["fluctuation"], atol=1e-5, rtol=1e-5)
    assert (a["mean"] - b["mean"]).abs().max() > 1e-4
    # same means, other fluctuations: the same mean part
    other = torch.randn(3, 2, 16, 16) * 3
    other = other - other.mean(dim=(-2, -1), keepdim=True) + x.mean(dim=(-2, -1), keepdim=True)
    torch.testing.assert_close(net.parts(other, t)["mean"], a["mean"], atol=1e-6, rtol=1e-5)


def test_coupled_bypass_couples_mean_and_fluctuation():
    net = make(in_channels=2, mean_bypass="coupled")
    x, t = torch.randn(3, 2, 16, 16), torch.rand(3)
    a = net.parts(x, t)
    b = net.parts(_shift_mean(x, torch.tensor([0.7, -1.3])), t)
    assert (a["fluctuation"] - b["fluctuation"]).abs().max() > 1e-4  # the U-Net sees the means
    other = torch.randn(3, 2, 16, 16) * 3
    other = other - other.mean(dim=(-2, -1), keepdim=True) + x.mean(dim=(-2, -1), keepdim=True)
    assert (net.parts(other, t)["mean"] - a["mean"]).abs().max() > 1e-5  # the bypass sees the field
    assert b["fluctuation"].mean(dim=(-2, -1)).abs().max() < 1e-6  # roles kept


@pytest.mark.parametrize("level_blocks, attention_blocks, attention_levels", [(0, 0, []), (2, 0, []), (0, 1, []), (1, 0, [0, 2])])
def test_circular_padding_is_shift_equivariant(level_blocks, attention_blocks, attention_levels):
    """With periodic convolutions, a shift by a multiple of the total stride (8) commutes with
    the network; with zero padding it does not (the edges are seen)."""
    x, t = torch.randn(2, 1, 32, 32), torch.rand(2)
    for padding, equivariant in (("circular", True), ("zero", False)):
        net = make(padding=padding, level_blocks=level_blocks, attention_blocks=attention_blocks,
                   attention_levels=attention_levels)
        for name, p in net.named_parameters():  # leave the identity the attention blocks start as
            if "attention" in name and name.endswith("proj.weight"):
                torch.nn.init.normal_(p, std=0.1)
        rolled = net(torch.roll(x, (8, -16), (-2, -1)), t)
        expected = torch.roll(net(x, t), (8, -16), (-2, -1))
        error = (rolled - expected).abs().max()
        assert (error < 1e-5) if equivariant else (error > 1e-3), (padding, float(error))


@pytest.mark.parametrize("mode", ["none", "independent", "coupled"])
def test_constant_mean_channel_is_exact(mode):
    """For a channel whose data mean is always c, mean(sigma * score) = -(mean(x/s) - c)/sigma."""
    process = VE(sigma_max=50.0)
    net = make(process, in_channels=2, mean_bypass=mode, constant_means=[None, 0.25])
    x, t = torch.randn(3, 2, 16, 16), torch.tensor([0.1, 0.5, 0.9])
    out = net(x, t)
    sigma = process.sigma(t).float()
    expected = -(x[:, 1].mean(dim=(-2, -1)) - 0.25) / sigma
    torch.testing.assert_close(out[:, 1].mean(dim=(-2, -1)), expected, rtol=1e-5, atol=1e-6)


def test_edm_preconditioning_formula():
    """With F = 0 the EDM wrapper gives (c_skip - 1) x / sigma = -sigma x / (sigma^2 + sigma_data^2)."""
    process = EDM()
    net = make(process, preconditioning="edm", mean_bypass="independent", sigma_data=0.5)
    with torch.no_grad():
        net.unet.project.weight.zero_(), net.unet.project.bias.zero_()
        net.bypass.project.weight.zero_(), net.bypass.project.bias.zero_()
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([0.3, 4.0])
    expected = -t[:, None, None, None] * x / (t[:, None, None, None] ** 2 + 0.25)
    torch.testing.assert_close(net(x, t), expected, rtol=1e-5, atol=1e-6)
    assert net.label_kind == "log_sigma"


def test_vp_scale_is_removed_and_score_divides_by_marginal_std():
    process = VP()
    net = make(process, mean_bypass="coupled")
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([0.2, 0.7])
    std = process.marginal_std(t).float()[:, None, None, None]
    torch.testing.assert_close(net.score(x, t), net(x, t) / std)


def test_bad_config_values_are_user_errors():
    from sciscore.errors import UserError
    with pytest.raises(UserError, match="mean_bypass"):
        NetworkConfig(mean_bypass="both")
    with pytest.raises(UserError, match="unknown network config key"):
        NetworkConfig.from_dict({"chanels": [8, 16]})


def test_constant_mean_channel_is_reproduced_by_sampling():
    """Even an untrained network keeps a constant-mean channel's mean exactly: the PF-ODE moves
    the mean as m - c ~ sigma, and the final Tweedie step x + sigma^2 score sets it to c."""
    from sciscore.sde import SamplingProblem, solve

    process = VE(sigma_max=20.0)
    net = make(process, in_channels=2, mean_bypass="coupled", constant_means=[None, 0.25])
    solution = solve(SamplingProblem(net, process, (2, 16, 16)), solver="ode-heun", steps=4, n=3, seed=0, denoise=True)
    means = solution.x.mean(dim=(-2, -1))
    torch.testing.assert_close(means[:, 1], torch.full((3,), 0.25), atol=1e-5, rtol=0)
    assert (means[:, 0] - 0.25).abs().min() > 1e-3  # the other channel is free


@pytest.mark.parametrize("preconditioning,label", [("c_in", "time"), ("edm", "log_sigma"), ("none", "time")])
def test_preconditioner_owns_the_sigma_scalings(preconditioning, label):
    """The preconditioner's scalings are sde.parametrizations' (Karras et al. 2022, Table 1), and
    the network uses them: with F = 0 and no bypass, c_in/none give 0 and edm gives (c_skip - 1) x / sigma."""
    from sciscore.sde.parametrizations import edm_preconditioning

    process = VE(sigma_max=50.0)
    net = make(process, preconditioning=preconditioning, mean_bypass="none", sigma_data=0.7, noise_label=label)
    t = torch.tensor([0.1, 0.5, 0.9])
    s = net.preconditioner(t, torch.float32)
    sigma = process.sigma(t).float()
    c_skip, c_out, c_in, log_sigma = edm_preconditioning(sigma, 0.7)
    assert torch.equal(s.sigma, sigma) and torch.equal(s.c_skip, c_skip) and torch.equal(s.c_out, c_out)
    assert torch.equal(s.c_in, torch.ones_like(c_in) if preconditioning == "none" else c_in)
    assert torch.equal(s.c_noise, t if label == "time" else log_sigma)
    with torch.no_grad():
        net.unet.project.weight.zero_(), net.unet.project.bias.zero_()
    x = torch.randn(3, 1, 8, 8)
    # (c_skip - 1) / sigma = -sigma / (sigma^2 + sigma_data^2), in float64: c_skip - 1 in float32 cancels
    # (7e-6 relative at sigma = 0.02), which the network's form -m / r^2 avoids
    sigma64 = process.sigma(t.double())[:, None, None, None]
    expected = (-sigma64 * x.double() / (sigma64**2 + 0.49)).float() if preconditioning == "edm" else 0 * x
    torch.testing.assert_close(net(x, t), expected, rtol=1e-6, atol=1e-7)
    assert not list(net.preconditioner.parameters()) and not net.preconditioner.state_dict()  # nothing saved


def test_edm_preconditioning_is_finite_at_zero_terminal_snr():
    """On DiscreteVP(zero_terminal_snr=True), s(1) = 0 and sigma(1) = inf: the "edm" network's
    output (s D - x)/m is -x there and its denoiser D = sigma_data F; at s > 0, D is Tweedie's
    (x + m output)/s (network.py docstring)."""
    from sciscore.sde.processes import DiscreteVP

    process = DiscreteVP(zero_terminal_snr=True)
    net = make(process, preconditioning="edm", mean_bypass="none", sigma_data=1.0)
    x = torch.randn(3, 1, 8, 8)
    t_end = torch.ones(3)
    with torch.no_grad():
        out, d = net(x, t_end), net.denoise(x, t_end)
        raw = net._raw(x, t_end, None)[1]
    assert torch.isfinite(out).all() and torch.isfinite(d).all()
    torch.testing.assert_close(out, -x, rtol=1e-6, atol=1e-6)  # -(x - mean) - mean: round-off only
    torch.testing.assert_close(d, raw, rtol=1e-6, atol=1e-7)  # sigma_data F with sigma_data = 1
    t = torch.tensor([0.05, 0.5, 0.97])  # in float64: Tweedie's division by s ~ 0.01 amplifies round-off
    s = process.scale(t).double()[:, None, None, None]
    m = process.marginal_std(t).double()[:, None, None, None]
    net, x = net.double(), x.double()
    with torch.no_grad():
        tweedie = (x + m * net(x, t)) / s
        torch.testing.assert_close(net.denoise(x, t), tweedie, rtol=1e-9, atol=1e-9)


def test_edm_preconditioning_on_vp_predicts_minus_v():
    """EDM's F target (x0 - c_skip x_hat)/c_out with sigma_data = 1 on VP is -v = m x0 - s z
    (Salimans & Ho 2022): a network whose raw output is exactly -v denoises exactly."""
    from sciscore.sde.processes import DiscreteVP

    process = DiscreteVP(zero_terminal_snr=True)
    net = make(process, preconditioning="edm", mean_bypass="none", sigma_data=1.0)
    x0, z = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    t = torch.tensor([1.0, 0.9, 0.4, 0.01])
    scalings = net.preconditioner(t, torch.float32)
    s = scalings.scale[:, None, None, None]
    m = scalings.marginal_std[:, None, None, None]
    x = s * x0 + m * z
    minus_v = m * x0 - s * z
    torch.testing.assert_close(net.preconditioner.denoised(x, minus_v, scalings), x0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(net.preconditioner.output(x, minus_v, torch.zeros_like(x[..., :1, :1]), scalings,
                                                         split=False)[0], -z, rtol=1e-5, atol=1e-5)


def test_zero_terminal_snr_network_samples_from_t_max():
    """An "edm" network on a zero-terminal-SNR process samples from t = T (trailing grid) through
    its denoiser; the first step is DDIM's x' = s' D + m' x (s = 0, m = 1 at T)."""
    from sciscore.sde import SamplingProblem, solve
    from sciscore.sde.processes import DiscreteVP

    process = DiscreteVP(zero_terminal_snr=True)
    net = make(process, preconditioning="edm", mean_bypass="none", sigma_data=1.0)
    problem = SamplingProblem(net.denoise, process, (1, 8, 8), parametrization="x0")
    solution = solve(problem, solver="ode-heun", grid="trailing", steps=5, n=3, seed=0)
    assert torch.isfinite(solution.x).all() and solution.x.abs().max() > 0
