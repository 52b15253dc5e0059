"""Physical parameters of the moist 2D turbulence model (frozen).

    ∂t ζ + ∇·(u ζ) = F − μ ζ − ν (−∇²)^p ζ
    ∂t s + ∇·(u s) = −u·G + e − s⁺/τc − κ (−∇²)^p s
    u = (−∂y ψ, ∂x ψ) + U,   ζ = ∇² ψ,   G = ∇q_s = (∂x W, γ0 + ∂y W),   W = A sin(k_c x) sin(k_c y)

ζ is the relative vorticity, s = q − q_s the supersaturation (moisture minus saturation specific
humidity), s⁺ = max(s, 0). The model is nondimensional on the 2π × 2π domain. See
../shared notes and docs/simulate.md; provenance: SimpleMoisture.jl (Bischoff & Deck 2024).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from sciscore.validation import require


def reference_viscosity(n: int) -> float:
    """Hyperviscosity ν(n) = 1e-16 (512/n)^8 for p = 4: keeps the dissipation scale at about 0.4 × n/2."""
    return 1e-16 * (512.0 / n) ** 8


@dataclass(frozen=True)
class Params:
    """Parameters; defaults are the reference configuration (SimpleMoisture HEAD, N = 64 data)."""

    nu: float = reference_viscosity(64)
    """ν, hyperviscosity coefficient of ζ (units L^{2p}/T)."""
    p: int = 4
    """p, order of the hyperviscosity ν(−∇²)^p (p = 4: ∇⁸)."""
    mu: float = 1e-2
    """μ, linear drag rate (1/T); the steady energy is about ε/(2μ)."""
    kappa: float | None = None
    """κ, hyperdiffusivity of s; None means κ = ν."""
    epsilon: float = 0.1
    """ε, energy injection rate of the white-in-time forcing (L²/T³); 0 turns the forcing off."""
    k_f: float = 3.0
    """k_f, centre of the forcing ring (wavenumber)."""
    delta_f: float = 2.0
    """δ_f, width of the forcing ring: spectrum ∝ exp(−(|k| − k_f)²/(2 δ_f²))."""
    gamma0: float = 1.0
    """γ0, mean saturation gradient ∂y q_s."""
    e: float = 1.0
    """e, uniform evaporation source of s (1/T); must be >= 0."""
    tau_c: float = 0.01
    """τc, condensation time scale (T); math.inf turns condensation off."""
    context_wavenumber: int = 0
    """k_c, wavenumber of the saturation pattern W = A sin(k_c x) sin(k_c y); 0 means no pattern."""
    context_amplitude: float | None = None
    """A, amplitude of W; None means 1/k_c (so |∇W| ≈ γ0), or 0 without a pattern."""
    background_velocity: tuple[float, float] = (0.0, 0.0)
    """U = (U, V), a uniform velocity added to the flow (a Galilean shift; used by tests)."""
    kappa_value: float = field(init=False, repr=False)
    amplitude: float = field(init=False, repr=False)

    def __post_init__(self):
        checks = [
            (self.nu >= 0, f"nu={self.nu} must be >= 0"),
            (int(self.p) == self.p and self.p >= 1, f"p={self.p} must be a positive integer"),
            (self.mu >= 0, f"mu={self.mu} must be >= 0"),
            (self.kappa is None or self.kappa >= 0, f"kappa={self.kappa} must be >= 0"),
            (self.epsilon >= 0, f"epsilon={self.epsilon} must be >= 0"),
            (self.k_f > 0 and self.delta_f > 0, f"k_f={self.k_f} and delta_f={self.delta_f} must be > 0"),
            (self.e >= 0, f"e={self.e} (evaporation) must be >= 0"),
            (self.tau_c > 0, f"tau_c={self.tau_c} must be > 0 (use inf to turn condensation off)"),
            (int(self.context_wavenumber) == self.context_wavenumber and self.context_wavenumber >= 0,
             f"context_wavenumber={self.context_wavenumber} must be an integer >= 0"),
            (len(self.background_velocity) == 2, "background_velocity must be a pair (U, V)"),
        ]
        require(checks, "bad model parameter")
        object.__setattr__(self, "background_velocity", tuple(float(u) for u in self.background_velocity))
        object.__setattr__(self, "kappa_value", float(self.nu if self.kappa is None else self.kappa))
        if self.context_amplitude is not None:
            amplitude = float(self.context_amplitude)
        else:
            amplitude = 1.0 / self.context_wavenumber if self.context_wavenumber else 0.0
        object.__setattr__(self, "amplitude", amplitude)

    @classmethod
    def reference(cls, n: int, **changes) -> "Params":
        """The reference parameters with ν = `reference_viscosity(n)`; `changes` override any field."""
        changes.setdefault("nu", reference_viscosity(n))
        return cls(**changes)

    @property
    def condensing(self) -> bool:
        return math.isfinite(self.tau_c)

    def to_attrs(self) -> dict:
        """Every parameter as a flat dict of numbers (NetCDF attributes), with resolved κ and A."""
        out = {}
        for name, value in asdict(self).items():
            if name in ("kappa_value", "amplitude", "kappa", "context_amplitude"):
                continue
            if name == "background_velocity":
                out["background_velocity_x"], out["background_velocity_y"] = value
                continue
            out[name] = float(value) if not isinstance(value, int) or isinstance(value, bool) else int(value)
        out["kappa"] = self.kappa_value
        out["context_amplitude"] = self.amplitude
        return out
