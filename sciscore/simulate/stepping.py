"""Exponential time steppers for ∂t q̂ = L q̂ + N(q̂) with diagonal L, chosen by name.

"IFRK4"  integrating-factor (Lawson) RK4: classical RK4 for v = e^{−Lt} q̂; exact for N = 0.
"ETDRK4" Cox–Matthews ETDRK4 with the Kassam–Trefethen (2005, SIAM J. Sci. Comput. 26, 1214)
         contour-integral coefficients, 32 points on a unit circle around each h·L, in float64.

Both take four evaluations of N per step. The coefficients depend on dt and are cached for the
last dt used (the CFL controller changes dt only every few dozen steps).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

Nonlinear = Callable[[torch.Tensor], torch.Tensor]


def complex_dtype(L: torch.Tensor) -> torch.dtype:
    """Coefficients are stored complex so that products with the complex state need no promotion."""
    return torch.complex64 if L.dtype == torch.float32 else torch.complex128


class IFRK4:
    """Lawson RK4:  with E = e^{hL}, E½ = e^{hL/2},

        k1 = N(q),  k2 = N(E½ (q + h/2 k1)),  k3 = N(E½ q + h/2 k2),  k4 = N(E q + h E½ k3)
        q ← E q + h/6 (E k1 + 2 E½ (k2 + k3) + k4)
    """

    name = "IFRK4"
    order = 4

    def __init__(self, L: torch.Tensor):
        self.L = L
        self._dt = None

    def _coefficients(self, dt: float):
        if dt != self._dt:
            L64 = self.L.double()
            cdtype = complex_dtype(self.L)
            self.E = torch.exp(dt * L64).to(cdtype)
            self.E_half = torch.exp(0.5 * dt * L64).to(cdtype)
            self.E_half_x2 = 2 * self.E_half
            self._dt = dt

    def step(self, q: torch.Tensor, dt: float, N: Nonlinear) -> torch.Tensor:
        self._coefficients(dt)
        E, E_half, h = self.E, self.E_half, dt
        k1 = N(q)
        k2 = N(E_half * torch.add(q, k1, alpha=0.5 * h))
        Eq_half = E_half * q
        k3 = N(torch.add(Eq_half, k2, alpha=0.5 * h))
        Eq = E * q
        k4 = N(torch.add(Eq, E_half * k3, alpha=h))
        increment = E * k1
        increment.addcmul_(self.E_half_x2, k2 + k3).add_(k4)
        return Eq.add_(increment, alpha=h / 6)


class ETDRK4:
    """Cox–Matthews ETDRK4 (Kassam & Trefethen 2005, eq. 2.5 and the coefficients of their Fig. 4):

        a = E½ q + Q N(q),  b = E½ q + Q N(a),  c = E½ a + Q (2 N(b) − N(q))
        q ← E q + f1 N(q) + 2 f2 (N(a) + N(b)) + f3 N(c)
    """

    name = "ETDRK4"
    order = 4
    contour_points = 32

    def __init__(self, L: torch.Tensor):
        self.L = L
        self._dt = None

    def _coefficients(self, dt: float):
        if dt == self._dt:
            return
        hL = (dt * self.L.double())[..., None]
        M = self.contour_points
        roots = torch.exp(1j * math.pi * (torch.arange(1, M + 1, dtype=torch.float64, device=self.L.device) - 0.5) / M)
        z = hL + roots  # points on a unit circle around each h·L: no cancellation near hL = 0
        ez = torch.exp(z)

        def mean(values):
            return values.mean(dim=-1).real

        cdtype = complex_dtype(self.L)
        self.E = torch.exp(hL[..., 0]).to(cdtype)
        self.E_half = torch.exp(0.5 * hL[..., 0]).to(cdtype)
        self.Q = (dt * mean((torch.exp(z / 2) - 1) / z)).to(cdtype)
        self.f1 = (dt * mean((-4 - z + ez * (4 - 3 * z + z**2)) / z**3)).to(cdtype)
        self.f2 = (dt * mean((2 + z + ez * (z - 2)) / z**3)).to(cdtype)
        self.f3 = (dt * mean((-4 - 3 * z - z**2 + ez * (4 - z)) / z**3)).to(cdtype)
        self.f2_x2 = 2 * self.f2
        self._dt = dt

    def step(self, q: torch.Tensor, dt: float, N: Nonlinear) -> torch.Tensor:
        self._coefficients(dt)
        Nq = N(q)
        Eq_half = self.E_half * q
        a = torch.addcmul(Eq_half, self.Q, Nq)
        Na = N(a)
        b = torch.addcmul(Eq_half, self.Q, Na)
        Nb = N(b)
        c = torch.addcmul(self.E_half * a, self.Q, torch.sub(Nb, Nq, alpha=0.5), value=2)
        Nc = N(c)
        out = self.E * q
        out.addcmul_(self.f1, Nq).addcmul_(self.f2_x2, Na.add_(Nb)).addcmul_(self.f3, Nc)
        return out


STEPPERS = {"IFRK4": IFRK4, "ETDRK4": ETDRK4}


def make_stepper(name: str, L: torch.Tensor):
    """The stepper called `name` (case-insensitive; "RK4" means "IFRK4") for the linear operator L."""
    key = {"RK4": "IFRK4"}.get(name.upper(), name.upper())
    if key not in STEPPERS:
        from sciscore.errors import UserError

        raise UserError(f"unknown stepper {name!r}; expected one of {sorted(STEPPERS)}")
    return STEPPERS[key](L)
