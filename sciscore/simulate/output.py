"""`simulate_file`: run a recipe into a NetCDF file, round by round, resumable after any interruption.

The file is a sample file (`sciscore.fields.sample_file`, the format of `sciscore generate`): valid
NetCDF from the start, marked `sciscore_status = "incomplete"` until its last snapshot is written,
with the recipe's options as its request (`sciscore_request`) and `sciscore_writer = "simulate"`.
Each sampling round's snapshots are appended as soon as they are made, so memory holds one round.

Next to it, OUTPUT.state.safetensors (`sciscore.simulate.resume`) holds the simulator state: saved
after each round (after its snapshots are in the file), every `checkpoint_seconds` of wall time
during the steps in between (the spin-up can be most of a run), and when a stop is requested; it
is deleted once the file is complete. A run killed at any point continues from its last saved
state (`resume=True`) to exactly the file an uninterrupted run writes: snapshots written after
that state are made again, identically, and written over.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import netCDF4

from sciscore.errors import UserError
from sciscore.fields.io import STATUS, check_writable, written_by
from sciscore.fields.sample_file import append_samples, create_sample_file, resume_sample_file
from sciscore.simulate.problem import Problem
from sciscore.simulate.recipes import Position, Recipe, empty_dataset, round_snapshots, run_recipe
from sciscore.simulate.resume import load_state, save_state, state_path, temporary_state_path

MACHINE_ONLY = ("device", "threads", "name")  # where a run computes and what it is called, not what


def recipe_request(recipe: Recipe) -> dict:
    """The options that determine the file's contents, stored in it and compared on resume."""
    return {k: v for k, v in dataclasses.asdict(recipe).items() if k not in MACHINE_ONLY}


def _complete(path: Path) -> bool:
    try:
        with netCDF4.Dataset(path) as nc:
            return written_by(nc.__dict__) == "simulate" and nc.__dict__.get(STATUS) == "complete"
    except OSError:
        return False


def simulate_file(recipe: Recipe, path: str | os.PathLike, *, overwrite: bool = False, resume: bool = False,
                  progress: bool = False, stop=None, checkpoint_seconds: float = 300.0,
                  title: str | None = None, source: str | None = None, history: str | None = None) -> Path:
    """Run `recipe` into the NetCDF file `path`, writing each round's snapshots as they are made.

    resume : continue the incomplete file `path` of an interrupted run with the same options
    stop : an object whose `requested` becomes true to stop (e.g. `sciscore.stopping
        .stop_on_signals()`): the state is saved at the end of the current chunk of steps and
        `KeyboardInterrupt` is raised, leaving a file that `resume=True` finishes
    checkpoint_seconds : wall time between two saves of the state in the middle of a round or of
        the spin-up (a save takes members · 2 · n · (n/2+1) complex numbers)
    title, source, history : CF global attributes of a new file
    """
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; choose one")
    path = Path(path)
    request = recipe_request(recipe)
    saved_state = state_path(path)
    start = None
    if resume:
        try:
            sample_file = resume_sample_file(path, request, command="simulate")
        except UserError:
            if _complete(path):  # killed between the last write and the removal of the state
                saved_state.unlink(missing_ok=True)
                temporary_state_path(saved_state).unlink(missing_ok=True)
            raise
        if saved_state.exists():
            position, problem, written = load_state(saved_state, recipe, request)
            if written > sample_file.written:
                raise UserError(f"cannot resume: {saved_state} counts {written} samples but {path} holds "
                                f"{sample_file.written}; start the run again without --resume (with --overwrite)")
            start, sample_file.written = (position, problem), written
        elif sample_file.written:
            raise UserError(f"cannot resume {path}: its saved state {saved_state} is missing; start the run "
                            f"again without --resume (with --overwrite)")
    else:
        check_writable(path, overwrite)
        saved_state.unlink(missing_ok=True)  # a state left by an earlier run of this name is not this run's
        sample_file = create_sample_file(
            path, empty_dataset(recipe), requested=recipe.samples, request=request, command="simulate",
            global_attrs={"title": title, "source": source}, chunk_samples=min(recipe.members, recipe.samples),
            overwrite=overwrite, history=history)
    # the output is usable now; a state that a kill interrupted mid-write was never renamed and is no one's
    temporary_state_path(saved_state).unlink(missing_ok=True)
    last_save = time.monotonic()

    def save(problem: Problem, position: Position) -> None:
        nonlocal last_save
        save_state(saved_state, position, problem, request, sample_file.written)
        last_save = time.monotonic()

    def after_chunk(problem: Problem, position: Position) -> None:
        stopping = stop is not None and stop.requested
        if stopping or time.monotonic() - last_save >= checkpoint_seconds:
            save(problem, position)
        if stopping:
            raise KeyboardInterrupt

    def on_round(round: int, problem: Problem, position: Position) -> None:
        fields, coords = round_snapshots(recipe, problem, round)
        attrs = {"spinup_end_time": float(position.spinup_end_time)}
        if position.rounds == recipe.rounds:
            attrs["steps_at_resolution"] = int(problem.clock.step)
        append_samples(sample_file, fields, attrs=attrs, coords=coords)
        if sample_file.complete:
            saved_state.unlink(missing_ok=True)
            return
        save(problem, position)

    run_recipe(recipe, start=start, on_round=on_round, after_chunk=after_chunk, progress=progress)
    return sample_file.path
