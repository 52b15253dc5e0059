"""The equation ∂t q̂ = L q̂ + N(q̂) for the spectral state q̂ = (ζ̂, ŝ), shape (members, 2, n, n//2+1).

L is diagonal (hyperviscosity and drag); N holds advection, the mean-gradient source and, when the
condensation is not split off, evaporation and condensation:

    N_ζ = −ikx F(u ζ) − iky F(v ζ)                                 (conservative form, u·∇ζ = ∇·(u ζ))
    N_s = −ikx F(u s) − iky F(v s) + F(−u·G [+ e − s⁺/τc])

Velocities come from ψ̂ = −ζ̂/|k|²: û = −iky ψ̂, v̂ = ikx ψ̂. The state is kept dealiased (every
tendency is multiplied by the 2/3 mask), so products of two state fields are alias-free on the
kept modes: the discrete nonlinear terms conserve energy, enstrophy and tracer variance exactly.
One evaluation costs 4 inverse FFTs (u, v, ζ, s) and 4 or 5 forward FFTs (uζ, us, vζ, vs [, source]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from sciscore.simulate.grid import Grid
from sciscore.simulate.params import Params


def linear_operator(grid: Grid, params: Params) -> torch.Tensor:
    """L, (2, n, n//2+1) real: −ν|k|^{2p} − μ for ζ and −κ|k|^{2p} for s.

    The domain mean of ζ is zero and stays so; the mean of s has L = 0 (it is set by e − ⟨s⁺⟩/τc).
    """
    k2p = grid.k2**params.p
    L_zeta = -params.nu * k2p - params.mu
    L_zeta[0, 0] = 0.0
    L_tracer = -params.kappa_value * k2p
    return torch.stack([L_zeta, L_tracer])


def context_pattern(grid: Grid, wavenumber: int) -> torch.Tensor:
    """sin(k_c x) sin(k_c y), (n, n) on (y, x): the shape of W (amplitude 1); zeros for k_c = 0."""
    if wavenumber == 0:
        return torch.zeros(grid.n, grid.n, dtype=grid.dtype, device=grid.device)
    k = 2 * torch.pi / grid.length * wavenumber
    return torch.sin(k * grid.y)[:, None] * torch.sin(k * grid.x)[None, :]


def saturation_gradient(grid: Grid, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
    """G = ∇q_s = (∂x W, γ0 + ∂y W), each (n, n) on (y, x), for W = A sin(k_c x) sin(k_c y)."""
    A, k = params.amplitude, 2 * torch.pi / grid.length * params.context_wavenumber
    Gx = A * k * torch.sin(k * grid.y)[:, None] * torch.cos(k * grid.x)[None, :]
    Gy = params.gamma0 + A * k * torch.cos(k * grid.y)[:, None] * torch.sin(k * grid.x)[None, :]
    return Gx, Gy


@dataclass(eq=False)
class Equation:
    """Precomputed operators for `nonlinear`; `split_condensation` leaves e and s⁺/τc to `condense`."""

    grid: Grid
    params: Params
    L: torch.Tensor = field(init=False)
    ik_velocity: torch.Tensor = field(init=False, repr=False)
    ikx: torch.Tensor = field(init=False, repr=False)
    iky: torch.Tensor = field(init=False, repr=False)
    Gx: torch.Tensor = field(init=False, repr=False)
    Gy: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self):
        grid, cdtype = self.grid, self.grid.complex_dtype
        self.L = linear_operator(grid, self.params)
        # the 2/3 mask is folded into the derivatives, so every tendency is dealiased for free;
        # operators are complex so that products with complex fields need no type promotion
        self.ikx = (1j * grid.kx * grid.dealias).to(cdtype)
        self.iky = (1j * grid.ky * grid.dealias).to(cdtype)
        self.minus_ikx, self.minus_iky = -self.ikx, -self.iky
        # (û, v̂) = (−iky, ikx) ψ̂ = (iky, −ikx) ζ̂/|k|²
        self.ik_velocity = torch.stack([1j * grid.ky * grid.inv_k2, -1j * grid.kx * grid.inv_k2]).to(cdtype)
        self.Gx, self.Gy = saturation_gradient(grid, self.params)
        self._spectral_source = self.params.amplitude == 0  # −u·G = −γ0 v: no FFT needed
        # F(−γ0 v) = −γ0 (−ikx/|k|²) ζ̂ on the kept modes
        self.gradient_source = (self.params.gamma0 * 1j * grid.kx * grid.inv_k2 * grid.dealias).to(cdtype)
        self.dealias_complex = grid.dealias.to(cdtype)
        # the same operators on the kept modes only (see Grid.kept_modes), contiguous
        kept = grid.kept_modes
        self.L_kept = kept(self.L).contiguous()
        self.ik_velocity_kept = kept(self.ik_velocity).contiguous()
        self.minus_ikx_kept, self.minus_iky_kept = kept(self.minus_ikx).contiguous(), kept(self.minus_iky).contiguous()
        self.gradient_source_kept = kept(self.gradient_source).contiguous()
        self.dealias_kept = kept(self.dealias_complex).contiguous()
        self._buffers = {}
        self._workspaces = {}

    def buffer(self, name: str, shape: tuple, dtype: torch.dtype, zeros: bool = False) -> torch.Tensor:
        """A work array kept between calls (reallocated when the shape changes). With `zeros`, it is
        zero-filled when allocated, and callers write only its kept modes, so the rest stays zero."""
        buffer = self._buffers.get(name)
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            buffer = (torch.zeros if zeros else torch.empty)(shape, dtype=dtype, device=self.grid.device)
            self._buffers[name] = buffer
        return buffer

    def _workspace(self, members: int, dtype: torch.dtype, spectral_source: bool) -> "_Workspace":
        """The work arrays of `nonlinear_kept` and their views, kept between calls. One set at a time:
        making a new set may reallocate the buffers that the old set's views point into."""
        key = (members, dtype, spectral_source)
        work = self._workspaces.get(key)
        if work is None:
            grid, n = self.grid, self.grid.n
            columns = self.buffer("columns", (members, 4, grid.kept_wavenumber + 1, n), dtype, zeros=True)
            products = self.buffer(f"products{int(spectral_source)}", (members, 4 + (not spectral_source), n, n),
                                   self.grid.dtype)
            columns_kept = grid.kept_columns(columns)
            work = _Workspace(columns=columns, columns_velocity=columns_kept[:, 0:2],
                              columns_fields=columns_kept[:, 2:4],
                              inverse=self.buffer("inverse", (members, 4, *grid.shape_spectral), dtype, zeros=True),
                              products=products, advective_products=products[:, 0:4].unflatten(1, (2, 2)),
                              source=None if spectral_source else products[:, 4])
            self._workspaces = {key: work}
        return work

    def nonlinear(self, q_hat: torch.Tensor, split_condensation: bool) -> torch.Tensor:
        """N(q̂), (B, 2, n, n//2+1) complex, for a dealiased state q̂ of the same shape."""
        kept = self.grid.kept_modes
        tendency = torch.zeros(q_hat.shape, dtype=q_hat.dtype, device=q_hat.device)
        kept(tendency).copy_(self.nonlinear_kept(kept(q_hat), split_condensation))
        return tendency

    def nonlinear_kept(self, q: torch.Tensor, split_condensation: bool) -> torch.Tensor:
        """N on the kept modes: q (B, 2, 2, K+1, K+1) as `Grid.kept_modes` lays them out -> the
        tendency in the same layout (every other mode of N is zero: the 2/3 rule)."""
        grid, params = self.grid, self.params
        U, V = params.background_velocity
        explicit_condensation = not split_condensation
        spectral_source = self._spectral_source and not explicit_condensation
        work = self._workspace(q.shape[0], q.dtype, spectral_source)
        # û, v̂, ζ̂, ŝ in one column array, zero outside the kept modes: one inverse FFT for all four
        # fields, which skips the columns kx > K (Grid.irfft_columns)
        torch.mul(self.ik_velocity_kept, q[:, :1], out=work.columns_velocity)
        work.columns_fields.copy_(q)
        physical = grid.irfft_columns(work.columns, work.inverse)
        u, v, fields = physical[:, 0:1], physical[:, 1:2], physical[:, 2:4]
        if U:
            u = u + U
        if V:
            v = v + V
        products = work.products
        # (uζ, us, vζ, vs) in one broadcast product: velocity (B, 2, 1, n, n) × fields (B, 1, 2, n, n)
        velocity = physical[:, 0:2] if not (U or V) else torch.cat([u, v], dim=1)
        torch.mul(velocity.unsqueeze(2), fields.unsqueeze(1), out=work.advective_products)
        if not spectral_source:
            s = physical[:, 3]
            source = work.source
            torch.mul(u[:, 0], self.Gx, out=source)
            source.addcmul_(v[:, 0], self.Gy).neg_()  # −u·G
            if explicit_condensation:
                source.add_(params.e)
                if params.condensing:
                    source.sub_(torch.relu(s), alpha=1 / params.tau_c)
        products_hat = grid.kept_modes(grid.rfft(products))
        tendency = self.minus_ikx_kept * products_hat[:, 0:2]
        tendency.addcmul_(self.minus_iky_kept, products_hat[:, 2:4])
        if spectral_source:
            tendency[:, 1].addcmul_(self.gradient_source_kept, q[:, 0])
            if V:
                tendency[:, 1, 0, 0, 0] -= params.gamma0 * V * grid.n**2  # the mean, (ky, kx) = (0, 0)
        else:
            tendency[:, 1].addcmul_(self.dealias_kept, products_hat[:, 4])
        return tendency


@dataclass(eq=False)
class _Workspace:
    """Persistent arrays of one nonlinear evaluation: the column array (B, 4, K+1, n) of û, v̂, ζ̂, ŝ
    with views of its kept modes, the inverse-FFT work array (B, 4, n, n//2+1) and the products
    (B, 4 or 5, n, n) with the view (B, 2, 2, n, n) of (uζ, us, vζ, vs) and the source field."""

    columns: torch.Tensor
    columns_velocity: torch.Tensor
    columns_fields: torch.Tensor
    inverse: torch.Tensor
    products: torch.Tensor
    advective_products: torch.Tensor
    source: torch.Tensor | None


def condense(s: torch.Tensor, h: float, params: Params) -> torch.Tensor:
    """Exact solution after time h of the pointwise ODE ds/dt = e − s⁺/τc (e >= 0), elementwise.

    s >= 0 relaxes to e τc: s(h) = e τc + (s − e τc) exp(−h/τc). s < 0 grows at rate e until it
    reaches 0 at t0 = −s/e, then relaxes from 0 for the remaining r = h − t0. With r = clamp(h + s/e, 0, h),
    the time spent saturated, all three cases are one branch-free formula:

        s(h) = e τc (1 − exp(−r/τc)) + s⁺ exp(−h/τc) + min(s + e h, 0)

    Without condensation (τc = ∞): s + e h.
    """
    e, tau = params.e, params.tau_c
    if not params.condensing:
        return s + e * h
    decay = math.exp(-h / tau)
    if e == 0:
        return torch.where(s > 0, s * decay, s)
    moistened = torch.add(s, e * h)  # s + e h
    out = torch.mul(moistened, 1 / e).clamp_(0.0, h)  # r = clamp(h + s/e, 0, h)
    torch.expm1(out.mul_(-1 / tau), out=out).mul_(-e * tau)
    out.add_(torch.relu(s), alpha=decay)
    return out.add_(moistened.clamp_(max=0.0))
