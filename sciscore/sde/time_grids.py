"""Time grids for the reverse process, and the time maps that let torchsde's fixed-step solvers
walk a non-uniform grid.

A grid runs from t_start (noisy, e.g. t_max) down to t_end (clean, e.g. t_min), steps + 1 points,
float64. torchsde needs increasing times and a fixed step, so the reverse SDE is written in a
solver time u with t = t(u) decreasing and uniform steps in u (``TimeMap``):

    uniform : u = -t                                  (the s = -t of the torchsde notes)
    karras  : sigma(u) = (a + u (b - a))^rho, a = sigma(t_start)^(1/rho), b = sigma(t_end)^(1/rho),
              u in [0, 1], t(u) = t_of_sigma(sigma(u))  (Karras et al. 2022, eq. 5)

The reverse SDE in u then has drift * |dt/du| and diffusion * sqrt(|dt/du|) (time change of an
SDE), which is exact, so every torchsde solver steps exactly on the Karras grid.

Discrete-VP index grids (Lin et al. 2024, Table 2; S = steps, N = num_timesteps, 0-based index):
    leading  : arange(0, S) * (N // S), reversed        (does not reach t = T)
    linspace : round(linspace(0, N - 1, S)), reversed
    trailing : round(arange(N, 0, -N / S)) - 1           (starts at the last index, t = T)
with t = (index + 1) / N; t_end is appended as the last point.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sciscore.errors import UserError
from sciscore.sde.processes import ForwardProcess, _as_tensor
from sciscore.sde.solvers import CONTINUOUS_GRIDS, GRIDS  # the grid names live with the solver table


@dataclass(frozen=True)
class TimeMap:
    """Map from the solver time u (increasing, uniform steps) to the process time t (decreasing)."""

    process: ForwardProcess
    t_start: float
    t_end: float
    kind: str = "uniform"
    rho: float = 7.0

    def __post_init__(self):
        if self.kind not in CONTINUOUS_GRIDS:
            raise UserError(f"torchsde solvers need a continuous grid; expected one of "
                            f"{list(CONTINUOUS_GRIDS)}, got {self.kind!r}")

    @property
    def u_span(self) -> tuple[float, float]:
        if self.kind == "uniform":
            return -self.t_start, -self.t_end
        return 0.0, 1.0

    def _karras_base(self, u):
        a = float(self.process.sigma(torch.tensor(self.t_start, dtype=torch.float64))) ** (1 / self.rho)
        b = float(self.process.sigma(torch.tensor(self.t_end, dtype=torch.float64))) ** (1 / self.rho)
        return a + u * (b - a), b - a

    def t(self, u) -> torch.Tensor:
        """Process time t(u), float64."""
        u = _as_tensor(u).to(torch.float64)
        if self.kind == "uniform":
            return -u
        base, _ = self._karras_base(u)
        return self.process.t_of_sigma(base**self.rho)

    def speed(self, u) -> torch.Tensor:
        """|dt/du| >= 0, float64."""
        u = _as_tensor(u).to(torch.float64)
        if self.kind == "uniform":
            return torch.ones_like(u)
        base, slope = self._karras_base(u)
        sigma = base**self.rho
        dsigma_du = self.rho * base ** (self.rho - 1) * slope
        t = self.process.t_of_sigma(sigma)
        dsigma_dt = self.process.sigma_squared_derivative(t) / (2 * sigma)
        return (dsigma_du / dsigma_dt).abs()

    def grid(self, steps: int) -> torch.Tensor:
        """The steps + 1 solver times u_0 < ... < u_N, float64."""
        u0, u1 = self.u_span
        return torch.linspace(u0, u1, steps + 1, dtype=torch.float64)


def time_grid(process: ForwardProcess, steps: int, kind: str = "uniform", tspan=None,
              rho: float = 7.0) -> torch.Tensor:
    """Decreasing process times t_0 = t_start > ... > t_N = t_end (steps + 1 points, float64)."""
    if steps < 1:
        raise UserError(f"steps must be >= 1, got {steps}")
    t_start, t_end = tspan if tspan is not None else (process.t_max, process.t_min)
    if kind in CONTINUOUS_GRIDS:
        time_map = TimeMap(process, t_start, t_end, kind, rho)
        t = time_map.t(time_map.grid(steps))
        t[0], t[-1] = t_start, t_end  # exact ends despite the round trip through sigma
        return t
    if kind not in GRIDS:
        raise UserError(f"unknown time grid {kind!r}; expected one of {list(GRIDS)}")
    n = getattr(process, "num_timesteps", None)
    if n is None:
        raise UserError(f"time grid {kind!r} needs a discrete process (DiscreteVP); use 'uniform' or 'karras'")
    if steps > n:
        raise UserError(f"time grid {kind!r} has at most num_timesteps = {n} steps, got {steps}")
    if kind == "leading":
        index = (torch.arange(0, steps, dtype=torch.float64) * (n // steps)).flip(0)
    elif kind == "linspace":
        index = torch.linspace(0, n - 1, steps, dtype=torch.float64).round().flip(0)
    else:  # trailing
        index = torch.round(torch.arange(n, 0, -n / steps, dtype=torch.float64)) - 1
    t = (index + 1) / n
    return torch.cat([t, torch.tensor([t_end], dtype=torch.float64)]) if t[-1] > t_end else t
