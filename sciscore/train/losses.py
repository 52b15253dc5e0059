"""Training losses for networks that return sigma * score (= -epsilon prediction).

Every loss here is a weighted denoising score matching loss on the residual r = F + z, where
F = net(x_t, t) and x_t = s(t) (x0 + sigma(t) z): with lambda(t) = marginal_std^2 (Song et al.
2021, eq. 7), lambda |s_theta - grad log p(x_t | x0)|^2 = |F + z|^2. The losses differ in how t is
drawn and in a per-sample weight w:

  "dsm": t ~ U(t_min, t_max), w = 1 (Deck & Bischoff 2023, eq. 12).
  "edm": ln sigma ~ N(P_mean, P_std^2), w = (sigma^2 + sigma_data^2) / sigma_data^2. This is EDM's
         lambda(sigma) |D - x0|^2 with lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2
         (Karras et al. 2022, Table 1), since D - x0 = sigma r.
  "v":   t ~ U, w = 1 + sigma^2. For VP (s^2 (1 + sigma^2) = 1) this equals the v-prediction MSE
         |v_hat - v|^2 with v = s z - s sigma x0 (Salimans & Ho 2022): v_hat - v = r / s.

The loss splits exactly into the spatial-mean and fluctuation terms of Deck & Bischoff 2023,
eq. 16-17: with
r_bar the spatial mean of r per (sample, channel) and r' = r - r_bar,
    mean_{b,c,y,x} r^2 = mean_{b,c} r_bar^2 + mean_{b,c,y,x} r'^2
because sum_{y,x} r' = 0 (a Pythagorean split, not an independence assumption). Weights on the
two terms are configurable (CliMAgen's avg_weight / dev_weight).

Isotropy regularizer (Fernando et al. 2024, "Iso-Diffusion", their isotropy-regularized objective): with eps_hat = -F and d = C H W,
    "isotropy":            lambda (mean_b ||eps_hat_b||^2 / d - 1)^2   (batch mean inside, as in the paper)
    "isotropy_per_sample": lambda mean_b (||eps_hat_b||^2 / d - 1)^2  (a variant; not the paper's)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sciscore.validation import check_types, require

LOSS_KINDS = ("dsm", "edm", "v")


@dataclass
class LossConfig:
    kind: str = "dsm"                 # "dsm", "edm" or "v"
    mean_weight: float = 1.0          # weight of the spatial-mean term (eq. 16)
    fluctuation_weight: float = 1.0   # weight of the fluctuation term (eq. 17)
    isotropy_weight: float = 0.0      # lambda of the isotropy regularizer (Fernando et al. 2024)
    isotropy_per_sample: bool = False  # use the per-sample variant instead of the paper's
    context_dropout: float = 0.0      # probability of zeroing a sample's context (classifier-free guidance)
    p_mean: float = -1.2              # EDM: mean of ln sigma
    p_std: float = 1.2                # EDM: std of ln sigma
    sigma_bins: int = 8               # bins of log sigma for the per-noise-level loss log

    def __post_init__(self):
        check_types(self, "loss")
        require([
            (self.kind in LOSS_KINDS, f"kind must be one of {list(LOSS_KINDS)}, got {self.kind!r}"),
            *((getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
              for name in ("mean_weight", "fluctuation_weight", "isotropy_weight")),
            (0 <= self.context_dropout < 1, f"context_dropout must be in [0, 1), got {self.context_dropout}"),
            (self.p_std > 0, f"p_std must be > 0, got {self.p_std}"),
            (self.sigma_bins >= 1, f"sigma_bins must be >= 1, got {self.sigma_bins}"),
        ], "config [loss]")


def draw_times(process, batch: int, config: LossConfig, generator: torch.Generator, device) -> torch.Tensor:
    """(B,) training times: uniform in [t_min, t_max], or EDM's log-normal sigma mapped to t."""
    if config.kind == "edm":
        log_sigma = config.p_mean + config.p_std * torch.randn(batch, generator=generator, device=device)
        lo, hi = (float(process.sigma(torch.tensor(v, dtype=torch.float64))) for v in (process.t_min, process.t_max))
        sigma = log_sigma.exp().clamp(lo, hi)
        return process.t_of_sigma(sigma).to(torch.float32).clamp(process.t_min, process.t_max)
    u = torch.rand(batch, generator=generator, device=device)
    return process.t_min + (process.t_max - process.t_min) * u


def loss_weight(process, t: torch.Tensor, config: LossConfig, sigma_data: float = 1.0) -> torch.Tensor:
    """(B,) per-sample weight w(t) on |F + z|^2 (module docstring)."""
    if config.kind == "dsm":
        return torch.ones_like(t)
    sigma = process.sigma(t).to(t.dtype)
    if config.kind == "edm":
        return (sigma ** 2 + sigma_data ** 2) / sigma_data ** 2
    return 1 + sigma ** 2


def split_residual_loss(residual: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (B,) mean and fluctuation terms of w |r|^2 (eq. 16-17), r (B, C, H, W):
    mean term w * mean_c r_bar^2 and fluctuation term w * mean_{c,y,x} (r - r_bar)^2."""
    r_bar = residual.mean(dim=(-2, -1), keepdim=True)
    mean_term = weight * r_bar.square().mean(dim=(1, 2, 3))
    fluct_term = weight * (residual - r_bar).square().mean(dim=(1, 2, 3))
    return mean_term, fluct_term


def isotropy_penalty(output: torch.Tensor, per_sample: bool = False) -> torch.Tensor:
    """Iso-Diffusion's regularizer on eps_hat = -output (module docstring), without lambda."""
    norm2 = output.to(torch.promote_types(output.dtype, torch.float32)).square().mean(dim=(1, 2, 3))  # ||eps_hat_b||^2 / d
    if per_sample:
        return (norm2 - 1).square().mean()
    return (norm2.mean() - 1).square()


def drop_context(context: torch.Tensor | None, probability: float, generator: torch.Generator,
                 batch: int | None = None, share: slice = slice(None)):
    """Zero each sample's context with `probability` (classifier-free guidance training). The
    draws are made for `batch` samples (default: len(context)) of which `share` is `context`."""
    if context is None or probability == 0:
        return context
    draws = torch.rand(batch or context.shape[0], generator=generator, device=context.device)
    keep = draws[share] >= probability
    return context * keep[:, None, None, None].to(context.dtype)


def denoising_loss(network, process, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                   config: LossConfig, context: torch.Tensor | None = None, sigma_data: float = 1.0) -> dict:
    """The training loss for given draws of t (B,) and noise z (B, C, H, W).

    Returns a dict of tensors: "loss" (what is minimized), "mean" and "fluctuation" (the
    unweighted-by-term batch means of eq. 16-17), "isotropy", "per_sample" (B,) (mean +
    fluctuation, for the per-sigma log) and "output"."""
    x_t = process.perturb(x0, t, noise)
    output = network(x_t, t, context)
    dtype = torch.promote_types(noise.dtype, torch.float32)  # bf16 autocast output: the loss in fp32
    residual = output.to(dtype) + noise.to(dtype)
    weight = loss_weight(process, t, config, sigma_data).to(dtype)
    mean_term, fluct_term = split_residual_loss(residual, weight)
    mean, fluct = mean_term.mean(), fluct_term.mean()
    loss = config.mean_weight * mean + config.fluctuation_weight * fluct
    isotropy = torch.zeros((), device=x0.device, dtype=dtype)
    if config.isotropy_weight:
        isotropy = isotropy_penalty(output, config.isotropy_per_sample)
        loss = loss + config.isotropy_weight * isotropy
    return {"loss": loss, "mean": mean, "fluctuation": fluct, "isotropy": isotropy,
            "per_sample": (mean_term + fluct_term).detach(), "output": output}


class SigmaBinnedLoss:
    """Running per-noise-level loss: sums and counts in `bins` equal bins of ln sigma over the
    process's range, accumulated on the device (no host sync until `read`)."""

    def __init__(self, process, bins: int, device):
        lo, hi = (float(process.sigma(torch.tensor(v, dtype=torch.float64))) for v in (process.t_min, process.t_max))
        self.edges = torch.linspace(math.log(lo), math.log(hi), bins + 1, device=device)
        self.process = process
        self.sums = torch.zeros(bins, device=device, dtype=torch.float64)
        self.counts = torch.zeros(bins, device=device, dtype=torch.float64)

    def add(self, t: torch.Tensor, per_sample: torch.Tensor) -> None:
        log_sigma = torch.log(self.process.sigma(t).to(self.edges.dtype))
        index = (torch.bucketize(log_sigma, self.edges[1:-1].contiguous())).clamp(0, len(self.sums) - 1)
        self.sums.index_add_(0, index, per_sample.to(torch.float64))
        self.counts.index_add_(0, index, torch.ones_like(per_sample, dtype=torch.float64))

    def read(self, reset: bool = True) -> dict:
        """{"sigma_lo-sigma_hi": mean loss} for the non-empty bins."""
        sums, counts, edges = self.sums.cpu().tolist(), self.counts.cpu().tolist(), self.edges.exp().cpu().tolist()
        out = {f"{edges[i]:.3g}-{edges[i + 1]:.3g}": sums[i] / counts[i] for i in range(len(sums)) if counts[i]}
        if reset:
            self.sums.zero_(), self.counts.zero_()
        return out
