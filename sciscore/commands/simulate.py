"""`sciscore simulate`: run the moist 2D turbulence simulator and write NetCDF training data.

Options come from (lowest to highest priority) the built-in defaults, `--recipe FILE.toml` and the
command line. Each sampling round's snapshots are written as they are made to a file marked
incomplete until the last one (`sciscore.simulate.output.simulate_file`); SIGINT or SIGTERM saves
the simulator state and exits 130, and `--resume` finishes the file of an interrupted run, bit for
bit the file an uninterrupted run writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import time

from sciscore.commands._common import add_device, add_overwrite, add_quiet
from sciscore.errors import UserError
from sciscore.validation import NON_NEGATIVE, POSITIVE, SEED, number

log = logging.getLogger("sciscore.simulate")

SUMMARY = "Run the moist 2D turbulence simulator and write NetCDF training data"


def _model_param(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--model-param {text!r}: expected NAME=VALUE, e.g. tau_c=0.1")
    try:
        value = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--model-param {text!r}: {value!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"--model-param {text!r}: the value must be finite")
    return name.strip(), int(value) if name.strip() == "p" else value


def register(subparsers):
    parser = subparsers.add_parser(
        "simulate", help=SUMMARY, description=SUMMARY + ". Spins up an ensemble of independent members, then "
        "samples snapshots of supersaturation and vorticity (dims sample, y, x) into a CF NetCDF file.",
        epilog="Example: sciscore simulate --recipe datasets/turbulence2d-64.toml -o turbulence2d-64.nc",
    )
    add = parser.add_argument
    add("-o", "--output", required=True, help="NetCDF file to write (.nc)")
    add("--recipe", help="TOML recipe (datasets/turbulence2d-*.toml); command-line options override it")
    add("--resolution", type=POSITIVE, help="grid points per side N (even; default 64)")
    add("--samples", type=POSITIVE, help="number of snapshots to write (default 800)")
    add("--seed", type=SEED, help="random seed of the forcing (default 0); same seed, same file contents")
    add("--spinup", type=number(0), help="spin-up time discarded before sampling, model time units (default 200)")
    add("--interval", type=number(0, low_open=True), help="time between two snapshots of one member (default 3)")
    add("--members", type=POSITIVE, help="independent ensemble members run side by side (default 32)")
    add("--spinup-resolution", type=POSITIVE, help="spin up on this coarser grid, then interpolate (default: none)")
    add("--relax", type=number(0), help="time at full resolution after a coarse spin-up (default 10)")
    add("--context-wavenumber", type=NON_NEGATIVE, help="k_c of the saturation pattern sin(k_c x) sin(k_c y); "
        "adds a `context` variable (default 0: none)")
    add("--stepper", choices=["ETDRK4", "IFRK4"], help="time stepper (default ETDRK4)")
    add("--dtype", choices=["float32", "float64"], help="floating point precision (default float32)")
    add("--cfl", type=number(0, low_open=True), help="CFL number of the adaptive time step (default 0.5)")
    add("--model-param", action="append", type=_model_param, metavar="NAME=VALUE", dest="model",
        help="override a model parameter (nu, mu, epsilon, k_f, delta_f, gamma0, e, tau_c, ...); repeatable")
    add("--threads", type=POSITIVE, help="torch CPU threads (default: torch's choice; 1 is fastest on a busy machine)")
    add_device(parser)
    parser.set_defaults(device=None)
    add_overwrite(parser)
    add("--resume", action="store_true", help="finish the output file of an interrupted run (give the same "
        "options); the result is the file an uninterrupted run writes")
    add("--checkpoint-seconds", type=number(0), default=300.0, metavar="SECONDS",
        help="wall time between two saves of the simulator state (OUTPUT.state.safetensors) within a round or "
             "the spin-up; it is also saved after each round and on SIGINT/SIGTERM (default 300)")
    add_quiet(parser)
    parser.set_defaults(func=run)
    return parser


def recipe_from_args(args: argparse.Namespace):
    """Merge defaults < recipe file < explicit command-line options into a `Recipe`."""
    from sciscore.simulate.recipes import Recipe, load_recipe

    options = load_recipe(args.recipe) if args.recipe else {}
    names = {f.name for f in dataclasses.fields(Recipe)} - {"model", "name"}
    machine_only = {"device", "threads"}  # where it runs, not what it computes
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            options[name] = value
    if args.model:
        options["model"] = {**options.get("model", {}), **dict(args.model)}
    if args.recipe and any(getattr(args, name, None) is not None for name in names - machine_only):
        options["name"] = f"{options.get('name', 'custom')} (modified)"
    try:
        return Recipe(**options)
    except TypeError as error:
        raise UserError(f"bad recipe: {error}") from None


def run(args: argparse.Namespace) -> int:
    from sciscore.simulate.allocator import reuse_freed_memory
    from sciscore.simulate.output import simulate_file
    from sciscore.stopping import stop_on_signals

    recipe = recipe_from_args(args)
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other; choose one")
    if recipe.threads:
        import torch

        torch.set_num_threads(recipe.threads)
    if recipe.device != "cuda":
        reuse_freed_memory()  # fewer page faults per step on the CPU (see sciscore.simulate.allocator)
    start = time.perf_counter()
    options = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in sorted(dataclasses.asdict(recipe).items())
                       if k not in ("model", "name", "device", "threads") and v is not None)
    # SIGINT/SIGTERM: save the state at the end of the current chunk of steps, exit 130 (resumable)
    with stop_on_signals() as stop:
        path = simulate_file(
            recipe, args.output, overwrite=args.overwrite, resume=args.resume, progress=not args.quiet, stop=stop,
            checkpoint_seconds=args.checkpoint_seconds,
            title=f"moist 2D turbulence, {recipe.resolution}x{recipe.resolution}, {recipe.samples} samples"
            + (f" (recipe {recipe.name})" if recipe.name else ""),
            source="sciscore.simulate: pseudo-spectral forced 2D Navier-Stokes with a condensing supersaturation "
            "tracer (torch.fft)",
            history=f"sciscore simulate {options}",
        )
    seconds = time.perf_counter() - start
    log.info("wrote %s: %d samples of %dx%d in %.1f s%s", path, recipe.samples, recipe.resolution, recipe.resolution,
             seconds, " (resumed)" if args.resume else "")
    return 0
