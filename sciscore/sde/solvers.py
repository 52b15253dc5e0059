"""The table of solvers: one entry per solver, the single source of their names, options, orders,
allowed time grids and default step counts. It imports no torch (the command line builds its
choices from it); each entry names its function, which is imported when first used.

Orders are those of the reverse SDE's additive noise (g depends on t only) as torchsde states them
for its methods (strong, weak); the probability-flow ODE solvers are deterministic, so their one
order is given for both. None: no order is established (EDM's churn; the Langevin corrector).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from sciscore.errors import UserError

# time-grid names (constructed by sciscore.sde.time_grids); the discrete ones index a DiscreteVP
GRIDS = ("uniform", "karras", "leading", "linspace", "trailing")
CONTINUOUS_GRIDS = ("uniform", "karras")


@dataclass(frozen=True)
class Solver:
    """One solver: what `solve(problem, name, ..., **options)` runs."""

    name: str
    function: str                   # "module:function", imported on first use
    summary: str
    kind: str                       # "sde" (reverse SDE) or "ode" (probability-flow ODE)
    options: dict = field(default_factory=dict)  # option -> default, the keywords the function takes
    strong_order: float | None = None
    weak_order: float | None = None
    grids: tuple = GRIDS
    default_steps: int = 100        # when `steps` is not given
    karras_steps: int | None = None  # on the Karras grid, if different
    starts_at_zero_snr: bool = False  # may start where the terminal SNR is zero (first step DDIM)

    def steps_for(self, grid: str) -> int:
        """The default step count on `grid`."""
        return self.karras_steps if grid == "karras" and self.karras_steps is not None else self.default_steps

    def bind(self):
        """The sampling function (imports torch)."""
        module, name = self.function.split(":")
        return getattr(importlib.import_module(module), name)

    def check_options(self, options: dict) -> dict:
        """The options with defaults filled in; an option this solver does not take is refused."""
        unknown = [k for k in options if k not in self.options]
        if unknown:
            takes = ", ".join(self.options) or "no options"
            raise UserError(f"solver {self.name!r} does not take option(s) {', '.join(map(repr, unknown))}; "
                            f"it takes: {takes}")
        return {**self.options, **options}


_SAMPLERS = "sciscore.sde.samplers"
# Default steps: at or above the counts that reached ~1 % moment error on the Gaussian oracle
# (studies/performance/sampling/README.md), with margin for real data; 18 Heun steps on the
# Karras grid are Karras et al. 2022's choice (their Table 2, 35 evaluations), the default of
# `sciscore generate`.
TABLE = {s.name: s for s in (
    Solver("euler", f"{_SAMPLERS}:sample_torchsde", "Euler-Maruyama (torchsde)", "sde",
           strong_order=1.0, weak_order=1.0, grids=CONTINUOUS_GRIDS, default_steps=1000),
    Solver("milstein", f"{_SAMPLERS}:sample_torchsde", "Milstein (torchsde); equals Euler-Maruyama for additive noise",
           "sde", strong_order=1.0, weak_order=1.0, grids=CONTINUOUS_GRIDS, default_steps=1000),
    Solver("srk", f"{_SAMPLERS}:sample_torchsde", "stochastic Runge-Kutta SRA1 (Rossler 2010; torchsde)", "sde",
           strong_order=1.5, weak_order=1.5, grids=CONTINUOUS_GRIDS, default_steps=200),
    Solver("heun", f"{_SAMPLERS}:sample_torchsde", "stochastic Heun, Stratonovich (torchsde)", "sde",
           strong_order=1.0, weak_order=1.0, grids=CONTINUOUS_GRIDS, default_steps=500),
    Solver("midpoint", f"{_SAMPLERS}:sample_torchsde", "stochastic midpoint, Stratonovich (torchsde)", "sde",
           strong_order=1.0, weak_order=1.0, grids=CONTINUOUS_GRIDS, default_steps=500),
    Solver("reversible_heun", f"{_SAMPLERS}:sample_torchsde",
           "reversible Heun (Kidger et al. 2021; torchsde)", "sde",
           strong_order=1.0, weak_order=1.0, grids=CONTINUOUS_GRIDS, default_steps=500),
    Solver("ode-heun", f"{_SAMPLERS}:sample_ode_heun", "Heun on the probability-flow ODE (Karras et al. 2022, Alg. 1)",
           "ode", options={"callback": None}, strong_order=2.0, weak_order=2.0, default_steps=50, karras_steps=18,
           starts_at_zero_snr=True),
    Solver("ode-adaptive", f"{_SAMPLERS}:sample_ode_adaptive",
           "adaptive Dormand-Prince on the probability-flow ODE (torchdiffeq); steps ignored", "ode",
           options={"rtol": 1e-5, "atol": 1e-5, "method": "dopri5"}, strong_order=5.0, weak_order=5.0,
           default_steps=1),
    Solver("edm", f"{_SAMPLERS}:sample_edm", "EDM stochastic sampler (Karras et al. 2022, Alg. 2)", "sde",
           options={"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": float("inf"), "s_noise": 1.0, "callback": None},
           default_steps=100, starts_at_zero_snr=True),
    Solver("pc", f"{_SAMPLERS}:sample_pc", "predictor-corrector (Song et al. 2021, Alg. 2-3)", "sde",
           options={"snr": 0.16, "corrector_steps": 1, "callback": None}, strong_order=None, weak_order=None,
           default_steps=500),
    Solver("ddpm", f"{_SAMPLERS}:sample_ddpm", "DDPM ancestral sampling (Ho et al. 2020, Alg. 2)", "sde",
           options={"variance": "posterior", "callback": None}, strong_order=None, weak_order=None,
           default_steps=1000, starts_at_zero_snr=True),
)}
SOLVERS = tuple(TABLE)
TORCHSDE_SOLVERS = tuple(name for name, s in TABLE.items() if s.function.endswith(":sample_torchsde"))


def get_solver(name: str) -> Solver:
    """The table entry of `name`; an unknown name is refused with the list of known ones."""
    if name not in TABLE:
        raise UserError(f"unknown solver {name!r}; expected one of {list(SOLVERS)}")
    return TABLE[name]


def parse_solver_options(solver: str, settings) -> dict:
    """Solver options from the command line's NAME=VALUE strings (or a dict of values), each
    converted to the type of the table's default and checked: numbers finite and >= 0 (s_tmax may be
    inf); `callback` is not a setting. An unknown name is refused with the solver's list."""
    entry = get_solver(solver)
    if isinstance(settings, dict):
        pairs = list(settings.items())
    else:
        pairs = []
        for text in settings:
            name, sep, value = str(text).partition("=")
            if not sep or not name.strip():
                raise UserError(f"solver option {text!r} is not NAME=VALUE (e.g. s_churn=40)")
            pairs.append((name.strip(), value.strip()))
    options = {}
    for name, value in pairs:
        entry.check_options({name: value})
        default = entry.options[name]
        if name == "callback" or default is None:
            raise UserError(f"solver option {name!r} is not a sampler setting")
        kind = type(default)
        try:
            converted = kind(value)
            if kind is int and isinstance(value, float) and value != converted:
                raise ValueError
        except (TypeError, ValueError):
            raise UserError(f"solver option {name}={value!r} of solver {solver!r} must be "
                            f"{'an integer' if kind is int else 'a number' if kind is float else 'a string'}") from None
        if kind in (int, float) and (converted != converted or converted < 0
                                     or (converted == float("inf") and name != "s_tmax")):
            raise UserError(f"solver option {name}={value!r} must be a finite number >= 0"
                            + (" (s_tmax may be inf)" if solver == "edm" else ""))
        options[name] = converted
    return options


def default_steps(solver: str, grid: str) -> int:
    """The step count `solve` uses for `solver` on `grid` when none is given."""
    return get_solver(solver).steps_for(grid)


__all__ = ["GRIDS", "CONTINUOUS_GRIDS", "Solver", "TABLE", "SOLVERS", "TORCHSDE_SOLVERS", "get_solver", "parse_solver_options", "default_steps"]
