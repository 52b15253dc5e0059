"""White-in-time, isotropic ring forcing of the vorticity with a prescribed energy injection rate ε.

The forcing covariance is S(k) ∝ exp(−(|k| − k_f)²/(2 δ_f²)) on the dealiased modes (S(0) = 0).
After each deterministic step the vorticity gets the increment

    Δζ̂_k = √dt · √S(k) · ξ̂_k,    ξ̂ = rfft2(ξ),  ξ ~ N(0, 1) i.i.d. on the grid,

so E|ξ̂_k|² = n² and ξ̂ is Hermitian by construction. The expected energy gain per step is
Σ_k S(k) n² dt / (2|k|²) / n⁴ (full k-plane), and S is scaled so that this equals ε·dt:
the injection rate is ε whatever dt is (so adaptive dt is consistent).
"""

from __future__ import annotations

import math

import torch

from sciscore.simulate.grid import Grid
from sciscore.simulate.params import Params


def forcing_spectrum(grid: Grid, params: Params) -> torch.Tensor:
    """S(k), (n, n//2+1): the ring spectrum normalised to energy injection rate ε (zero when ε = 0)."""
    ring = torch.exp(-((torch.sqrt(grid.k2) - params.k_f) ** 2) / (2 * params.delta_f**2))
    ring = ring * grid.dealias
    ring[0, 0] = 0.0
    # ε = Σ_k S(k) n² / (2|k|²) / n⁴  (expected energy per unit time of Δζ̂ = √dt √S ξ̂)
    rate_per_unit = grid.domain_mean(ring * grid.n**2 * 0.5 * grid.inv_k2)
    if params.epsilon == 0 or rate_per_unit == 0:
        return torch.zeros_like(ring)
    return ring * (params.epsilon / rate_per_unit)


def draw_forcing(amplitude: torch.Tensor, members: int, dt: float, generator: torch.Generator,
                 grid: Grid) -> torch.Tensor:
    """One forcing increment Δζ̂ = √dt √S ξ̂ for each member: (members, n, n//2+1) complex.

    `amplitude` is √S(k). The noise is drawn on the generator's device (so a CUDA run can share a
    CPU stream with a CPU run) and moved to the grid's device.
    """
    noise = torch.randn((members, grid.n, grid.n), generator=generator, dtype=grid.dtype,
                        device=generator.device)
    noise_hat = torch.fft.rfft2(noise.to(grid.device))
    return noise_hat * (amplitude * math.sqrt(dt)).to(noise_hat.dtype)
