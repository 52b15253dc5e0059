"""`Problem`: grid + params + equation + stepper + clock + state for an ensemble of members.

    grid = Grid(64, dtype=torch.float64)
    problem = Problem(grid, Params.reference(64), members=8, seed=1, stepper="ETDRK4", dt=5e-3)
    stepforward(problem, 100)           # 100 steps of size problem.clock.dt
    advance(problem, 10.0)              # CFL-adaptive steps that end exactly 10 time units later
    energy(problem)                     # (members,) tensor

The state `problem.sol` is q̂ = (ζ̂, ŝ), shape (members, 2, n, n//2+1), always dealiased. All members
share each FFT call and one dt; the forcing noise of all members comes from the problem's
`torch.Generator` (seeded by `seed`), so a run is reproducible given (seed, members, device).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from sciscore.errors import UserError
from sciscore.simulate.equation import Equation, condense
from sciscore.simulate.forcing import draw_forcing, forcing_spectrum
from sciscore.simulate.grid import Grid
from sciscore.simulate.params import Params
from sciscore.simulate.stepping import make_stepper

CONDENSATION_MODES = ("auto", "explicit", "split")


@dataclass
class Clock:
    """Model time t, the current step size dt and the number of steps taken."""

    t: float = 0.0
    dt: float = 1e-3
    step: int = 0


@dataclass(eq=False)
class Vars:
    """Physical-space fields of the current state, (members, n, n) each; filled by `updatevars`.

    forcing_hat is the last forcing increment Δζ̂ (members, n, n//2+1), used by `energy_work`.
    """

    zeta: torch.Tensor | None = None
    s: torch.Tensor | None = None
    u: torch.Tensor | None = None
    v: torch.Tensor | None = None
    forcing_hat: torch.Tensor | None = None


@dataclass(eq=False)
class Problem:
    """An ensemble of `members` moist-turbulence states on `grid` with `params`.

    stepper : "IFRK4" or "ETDRK4"
    dt : fixed step for `stepforward`; `advance` chooses dt = cfl·dx/max|u| (at most dt_max) instead
    cfl, dt_max : the CFL number and the largest step `advance` takes (default cfl·dx/2)
    condensation : "split" (Strang: exact pointwise ds/dt = e − s⁺/τc for dt/2, RK step, dt/2 again),
        "explicit" (e − s⁺/τc inside N) or "auto" (split when dt > τc/5, else explicit)
    generator_device : where the forcing noise is drawn (default: the grid's device)
    """

    grid: Grid
    params: Params = field(default_factory=Params)
    members: int = 1
    seed: int = 0
    stepper: str = "ETDRK4"
    dt: float = 1e-3
    cfl: float = 0.5
    dt_max: float | None = None
    condensation: str = "auto"
    generator_device: torch.device | str | None = None
    clock: Clock = field(init=False)
    sol: torch.Tensor = field(init=False, repr=False)
    vars: Vars = field(init=False, repr=False)
    eqn: Equation = field(init=False, repr=False)
    timestepper: object = field(init=False, repr=False)
    generator: torch.Generator = field(init=False, repr=False)
    forcing_amplitude: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self):
        if int(self.members) != self.members or self.members < 1:
            raise UserError(f"members={self.members} must be a positive integer")
        if self.condensation not in CONDENSATION_MODES:
            raise UserError(f"condensation={self.condensation!r}; expected one of {CONDENSATION_MODES}")
        if not (0 < self.cfl <= 1.5):
            raise UserError(f"cfl={self.cfl} must be in (0, 1.5]")
        if not (self.dt > 0):
            raise UserError(f"dt={self.dt} must be > 0")
        if self.dt_max is None:
            self.dt_max = self.cfl * self.grid.dx / 2
        self.clock = Clock(dt=float(self.dt))
        self.eqn = Equation(self.grid, self.params)
        self.timestepper = make_stepper(self.stepper, self.eqn.L_kept)  # steps the kept modes only
        self.generator = torch.Generator(device=self.generator_device or self.grid.device)
        self.generator.manual_seed(int(self.seed))
        self.forcing_amplitude = torch.sqrt(forcing_spectrum(self.grid, self.params))
        self.sol = torch.zeros((self.members, 2, *self.grid.shape_spectral), dtype=self.grid.complex_dtype,
                               device=self.grid.device)
        self.vars = Vars()

    def split_condensation(self, dt: float) -> bool:
        if self.condensation == "auto":
            return dt > self.params.tau_c / 5
        return self.condensation == "split"


def _condense(problem: Problem, q: torch.Tensor, h: float) -> None:
    """Apply the exact pointwise evaporation/condensation over time h to ŝ, in place on the kept
    modes q (members, 2, 2, K+1, K+1); the result is dealiased again."""
    grid, eqn = problem.grid, problem.eqn
    members = q.shape[0]
    s_columns = eqn.buffer("condense columns", (members, grid.kept_wavenumber + 1, grid.n), q.dtype, zeros=True)
    grid.kept_columns(s_columns).copy_(q[:, 1])
    work = eqn.buffer("condense inverse", (members, *grid.shape_spectral), q.dtype, zeros=True)
    s = condense(grid.irfft_columns(s_columns, work), h, problem.params)
    torch.mul(grid.kept_modes(grid.rfft(s)), eqn.dealias_kept, out=q[:, 1])


def steps(problem: Problem, dt: float, nsteps: int = 1) -> Problem:
    """`nsteps` steps of size dt; each is a deterministic step (with Strang-split condensation if
    chosen), then the forcing increment.

    Split step: C(dt/2) ∘ RK(dt) ∘ C(dt/2), with C the exact pointwise evaporation/condensation of s.
    C acts on s only and the forcing on ζ only, so they commute, and C(dt/2) ∘ C(dt/2) = C(dt): the
    inner halves of consecutive steps are done as one C(dt) (two FFTs fewer per step).

    The steps act on the modes that the 2/3 rule keeps (`Grid.kept_modes`, under half of the
    array); every other mode of the state is zero before and after.
    """
    split = problem.split_condensation(dt)
    nonlinear = lambda q: problem.eqn.nonlinear_kept(q, split)  # noqa: E731
    kept = problem.grid.kept_modes
    q = kept(problem.sol).contiguous()  # a copy when sol is a full array: sol itself is never changed
    if split:
        _condense(problem, q, dt / 2)
    for i in range(int(nsteps)):
        q = problem.timestepper.step(q, dt, nonlinear)
        if split:
            _condense(problem, q, dt / 2 if i == nsteps - 1 else dt)
        if problem.params.epsilon > 0:
            forcing_hat = draw_forcing(problem.forcing_amplitude, problem.members, dt, problem.generator,
                                       problem.grid)
            q[:, 0] += kept(forcing_hat)
            problem.vars.forcing_hat = forcing_hat
        problem.clock.t += dt
        problem.clock.step += 1
    sol = torch.zeros_like(problem.sol, memory_format=torch.contiguous_format)
    kept(sol).copy_(q)
    problem.sol = sol
    problem.clock.dt = dt
    return problem


def step(problem: Problem, dt: float) -> Problem:
    """One step of size dt (see `steps`)."""
    return steps(problem, dt, 1)


def stepforward(problem: Problem, nsteps: int = 1) -> Problem:
    """Take `nsteps` steps of the fixed size problem.clock.dt."""
    return steps(problem, problem.clock.dt, nsteps)


def max_speed(problem: Problem) -> float:
    """max over members and grid points of |u + U| (a Python float)."""
    updatevars(problem)
    U, V = problem.params.background_velocity
    return float(torch.sqrt((problem.vars.u + U) ** 2 + (problem.vars.v + V) ** 2).max())


def cfl_dt(problem: Problem) -> float:
    """dt = cfl · dx / max|u|, capped at dt_max."""
    speed = max_speed(problem)
    return problem.dt_max if speed == 0 else min(problem.dt_max, problem.cfl * problem.grid.dx / speed)


def advance(problem: Problem, duration: float, cfl_interval: int = 50, progress=None, *,
            remaining: float | None = None, after_chunk=None) -> Problem:
    """Step for exactly `duration` time units with CFL-limited steps, re-evaluating dt every `cfl_interval` steps.

    Each chunk of steps uses one dt, shortened so that the run ends exactly at t + duration.
    `progress` (a tqdm bar or None) is updated with the simulated time. `after_chunk(remaining)`,
    if given, is called after each chunk with the time still to go (to save the state or stop).
    `remaining` continues an advance of `duration` that was saved with that much time to go: from
    the saved state it takes the same steps as the uninterrupted call, bit for bit.
    """
    if duration < 0:
        raise UserError(f"duration={duration} must be >= 0")
    remaining = float(duration if remaining is None else remaining)
    while remaining > 1e-12 * max(1.0, duration):
        dt = cfl_dt(problem)
        steps_to_end = math.ceil(remaining / dt - 1e-9)
        if steps_to_end <= cfl_interval:
            dt, nsteps = remaining / steps_to_end, steps_to_end
        else:
            nsteps = cfl_interval
        steps(problem, dt, nsteps)
        done = dt * nsteps
        remaining -= done
        if progress is not None:  # summed dt can pass the bar's total by rounding: tqdm would warn
            progress.update(min(done, progress.total - progress.n) if progress.total else done)
        if not torch.isfinite(problem.sol).all():
            raise UserError(f"the simulation blew up (NaN/inf) at t={problem.clock.t:.4g} with dt={dt:.3g}; "
                            "lower the CFL number (--cfl) or raise the hyperviscosity (--model-param nu=...)")
        if after_chunk is not None:
            after_chunk(remaining)
    return problem


def updatevars(problem: Problem) -> Vars:
    """Fill problem.vars with ζ, s, u, v in physical space (members, n, n) from problem.sol."""
    grid, q = problem.grid, problem.sol
    velocity_hat = problem.eqn.ik_velocity * q[:, :1]
    physical = grid.irfft(torch.cat([velocity_hat, q], dim=1))
    problem.vars.u, problem.vars.v, problem.vars.zeta, problem.vars.s = physical.unbind(1)
    return problem.vars


def _to_state(problem: Problem, field: torch.Tensor, name: str) -> torch.Tensor:
    grid = problem.grid
    field = torch.as_tensor(field, dtype=grid.dtype, device=grid.device)
    if field.shape == (grid.n, grid.n):
        field = field.expand(problem.members, grid.n, grid.n)
    if tuple(field.shape) != (problem.members, grid.n, grid.n):
        raise UserError(f"{name} must have shape (y, x) = ({grid.n}, {grid.n}) or (members, y, x) = "
                        f"({problem.members}, {grid.n}, {grid.n}), but found {tuple(field.shape)}")
    return grid.rfft(field) * grid.dealias


def set_vorticity(problem: Problem, zeta: torch.Tensor) -> Problem:
    """Set ζ from a physical field (y, x) or (members, y, x); it is dealiased and its mean removed."""
    zeta_hat = _to_state(problem, zeta, "vorticity")
    zeta_hat[:, 0, 0] = 0
    problem.sol = problem.sol.clone()
    problem.sol[:, 0] = zeta_hat
    return problem


def set_tracer(problem: Problem, s: torch.Tensor) -> Problem:
    """Set the supersaturation s from a physical field (y, x) or (members, y, x); it is dealiased."""
    problem.sol = problem.sol.clone()
    problem.sol[:, 1] = _to_state(problem, s, "supersaturation")
    return problem
