"""Domain-mean diagnostics of a `Problem`, one value per member: tensors of shape (members,).

Each is the physical-space mean and its Parseval sum over the full k-plane (unnormalised rfft2):

energy              E = ⟨½|u|²⟩        = Σ_k |ζ̂_k|² / (2|k|²) / n⁴
enstrophy           Z = ⟨½ζ²⟩          = Σ_k |ζ̂_k|² / 2 / n⁴
tracer_variance     ⟨s'²⟩              = Σ_{k≠0} |ŝ_k|² / n⁴
energy_dissipation  D_E = ν Σ_k |k|^{2p} |ζ̂_k|² / |k|² / n⁴       (dE/dt = W − 2μE − D_E)
enstrophy_dissipation D_Z = ν Σ_k |k|^{2p} |ζ̂_k|² / n⁴              (dZ/dt = W_Z − 2μZ − D_Z)
tracer_dissipation  D_s = κ Σ_k |k|^{2p} |ŝ_k|² / n⁴   (½ d⟨s'²⟩/dt = −⟨s' u·G⟩ − D_s + condensation terms)
energy_work         W = Σ_k Re[(ζ̂ − Δζ̂/2)* Δζ̂] / |k|² / n⁴ / dt   (Stratonovich midpoint of the last forcing increment)
"""

from __future__ import annotations

import torch

from sciscore.simulate.problem import Problem, updatevars


def _zeta_hat(problem: Problem, zeta_hat=None):
    return problem.sol[:, 0] if zeta_hat is None else zeta_hat


def energy(problem: Problem, zeta_hat: torch.Tensor | None = None) -> torch.Tensor:
    """Kinetic energy ⟨½|u|²⟩ of the flow (without the background velocity)."""
    z = _zeta_hat(problem, zeta_hat)
    return problem.grid.domain_mean(0.5 * problem.grid.inv_k2 * z.abs() ** 2)


def enstrophy(problem: Problem, zeta_hat: torch.Tensor | None = None) -> torch.Tensor:
    """Enstrophy ⟨½ζ²⟩."""
    z = _zeta_hat(problem, zeta_hat)
    return problem.grid.domain_mean(0.5 * z.abs() ** 2)


def tracer_mean(problem: Problem, s_hat: torch.Tensor | None = None) -> torch.Tensor:
    """Domain mean ⟨s⟩ = ŝ[0, 0] / n²."""
    s = problem.sol[:, 1] if s_hat is None else s_hat
    return s[:, 0, 0].real / problem.grid.n**2


def tracer_variance(problem: Problem, s_hat: torch.Tensor | None = None) -> torch.Tensor:
    """Variance ⟨s'²⟩ = ⟨(s − ⟨s⟩)²⟩."""
    s = problem.sol[:, 1] if s_hat is None else s_hat
    mean_free = problem.grid.k2 > 0
    return problem.grid.domain_mean(mean_free * s.abs() ** 2)


def _hyper(problem: Problem):
    return problem.grid.k2**problem.params.p


def energy_dissipation(problem: Problem, zeta_hat: torch.Tensor | None = None) -> torch.Tensor:
    """Hyperviscous energy loss rate D_E = ν⟨ψ (−∇²)^p ζ⟩ ≥ 0."""
    z = _zeta_hat(problem, zeta_hat)
    return problem.params.nu * problem.grid.domain_mean(_hyper(problem) * problem.grid.inv_k2 * z.abs() ** 2)


def enstrophy_dissipation(problem: Problem, zeta_hat: torch.Tensor | None = None) -> torch.Tensor:
    """Hyperviscous enstrophy loss rate D_Z = ν⟨ζ (−∇²)^p ζ⟩ ≥ 0."""
    z = _zeta_hat(problem, zeta_hat)
    return problem.params.nu * problem.grid.domain_mean(_hyper(problem) * z.abs() ** 2)


def energy_drag(problem: Problem, zeta_hat: torch.Tensor | None = None) -> torch.Tensor:
    """Energy loss rate by linear drag, 2μE."""
    return 2 * problem.params.mu * energy(problem, zeta_hat)


def enstrophy_drag(problem: Problem, zeta_hat: torch.Tensor | None = None) -> torch.Tensor:
    """Enstrophy loss rate by linear drag, 2μZ."""
    return 2 * problem.params.mu * enstrophy(problem, zeta_hat)


def tracer_dissipation(problem: Problem, s_hat: torch.Tensor | None = None) -> torch.Tensor:
    """Hyperdiffusive loss rate of ½⟨s'²⟩, D_s = κ⟨s (−∇²)^p s⟩ ≥ 0."""
    s = problem.sol[:, 1] if s_hat is None else s_hat
    return problem.params.kappa_value * problem.grid.domain_mean(_hyper(problem) * s.abs() ** 2)


def _work(problem: Problem, weight: torch.Tensor) -> torch.Tensor:
    forcing = problem.vars.forcing_hat
    if forcing is None:
        return torch.zeros(problem.members, dtype=problem.grid.dtype, device=problem.grid.device)
    midpoint = problem.sol[:, 0] - 0.5 * forcing
    return problem.grid.domain_mean(weight * (midpoint.conj() * forcing).real) / problem.clock.dt


def energy_work(problem: Problem) -> torch.Tensor:
    """Energy input rate W of the last forcing increment (Stratonovich midpoint, exact for that step)."""
    return _work(problem, problem.grid.inv_k2)


def enstrophy_work(problem: Problem) -> torch.Tensor:
    """Enstrophy input rate of the last forcing increment (midpoint rule)."""
    return _work(problem, torch.ones_like(problem.grid.k2))


def supersaturated_fraction(problem: Problem) -> torch.Tensor:
    """Fraction of the domain where s > 0."""
    return (updatevars(problem).s > 0).to(problem.grid.dtype).mean(dim=(-2, -1))


def condensation_rate(problem: Problem) -> torch.Tensor:
    """⟨s⁺⟩/τc; in a statistically steady state its time mean equals the evaporation e."""
    return torch.relu(updatevars(problem).s).mean(dim=(-2, -1)) / problem.params.tau_c


def isotropic_spectrum(problem: Problem, field_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shell sum of |f̂_k|²/n⁴ over integer shells |k| ∈ [j − ½, j + ½): (k (K,), spectrum (members, K)).

    Σ_j spectrum_j = ⟨f²⟩; for f = ζ, spectrum/(2k²) is the energy spectrum E(k).
    """
    grid = problem.grid
    shells = grid.wavenumber_shells().flatten()
    count = int(shells.max()) + 1
    density = (grid.parseval * field_hat.abs() ** 2 / grid.n**4).flatten(-2)
    out = torch.zeros(field_hat.shape[0], count, dtype=grid.dtype, device=grid.device)
    out.index_add_(1, shells, density)
    return torch.arange(count, dtype=grid.dtype, device=grid.device), out


def energy_spectrum(problem: Problem) -> tuple[torch.Tensor, torch.Tensor]:
    """Isotropic kinetic energy spectrum E(k), (K,) and (members, K); Σ_k E(k) = energy."""
    grid = problem.grid
    return isotropic_spectrum(problem, problem.sol[:, 0] * torch.sqrt(0.5 * grid.inv_k2))
