"""Checkpoints: a run directory that never needs unpickling.

    RUN_DIR/config.json          network config, process.to_dict(), normalizer.to_dict(), variables,
                                 constant-mean channels, grid coordinates and variable attrs of the
                                 training data, training options, sciscore version, step
    RUN_DIR/model.safetensors    raw weights
    RUN_DIR/ema.safetensors      EMA weights (the ones to sample with)
    RUN_DIR/training_state.pt    optimizer, step, RNG states; torch.load(weights_only=True)

Each file is written to a temporary name and renamed (atomic per file); config.json goes last
and every file records the step, so a save interrupted halfway is detected on load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sciscore.errors import UserError

CONFIG, MODEL, EMA, STATE = "config.json", "model.safetensors", "ema.safetensors", "training_state.pt"


def _replace_atomically(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _tensors(network: torch.nn.Module) -> dict:
    return {k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}


def save_checkpoint(run_dir, network, ema_network, config: dict, training_state: dict | None = None) -> Path:
    """Write the four files of a checkpoint into `run_dir` (created if needed); `config["step"]`
    is the step recorded in every file."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    step = str(int(config.get("step", 0)))
    metadata = {"step": step, "format": "sciscore-checkpoint-1"}
    _replace_atomically(run_dir / MODEL, lambda p: save_file(_tensors(network), str(p), metadata=metadata))
    _replace_atomically(run_dir / EMA, lambda p: save_file(_tensors(ema_network), str(p), metadata=metadata))
    if training_state is not None:
        _replace_atomically(run_dir / STATE, lambda p: torch.save({**training_state, "step": int(step)}, p))
    text = json.dumps(config, indent=2, default=_json_default)
    _replace_atomically(run_dir / CONFIG, lambda p: p.write_text(text))
    return run_dir


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def read_config(run_dir) -> dict:
    """The checkpoint's config.json, with clear errors for a missing directory or corrupt file."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"checkpoint directory {run_dir} not found; train one with 'sciscore train -o {run_dir}'")
    path = run_dir / CONFIG
    if not path.is_file():
        raise UserError(f"{run_dir} is not a sciscore checkpoint: {CONFIG} is missing")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is corrupt ({error}); retrain or restore the checkpoint") from None
    for key in ("network", "process", "variables", "step"):
        if key not in config:
            raise UserError(f"{path} is not a sciscore checkpoint config: key {key!r} is missing")
    return config


def _read_weights(path: Path, step: int) -> dict:
    if not path.is_file():
        raise UserError(f"checkpoint file {path} is missing; retrain or restore the checkpoint")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"checkpoint file {path} is corrupt ({error}); retrain or restore the checkpoint") from None
    if metadata.get("step") != str(step):
        raise UserError(f"checkpoint {path.parent} is inconsistent: {path.name} is from step {metadata.get('step')}, "
                        f"{CONFIG} from step {step} (a save was interrupted); restore it or retrain")
    return tensors


def load_checkpoint(run_dir, ema: bool = True, device="cpu"):
    """(network in eval mode, config dict) from a run directory; `ema` picks the averaged weights."""
    from sciscore.nn.network import NetworkConfig, ScoreNetwork
    from sciscore.sde.processes import process_from_dict

    run_dir = Path(run_dir)
    config = read_config(run_dir)
    tensors = _read_weights(run_dir / (EMA if ema else MODEL), int(config["step"]))
    try:
        network = ScoreNetwork(NetworkConfig.from_dict(config["network"]), process_from_dict(config["process"]))
        network.load_state_dict(tensors, strict=True)
    except (RuntimeError, TypeError) as error:
        raise UserError(f"checkpoint {run_dir} does not match its own config ({str(error).splitlines()[0]}); "
                        "retrain or restore it") from None
    return network.to(device).eval(), config


def load_training_state(run_dir, step: int) -> dict:
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


def grid_of(ds) -> dict:
    """The grid record of a dataset: spatial dim names, their sizes and coordinate values."""
    from sciscore.fields import field_dims

    dims = field_dims(ds)
    record = {"dims": [dims.y, dims.x], "shape": [int(ds.sizes[dims.y]), int(ds.sizes[dims.x])]}
    for axis, name in (("y", dims.y), ("x", dims.x)):
        record[axis] = np.asarray(ds[name].values, dtype=np.float64).tolist() if name in ds.coords else None
        record[f"{axis}_attrs"] = {k: _plain(v) for k, v in ds[name].attrs.items()} if name in ds.coords else {}
    return record


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def check_compatible(config: dict, variables=None, grid=None) -> None:
    """Refuse a checkpoint trained on other variables or another grid.

    `variables`: names asked for (must equal the checkpoint's, in order); `grid`: an xarray
    Dataset/DataArray, a dict like `grid_of`'s, or an (H, W) shape."""
    trained = list(config.get("variables", []))
    if variables is not None:
        asked = [variables] if isinstance(variables, str) else list(variables)
        if asked != trained:
            raise UserError(f"the checkpoint was trained on variables {trained}, not {asked}; "
                            f"use a checkpoint trained on {asked} or ask for {trained}")
    if grid is None:
        return
    have = config.get("grid") or {}
    if hasattr(grid, "dims") and hasattr(grid, "sizes"):
        grid = grid_of(grid)
    if isinstance(grid, (tuple, list)):
        grid = {"shape": [int(v) for v in grid]}
    shape, trained_shape = list(grid.get("shape", [])), list(have.get("shape", []))
    if shape != trained_shape:
        raise UserError(f"the checkpoint was trained on a {trained_shape[0]}x{trained_shape[1]} grid, "
                        f"not {shape[0]}x{shape[1]}; use data on the training grid or a matching checkpoint"
                        if len(shape) == 2 and len(trained_shape) == 2 else
                        f"the checkpoint grid {trained_shape} does not match {shape}")
    for axis in ("y", "x"):
        mine, theirs = grid.get(axis), have.get(axis)
        if mine is not None and theirs is not None and not np.allclose(mine, theirs, rtol=1e-6, atol=1e-9):
            raise UserError(f"the {axis} coordinates differ from the checkpoint's training grid "
                            f"({theirs[0]}..{theirs[-1]} vs {mine[0]}..{mine[-1]}); regrid the data or use a matching checkpoint")
