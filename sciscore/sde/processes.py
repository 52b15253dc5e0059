"""Forward (noising) processes in the notation of Karras et al. 2022 (EDM), eq. 7.

Every process perturbs data as

    x_t = s(t) * (x_0 + sigma(t) * z),        z ~ N(0, I),

so the marginal of x_t given x_0 is N(s(t) x_0, (s(t) sigma(t))^2 I). The forward SDE that has
these marginals is (EDM eq. 4 and its derivation in appendix B.2)

    dx = f(t) x dt + g(t) dW,     f(t) = s'(t) / s(t),     g(t) = s(t) sqrt(d sigma(t)^2 / dt).

A process only has to say what s(t) and sigma(t) are (and their derivatives); drift, diffusion,
perturbation and the prior follow. Times are plain floats or tensors of any shape; results have
the shape and dtype of ``t``.

+-----------+-----------------------------------------+------------------+-----------------+
| process   | sigma(t)                                | s(t)             | default t span  |
+===========+=========================================+==================+=================+
| VE        | sigma_min (sigma_max/sigma_min)^t       | 1                | [1e-5, 1]       |
| VP        | sqrt(1/alpha_bar(t) - 1)                | sqrt(alpha_bar)  | [1e-3, 1]       |
| SubVP     | (1 - alpha_bar(t)) / sqrt(alpha_bar(t)) | sqrt(alpha_bar)  | [1e-3, 1]       |
| EDM       | t                                       | 1                | [0.002, 80]     |
| DiscreteVP| DDPM table, sqrt(alpha_bar) interpolated| sqrt(alpha_bar)  | [1/N, 1]        |
+-----------+-----------------------------------------+------------------+-----------------+

VE note (Song et al. 2021, eq. 30): the marginal std is taken as sigma(t), not
sqrt(sigma(t)^2 - sigma_min^2); i.e. p_t = p_data * N(0, sigma(t)^2). The SDE transports these
marginals exactly for every t in the span, because from t1 to t2 it adds variance
sigma(t2)^2 - sigma(t1)^2.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import ClassVar

import torch

from sciscore.errors import UserError
from sciscore.validation import check_types

Tensor = torch.Tensor


def _as_tensor(t) -> Tensor:
    if isinstance(t, Tensor):
        return t
    return torch.as_tensor(t, dtype=torch.float64)


def _per_sample(value: Tensor, like: Tensor) -> Tensor:
    """Reshape a (B,) or scalar tensor to broadcast against ``like`` (B, C, H, W)."""
    value = value.to(device=like.device, dtype=like.dtype)
    if value.ndim == 0:
        return value
    return value.reshape(-1, *([1] * (like.ndim - 1)))


class ForwardProcess:
    """Base class: x_t = s(t) (x_0 + sigma(t) z). Subclasses define sigma, scale, their
    derivatives and the inverse t_of_sigma; everything else is derived here."""

    name: ClassVar[str] = "forward-process"
    t_min: float
    t_max: float

    # -- what a subclass defines ------------------------------------------------------------
    def sigma(self, t) -> Tensor:
        """Noise-to-signal ratio sigma(t) (EDM eq. 7), dimensionless."""
        raise NotImplementedError

    def scale(self, t) -> Tensor:
        """Signal scale s(t) (EDM eq. 7)."""
        t = _as_tensor(t)
        return torch.ones_like(t)

    def sigma_squared_derivative(self, t) -> Tensor:
        """d sigma(t)^2 / dt."""
        raise NotImplementedError

    def log_scale_derivative(self, t) -> Tensor:
        """f(t) = s'(t) / s(t)."""
        t = _as_tensor(t)
        return torch.zeros_like(t)

    def t_of_sigma(self, sigma) -> Tensor:
        """Inverse of sigma(t): the time at which the noise-to-signal ratio is ``sigma``."""
        raise NotImplementedError

    def prior_std(self) -> float:
        """Std of the prior p_T used to start the reverse process: s(T) sigma(T) by default
        (the data's own spread is negligible against the noise at T)."""
        return float(self.marginal_std(torch.tensor(self.t_max, dtype=torch.float64)))

    # -- derived --------------------------------------------------------------------------
    def marginal_std(self, t) -> Tensor:
        """s(t) sigma(t): the std of x_t given x_0."""
        return self.scale(t) * self.sigma(t)

    def alpha_bar(self, t) -> Tensor:
        """Signal fraction s(t)^2 / (s(t)^2 (1 + sigma(t)^2)) = 1 / (1 + sigma^2) (DDPM's alpha_bar
        for VP); the signal-to-noise ratio is 1 / sigma(t)^2."""
        return 1.0 / (1.0 + self.sigma(t) ** 2)

    def perturb(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = s(t) (x_0 + sigma(t) noise); x0, noise (B, C, H, W), t (B,) or scalar."""
        t = _as_tensor(t)
        s = _per_sample(self.scale(t), x0)
        sigma = _per_sample(self.sigma(t), x0)
        return s * (x0 + sigma * noise)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """f(x, t) = (s'/s)(t) x of the forward SDE dx = f dt + g dW."""
        return _per_sample(self.log_scale_derivative(_as_tensor(t)), x) * x

    def diffusion(self, t) -> Tensor:
        """g(t) = s(t) sqrt(d sigma^2 / dt) of the forward SDE (EDM eq. 4 rearranged)."""
        t = _as_tensor(t)
        return self.scale(t) * self.sigma_squared_derivative(t).clamp_min(0).sqrt()

    def prior_sample(self, shape, generator: torch.Generator | None = None, *,
                     dtype=torch.float32, device=None) -> Tensor:
        """A draw from p_T = N(0, prior_std^2 I) of the given shape."""
        z = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)
        return self.prior_std() * z

    def to_dict(self) -> dict:
        """JSON-able description; ``process_from_dict`` inverts it."""
        return {"name": self.name, **asdict(self)}


# ---------------------------------------------------------------------------------------------
# Variance exploding (Song et al. 2021, eq. 9 and appendix C; Deck & Bischoff 2023, section 2)
@dataclass(frozen=True)
class VE(ForwardProcess):
    """sigma(t) = sigma_min (sigma_max / sigma_min)^t,  g(t) = sigma(t) sqrt(2 ln(sigma_max / sigma_min)).

    sigma_max should be about the largest pairwise distance of the training samples
    (``estimate_sigma_max``); the turbulence study used 0.01 and 1000. t_min = 1e-5 follows
    Song et al.'s VE sampler (sigma(t_min) ~ sigma_min)."""

    sigma_min: float = 0.01
    sigma_max: float = 1000.0
    t_min: float = 1e-5
    t_max: float = 1.0
    name: ClassVar[str] = "ve"

    def __post_init__(self):
        check_types(self, "process")
        if not 0 < self.sigma_min < self.sigma_max:
            raise UserError(f"VE needs 0 < sigma_min < sigma_max, got sigma_min={self.sigma_min}, "
                            f"sigma_max={self.sigma_max}")

    @property
    def _log_ratio(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    def sigma(self, t):
        return self.sigma_min * torch.exp(_as_tensor(t) * self._log_ratio)

    def sigma_squared_derivative(self, t):
        return 2 * self._log_ratio * self.sigma(t) ** 2

    def t_of_sigma(self, sigma):
        return torch.log(_as_tensor(sigma) / self.sigma_min) / self._log_ratio


# ---------------------------------------------------------------------------------------------
# Variance preserving, continuous beta(t) (Song et al. 2021, eq. 11, 32-33; Nichol & Dhariwal 2021)
def _cosine_log_alpha_bar(t: Tensor, offset: float) -> Tensor:
    # alpha_bar(t) = cos^2(pi/2 (t + offset)/(1 + offset)) / cos^2(pi/2 offset/(1 + offset))
    num = torch.cos(math.pi / 2 * (t + offset) / (1 + offset))
    den = math.cos(math.pi / 2 * offset / (1 + offset))
    return 2 * torch.log(num / den)


@dataclass(frozen=True)
class VP(ForwardProcess):
    """alpha_bar(t) = exp(-int_0^t beta), s = sqrt(alpha_bar), sigma = sqrt(1/alpha_bar - 1);
    forward SDE dx = -beta(t)/2 x dt + sqrt(beta(t)) dW.

    schedule "linear": beta(t) = beta_min + t (beta_max - beta_min) (DDPM's limit, 0.1 and 20).
    schedule "cosine": Nichol & Dhariwal's alpha_bar with offset ``cosine_offset``; alpha_bar(1) = 0
    (zero terminal SNR), so t_max defaults to 0.999 where sigma is finite.
    For the discrete DDPM table (and the zero-terminal-SNR rescaling) use ``DiscreteVP``."""

    schedule: str = "linear"
    beta_min: float = 0.1
    beta_max: float = 20.0
    cosine_offset: float = 0.008
    t_min: float = 1e-3
    t_max: float = field(default=None)  # 1.0 for linear, 0.999 for cosine
    name: ClassVar[str] = "vp"

    def __post_init__(self):
        if self.t_max is None:
            object.__setattr__(self, "t_max", 0.999 if self.schedule == "cosine" else 1.0)
        check_types(self, "process")
        if self.schedule not in ("linear", "cosine"):
            raise UserError(f"VP schedule must be one of ['cosine', 'linear'], got {self.schedule!r}")

    def integrated_beta(self, t) -> Tensor:
        """int_0^t beta = -ln alpha_bar(t)."""
        t = _as_tensor(t)
        if self.schedule == "linear":
            return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2
        return -_cosine_log_alpha_bar(t, self.cosine_offset)

    def beta(self, t) -> Tensor:
        """beta(t) = d/dt int_0^t beta."""
        t = _as_tensor(t)
        if self.schedule == "linear":
            return self.beta_min + t * (self.beta_max - self.beta_min)
        u = math.pi / 2 * (t + self.cosine_offset) / (1 + self.cosine_offset)
        return math.pi / (1 + self.cosine_offset) * torch.tan(u)

    def scale(self, t):
        return torch.exp(-0.5 * self.integrated_beta(t))

    def sigma(self, t):
        return torch.expm1(self.integrated_beta(t)).sqrt()

    def marginal_std(self, t):
        # s sigma = sqrt(1 - alpha_bar), written without the 0 * inf of s sigma as alpha_bar -> 0
        return (-torch.expm1(-self.integrated_beta(t))).sqrt()

    def sigma_squared_derivative(self, t):
        # sigma^2 = exp(B) - 1  =>  d sigma^2/dt = beta exp(B)
        return self.beta(t) * torch.exp(self.integrated_beta(t))

    def log_scale_derivative(self, t):
        return -0.5 * self.beta(t)

    def t_of_sigma(self, sigma):
        big_b = torch.log1p(_as_tensor(sigma) ** 2)  # int beta = ln(1 + sigma^2)
        if self.schedule == "linear":
            a = 0.5 * (self.beta_max - self.beta_min)
            if a == 0:
                return big_b / self.beta_min
            return (-self.beta_min + torch.sqrt(self.beta_min**2 + 4 * a * big_b)) / (2 * a)
        # cos(u) = cos(u0) exp(-B/2), u = pi/2 (t + offset)/(1 + offset)
        c = self.cosine_offset
        u = torch.arccos(math.cos(math.pi / 2 * c / (1 + c)) * torch.exp(-0.5 * big_b))
        return u * 2 / math.pi * (1 + c) - c

    def prior_std(self) -> float:
        # s^2 (sigma^2 + 1) = 1: unit-variance data stay unit variance (Song et al.'s N(0, I) prior)
        return 1.0


@dataclass(frozen=True)
class SubVP(VP):
    """Sub-VP (Song et al. 2021, eq. 12): same s(t) as VP, marginal std 1 - alpha_bar(t), i.e.
    sigma = (1 - alpha_bar)/sqrt(alpha_bar); g(t)^2 = beta(t) (1 - alpha_bar(t)^2)."""

    name: ClassVar[str] = "subvp"

    def sigma(self, t):
        big_b = self.integrated_beta(t)
        return -torch.expm1(-big_b) * torch.exp(0.5 * big_b)

    def marginal_std(self, t):
        return -torch.expm1(-self.integrated_beta(t))

    def sigma_squared_derivative(self, t):
        # sigma^2 = (1 - a)^2 / a with a = alpha_bar, a' = -beta a  =>  d sigma^2/dt = beta (1 - a^2)/a
        big_b = self.integrated_beta(t)
        return self.beta(t) * (-torch.expm1(-2 * big_b)) * torch.exp(big_b)

    def t_of_sigma(self, sigma):
        sigma = _as_tensor(sigma)
        root_alpha_bar = (torch.sqrt(sigma**2 + 4) - sigma) / 2  # u^2 + sigma u - 1 = 0
        return VP.t_of_sigma(self, torch.sqrt(root_alpha_bar ** -2 - 1))

    def prior_std(self) -> float:
        return float(self.marginal_std(torch.tensor(self.t_max, dtype=torch.float64)))


# ---------------------------------------------------------------------------------------------
# EDM (Karras et al. 2022, Table 1 right column): sigma(t) = t, s(t) = 1
@dataclass(frozen=True)
class EDM(ForwardProcess):
    """sigma(t) = t, s(t) = 1, so dx = sqrt(2 t) dW and the time *is* the noise level.
    rho is the default Karras grid exponent. The data std sigma_data of EDM's preconditioning is not
    a property of the process: the network derives it from the training data
    (``NetworkConfig.sigma_data``), and the preconditioning and the loss weight read it there."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    name: ClassVar[str] = "edm"

    def __post_init__(self):
        check_types(self, "process")
        if not 0 < self.sigma_min < self.sigma_max:
            raise UserError(f"EDM needs 0 < sigma_min < sigma_max, got sigma_min={self.sigma_min}, "
                            f"sigma_max={self.sigma_max}")

    @property
    def t_min(self) -> float:
        return self.sigma_min

    @property
    def t_max(self) -> float:
        return self.sigma_max

    def sigma(self, t):
        return _as_tensor(t).clone()

    def sigma_squared_derivative(self, t):
        return 2 * _as_tensor(t)

    def t_of_sigma(self, sigma):
        return _as_tensor(sigma).clone()


# ---------------------------------------------------------------------------------------------
# Discrete DDPM schedule (Ho et al. 2020) with the zero-terminal-SNR rescaling (Lin et al. 2024, Alg. 1)
def rescale_zero_terminal_snr(alpha_bar: Tensor) -> Tensor:
    """Lin et al. (2024), Algorithm 1: shift and scale sqrt(alpha_bar) so that its last value is
    exactly 0 and its first is unchanged, then square.

        sqrt_ab <- (sqrt_ab - sqrt_ab[-1]) * sqrt_ab[0] / (sqrt_ab[0] - sqrt_ab[-1])
    """
    root = alpha_bar.sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * first / (first - last)
    return root**2


@dataclass(frozen=True)
class DiscreteVP(ForwardProcess):
    """The DDPM table beta_1..beta_N ("linear": linspace(beta_start, beta_end); "scaled_linear":
    linspace(sqrt(beta_start), sqrt(beta_end))^2 as in Stable Diffusion), alpha_bar_i =
    prod_{j<=i} (1 - beta_j), placed at t_i = i/N. Between nodes sqrt(alpha_bar) is linear in t
    (and 1 at t = 0), which defines a continuous VP process through the table.

    zero_terminal_snr=True applies ``rescale_zero_terminal_snr``: alpha_bar(1) = 0, sigma(1) = inf.
    Then only v- or x0-prediction is well posed (eps-prediction is refused), and the reverse
    process starts from the prior N(0, I) at t = 1 with the deterministic first step of
    ``solve``'s samplers (an SDE cannot start there: its drift is infinite)."""

    num_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    zero_terminal_snr: bool = False
    name: ClassVar[str] = "discrete-vp"

    def __post_init__(self):
        check_types(self, "process")
        if self.beta_schedule not in ("linear", "scaled_linear"):
            raise UserError("DiscreteVP beta_schedule must be one of ['linear', 'scaled_linear'], "
                            f"got {self.beta_schedule!r}")
        if self.num_timesteps < 2:
            raise UserError(f"DiscreteVP needs num_timesteps >= 2, got {self.num_timesteps}")

    @property
    def t_min(self) -> float:
        return 1.0 / self.num_timesteps

    @property
    def t_max(self) -> float:
        return 1.0

    @cached_property
    def alpha_bars(self) -> Tensor:
        """alpha_bar_i, i = 1..N, float64 (N,)."""
        n = self.num_timesteps
        if self.beta_schedule == "linear":
            betas = torch.linspace(self.beta_start, self.beta_end, n, dtype=torch.float64)
        else:
            betas = torch.linspace(self.beta_start**0.5, self.beta_end**0.5, n, dtype=torch.float64) ** 2
        alpha_bar = torch.cumprod(1 - betas, 0)
        if self.zero_terminal_snr:
            alpha_bar = rescale_zero_terminal_snr(alpha_bar)
        return alpha_bar

    @cached_property
    def _nodes(self) -> tuple[Tensor, Tensor]:
        t = torch.arange(0, self.num_timesteps + 1, dtype=torch.float64) / self.num_timesteps
        root = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bars.sqrt()])
        return t, root

    def _segment(self, t: Tensor):
        nodes, root = self._nodes
        nodes, root = nodes.to(t.device), root.to(t.device)
        k = torch.clamp(torch.searchsorted(nodes, t.to(torch.float64).contiguous(), right=True) - 1,
                        0, self.num_timesteps - 1)
        slope = (root[k + 1] - root[k]) * self.num_timesteps
        # weight from t N - k (exact at the nodes, so alpha_bar(1) = 0 stays exactly 0)
        w = t.to(torch.float64) * self.num_timesteps - k
        value = root[k] * (1 - w) + root[k + 1] * w
        return value.to(t.dtype), slope.to(t.dtype)

    def scale(self, t):
        return self._segment(_as_tensor(t))[0]

    def sigma(self, t):
        s = self.scale(t)
        return torch.sqrt(1 / s**2 - 1)

    def marginal_std(self, t):
        # s sigma = sqrt(1 - alpha_bar): exactly 1 at zero terminal SNR, where s sigma is 0 * inf
        return torch.sqrt(1 - self.scale(t) ** 2)

    def sigma_squared_derivative(self, t):
        s, ds = self._segment(_as_tensor(t))
        return -2 * ds / s**3

    def log_scale_derivative(self, t):
        s, ds = self._segment(_as_tensor(t))
        return ds / s

    def t_of_sigma(self, sigma):
        sigma = _as_tensor(sigma)
        target = 1 / torch.sqrt(1 + sigma.to(torch.float64) ** 2)
        nodes, root = self._nodes
        # root is decreasing: search on its negation
        k = torch.clamp(torch.searchsorted(-root, -target.contiguous()) - 1, 0, self.num_timesteps - 1)
        frac = (target - root[k]) / (root[k + 1] - root[k])
        return (nodes[k] + frac / self.num_timesteps).to(sigma.dtype)

    def prior_std(self) -> float:
        return 1.0

    def to_dict(self) -> dict:
        return {"name": self.name, "num_timesteps": self.num_timesteps, "beta_start": self.beta_start,
                "beta_end": self.beta_end, "beta_schedule": self.beta_schedule,
                "zero_terminal_snr": self.zero_terminal_snr}


PROCESSES = {cls.name: cls for cls in (VE, VP, SubVP, EDM, DiscreteVP)}


def process_from_dict(d: dict) -> ForwardProcess:
    """Inverse of ``ForwardProcess.to_dict``."""
    d = dict(d)
    name = d.pop("name", None)
    if not isinstance(name, str) or name not in PROCESSES:
        raise UserError(f"unknown forward process name {name!r}; expected one of {sorted(PROCESSES)}")
    if name == "edm" and "sigma_data" in d:
        # (checkpoints written before it was removed: `sciscore.checkpoint.migrate` drops it)
        raise UserError("forward process 'edm' has no parameter sigma_data: the network derives sigma_data "
                        "from the training data (network.sigma_data); remove it from the process")
    try:
        return PROCESSES[name](**d)
    except TypeError as error:
        raise UserError(f"bad parameters for forward process {name!r}: {error}") from None


def estimate_sigma_max(samples, chunk_size: int = 1024) -> float:
    """Song & Ermon's rule (Song & Ermon 2020, "Improved Techniques for
    Training Score-Based Generative Models", technique 1): sigma_max = the largest Euclidean distance
    between two training samples. ``samples`` (N, ...) tensor or array; O(N^2) in chunks."""
    x = torch.as_tensor(samples).reshape(len(samples), -1).to(torch.float64)
    if len(x) < 2:
        raise UserError("estimate_sigma_max needs at least 2 samples")
    largest = 0.0
    for start in range(0, len(x), chunk_size):
        block = x[start:start + chunk_size]
        largest = max(largest, float(torch.cdist(block, x).max()))
    return largest
