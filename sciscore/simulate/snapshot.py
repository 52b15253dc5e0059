"""`to_xarray(problem)`: the current state as an xarray Dataset with dims (sample, y, x)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from sciscore.simulate.equation import context_pattern
from sciscore.simulate.problem import Problem, updatevars

VARIABLE_ATTRS = {
    "supersaturation": {"long_name": "supersaturation s = q - q_s (specific humidity minus saturation)",
                        "units": "1"},
    "vorticity": {"long_name": "relative vorticity", "units": "1", "parity": "pseudoscalar"},
    "context": {"long_name": "saturation pattern sin(k_c x) sin(k_c y) (context, amplitude 1)", "units": "1"},
}


def coordinates(grid) -> dict:
    """x and y coordinates in [0, L) with CF attributes."""
    points = grid.x.double().cpu().numpy()
    return {
        "x": ("x", points, {"long_name": "x (periodic, zonal)", "units": "1", "axis": "X"}),
        "y": ("y", points.copy(), {"long_name": "y (periodic, along the saturation gradient)", "units": "1",
                                   "axis": "Y"}),
    }


def problem_attrs(problem: Problem) -> dict:
    """Every model and numerical parameter as NetCDF attributes."""
    attrs = {f"param_{k}": v for k, v in problem.params.to_attrs().items()}
    attrs.update(resolution=problem.grid.n, domain_length=float(problem.grid.length), stepper=problem.timestepper.name,
                 cfl=float(problem.cfl), dt_max=float(problem.dt_max), condensation=problem.condensation,
                 seed=int(problem.seed), members=int(problem.members),
                 dtype=str(problem.grid.dtype).replace("torch.", ""))
    return attrs


def to_xarray(problem: Problem) -> xr.Dataset:
    """Snapshot of all members: `supersaturation`, `vorticity` (and `context` when k_c > 0) on (sample, y, x).

    Coordinates x, y in [0, 2π); `sample` is the member index; attrs hold every parameter and the time.
    """
    fields = updatevars(problem)
    data = {
        "supersaturation": (("sample", "y", "x"), fields.s.cpu().numpy(), VARIABLE_ATTRS["supersaturation"]),
        "vorticity": (("sample", "y", "x"), fields.zeta.cpu().numpy(), VARIABLE_ATTRS["vorticity"]),
    }
    if problem.params.context_wavenumber:
        pattern = context_pattern(problem.grid, problem.params.context_wavenumber).cpu().numpy()
        data["context"] = (("sample", "y", "x"), np.broadcast_to(pattern, fields.s.shape).copy(),
                           VARIABLE_ATTRS["context"])
    coords = coordinates(problem.grid)
    coords["sample"] = ("sample", np.arange(problem.members))
    attrs = problem_attrs(problem)
    attrs["time"] = float(problem.clock.t)
    return xr.Dataset(data, coords=coords, attrs=attrs)
