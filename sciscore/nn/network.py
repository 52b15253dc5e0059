"""The score network: a U-Net with optional mean bypass, wrapped in the sigma-dependent scalings.

Project-wide convention: ``net(x, t, context)`` with x (B, C, H, W), t (B,) process time and
context (B, Cc, H, W) returns marginal_std(t) * score(x, t), i.e. the paper's sigma * s_theta
(Deck & Bischoff 2023, "Easing Color Shifts in Score-Based Diffusion
Models", eq. 10), which is minus the epsilon prediction; the score is output / marginal_std(t).

Like EDM's preconditioners (Karras et al. 2022, Table 1), one piece, `Preconditioner`, owns every
sigma-dependent scaling (reusing `sde.parametrizations.edm_preconditioning`), so the raw U-Net
sees O(1) inputs at every noise level:

    x_hat = x / s(t)                           undo the VP signal scale: x_hat = x0 + sigma z
    c_in  = 1 / sqrt(sigma_data^2 + sigma^2)   input scale of the (de-meaned) field
    c_noise = t   ("time", the paper's)   or   ln(sigma) / 4   ("log_sigma", EDM's)

preconditioning "c_in" (default): output = F(c_in x_hat'; c_noise), the network predicts -z.
preconditioning "edm": D = c_skip x_hat + c_out F  and  output = (D - x_hat) / sigma  (EDM eq. 7).
preconditioning "none": CliMAgen's, F sees x_hat itself.

The scalings act on x itself, written with s and the marginal std m = s sigma
(r = sqrt(s^2 sigma_data^2 + m^2) = s sqrt(sigma_data^2 + sigma^2)):

    c_in x_hat = x / r,    D = (s sigma_data^2 / r^2) x + (m sigma_data / r) F,
    output ("edm") = (s D - x) / m = -(m / r^2) x + (s sigma_data / r) F,

finite also where the signal scale s is 0 (zero terminal SNR, Lin et al. 2024, section 3.1).
There the "edm" network's denoiser is D = sigma_data F; for VP with sigma_data = 1 its raw output
is F = m x0 - s z = -v, v-prediction (Salimans & Ho 2022), and ``ScoreNetwork.denoise`` returns D.

With the mean bypass the spatial mean (here m) of x_hat is split off (Reynolds decomposition, Deck &
Bischoff 2023, eq. 11): the U-Net sees x_hat - m and its output is de-meaned (eq. 14); the bypass sees
m / sqrt(sigma_mean^2 + sigma^2 / n), the mean of x_hat in units of its own std, and its output
is divided by sqrt(n), n = H W (eq. 15).

Channels whose spatial mean is the same constant c in every training sample (vorticity on a
periodic domain) get the exact mean of sigma * score: E[m0 | x_t] = c, so
mean(sigma * score) = -(m - c) / sigma, and samples keep the mean c.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn
import torch.nn.functional as F

from sciscore.errors import UserError
from sciscore.devices import memory_bytes
from sciscore.validation import check_numbers, check_types, require
from sciscore.nn.embedding import GaussianFourierEmbedding
from sciscore.nn.layers import PADDINGS
from sciscore.nn.mean_bypass import BYPASS_MODES, MeanBypass, MeanEmbedding
from sciscore.nn.unet import UNet
from sciscore.sde.parametrizations import edm_preconditioning

PRECONDITIONINGS = ("c_in", "edm", "none")
NOISE_LABELS = ("auto", "time", "log_sigma")


@dataclass
class NetworkConfig:
    """Everything needed to rebuild a ScoreNetwork (stored in the checkpoint's config.json)."""

    in_channels: int = 1                       # noised channels C (the variables)
    context_channels: int = 0                  # conditioning channels Cc concatenated to the U-Net input
    channels: tuple = (32, 64, 128, 256)       # U-Net widths; len - 1 stride-2 downsamplings
    num_residual: int = 8                      # residual blocks at the bottleneck
    level_blocks: int = 0                      # residual blocks at each finer level, encoder and decoder
    attention_blocks: int = 0                  # self-attention blocks at the bottleneck (<= num_residual)
    attention_levels: list = field(default_factory=list)  # levels above the bottleneck (0: full resolution) with
                                               # a self-attention block after each level block
    embed_dim: int = 256                       # Fourier embedding size
    fourier_scale: float = 30.0                # std of the fixed Fourier frequencies
    dropout: float = 0.0                       # dropout in the residual blocks
    padding: str = "zero"                      # "zero" or "circular" (periodic fields)
    mean_bypass: str = "coupled"               # "none", "independent" (the paper's) or "coupled"
    bypass_width: int = 256                    # hidden width of the mean bypass
    preconditioning: str = "c_in"              # "c_in", "edm" or "none"
    sigma_data: float = 1.0                    # std of the (normalized) data, for c_in / EDM
    sigma_data_mean: list | None = None        # per-channel std of the data's spatial means
    noise_label: str = "auto"                  # "time", "log_sigma"; auto: log_sigma for EDM
    constant_means: list | None = None         # per channel: the constant spatial mean, or None
    seed: int = 0                              # seed of the Fourier frequencies

    def __post_init__(self):
        check_types(self, "network")
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in self.channels):
            raise UserError(f"network.channels must be a list of integers like [32, 64, 128, 256], got {self.channels!r}")
        self.channels = tuple(self.channels)
        checks = [
            (self.in_channels >= 1, f"in_channels must be >= 1, got {self.in_channels}"),
            (self.context_channels >= 0, f"context_channels must be >= 0, got {self.context_channels}"),
            (len(self.channels) >= 2 and min(self.channels) >= 1, f"channels needs >= 2 positive widths, got {list(self.channels)}"),
            (self.num_residual >= 0, f"num_residual must be >= 0, got {self.num_residual}"),
            (self.level_blocks >= 0, f"level_blocks must be >= 0, got {self.level_blocks}"),
            (0 <= self.attention_blocks <= self.num_residual,
             f"attention_blocks must be in [0, num_residual = {self.num_residual}], got {self.attention_blocks}"),
            (all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(self.channels) - 1
                 for v in self.attention_levels),
             f"attention_levels must list levels in [0, {len(self.channels) - 2}] (0: full resolution), "
             f"got {self.attention_levels!r}"),
            (self.level_blocks >= 1 or not self.attention_levels,
             "attention_levels needs level_blocks >= 1 (an attention block follows each level block)"),
            (self.embed_dim >= 2 and self.embed_dim % 2 == 0, f"embed_dim must be even, got {self.embed_dim}"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.padding in PADDINGS, f"padding must be one of {list(PADDINGS)}, got {self.padding!r}"),
            (self.mean_bypass in BYPASS_MODES, f"mean_bypass must be one of {list(BYPASS_MODES)}, got {self.mean_bypass!r}"),
            (self.preconditioning in PRECONDITIONINGS, f"preconditioning must be one of {list(PRECONDITIONINGS)}, got {self.preconditioning!r}"),
            (self.noise_label in NOISE_LABELS, f"noise_label must be one of {list(NOISE_LABELS)}, got {self.noise_label!r}"),
            (self.sigma_data > 0, f"sigma_data must be > 0, got {self.sigma_data}"),
        ]
        require(checks, "network config")
        weights = 4 * 9 * sum(a * b for a, b in zip(self.channels, self.channels[1:]))  # the 3x3 downsampling convs
        available = memory_bytes()
        if available is not None and weights > available:
            raise UserError(f"network config: channels {list(self.channels)} need at least {weights / 1e9:.3g} GB of "
                            f"weights, more than the {available / 1e9:.3g} GB of memory here; choose smaller widths")
        for name in ("sigma_data_mean", "constant_means"):
            value = getattr(self, name)
            if value is not None:  # per channel: a std, or the constant mean (None: not constant)
                check_numbers(value, f"network.{name}", allow_none=name == "constant_means")
            if value is not None and len(value) != self.in_channels:
                raise UserError(f"network config: {name} has {len(value)} entries for {self.in_channels} channels")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["attention_levels"] = sorted(set(self.attention_levels))
        for name in ("level_blocks", "attention_blocks", "attention_levels"):
            if not d[name]:  # written only when used: such checkpoints also load in older sciscore
                del d[name]
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "NetworkConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown network config key(s) {unknown}; known keys: {sorted(known)}")
        return cls(**data)


@dataclass
class Scalings:
    """The sigma-dependent scalings at a batch of process times t, each (B,) in the input dtype."""

    sigma: torch.Tensor      # noise level sigma(t)
    scale: torch.Tensor      # signal scale s(t): x = s (x0 + sigma z)
    c_in: torch.Tensor       # U-Net input scale
    c_noise: torch.Tensor    # noise label fed to the time embedding
    c_skip: torch.Tensor     # EDM skip weight (used with preconditioning "edm")
    c_out: torch.Tensor      # EDM output scale (used with preconditioning "edm")
    marginal_std: torch.Tensor  # m = s sigma, the std of x given x0 (finite where sigma is not)
    input_scale: torch.Tensor   # c_in / s = 1 / sqrt(s^2 sigma_data^2 + m^2) ("none": 1 / s): U-Net input = x times it


class Preconditioner(nn.Module):
    """Owns every sigma-dependent scaling of the network (Karras et al. 2022, Table 1, as NVlabs/edm's
    preconditioners do): the input scales c_in (field) and 1/sqrt(sigma_mean^2 + sigma^2/n) (spatial
    mean), the noise label c_noise, and the output map; c_skip, c_out, c_in and ln(sigma)/4 come from
    `sde.parametrizations.edm_preconditioning`. No parameters (its buffers are not saved)."""

    def __init__(self, config: NetworkConfig, process):
        super().__init__()
        self.process = process
        self.kind = config.preconditioning
        self.sigma_data = config.sigma_data
        label = config.noise_label
        self.label_kind = ("log_sigma" if getattr(process, "name", "") == "edm" else "time") if label == "auto" else label
        mean_std = config.sigma_data_mean if config.sigma_data_mean is not None else [config.sigma_data] * config.in_channels
        self.register_buffer("sigma_data_mean", torch.tensor(mean_std, dtype=torch.float32), persistent=False)

    def forward(self, t: torch.Tensor, dtype: torch.dtype) -> Scalings:
        """Scalings at t (B,) float32."""
        sigma = self.process.sigma(t).to(dtype)
        scale = self.process.scale(t).to(dtype)
        m = self.process.marginal_std(t).to(dtype)
        c_skip, c_out, c_in, log_label = edm_preconditioning(sigma, self.sigma_data)
        if self.kind == "none":  # CliMAgen's: the U-Net sees x_hat itself
            c_in = torch.ones_like(c_in)
            input_scale = 1 / scale
        else:
            input_scale = 1 / torch.sqrt(scale**2 * self.sigma_data**2 + m**2)
        c_noise = t if self.label_kind == "time" else log_label
        return Scalings(sigma, scale, c_in, c_noise, c_skip, c_out, m, input_scale)

    def mean_input(self, mean_x: torch.Tensor, s: Scalings, n: int) -> torch.Tensor:
        """The spatial means (B, C) of x_hat = x / s in units of their own std sqrt(sigma_mean^2 +
        sigma^2/n), from the means of x: mean_x / sqrt(s^2 sigma_mean^2 + m^2 / n)."""
        scale, m = s.scale[:, None], s.marginal_std[:, None]
        return mean_x / torch.sqrt(scale**2 * self.sigma_data_mean ** 2 + m**2 / n)

    def output(self, x: torch.Tensor, fluct: torch.Tensor, mean: torch.Tensor, s: Scalings, split: bool):
        """The network output sigma * score at x (B, C, H, W) from the raw prediction F = fluct + mean.

        "c_in", "none": F itself (the network predicts -z). "edm": D = c_skip x_hat + c_out F, and
        output = (D - x_hat) / sigma (Karras et al. 2022, eq. 7) = -(m / r^2) x + (s sigma_data / r) F
        (module docstring), split into the same two parts; with `split` False everything goes
        into the first part."""
        if self.kind != "edm":
            return fluct, mean
        scale, m = s.scale[:, None, None, None], s.marginal_std[:, None, None, None]
        inv_r = s.input_scale[:, None, None, None]
        x_mean = x.mean(dim=(-2, -1), keepdim=True)
        fluct = -m * inv_r**2 * (x - x_mean) + scale * self.sigma_data * inv_r * fluct
        mean = -m * inv_r**2 * x_mean + scale * self.sigma_data * inv_r * mean
        if not split:
            fluct, mean = fluct + mean, torch.zeros_like(mean)
        return fluct, mean

    def denoised(self, x: torch.Tensor, raw: torch.Tensor, s: Scalings) -> torch.Tensor:
        """The "edm" denoiser D = E[x0 | x_t] from the raw prediction F (both (B, C, H, W)):
        (s sigma_data^2 / r^2) x + (m sigma_data / r) F, finite where s = 0 (module docstring)."""
        scale, m = s.scale[:, None, None, None], s.marginal_std[:, None, None, None]
        inv_r = s.input_scale[:, None, None, None]
        return scale * self.sigma_data**2 * inv_r**2 * x + m * self.sigma_data * inv_r * raw


class ScoreNetwork(nn.Module):
    """net(x, t, context) = marginal_std(t) * score(x, t); see the module docstring.

    Three pieces: the `Preconditioner` (every sigma-dependent scaling), the Reynolds split
    (`reynolds_parts`: U-Net on the fluctuation, bypass on the mean), and the exact mean of
    constant-mean channels (`constant_mean_parts`)."""

    def __init__(self, config: NetworkConfig, process):
        super().__init__()
        self.config = config
        self.process = process
        c = config
        self.embedding = GaussianFourierEmbedding(c.embed_dim, c.fourier_scale, c.seed)
        self.embed_dense = nn.Linear(c.embed_dim, c.embed_dim)
        self.unet = UNet(c.in_channels + c.context_channels, c.in_channels, c.channels, c.num_residual,
                         c.embed_dim, c.dropout, c.padding, c.level_blocks, c.attention_blocks, c.attention_levels)
        coupled = c.mean_bypass == "coupled"
        self.bypass = None
        self.mean_embedding = None
        if c.mean_bypass != "none":
            self.bypass = MeanBypass(c.in_channels + c.context_channels, c.in_channels, c.embed_dim,
                                     c.bypass_width, self.unet.pooled_dim if coupled else 0)
        if coupled:
            self.mean_embedding = MeanEmbedding(c.in_channels, c.embed_dim)
        self.preconditioner = Preconditioner(config, process)
        constant = c.constant_means or [None] * c.in_channels
        self.register_buffer("constant_mask", torch.tensor([v is not None for v in constant]), persistent=False)
        self.register_buffer("constant_value", torch.tensor([0.0 if v is None else float(v) for v in constant]),
                             persistent=False)
        self.has_constant_means = bool(self.constant_mask.any())

    @property
    def label_kind(self) -> str:
        return self.preconditioner.label_kind

    def _check_inputs(self, x: torch.Tensor, context: torch.Tensor | None) -> None:
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.in_channels:
            raise ValueError(f"expected x of shape (B, {c.in_channels}, H, W), got {tuple(x.shape)}")
        if c.context_channels:
            if context is None or context.shape[1] != c.context_channels or context.shape[-2:] != x.shape[-2:]:
                raise ValueError(f"expected context of shape (B, {c.context_channels}, {x.shape[-2]}, {x.shape[-1]})")

    # ------------------------------------------------------------------------------------------
    def reynolds_parts(self, x: torch.Tensor, s: Scalings, emb: torch.Tensor, context: torch.Tensor | None):
        """The raw prediction F split as x is (Reynolds decomposition, Deck & Bischoff 2023,
        eq. 11): the U-Net sees the fluctuation c_in (x_hat - m), its output is de-meaned (eq. 14);
        the bypass sees the preconditioned mean and predicts sqrt(n) times the mean of F (eq. 15).
        Without a bypass the U-Net sees c_in x_hat and the mean part is zero. x_hat = x / s enters
        only through the scalings of x (module docstring). Returns (B, C, H, W) and (B, C, 1, 1)."""
        c = self.config
        n = x.shape[-2] * x.shape[-1]
        input_scale = s.input_scale[:, None, None, None]
        use_bypass = self.bypass is not None
        if use_bypass:
            m = x.mean(dim=(-2, -1))                                       # (B, C)
            field_in = x - m[:, :, None, None]
            m_in = self.preconditioner.mean_input(m, s, n)
        else:
            field_in = x
        unet_in = input_scale * field_in
        if c.context_channels:
            unet_in = torch.cat([unet_in, context.to(unet_in.dtype)], dim=1)
        unet_emb = emb if self.mean_embedding is None else emb + self.mean_embedding(m_in)
        out, pooled = self.unet(unet_in, unet_emb, pooled=self.mean_embedding is not None)
        out = out.to(x.dtype)
        if not use_bypass:
            return out, torch.zeros_like(out[:, :, :1, :1])
        fluct = out - out.mean(dim=(-2, -1), keepdim=True)                   # eq. 14
        bypass_in = m_in if not c.context_channels else torch.cat([m_in, context.mean(dim=(-2, -1)).to(m_in.dtype)], 1)
        mean = (self.bypass(bypass_in, emb, pooled).to(x.dtype) / math.sqrt(n))[:, :, None, None]  # eq. 15
        return fluct, mean

    def constant_mean_parts(self, x: torch.Tensor, s: Scalings, fluct: torch.Tensor, mean: torch.Tensor):
        """Constant-mean channels: E[m0 | x_t] = c, so mean(sigma * score) = -(mean(x) - s c) / m exactly."""
        if not self.has_constant_means:
            return fluct, mean
        exact = -(x.mean(dim=(-2, -1)) - s.scale[:, None] * self.constant_value) / s.marginal_std[:, None]
        mask = self.constant_mask[None, :, None, None]
        if self.bypass is None:  # move the mean of the U-Net output out of the fluctuation part
            fluct = torch.where(mask, fluct - fluct.mean(dim=(-2, -1), keepdim=True), fluct)
        return fluct, torch.where(mask, exact[:, :, None, None].to(mean.dtype), mean)

    def _raw(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None):
        """The scalings at t and the raw prediction F = fluct + mean (before the output map)."""
        self._check_inputs(x, context)
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        s = self.preconditioner(t.to(torch.float32), x.dtype)
        emb = F.silu(self.embed_dense(self.embedding(s.c_noise)))
        fluct, mean = self.reynolds_parts(x, s, emb, context)
        return s, fluct, mean

    def parts(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None) -> dict:
        """The output split into its spatially varying part (zero spatial mean when the bypass
        is on) and its spatially constant part: ``fluctuation + mean == forward(x, t, context)``.
        Shapes (B, C, H, W) and (B, C, 1, 1)."""
        s, fluct, mean = self._raw(x, t, context)
        fluct, mean = self.preconditioner.output(x, fluct, mean, s, split=self.bypass is not None)
        fluct, mean = self.constant_mean_parts(x, s, fluct, mean)
        return {"fluctuation": fluct, "mean": mean}

    def denoise(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """E[x0 | x_t = x] (B, C, H, W), in the network's (normalized) units.

        With preconditioning "edm" it is the denoiser D read off the raw prediction (module
        docstring), finite at zero terminal SNR (s = 0; Lin et al. 2024), so
        ``SamplingProblem(network.denoise, process, shape, parametrization="x0")`` samples a
        zero-terminal-SNR model from t = T. Otherwise Tweedie's formula (x + m output) / s."""
        s, fluct, mean = self._raw(x, t, context)
        if self.config.preconditioning != "edm":
            fluct, mean = self.constant_mean_parts(x, s, fluct, mean)
            output = fluct + mean
            return (x + s.marginal_std[:, None, None, None] * output) / s.scale[:, None, None, None]
        d = self.preconditioner.denoised(x, fluct + mean, s)
        if self.has_constant_means:  # E[m0 | x_t] = c exactly
            mask = self.constant_mask[None, :, None, None]
            target = self.constant_value[None, :, None, None].to(d.dtype)
            d = torch.where(mask, d - d.mean(dim=(-2, -1), keepdim=True) + target, d)
        return d

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        p = self.parts(x, t, context)
        return p["fluctuation"] + p["mean"]

    def score(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """grad_x log p_t(x) = output / marginal_std(t)."""
        t = torch.as_tensor(t, device=x.device)
        std = self.process.marginal_std(t.to(torch.float32)).to(x.dtype)
        return self.forward(x, t, context) / std.reshape(-1, 1, 1, 1)


def build_network(config: NetworkConfig | dict, process) -> ScoreNetwork:
    """A fresh ScoreNetwork for `config` (a NetworkConfig or its dict) and a forward process."""
    if isinstance(config, dict):
        config = NetworkConfig.from_dict(config)
    return ScoreNetwork(config, process)


def count_parameters(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())
