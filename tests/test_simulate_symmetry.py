"""Which reflections are exact symmetries of the moist turbulence equations (docs/simulate.md)?

Training augmentation may only use exact symmetries. The equations are invariant under periodic
shifts and under x -> -x with vorticity -> -vorticity (a pseudoscalar): the mean-gradient source
-gamma0 v is even under it, since v = dpsi/dx and psi is odd. y -> -y flips the sign of that
source, so it is a symmetry only when gamma0 = 0. Checked on the full simulator: an unforced run
from a reflected initial state equals the reflection of the run, to round-off.
"""

from __future__ import annotations

import pytest
import torch

from sciscore.simulate import Grid, Params, Problem, set_tracer, set_vorticity, stepforward, updatevars

ROUNDOFF = 1e-10  # relative, float64, 40 steps
BROKEN = 1e-3     # a broken symmetry is off by far more than round-off


def reflect(field: torch.Tensor, axis: str) -> torch.Tensor:
    """f(x, y) -> f(-x, y) (axis "x") or f(x, -y) (axis "y") on the periodic grid x_j = j dx."""
    dim = -1 if axis == "x" else -2
    return torch.roll(torch.flip(field, dims=(dim,)), 1, dims=(dim,))


def run(zeta0, s0, gamma0: float, n: int = 32):
    grid = Grid(n, dtype=torch.float64)
    problem = Problem(grid, Params.reference(n, epsilon=0.0, gamma0=gamma0), members=zeta0.shape[0],
                      stepper="ETDRK4", dt=2e-3)
    set_vorticity(problem, zeta0)
    set_tracer(problem, s0)
    stepforward(problem, 40)
    variables = updatevars(problem)
    return variables.zeta.clone(), variables.s.clone()


def initial_state(n: int = 32):
    generator = torch.Generator().manual_seed(3)
    grid = Grid(n, dtype=torch.float64)
    smooth = grid.dealias * torch.exp(-grid.k2 / 16)  # large-scale random fields, dealiased
    zeta = grid.irfft(grid.rfft(torch.randn(2, n, n, generator=generator, dtype=torch.float64)) * smooth) * 40
    s = grid.irfft(grid.rfft(torch.randn(2, n, n, generator=generator, dtype=torch.float64)) * smooth) * 5 - 0.5
    return zeta, s


def reflection_error(axis: str, gamma0: float) -> float:
    zeta0, s0 = initial_state()
    zeta, s = run(zeta0, s0, gamma0)
    zeta_r, s_r = run(-reflect(zeta0, axis), reflect(s0, axis), gamma0)
    scale = max(float(zeta.abs().max()), 1e-30), max(float(s.abs().max()), 1e-30)
    return max(float((zeta_r + reflect(zeta, axis)).abs().max()) / scale[0],
               float((s_r - reflect(s, axis)).abs().max()) / scale[1])


def test_the_initial_state_condenses_and_moves():
    """The check below is not vacuous: the state is supersaturated in places and evolves."""
    zeta0, s0 = initial_state()
    assert float((s0 > 0).float().mean()) > 0.1
    zeta, s = run(zeta0, s0, gamma0=1.0)
    assert float((s - s0).abs().max()) > 0.1 * float(s0.abs().max())


def test_x_reflection_with_vorticity_sign_flip_is_exact():
    assert reflection_error("x", gamma0=1.0) < ROUNDOFF


def test_y_reflection_is_broken_by_the_mean_gradient():
    assert reflection_error("y", gamma0=1.0) > BROKEN
    assert reflection_error("y", gamma0=0.0) < ROUNDOFF


@pytest.mark.parametrize("axis", ["x", "y"])
def test_reflection_without_the_vorticity_sign_flip_is_not_a_symmetry(axis):
    zeta0, s0 = initial_state()
    zeta, s = run(zeta0, s0, 1.0)
    zeta_r, s_r = run(reflect(zeta0, axis), reflect(s0, axis), 1.0)
    assert float((zeta_r - reflect(zeta, axis)).abs().max()) > BROKEN * float(zeta.abs().max())
