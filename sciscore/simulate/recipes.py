"""Dataset recipes: spin up an ensemble, sample snapshots, return an xarray Dataset.

A `Recipe` holds every option of `sciscore simulate` (the TOML keys are the option names with
underscores; model parameters go in a `[model]` table). `simulate_dataset(recipe)` is deterministic:
the same recipe and seed give bit-identical fields on the same device, dtype and torch version.

Schedule of one run (all members in one batch):
1. spin-up: from rest, for `spinup` time units, on a `spinup_resolution` grid when it is set (coarser
   than `resolution`, which is 8x cheaper per time unit at half the resolution), then spectral
   interpolation (zero padding) to `resolution` and `relax` more time units there;
2. sampling: ceil(samples/members) rounds of `interval` time units; after each, every member gives
   one snapshot. Sample i is member i % members at time spin-up + (i // members + 1) · interval.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from sciscore.devices import memory_bytes
from sciscore.errors import UserError
from sciscore.validation import check_types
from sciscore.simulate.equation import context_pattern
from sciscore.simulate.grid import DTYPES, Grid
from sciscore.simulate.params import Params
from sciscore.simulate.problem import Problem, advance, updatevars
from sciscore.simulate.snapshot import VARIABLE_ATTRS, coordinates, problem_attrs

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class Recipe:
    """Everything that determines a simulated dataset (one field per `sciscore simulate` option)."""

    resolution: int = 64
    samples: int = 800
    seed: int = 0
    spinup: float = 200.0
    interval: float = 3.0
    members: int = 32
    spinup_resolution: int | None = None
    relax: float = 10.0
    context_wavenumber: int = 0
    stepper: str = "ETDRK4"
    dtype: str = "float32"
    cfl: float = 0.5
    device: str = "auto"
    threads: int | None = None
    model: dict = field(default_factory=dict)
    name: str = ""

    def __post_init__(self):
        check_types(self, "recipe")
        for key, value in self.model.items():
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
                raise UserError(f"recipe model.{key} must be a finite number, got {value!r}")
        checks = [
            (self.resolution >= 8 and self.resolution % 2 == 0, f"resolution={self.resolution} must be an even integer >= 8"),
            (self.samples >= 1, f"samples={self.samples} must be >= 1"),
            (self.members >= 1, f"members={self.members} must be >= 1"),
            (self.spinup >= 0, f"spinup={self.spinup} must be >= 0"),
            (self.interval > 0, f"interval={self.interval} must be > 0"),
            (self.relax >= 0, f"relax={self.relax} must be >= 0"),
            (self.dtype in DTYPES, f"dtype={self.dtype!r} must be one of {sorted(DTYPES)}"),
            (self.spinup_resolution is None or 8 <= self.spinup_resolution <= self.resolution,
             f"spinup_resolution={self.spinup_resolution} must be between 8 and resolution={self.resolution}"),
            (self.context_wavenumber >= 0, f"context_wavenumber={self.context_wavenumber} must be >= 0"),
            (self.cfl > 0, f"cfl={self.cfl} must be > 0"),
            (0 <= self.seed < 2**63, f"seed={self.seed} must be in [0, 2**63)"),
            (self.threads is None or self.threads >= 1, f"threads={self.threads} must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"bad simulate option: {message}")
        known = {f.name for f in dataclasses.fields(Params) if f.init}
        unknown = sorted(set(self.model) - known - {"context_wavenumber"})
        if unknown:
            raise UserError(f"unknown model parameter(s) {unknown}; expected some of {sorted(known)}")
        if "context_wavenumber" in self.model:
            raise UserError("set context_wavenumber as a top-level option, not in [model]")
        self.params()  # Params checks the ranges of the [model] values: now, not when the run starts
        available = memory_bytes(self.device)
        if available is not None and self.least_memory > available:
            raise UserError(f"bad simulate option: resolution={self.resolution} with members={self.members} needs at "
                            f"least {self.least_memory / 1e9:.3g} GB, more than the {available / 1e9:.3g} GB of "
                            f"memory here; choose a smaller resolution or fewer members")

    @property
    def least_memory(self) -> int:
        """Bytes a run needs at the least: the spectral state of every member, vorticity and
        supersaturation, complex on the n x (n/2 + 1) half-plane."""
        real_bytes = 8 if self.dtype == "float64" else 4
        return 2 * self.members * self.resolution * (self.resolution // 2 + 1) * 2 * real_bytes

    def params(self, n: int | None = None) -> Params:
        """Model parameters for grid size n (ν follows the reference rule unless [model] sets nu)."""
        return Params.reference(n or self.resolution, context_wavenumber=self.context_wavenumber, **self.model)

    @property
    def rounds(self) -> int:
        return math.ceil(self.samples / self.members)

    @property
    def simulated_time(self) -> float:
        relax = self.relax if self.spinup_resolution and self.spinup_resolution < self.resolution else 0.0
        return self.spinup + relax + self.rounds * self.interval

    def to_attrs(self) -> dict:
        out = {f"recipe_{k}": v for k, v in dataclasses.asdict(self).items()
               if k not in ("model", "device", "threads")}
        out["recipe_spinup_resolution"] = self.spinup_resolution or self.resolution
        out["recipe_name"] = self.name or "custom"
        return out


def load_recipe(path: str | Path) -> dict:
    """Read a recipe TOML into a dict of options (the `[simulate]` table, or the top level) and `model`."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"recipe {path} is a directory; give the path of a .toml recipe (see datasets/)")
    if not path.is_file():
        raise UserError(f"recipe {path} does not exist; give the path of a .toml recipe (see datasets/)")
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"recipe {path} is not valid TOML: {error}") from None
    except OSError as error:
        raise UserError(f"recipe {path} cannot be read: {error.strerror}") from None
    for table in ("simulate", "model"):
        if table in data and not isinstance(data[table], dict):
            raise UserError(f"recipe {path}: '{table}' must be a table ([{table}] with keys below it), "
                            f"got {data[table]!r}")
    options = dict(data.get("simulate", {k: v for k, v in data.items() if not isinstance(v, dict)}))
    options["model"] = dict(data.get("model", {}))
    options.setdefault("name", path.stem)
    known = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"recipe {path}: unknown option(s) {unknown}; expected some of {sorted(known)}")
    return options


def upsample(problem: Problem, grid: Grid) -> torch.Tensor:
    """The state of `problem` zero-padded in k to `grid` (a finer grid): same fields, same E and Z."""
    coarse, fine = problem.grid.n, grid.n
    q = problem.sol
    out = torch.zeros((q.shape[0], 2, *grid.shape_spectral), dtype=q.dtype, device=q.device)
    half = coarse // 2
    scale = (fine / coarse) ** 2  # unnormalised transforms: f̂ scales with the number of points
    out[:, :, :half, :half + 1] = q[:, :, :half, :] * scale
    out[:, :, fine - half + 1:, :half + 1] = q[:, :, half + 1:, :] * scale  # drop the ky = −n/2 row
    out[:, :, :, half] = 0  # and the kx = n/2 column (both are removed by the 2/3 rule anyway)
    return out * grid.dealias


def simulate_dataset(recipe: Recipe, progress: bool = True) -> xr.Dataset:
    """Run `recipe` and return its Dataset: `supersaturation`, `vorticity` (and `context`) on (sample, y, x)."""
    from sciscore.devices import resolve_device
    from tqdm.auto import tqdm

    device = resolve_device(recipe.device)  # recipe.threads is the command's to set (sciscore simulate)
    dtype = DTYPES[recipe.dtype]
    seeds = torch.Generator().manual_seed(recipe.seed)
    # two derived seeds: one stream for the spin-up grid, one for the sampling grid
    spinup_seed, sampling_seed = (int(s) for s in torch.randint(0, 2**62, (2,), generator=seeds))

    def make(n, seed):
        return Problem(Grid(n, device=device, dtype=dtype), recipe.params(n), members=recipe.members, seed=seed,
                       stepper=recipe.stepper, cfl=recipe.cfl)

    bar = tqdm(total=recipe.simulated_time, disable=not progress, unit="t", desc=f"simulate {recipe.resolution}²",
               bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} time units [{elapsed}<{remaining}]")
    n_spinup = recipe.spinup_resolution or recipe.resolution
    ladder = n_spinup < recipe.resolution
    problem = make(n_spinup, spinup_seed if ladder else sampling_seed)
    advance(problem, recipe.spinup, progress=bar)
    if ladder:
        fine = make(recipe.resolution, sampling_seed)
        fine.sol = upsample(problem, fine.grid)
        fine.clock.t = problem.clock.t
        problem = fine
        advance(problem, recipe.relax, progress=bar)
    spinup_end = problem.clock.t
    n = recipe.resolution
    fields = {name: np.empty((recipe.rounds * recipe.members, n, n), dtype=np.float32)
              for name in ("supersaturation", "vorticity")}
    times = np.empty(recipe.rounds * recipe.members)
    for r in range(recipe.rounds):
        advance(problem, recipe.interval, progress=bar)
        state = updatevars(problem)
        rows = slice(r * recipe.members, (r + 1) * recipe.members)
        fields["supersaturation"][rows] = state.s.float().cpu().numpy()
        fields["vorticity"][rows] = state.zeta.float().cpu().numpy()
        times[rows] = problem.clock.t
    bar.close()
    m = recipe.samples
    data = {name: (("sample", "y", "x"), values[:m], dict(VARIABLE_ATTRS[name])) for name, values in fields.items()}
    if math.isfinite(problem.params.tau_c):  # the tracer condenses: diagnostics compare s+/tau_c
        data["supersaturation"][2]["condensation_timescale"] = float(problem.params.tau_c)
    if recipe.context_wavenumber:
        pattern = context_pattern(problem.grid, recipe.context_wavenumber).float().cpu().numpy()
        data["context"] = (("sample", "y", "x"), np.broadcast_to(pattern, (m, n, n)).copy(),
                           dict(VARIABLE_ATTRS["context"]))
    coords = coordinates(problem.grid)
    coords["sample"] = ("sample", np.arange(m), {"long_name": "sample index"})
    coords["member"] = ("sample", np.arange(m) % recipe.members, {"long_name": "ensemble member of the sample"})
    coords["time"] = ("sample", times[:m], {"long_name": "model time of the snapshot", "units": "1"})
    attrs = problem_attrs(problem)
    attrs.pop("seed")
    attrs.update(recipe.to_attrs())
    attrs.update(spinup_end_time=float(spinup_end), steps_at_resolution=int(problem.clock.step))
    return xr.Dataset(data, coords=coords, attrs=attrs)
