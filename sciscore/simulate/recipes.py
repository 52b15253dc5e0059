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

`run_recipe` runs this schedule with hooks after each round and each chunk of steps, and can start
from a saved `Position` (see `sciscore.simulate.output` for the resumable file writer).
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
from sciscore.validation import check_types, require
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
        require(checks, "bad simulate option")
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


PHASES = ("spinup", "relax", "sampling")


@dataclass
class Position:
    """Where a run of a recipe stands: its phase ("spinup", "relax" after a coarse spin-up, or
    "sampling"), the sampling rounds done, the model time still to go in the current advance (the
    phase's, or the next round's interval; None: all of it) and the time sampling started."""

    phase: str = "spinup"
    rounds: int = 0
    remaining: float | None = None
    spinup_end_time: float | None = None


def make_problem(recipe: Recipe, phase: str = "sampling") -> Problem:
    """The `Problem` at rest that runs `phase` of `recipe`: on the spin-up grid with the spin-up
    noise stream for "spinup", on the sampling grid with the sampling stream otherwise."""
    from sciscore.devices import resolve_device

    device = resolve_device(recipe.device)  # recipe.threads is the command's to set (sciscore simulate)
    seeds = torch.Generator().manual_seed(recipe.seed)
    # two derived seeds: one stream for the spin-up grid, one for the sampling grid
    spinup_seed, sampling_seed = (int(s) for s in torch.randint(0, 2**62, (2,), generator=seeds))
    n_spinup = recipe.spinup_resolution or recipe.resolution
    ladder = n_spinup < recipe.resolution
    n, seed = (n_spinup, spinup_seed if ladder else sampling_seed) if phase == "spinup" else \
        (recipe.resolution, sampling_seed)
    return Problem(Grid(n, device=device, dtype=DTYPES[recipe.dtype]), recipe.params(n), members=recipe.members,
                   seed=seed, stepper=recipe.stepper, cfl=recipe.cfl)


def run_recipe(recipe: Recipe, *, start: tuple[Position, Problem] | None = None, on_round=None, after_chunk=None,
               progress: bool = True) -> tuple[Position, Problem]:
    """Run `recipe`: spin-up (and relax), then `recipe.rounds` sampling rounds of `interval`.

    `on_round(round, problem, position)` is called after each sampling round (its snapshots are
    the state of `problem`), `after_chunk(problem, position)` after each chunk of steps (to save
    the state or stop). `start` = (position, problem) continues a run saved at `position`
    (`problem` holding its state): the rest of the run is the uninterrupted one, bit for bit.
    Returns the final position and problem.
    """
    from tqdm.auto import tqdm

    position, problem = start if start is not None else (Position(), make_problem(recipe, "spinup"))
    position = dataclasses.replace(position)
    ladder = (recipe.spinup_resolution or recipe.resolution) < recipe.resolution

    def run_phase(duration: float) -> None:
        def chunk_done(remaining: float) -> None:
            position.remaining = remaining
            after_chunk(problem, position)

        advance(problem, duration, progress=bar, remaining=position.remaining,
                after_chunk=None if after_chunk is None else chunk_done)
        position.remaining = None

    bar = tqdm(total=recipe.simulated_time, initial=problem.clock.t, disable=not progress, unit="t",
               desc=f"simulate {recipe.resolution}²",
               bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} time units [{elapsed}<{remaining}]")
    try:
        if position.phase == "spinup":
            run_phase(recipe.spinup)
            if ladder:
                fine = make_problem(recipe, "relax")
                fine.sol = upsample(problem, fine.grid)
                fine.clock.t = problem.clock.t
                problem = fine
                position.phase = "relax"
        if position.phase == "relax":
            run_phase(recipe.relax)
        if position.phase != "sampling":
            position.phase, position.spinup_end_time = "sampling", problem.clock.t
        while position.rounds < recipe.rounds:
            run_phase(recipe.interval)
            position.rounds += 1
            if on_round is not None:
                on_round(position.rounds - 1, problem, position)
    finally:
        bar.close()
    return position, problem


def round_snapshots(recipe: Recipe, problem: Problem, round: int) -> tuple[dict, dict]:
    """The snapshots of sampling round `round` that the recipe keeps (all members, fewer in a last
    partial round): fields {name: (b, n, n) float32} and the coordinates {member, time: (b,)}."""
    b = min(recipe.members, recipe.samples - round * recipe.members)
    state = updatevars(problem)
    fields = {"supersaturation": state.s[:b].float().cpu().numpy(), "vorticity": state.zeta[:b].float().cpu().numpy()}
    if recipe.context_wavenumber:
        pattern = context_pattern(problem.grid, recipe.context_wavenumber).float().cpu().numpy()
        fields["context"] = np.broadcast_to(pattern, (b, *pattern.shape)).copy()
    coords = {"member": np.arange(b), "time": np.full(b, float(problem.clock.t))}
    return fields, coords


def recipe_dataset(recipe: Recipe, problem: Problem, fields: dict, coords: dict) -> xr.Dataset:
    """The Dataset of `recipe`'s snapshots `fields` {name: (samples, n, n)} with coordinates
    {member, time: (samples,)}, every parameter as attributes (`problem` on the sampling grid)."""
    data = {name: (("sample", "y", "x"), values, dict(VARIABLE_ATTRS[name])) for name, values in fields.items()}
    if math.isfinite(problem.params.tau_c):  # the tracer condenses: diagnostics compare s+/tau_c
        data["supersaturation"][2]["condensation_timescale"] = float(problem.params.tau_c)
    m = len(coords["member"])
    out = coordinates(problem.grid)
    out["sample"] = ("sample", np.arange(m), {"long_name": "sample index"})
    out["member"] = ("sample", coords["member"], {"long_name": "ensemble member of the sample"})
    out["time"] = ("sample", coords["time"], {"long_name": "model time of the snapshot", "units": "1"})
    attrs = problem_attrs(problem)
    attrs.pop("seed")
    attrs.update(recipe.to_attrs())
    return xr.Dataset(data, coords=out, attrs=attrs)


def empty_dataset(recipe: Recipe) -> xr.Dataset:
    """`recipe_dataset` with no samples: the layout and attributes of the file it writes."""
    n = recipe.resolution
    names = ["supersaturation", "vorticity"] + (["context"] if recipe.context_wavenumber else [])
    fields = {name: np.empty((0, n, n), dtype=np.float32) for name in names}
    return recipe_dataset(recipe, make_problem(recipe, "sampling"), fields,
                          {"member": np.empty(0, dtype=np.int64), "time": np.empty(0)})


def simulate_dataset(recipe: Recipe, progress: bool = True) -> xr.Dataset:
    """Run `recipe` and return its Dataset: `supersaturation`, `vorticity` (and `context`) on (sample, y, x).

    All snapshots are held in memory; `sciscore.simulate.output.simulate_file` writes them to a
    file as they are made instead (and resumes).
    """
    rounds: list[tuple[dict, dict]] = []
    position, problem = run_recipe(
        recipe, progress=progress,
        on_round=lambda r, problem, position: rounds.append(round_snapshots(recipe, problem, r)))
    fields = {name: np.concatenate([f[name] for f, _ in rounds]) for name in rounds[0][0]}
    coords = {name: np.concatenate([c[name] for _, c in rounds]) for name in ("member", "time")}
    ds = recipe_dataset(recipe, problem, fields, coords)
    ds.attrs.update(spinup_end_time=float(position.spinup_end_time), steps_at_resolution=int(problem.clock.step))
    return ds
