"""Pseudo-spectral moist 2D turbulence (forced vorticity + condensing supersaturation) on torch.fft.

The API follows GeophysicalFlows.jl: `Grid`, `Params` (frozen), `Problem` (with `sol`, `clock`,
`vars`), `stepforward(problem, nsteps)`, `advance(problem, duration)`, diagnostics functions of the
problem and `to_xarray(problem)` for a snapshot. See docs/simulate.md.
"""

from sciscore.simulate.diagnostics import (
    condensation_rate,
    energy,
    energy_dissipation,
    energy_drag,
    energy_spectrum,
    energy_work,
    enstrophy,
    enstrophy_dissipation,
    enstrophy_drag,
    enstrophy_work,
    isotropic_spectrum,
    supersaturated_fraction,
    tracer_dissipation,
    tracer_mean,
    tracer_variance,
)
from sciscore.simulate.equation import Equation, condense, context_pattern, linear_operator, saturation_gradient
from sciscore.simulate.forcing import forcing_spectrum
from sciscore.simulate.grid import Grid
from sciscore.simulate.params import Params, reference_viscosity
from sciscore.simulate.problem import (
    Clock,
    Problem,
    Vars,
    advance,
    cfl_dt,
    max_speed,
    set_tracer,
    set_vorticity,
    step,
    stepforward,
    updatevars,
)
from sciscore.simulate.snapshot import to_xarray
from sciscore.simulate.stepping import ETDRK4, IFRK4, STEPPERS, make_stepper
