"""The checkpoint format: one typed, versioned record and the run directory that holds it.

    RUN_DIR/config.json          the `Checkpoint` record (JSON; `Checkpoint.to_dict`)
    RUN_DIR/model.safetensors    raw weights
    RUN_DIR/ema.safetensors      exponential-moving-average weights (the ones to sample with)
    RUN_DIR/training_state.pt    optimizer, counters, RNG states; torch.load(weights_only=True)
    RUN_DIR/snapshots/K.safetensors  raw weights after K optimizer steps (optional, for post-hoc EMA:
                                     `sciscore.train.posthoc_ema`)

Nothing is unpickled. Each file is written to a temporary name and renamed (atomic per file);
config.json goes last and every file records the step, so a save interrupted halfway is
detected on load. Before a save replaces them, the files of the previous checkpoint are
hard-linked into RUN_DIR/.previous/ (no copy, no extra space while they are current), so a
process killed in the middle of a save leaves a complete earlier checkpoint that `recover`
(called by `sciscore train --resume`) puts back.

Versions of config.json (`format_version`):
    1  "format": "sciscore-checkpoint-1"; training_config repeats network and process
    2  "format": "sciscore-checkpoint", "format_version": 2; training_config holds the
       [data], [loss], [optimizer] and [training] sections only
`read_checkpoint` migrates version 1 on the fly, so run directories written by sciscore 0.1 keep
loading; a newer version than this sciscore knows is refused with a one-line error.
Removed fields, dropped on load whatever the version (nothing ever read them, so the loaded model
is the same, output for output):
    process.sigma_data (EDM, always 0.5): the data std of EDM's preconditioning and loss weight
       is network.sigma_data, which training derives from the data; the process's copy was unused
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from sciscore import __version__
from sciscore.errors import UserError
from sciscore.fields.normalize import Normalizer
from sciscore.nn.network import NetworkConfig, ScoreNetwork
from sciscore.sde.processes import ForwardProcess, process_from_dict
from sciscore.validation import check_guidance_interval

CONFIG, MODEL, EMA, STATE = "config.json", "model.safetensors", "ema.safetensors", "training_state.pt"
FORMAT = "sciscore-checkpoint"
FORMAT_VERSION = 2
LEGACY_FORMATS = {"sciscore-checkpoint-1": 1}


@dataclass
class Grid:
    """The spatial grid of the training data: dim names, sizes and coordinates (None: the data
    had no coordinate variable, grid indices are used)."""

    dims: list[str]                 # [y, x]
    shape: list[int]                # [H, W]
    y: list[float] | None = None
    x: list[float] | None = None
    y_attrs: dict = field(default_factory=dict)
    x_attrs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"dims": list(self.dims), "shape": list(self.shape), "y": self.y, "x": self.x,
                "y_attrs": dict(self.y_attrs), "x_attrs": dict(self.x_attrs)}


@dataclass
class Checkpoint:
    """What config.json records about a trained model (everything but the weights)."""

    network: NetworkConfig
    process: ForwardProcess
    normalizer: Normalizer
    variables: list[str]
    grid: Grid
    step: int = 0                             # trainer steps done (including skipped ones)
    optimizer_steps: int = 0
    context_normalizer: Normalizer | None = None
    context_variables: list[str] = field(default_factory=list)
    constant_means: dict = field(default_factory=dict)     # variable -> its constant spatial mean
    variable_attrs: dict = field(default_factory=dict)     # variable -> NetCDF attrs (units, ...)
    samples: dict = field(default_factory=dict)            # {"train": N, "validation": M}
    training_config: dict = field(default_factory=dict)    # TrainConfig.to_dict() less network, process
    monitor: dict | None = None               # the quality-monitor record of a RUN_DIR/best checkpoint
    ema: dict | None = None                   # the EMA profile of post-hoc EMA weights (train/posthoc_ema.py)
    sampler: dict | None = None               # the recommended sampler: {"solver", "steps", "grid", "options",
                                              # "guidance", "guidance_interval", "guide"}
    sciscore_version: str = __version__
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "sciscore_version": self.sciscore_version,
            "step": self.step, "optimizer_steps": self.optimizer_steps,
            "network": self.network.to_dict(), "process": self.process.to_dict(),
            "normalizer": self.normalizer.to_dict(),
            "context_normalizer": self.context_normalizer.to_dict() if self.context_normalizer else None,
            "variables": list(self.variables), "context_variables": list(self.context_variables),
            "constant_means": dict(self.constant_means), "grid": self.grid.to_dict(),
            "variable_attrs": self.variable_attrs, "samples": dict(self.samples),
            "training_config": self.training_config, **({"monitor": self.monitor} if self.monitor is not None else {}),
            **({"ema": self.ema} if self.ema is not None else {}),
            **({"sampler": self.sampler} if self.sampler is not None else {}),
        }


# ---------------------------------------------------------------------------------------------
# Schema: field -> (what it must be, test, conversion); the one place config.json is interpreted
def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_names(v):
    return isinstance(v, list) and all(isinstance(s, str) for s in v)


def _is_dict(v):
    return isinstance(v, dict)


def _grid(raw: dict) -> Grid:
    checks = (("dims", lambda v: _is_names(v) and len(v) == 2, "two dimension names"),
              ("shape", lambda v: isinstance(v, list) and len(v) == 2 and all(_is_int(s) and s > 0 for s in v),
               "two positive sizes"),
              ("y", lambda v: v is None or (isinstance(v, list) and all(map(_is_number, v))), "a list of numbers or null"),
              ("x", lambda v: v is None or (isinstance(v, list) and all(map(_is_number, v))), "a list of numbers or null"),
              ("y_attrs", _is_dict, "an object"), ("x_attrs", _is_dict, "an object"))
    for name, ok, what in checks:
        if name in raw and not ok(raw[name]):
            raise ValueError(f"grid.{name} must be {what}")
    if "dims" not in raw or "shape" not in raw:
        raise ValueError("grid.dims and grid.shape are required")
    for axis, size in zip(("y", "x"), raw["shape"]):
        if raw.get(axis) is not None and len(raw[axis]) != size:
            raise ValueError(f"grid.{axis} has {len(raw[axis])} values for size {size}")
    return Grid(**{k: raw[k] for k in ("dims", "shape", "y", "x", "y_attrs", "x_attrs") if k in raw})


def _sampler(raw: dict) -> dict:
    """The recommended sampler of a model: a solver of the table, optional steps and grid, the
    solver's options (checked as `sciscore generate --solver-option` checks them), and optionally
    autoguidance: weight, noise-level interval [sigma_lo, sigma_hi] and the guide's run directory
    relative to the model's."""
    from sciscore.sde.solvers import CONTINUOUS_GRIDS, SOLVERS, parse_solver_options

    keys = ("solver", "steps", "grid", "options", "guidance", "guidance_interval", "guide")
    unknown = set(raw) - set(keys)
    if unknown:
        raise ValueError(f"sampler has unknown keys {sorted(unknown)}; it takes {', '.join(keys)}")
    if "guidance" in raw and not (_is_number(raw["guidance"]) and raw["guidance"] >= 0):
        raise ValueError("sampler.guidance must be a number >= 0")
    interval = raw.get("guidance_interval")
    if interval is not None:
        try:
            ok = isinstance(interval, list) and all(map(_is_number, interval)) and check_guidance_interval(interval)
        except UserError:
            ok = False
        if not ok:
            raise ValueError("sampler.guidance_interval must be [sigma_lo, sigma_hi] with 0 <= sigma_lo < sigma_hi")
    guide = raw.get("guide")
    if guide is not None and not (isinstance(guide, str) and guide and not Path(guide).is_absolute()
                                  and ".." not in Path(guide).parts):
        raise ValueError("sampler.guide must be a run directory inside the model's, as a relative path")
    if raw.get("guidance", 1) != 1 and not guide:
        raise ValueError("sampler.guidance needs sampler.guide, the guide model's directory")
    if raw.get("solver") not in SOLVERS:
        raise ValueError(f"sampler.solver must be one of {', '.join(SOLVERS)}")
    if "steps" in raw and not (_is_int(raw["steps"]) and raw["steps"] >= 1):
        raise ValueError("sampler.steps must be a positive integer")
    if "grid" in raw and raw["grid"] not in CONTINUOUS_GRIDS:
        raise ValueError(f"sampler.grid must be one of {', '.join(CONTINUOUS_GRIDS)}")
    if not _is_dict(raw.get("options", {})):
        raise ValueError("sampler.options must be an object")
    try:
        options = parse_solver_options(raw["solver"], raw.get("options", {}))
    except UserError as error:
        raise ValueError(f"sampler.options: {error}") from None
    return {**raw, "options": options}


# name: (required, description, type test, conversion)
SCHEMA = {
    "format_version": (True, "an integer", _is_int, None),
    "sciscore_version": (False, "a string", lambda v: isinstance(v, str), None),
    "step": (True, "an integer >= 0", lambda v: _is_int(v) and v >= 0, None),
    "optimizer_steps": (False, "an integer >= 0", lambda v: _is_int(v) and v >= 0, None),
    "network": (True, "an object", _is_dict, NetworkConfig.from_dict),
    "process": (True, "an object", _is_dict, process_from_dict),
    "normalizer": (True, "an object", _is_dict, Normalizer.from_dict),
    "context_normalizer": (False, "an object or null", lambda v: v is None or _is_dict(v),
                           lambda v: None if v is None else Normalizer.from_dict(v)),
    "variables": (True, "a non-empty list of names", lambda v: _is_names(v) and len(v) > 0, None),
    "context_variables": (False, "a list of names", _is_names, None),
    "constant_means": (False, "an object of numbers", lambda v: _is_dict(v) and all(map(_is_number, v.values())), None),
    "grid": (True, "an object", _is_dict, _grid),
    "variable_attrs": (False, "an object of objects", lambda v: _is_dict(v) and all(map(_is_dict, v.values())), None),
    "samples": (False, "an object of integers", lambda v: _is_dict(v) and all(map(_is_int, v.values())), None),
    "training_config": (False, "an object", _is_dict, None),
    "monitor": (False, "an object or null", lambda v: v is None or _is_dict(v), None),
    "ema": (False, "an object or null", lambda v: v is None or _is_dict(v), None),
    "sampler": (False, "an object or null", lambda v: v is None or _is_dict(v), lambda v: None if v is None else _sampler(v)),
}


def migrate(raw: dict, where="config.json") -> dict:
    """A config.json dict of any known version, as the current version's dict."""
    version = raw.get("format_version")
    if version is None:
        if raw.get("format") not in LEGACY_FORMATS:
            raise UserError(f"{where} is not a sciscore checkpoint: unknown format {raw.get('format')!r}")
        version = LEGACY_FORMATS[raw["format"]]
    if not _is_int(version):
        raise UserError(f"{where}: field 'format_version' must be an integer, got {version!r}; restore the checkpoint")
    if version > FORMAT_VERSION:
        raise UserError(f"{where} has checkpoint format version {version}, written by sciscore "
                        f"{raw.get('sciscore_version', '?')}; this sciscore {__version__} reads up to version "
                        f"{FORMAT_VERSION}: upgrade sciscore")
    process = raw.get("process")
    if isinstance(process, dict) and process.get("name") == "edm" and "sigma_data" in process:
        raw = {**raw, "process": {k: v for k, v in process.items() if k != "sigma_data"}}  # see "Removed fields"
    if version == 1:  # training_config repeated network and process; the record keeps one copy
        training = raw.get("training_config")
        raw = {**raw, "format": FORMAT, "format_version": 2}
        if isinstance(training, dict):
            raw["training_config"] = {k: v for k, v in training.items() if k not in ("network", "process")}
    return raw


def checkpoint_from_dict(raw: dict, where="config.json") -> Checkpoint:
    """Validate every field of a config.json dict (any known version) and build the record; a
    wrong field raises a one-line UserError that names it."""
    if not isinstance(raw, dict):
        raise UserError(f"{where} is not a sciscore checkpoint: it holds a {type(raw).__name__}, not an object")
    raw = migrate(raw, where)
    values = {}
    for name, (required, what, ok, convert) in SCHEMA.items():
        if name not in raw:
            if required:
                raise UserError(f"{where} is not a complete sciscore checkpoint: field {name!r} is missing; "
                                "retrain or restore it")
            continue
        value = raw[name]
        if not ok(value):
            raise UserError(f"{where}: field {name!r} must be {what}, got {json.dumps(value)[:60]}; "
                            "retrain or restore the checkpoint")
        if convert is not None:
            try:
                value = convert(value)
            except (UserError, ValueError, TypeError, KeyError) as error:
                raise UserError(f"{where}: field {name!r} is invalid ({error}); retrain or restore the checkpoint") from None
        values[name] = value
    for normalizer, names, key in ((values["normalizer"], values["variables"], "variables"),
                                   (values.get("context_normalizer"), values.get("context_variables", []),
                                    "context_variables")):
        if normalizer is not None and list(normalizer.variables) != list(names):
            raise UserError(f"{where}: the normalizer is for {list(normalizer.variables)} but field {key!r} is "
                            f"{names}; retrain or restore the checkpoint")
    return Checkpoint(**values)


# ---------------------------------------------------------------------------------------------
# Files
def _replace_atomically(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _tensors(network: torch.nn.Module) -> dict:
    return {k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}


PREVIOUS = ".previous"  # RUN_DIR/.previous/: the last complete checkpoint before the current save


def _saved_step(path: Path):
    """The step recorded in one checkpoint file, or None when it is missing or unreadable."""
    try:
        if path.name == CONFIG:
            return json.loads(path.read_text()).get("step")
        if path.name == STATE:
            return torch.load(path, map_location="cpu", weights_only=True).get("step")
        with safe_open(str(path), "pt") as f:
            step = (f.metadata() or {}).get("step")
        return int(step) if step is not None else None
    except Exception:  # any damage means: not a usable file
        return None


def _consistent(folder: Path) -> bool:
    """Whether `folder` holds a complete checkpoint whose files all record the same step."""
    names = [CONFIG, MODEL, EMA] + ([STATE] if (folder / STATE).exists() else [])
    steps = {_saved_step(folder / name) for name in names}
    return len(steps) == 1 and None not in steps


def _keep_previous(run_dir: Path) -> None:
    """Hard-link the current complete checkpoint into RUN_DIR/.previous/ (built aside, then renamed)."""
    if not (run_dir / CONFIG).exists() or not _consistent(run_dir):
        return  # nothing complete to keep; a .previous from before stays
    staging = run_dir / f"{PREVIOUS}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for name in (MODEL, EMA, STATE, CONFIG):
        if (run_dir / name).exists():
            try:
                os.link(run_dir / name, staging / name)
            except OSError:  # a file system without hard links
                shutil.copy2(run_dir / name, staging / name)
    shutil.rmtree(run_dir / PREVIOUS, ignore_errors=True)
    os.replace(staging, run_dir / PREVIOUS)


def recover(run_dir) -> bool:
    """Put back the previous checkpoint when a save was interrupted (files of different steps or a
    missing file) and RUN_DIR/.previous/ holds a complete one; remove stray temporary files.
    Returns whether the previous checkpoint was restored."""
    run_dir = Path(run_dir)
    for stray in run_dir.glob(".*.tmp"):
        if stray.is_file():
            stray.unlink()
    shutil.rmtree(run_dir / f"{PREVIOUS}.tmp", ignore_errors=True)
    previous = run_dir / PREVIOUS
    if _consistent(run_dir) or not (previous / CONFIG).exists() or not _consistent(previous):
        return False
    for name in (MODEL, EMA, STATE, CONFIG):  # config.json last, as in a save
        if (previous / name).exists():
            shutil.copy2(previous / name, run_dir / f".{name}.tmp")
            os.replace(run_dir / f".{name}.tmp", run_dir / name)
    return True


def save_checkpoint(run_dir, network, ema_network, record: Checkpoint, training_state: dict | None = None) -> Path:
    """Write a checkpoint into `run_dir` (created if needed): weights, EMA weights, the optional
    training state, then config.json; `record.step` is recorded in every file. The checkpoint it
    replaces is kept in RUN_DIR/.previous/ until the next save."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _keep_previous(run_dir)
    step = str(int(record.step))
    metadata = {"step": step, "format": FORMAT, "format_version": str(FORMAT_VERSION)}
    # serialized in memory: safetensors' save_file stages through a `.tmpXXXXXX` of its own, which a
    # kill at that moment would leave in the run directory under a name no one owns
    _replace_atomically(run_dir / MODEL, lambda p: Path(p).write_bytes(save(_tensors(network), metadata=metadata)))
    _replace_atomically(run_dir / EMA, lambda p: Path(p).write_bytes(save(_tensors(ema_network), metadata=metadata)))
    if training_state is not None:
        _replace_atomically(run_dir / STATE, lambda p: torch.save({**training_state, "step": int(step)}, p))
    text = json.dumps(record.to_dict(), indent=2, default=_json_default)
    _replace_atomically(run_dir / CONFIG, lambda p: p.write_text(text))
    return run_dir


def recommend_sampler(run_dir, solver: str | None, steps: int | None = None, grid: str | None = None,
                      options: dict | None = None, guidance: float | None = None,
                      guidance_interval: tuple | None = None, guide: str | None = None) -> Checkpoint:
    """Record in RUN_DIR/config.json the sampler `sciscore generate` uses by default for this model
    (`solver` None removes the recommendation), with autoguidance weight, interval and the guide's
    directory relative to RUN_DIR if given; the weights are not touched. Returns the record."""
    from dataclasses import replace

    record = read_checkpoint(run_dir)
    sampler = None
    if solver is not None:
        raw = {"solver": solver, **({"steps": steps} if steps is not None else {}),
               **({"grid": grid} if grid is not None else {}), "options": dict(options or {}),
               **({"guidance": guidance} if guidance is not None else {}),
               **({"guidance_interval": list(guidance_interval)} if guidance_interval is not None else {}),
               **({"guide": guide} if guide is not None else {})}
        try:
            sampler = _sampler(raw)
        except ValueError as error:
            raise UserError(f"cannot recommend this sampler: {error}") from None
    record = replace(record, sampler=sampler)
    text = json.dumps(record.to_dict(), indent=2, default=_json_default)
    _replace_atomically(Path(run_dir) / CONFIG, lambda p: p.write_text(text))
    return record


SNAPSHOTS = "snapshots"


def save_snapshot(run_dir, network, optimizer_steps: int) -> Path:
    """Write the raw weights after `optimizer_steps` optimizer steps to
    RUN_DIR/snapshots/NNNNNNNN.safetensors (atomic; the step is in the name and the metadata)."""
    folder = Path(run_dir) / SNAPSHOTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{int(optimizer_steps):08d}.safetensors"
    metadata = {"optimizer_steps": str(int(optimizer_steps)), "format": FORMAT}
    _replace_atomically(path, lambda p: Path(p).write_bytes(save(_tensors(network), metadata=metadata)))
    return path


def list_snapshots(run_dir) -> list[tuple[int, Path]]:
    """(optimizer steps, path) of every weight snapshot in RUN_DIR/snapshots/, in step order."""
    folder = Path(run_dir) / SNAPSHOTS
    found = []
    for path in folder.glob("*.safetensors") if folder.is_dir() else ():
        if path.stem.isdigit():
            found.append((int(path.stem), path))
    return sorted(found)


def read_snapshot(path) -> dict:
    """The tensors of one snapshot file, with a one-line error when it is damaged."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise UserError(f"weight snapshot {path} is unreadable ({error}); delete it or retrain that stretch") from None


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def read_checkpoint(run_dir) -> Checkpoint:
    """The validated `Checkpoint` record of a run directory (config.json, migrated to the current
    version), with one-line errors for a missing directory, a corrupt file or a bad field."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file, not a checkpoint directory; give the run directory written by "
                        "'sciscore train -o RUN_DIR'")
    if not run_dir.is_dir():
        raise UserError(f"checkpoint directory {run_dir} not found; train one with 'sciscore train -o {run_dir}'")
    path = run_dir / CONFIG
    if not path.is_file():
        raise UserError(f"{run_dir} is not a sciscore checkpoint: {CONFIG} is missing")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is corrupt ({error}); retrain or restore the checkpoint") from None
    return checkpoint_from_dict(raw, str(path))


def read_weights(run_dir, step: int, ema: bool = True) -> dict:
    """The raw (`ema=False`) or averaged weights of a run directory, checked to be from `step`."""
    path = Path(run_dir) / (EMA if ema else MODEL)
    if not path.is_file():
        raise UserError(f"checkpoint file {path} is missing; retrain or restore the checkpoint")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"checkpoint file {path} is corrupt ({error}); retrain or restore the checkpoint") from None
    if metadata.get("step") != str(step):
        raise UserError(f"checkpoint {path.parent} is inconsistent: {path.name} is from step {metadata.get('step')}, "
                        f"{CONFIG} from step {step} (a save was interrupted); restore it or retrain")
    return tensors


def load_checkpoint(run_dir, ema: bool = True, device="cpu") -> tuple[ScoreNetwork, Checkpoint]:
    """(network in eval mode, its `Checkpoint` record) from a run directory; `ema` picks the
    averaged weights."""
    run_dir = Path(run_dir)
    record = read_checkpoint(run_dir)
    tensors = read_weights(run_dir, record.step, ema)
    try:
        network = ScoreNetwork(record.network, record.process)
        network.load_state_dict(tensors, strict=True)
    except (RuntimeError, TypeError) as error:
        raise UserError(f"checkpoint {run_dir} does not match its own config ({str(error).splitlines()[0]}); "
                        "retrain or restore it") from None
    return network.to(device).eval(), record


def load_training_state(run_dir, step: int) -> dict:
    """training_state.pt (optimizer, counters, RNG states), checked to be from `step`."""
    path = Path(run_dir) / STATE
    if not path.is_file():
        raise UserError(f"cannot resume: {path} is missing")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged zip/pickle
        raise UserError(f"cannot resume: {path} is corrupt ({type(error).__name__}); restart without --resume") from None
    if state.get("step") != step:
        raise UserError(f"cannot resume: {path} is from step {state.get('step')}, {CONFIG} from step {step}")
    return state


# ---------------------------------------------------------------------------------------------
# The training data's grid and attributes, and compatibility with other data
def plain(value):
    """A JSON-able copy of a NetCDF attribute value (numpy scalars and arrays become Python)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def grid_of(ds) -> Grid:
    """The grid of a dataset: spatial dim names, their sizes and coordinate values."""
    from sciscore.fields import field_dims

    dims = field_dims(ds)
    grid = Grid(dims=[dims.y, dims.x], shape=[int(ds.sizes[dims.y]), int(ds.sizes[dims.x])])
    for axis, name in (("y", dims.y), ("x", dims.x)):
        if name in ds.coords:
            setattr(grid, axis, np.asarray(ds[name].values, dtype=np.float64).tolist())
            setattr(grid, f"{axis}_attrs", {k: plain(v) for k, v in ds[name].attrs.items()})
    return grid


def check_compatible(record: Checkpoint, variables=None, grid=None) -> None:
    """Refuse a checkpoint trained on other variables or another grid.

    `variables`: names asked for (must equal the checkpoint's, in order); `grid`: an xarray
    Dataset/DataArray, a `Grid`, or an (H, W) shape."""
    trained = list(record.variables)
    if variables is not None:
        asked = [variables] if isinstance(variables, str) else list(variables)
        if asked != trained:
            raise UserError(f"the checkpoint was trained on variables {trained}, not {asked}; "
                            f"use a checkpoint trained on {asked} or ask for {trained}")
    if grid is None:
        return
    have = record.grid
    if hasattr(grid, "dims") and hasattr(grid, "sizes"):
        grid = grid_of(grid)
    if isinstance(grid, (tuple, list)):
        grid = Grid(dims=list(have.dims), shape=[int(v) for v in grid])
    shape, trained_shape = list(grid.shape), list(have.shape)
    if shape != trained_shape:
        raise UserError(f"the checkpoint was trained on a {trained_shape[0]}x{trained_shape[1]} grid, "
                        f"not {shape[0]}x{shape[1]}; use data on the training grid or a matching checkpoint"
                        if len(shape) == 2 else f"the checkpoint grid {trained_shape} does not match {shape}")
    for axis in ("y", "x"):
        mine, theirs = getattr(grid, axis), getattr(have, axis)
        if mine is not None and theirs is not None and not np.allclose(mine, theirs, rtol=1e-6, atol=1e-9):
            raise UserError(f"the {axis} coordinates differ from the checkpoint's training grid "
                            f"({theirs[0]}..{theirs[-1]} vs {mine[0]}..{mine[-1]}); regrid the data or use a matching checkpoint")


__all__ = ["CONFIG", "MODEL", "EMA", "STATE", "FORMAT", "FORMAT_VERSION", "Checkpoint", "Grid", "SCHEMA",
           "migrate", "checkpoint_from_dict", "save_checkpoint", "read_checkpoint", "read_weights",
           "load_checkpoint", "load_training_state", "grid_of", "check_compatible", "plain"]
