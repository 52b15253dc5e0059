"""The saved state of an interrupted `sciscore simulate` run: a safetensors file next to the output.

    OUTPUT.state.safetensors
        tensors   solution   (members, 2, n, n//2+1, 2) q̂ = (ζ̂, ŝ) as (real, imaginary) pairs
                  generator  (bytes,) uint8: the state of the forcing noise's torch.Generator
        metadata  "sciscore_simulate_state": JSON {format_version, request, phase, rounds, remaining,
                  spinup_end_time, time, dt, step, samples_written}

It holds everything that the rest of the run depends on: with it, `run_recipe` continues to the
file an uninterrupted run writes, bit for bit. Floats go through JSON as Python's shortest
round-trip repr, so they come back exactly. The file is written under a temporary name and
renamed (atomic), always after the snapshots it counts are in the output, and deleted when the
output is complete. Nothing is unpickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from sciscore.errors import UserError
from sciscore.simulate.problem import Clock, Problem
from sciscore.simulate.recipes import PHASES, Position, Recipe, make_problem

KEY = "sciscore_simulate_state"
FORMAT_VERSION = 1


def state_path(output: str | os.PathLike) -> Path:
    """Where the state of a run writing `output` is kept: OUTPUT.state.safetensors."""
    output = Path(output)
    return output.with_name(f"{output.name}.state.safetensors")


def temporary_state_path(path: Path) -> Path:
    """The name a state is written under before it is renamed to `path` (left by a kill mid-write)."""
    return path.with_name(f".{path.name}.tmp")


def save_state(path: Path, position: Position, problem: Problem, request: dict, samples_written: int) -> None:
    """Write the state of `problem` at `position` atomically (temporary file, then rename)."""
    record = {
        "format_version": FORMAT_VERSION, "request": request, "phase": position.phase, "rounds": position.rounds,
        "remaining": position.remaining, "spinup_end_time": position.spinup_end_time,
        "time": problem.clock.t, "dt": problem.clock.dt, "step": problem.clock.step,
        "samples_written": int(samples_written),
    }
    tensors = {"solution": torch.view_as_real(problem.sol).contiguous().cpu(),
               "generator": problem.generator.get_state().cpu()}
    # serialized in memory and written here: safetensors' save_file stages through a `.tmpXXXXXX`
    # file of its own, which a SIGKILL at that moment would leave behind under a name no one owns
    tmp = temporary_state_path(path)
    try:
        tmp.write_bytes(save(tensors, metadata={KEY: json.dumps(record, sort_keys=True)}))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_state(path: Path, recipe: Recipe, request: dict) -> tuple[Position, Problem, int]:
    """Read a saved state for `recipe` (whose options must be `request`): the position, the problem
    holding the state, and the number of samples the output held when it was saved."""
    fix = "start the run again without --resume (with --overwrite)"
    try:
        with safe_open(str(path), framework="pt") as file:
            record = json.loads((file.metadata() or {})[KEY])
            solution, generator = file.get_tensor("solution"), file.get_tensor("generator")
    except (SafetensorError, OSError, KeyError, ValueError) as error:
        raise UserError(f"cannot resume: the saved state {path} cannot be read ({type(error).__name__}); {fix}") \
            from None
    if not isinstance(record, dict) or record.get("format_version") != FORMAT_VERSION:
        raise UserError(f"cannot resume: {path} is not a saved state of this sciscore version; {fix}")
    if record.get("request") != json.loads(json.dumps(request, sort_keys=True)):
        raise UserError(f"cannot resume: the saved state {path} belongs to a run with other settings; {fix}")
    try:
        position = Position(phase=record["phase"], rounds=int(record["rounds"]), remaining=record["remaining"],
                            spinup_end_time=record["spinup_end_time"])
        clock = Clock(t=float(record["time"]), dt=float(record["dt"]), step=int(record["step"]))
        written = int(record["samples_written"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"cannot resume: the saved state {path} is incomplete; {fix}") from None
    if position.phase not in PHASES or not 0 <= position.rounds <= recipe.rounds:
        raise UserError(f"cannot resume: the saved state {path} has phase {position.phase!r} at round "
                        f"{position.rounds}, which recipe does not reach; {fix}")
    problem = make_problem(recipe, position.phase)
    expected = (*problem.sol.shape, 2)
    if tuple(solution.shape) != expected or solution.dtype != problem.grid.dtype or generator.dtype != torch.uint8:
        raise UserError(f"cannot resume: the saved state {path} holds a {solution.dtype} state of shape "
                        f"{tuple(solution.shape)}, not {problem.grid.dtype} {expected}; {fix}")
    problem.sol = torch.view_as_complex(solution).to(problem.grid.device)
    problem.clock = clock
    try:
        problem.generator.set_state(generator)
    except RuntimeError:
        raise UserError(f"cannot resume: the random number generator state in {path} does not fit this device "
                        f"({problem.generator.device}); resume on the device the run started on") from None
    return position, problem, written
