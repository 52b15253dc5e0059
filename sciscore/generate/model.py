"""A trained generative model: network + process + normalizer + the training data's grid.

`load_model(path)` reads a run directory written by `sciscore train` (safetensors + JSON, nothing
unpickled); with no path it loads the default model shipped in `sciscore.pretrained`.
`model.generate(n, ...)` returns an `xr.Dataset` in physical units with the training data's
coordinates and variable attributes; `generate_file` streams the same samples into NetCDF.
"""

from __future__ import annotations

import hashlib
import json
import signal
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from sciscore import __version__
from sciscore.devices import resolve_device
from sciscore.errors import UserError
from sciscore.fields.normalize import Normalizer
from sciscore.generate.defaults import (  # noqa: F401  (re-exported)
    DEFAULT_BATCH_SIZE, DEFAULT_GRID, DEFAULT_SAMPLES, DEFAULT_SOLVER)
from sciscore.fields.sample_file import append_samples, create_sample_file, resume_sample_file
from sciscore.fields.sample_shards import Shard
from sciscore.generate.sample_store import append_store_samples, is_store, open_sample_store
from sciscore.generate.shards import SHARD, TOTAL
from sciscore.provenance import history_line, invocation, software_attrs
from sciscore.sde.solvers import default_steps, parse_solver_options
from sciscore.validation import check_guidance_interval, check_types

NFE = "sciscore_nfe_per_sample"


def _checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


@dataclass
class GenerativeModel:
    """A loaded score model and what is needed to turn its samples into physical fields."""

    network: torch.nn.Module
    process: object
    normalizer: Normalizer
    variables: tuple[str, ...]
    dims: tuple[str, str]                     # spatial dimension names (y, x)
    coords: dict                              # name -> (values, attrs) of the spatial coordinates
    variable_attrs: dict                      # name -> attrs (units, long_name, ...)
    path: Path
    checksum: str
    weights: str                              # "ema" or "raw"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    name: str = ""                            # "turbulence2d-64 (shipped)" or the run directory's name
    sampler: dict | None = None               # the recommended sampler of its config.json, if any
    guide: torch.nn.Module | None = None      # the weaker model of autoguidance, if any (guide.py)
    guide_checksum: str | None = None

    def __repr__(self) -> str:  # a summary, not the network layers and coordinate arrays
        channels, ny, nx = self.shape
        return (f"GenerativeModel({', '.join(self.variables)} on {ny}x{nx} ({self.dims[0]}, {self.dims[1]}), "
                f"{self.weights} weights, process {type(self.process).__name__}, from {self.path}, "
                f"{self.checksum[:19]}, device {self.device})")

    @property
    def shape(self) -> tuple[int, int, int]:
        y, x = self.dims
        return (len(self.variables), len(self.coords[y][0]), len(self.coords[x][0]))

    def select(self, variables: Sequence[str] | None) -> list[str]:
        if not variables:
            return list(self.variables)
        unknown = [v for v in variables if v not in self.variables]
        if unknown:
            raise UserError(
                f"the model has no variable {', '.join(map(repr, unknown))}; it has: {', '.join(self.variables)}"
            )
        return list(dict.fromkeys(variables))

    def sample_normalized(self, start: int, stop: int, options: "SamplerOptions") -> tuple[np.ndarray, int]:
        """Samples start..stop-1 (indices of the per-sample random streams) in normalized units,
        (stop - start, C, H, W) float32, and the score evaluations per sample."""
        from sciscore.sde import SamplingProblem, solve

        score, guide = self.network.score, self.guide.score if options.guided else None
        if options.bf16:
            score = _bfloat16_score(score, self.device.type)
            guide = _bfloat16_score(guide, self.device.type) if options.guided else None
        problem = SamplingProblem(score, self.process, self.shape, guidance_scale=options.guidance, guide=guide,
                                  guidance_interval=options.guidance_interval)
        with torch.no_grad():
            solution = solve(problem, solver=options.solver, steps=options.steps, n=stop - start, seed=options.seed,
                             start_index=start, grid=options.grid, denoise=options.denoise, device=self.device,
                             **options.solver_options)
        return solution.x.to(torch.float32).cpu().numpy(), solution.nfe

    def _to_physical(self, x: np.ndarray, variables: list[str]) -> dict[str, np.ndarray]:
        physical = self.normalizer.invert(x.astype(np.float64)).astype(np.float32)
        return {v: physical[:, self.variables.index(v)] for v in variables}

    def template(self, variables: list[str], n: int = 0) -> xr.Dataset:
        """An empty (or n-sample, zero-filled) dataset with the training grid and attributes."""
        y, x = self.dims
        coords = {d: (d, np.asarray(self.coords[d][0]), dict(self.coords[d][1])) for d in self.dims}
        coords["sample"] = ("sample", np.arange(n), {"long_name": "generated sample index", "units": "1"})
        shape = (n, len(coords[y][1]), len(coords[x][1]))
        data = {v: (("sample", y, x), np.zeros(shape, np.float32), dict(self.variable_attrs.get(v, {})))
                for v in variables}
        return xr.Dataset(data, coords=coords)

    def provenance(self, options: "SamplerOptions", variables: list[str], call: str) -> dict:
        """Global attributes: the model by name and checksum (not a local path), the sampler, the
        software versions and `call` (the library call; the command line when run by `sciscore`)."""
        attrs = {
            **software_attrs(),
            "sciscore_model": self.name or self.path.name,
            "sciscore_model_checksum": self.checksum,
            "sciscore_weights": self.weights,
            "sciscore_process": json.dumps(self.process.to_dict()),
            "sciscore_solver": options.solver,
            "sciscore_steps": int(options.steps),
            "sciscore_grid": options.grid,
            "sciscore_solver_options": json.dumps(options.solver_options, sort_keys=True),
            "sciscore_denoise": int(options.denoise),
            "sciscore_bf16": int(options.bf16),
            **(self._guidance_attrs(options) if options.guided else {}),
            "sciscore_seed": int(options.seed),
            "sciscore_variables": " ".join(variables),
            "sciscore_command": invocation(call),
        }
        attrs.update(self.normalizer.to_attrs())
        return attrs

    def _guidance_attrs(self, options: "SamplerOptions") -> dict:
        interval = options.guidance_interval
        return {"sciscore_guidance": float(options.guidance),
                "sciscore_guidance_interval": json.dumps(list(interval) if interval is not None else None),
                "sciscore_guide_model_checksum": self.guide_checksum}

    def sampler_options(self, solver: str | None = None, steps: int | None = None, seed: int = 0,
                        grid: str | None = None, denoise: bool = True, solver_options=None,
                        bf16: bool = False, guidance: float | None = None,
                        guidance_interval=None) -> "SamplerOptions":
        """The settings to sample with. Where `solver` is None: the model's recommended sampler
        (`sampler` in its config.json), each of its settings overridden by those given (`steps`,
        `grid`, `solver_options`), or without one `DEFAULT_SOLVER` on `DEFAULT_GRID`. An explicit
        `solver` takes nothing from the recommendation but its guidance. `guidance`,
        `guidance_interval` None: the recommended autoguidance weight and noise-level interval (1
        and every noise level without a recommendation); (0, inf) guides at every noise level."""
        recommended = self.sampler or {}
        if guidance is None:
            guidance = recommended.get("guidance", 1.0)
        if guidance_interval is None:
            guidance_interval = recommended.get("guidance_interval")
        guidance_interval = tuple(guidance_interval) if guidance_interval is not None else None
        if guidance != 1 and self.guide is None:
            raise UserError(f"--guidance {guidance} needs a guide model, and {self.name or self.path} has none; pass "
                            "--guide-model RUN_DIR (a shorter-trained model of the same data) or --guidance 1")
        guide = {"guidance": guidance, "guidance_interval": guidance_interval}
        if solver is not None or "solver" not in recommended:
            return SamplerOptions(solver or DEFAULT_SOLVER, steps, seed, grid or DEFAULT_GRID, denoise,
                                  solver_options or {}, bf16, **guide)
        solver = recommended["solver"]
        options = {**recommended.get("options", {}), **parse_solver_options(solver, solver_options or {})}
        return SamplerOptions(solver, steps if steps is not None else recommended.get("steps"), seed,
                              grid or recommended.get("grid", DEFAULT_GRID), denoise, options, bf16, **guide)

    def generate(self, n: int = DEFAULT_SAMPLES, *, variables: Sequence[str] | None = None,
                 solver: str | None = None, steps: int | None = None, seed: int = 0,
                 grid: str | None = None, denoise: bool = True, batch_size: int = DEFAULT_BATCH_SIZE,
                 progress: bool = False, solver_options: dict | None = None, bf16: bool = False,
                 guidance: float | None = None, guidance_interval=None) -> xr.Dataset:
        """`n` generated fields in physical units, dims (sample, y, x), with provenance attrs.
        `solver`, `steps`, `grid`, `solver_options`: as `sampler_options` resolves them (default: the
        model's recommended sampler, else ode-heun with the solver's default steps on the Karras grid);
        `solver_options` are the solver's settings from its table entry, e.g. {"s_churn": 40} for 'edm'.
        `bf16`: the network under bfloat16 autocast (faster on CUDA and on CPUs with bf16
        instructions; the samples differ from float32's by the network's rounding).
        `guidance`, `guidance_interval`: autoguidance weight w and noise-level interval (sigma_lo,
        sigma_hi) with the model's guide (`load_model(guide=...)`); default: the model's recommended
        ones (1 = no guidance).

        Sample i depends only on (seed, i), not on `batch_size`."""
        variables = self.select(variables)
        options = self.sampler_options(solver, steps, seed, grid, denoise, solver_options, bf16, guidance,
                                       guidance_interval)
        _check_counts(n, batch_size)
        ds = self.template(variables, n)
        ds.attrs.update(self.provenance(options, variables, f"sciscore.generate.GenerativeModel.generate(n={n}, "
                                                            f"solver={options.solver!r}, steps={options.steps}, seed={seed})"))
        for start in tqdm(range(0, n, batch_size), disable=not progress, desc="generate", unit="batch"):
            stop = min(n, start + batch_size)
            x, nfe = self.sample_normalized(start, stop, options)
            for v, values in self._to_physical(x, variables).items():
                ds[v].values[start:stop] = values
            ds.attrs[NFE] = int(nfe)
        return ds


@dataclass(frozen=True)
class SamplerOptions:
    """How to sample: the `sciscore.sde.solve` settings that change the samples."""

    solver: str = DEFAULT_SOLVER
    steps: int | None = None        # None: the solver's default on the grid
    seed: int = 0
    grid: str = DEFAULT_GRID
    denoise: bool = True
    solver_options: dict = field(default_factory=dict)  # e.g. {"s_churn": 40.0} for 'edm'
    bf16: bool = False              # the network under bfloat16 autocast
    guidance: float = 1.0           # autoguidance weight w (1: none); sde/guidance.py
    guidance_interval: tuple | None = None  # (sigma_lo, sigma_hi) where w applies; None: every noise level

    def __post_init__(self):
        object.__setattr__(self, "solver_options", parse_solver_options(self.solver, self.solver_options or {}))
        if self.steps is None:
            object.__setattr__(self, "steps", default_steps(self.solver, self.grid))
        check_types(self, "sampler")
        if not self.guidance >= 0:
            raise UserError(f"--guidance must be a weight >= 0 (1: no guidance), got {self.guidance}")
        object.__setattr__(self, "guidance", float(self.guidance))
        object.__setattr__(self, "guidance_interval", check_guidance_interval(self.guidance_interval))

    @property
    def guided(self) -> bool:
        """Whether the samples are autoguided (w != 1: the guide is called)."""
        return self.guidance != 1.0
        if self.steps < 1:
            raise UserError(f"--steps must be a positive integer, got {self.steps}")
        if not 0 <= self.seed < 2**63:
            raise UserError(f"--seed must be an integer in [0, 2**63), got {self.seed}")


def _bfloat16_score(score, device_type: str):
    """`score` with the network under bfloat16 autocast (convolutions and matrix products in bf16),
    returned in the state's dtype, so that the sampler's own arithmetic stays in float32."""
    def bfloat16_score(x, t):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            return score(x, t).to(x.dtype)
    return bfloat16_score


def _check_counts(n: int, batch_size: int) -> None:
    for name, value in (("-n", n), ("--batch-size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{name} must be a positive integer, got {value}")


@contextmanager
def _sigterm_as_interrupt():
    """Treat SIGTERM (batch schedulers) like Ctrl-C, so the current file is closed cleanly."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not in the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def generate_file(model: GenerativeModel, path, n: int = DEFAULT_SAMPLES, *, variables=None,
                  solver: str | None = None, steps: int | None = None, seed: int = 0,
                  grid: str | None = None, denoise: bool = True, batch_size: int = DEFAULT_BATCH_SIZE,
                  overwrite: bool = False, resume: bool = False, progress: bool = False,
                  shard: Shard | None = None, solver_options: dict | None = None, bf16: bool = False,
                  guidance: float | None = None, guidance_interval=None) -> Path:
    """Generate `n` fields into the NetCDF file `path`, batch by batch (memory does not grow
    with n). Interrupted runs leave a valid file marked incomplete; `resume=True` finishes it with
    exactly the samples an uninterrupted run would have written.

    With `shard` (index I of N), only the contiguous block of global sample indices `shard.block(n)`
    is drawn and written, with the global index as the `sample` coordinate; the N shard files
    merged by `sciscore.generate.merge.merge_shards` equal the one-job file.

    A `path` ending in `.zarr` is one Zarr store of all n samples instead, in which each shard
    writes its region (see `sciscore.generate.sample_store`). The sampler settings resolve as in
    `GenerativeModel.sampler_options` (default: the model's recommended sampler)."""
    variables = model.select(variables)
    options = model.sampler_options(solver, steps, seed, grid, denoise, solver_options, bf16, guidance,
                                    guidance_interval)
    _check_counts(n, batch_size)
    request = {"model_checksum": model.checksum, "weights": model.weights, **asdict(options),
               "n": int(n), "variables": variables}
    if options.guided:
        request["guidance_interval"] = list(options.guidance_interval) if options.guidance_interval else None
        request["guide_checksum"] = model.guide_checksum
    else:
        del request["guidance"], request["guidance_interval"]
    for newer in ("solver_options", "bf16"):  # files written before these existed resume and merge alike
        if not request[newer]:
            del request[newer]
    first, last = 0, n
    call = f"sciscore.generate.generate_file(n={n}, solver={options.solver!r}, steps={options.steps}, seed={seed})"
    global_attrs = {"title": f"sciscore generated fields: {', '.join(variables)}",
                    **model.provenance(options, variables, call)}
    if shard is not None:
        if n < shard.count:
            raise UserError(f"-n {n} is fewer than the {shard.count} shards; use at most {n} shards")
        first, last = shard.block(n)
    if is_store(path):  # one store of the whole run; each shard writes its region
        append = append_store_samples
        sample_file = open_sample_store(path, model.template(variables), n=n, shard=shard or Shard(0, 1),
                                        request=request, global_attrs=global_attrs, batch_size=batch_size,
                                        overwrite=overwrite, resume=resume, history=history_line(call))
    else:
        append = append_samples
        if shard is not None:
            request["shard"] = str(shard)
            global_attrs.update({SHARD: str(shard), TOTAL: int(n)})
        if resume:
            sample_file = resume_sample_file(path, request)
        else:
            sample_file = create_sample_file(
                path, model.template(variables), requested=last - first, request=request, chunk_samples=batch_size,
                global_attrs=global_attrs, overwrite=overwrite, first=first, history=history_line(call))
    with _sigterm_as_interrupt():
        for start in tqdm(range(first + sample_file.written, last, batch_size), disable=not progress,
                          desc="generate", unit="batch"):
            stop = min(last, start + batch_size)
            x, nfe = model.sample_normalized(start, stop, options)
            append(sample_file, model._to_physical(x, variables), attrs={NFE: int(nfe)})
    return sample_file.path


def load_model(path=None, *, ema: bool = True, device: str = "auto", guide=None) -> GenerativeModel:
    """Load a model from a `sciscore train` run directory (or the shipped default when `path` is
    None). `ema` picks the exponential-moving-average weights (recommended). `guide`: the run
    directory of a weaker model of the same data for autoguidance (its EMA weights); default: the
    guide the model's recommended sampler names (`sampler.guide`, relative to its directory), if any."""
    from sciscore.checkpoint import EMA, MODEL, load_checkpoint

    if path is None:
        from sciscore.pretrained import default_model_path

        path = default_model_path()
        model_name = f"{path.name} (shipped with sciscore {__version__})"
    else:
        model_name = Path(path).name
    path = Path(path)
    torch_device = resolve_device(device)
    network, record = load_checkpoint(path, ema=ema, device=torch_device)
    if record.context_variables or network.config.context_channels:
        raise UserError(f"{path} is a context-conditional model; 'sciscore generate' does not take context fields yet")
    grid = record.grid
    coords = {}
    for axis, name, size in zip(("y", "x"), grid.dims, grid.shape):
        values = getattr(grid, axis)
        if values is None:  # the training data had no coordinate: use grid indices
            values = list(range(int(size)))
        coords[name] = (values, getattr(grid, f"{axis}_attrs"))
    weights_file = path / (EMA if ema else MODEL)
    if guide is None and record.sampler and record.sampler.get("guide"):
        guide = path / record.sampler["guide"]
    guide_network = guide_checksum = None
    if guide is not None:
        guide_network, guide_checksum = _load_guide(Path(guide), record, torch_device)
    return GenerativeModel(
        network=network, process=network.process, normalizer=record.normalizer,
        variables=tuple(record.variables), dims=tuple(grid.dims), coords=coords,
        variable_attrs=record.variable_attrs, path=path, checksum=_checksum(weights_file),
        weights="ema" if ema else "raw", device=torch_device, name=model_name, sampler=record.sampler,
        guide=guide_network, guide_checksum=guide_checksum)


def _same(a, b) -> bool:
    """Equal JSON-like values, numbers to a relative 1e-9 (statistics of the same data computed on
    another machine may differ in their last bits)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and bool(np.isclose(a, b, rtol=1e-9, atol=0))
    return a == b


def _load_guide(path: Path, record, device) -> tuple[torch.nn.Module, str]:
    """The guide's EMA network and checksum, checked to model the same data as the model `record`:
    the same variables, normalization, process and grid (its samples and the model's must be the
    same random variable in the same units for w (D_model - D_guide) to mean anything)."""
    from sciscore.checkpoint import EMA, load_checkpoint

    if not (path / "config.json").is_file():
        raise UserError(f"guide model {path} is not a run directory (no config.json); pass a run directory "
                        "written by 'sciscore train'")
    network, guide = load_checkpoint(path, ema=True, device=device)
    checks = (("variables", list(guide.variables), list(record.variables)),
              ("normalization", guide.normalizer.to_dict(), record.normalizer.to_dict()),
              ("process", guide.process.to_dict(), record.process.to_dict()),
              ("grid", list(guide.grid.shape), list(record.grid.shape)),
              ("context variables", list(guide.context_variables), list(record.context_variables)))
    for what, theirs, ours in checks:
        if not _same(theirs, ours):
            raise UserError(f"guide model {path} does not match the model: its {what} differs ({theirs} vs {ours}); "
                            "train the guide with the model's variables and process and with --normalizer-from "
                            "MODEL_DIR (or on the model's own training data)")
    return network, _checksum(path / EMA)
