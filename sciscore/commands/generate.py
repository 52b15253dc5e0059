"""`sciscore generate`: sample a trained score model and write CF NetCDF with provenance."""

from __future__ import annotations

import argparse
import logging
import os

from sciscore.commands._common import DefaultsHelpFormatter, add_device, add_overwrite, add_quiet
from sciscore.validation import POSITIVE, SEED, integer, noise_interval, number
from sciscore.sde.solvers import CONTINUOUS_GRIDS, SOLVERS, default_steps, parse_solver_options  # the solver table (no torch)

MAX_SAMPLES = 2**31 - 1  # netCDF dimension sizes and sample indices stay in 32-bit integers


def register(subparsers):
    from sciscore.generate.defaults import DEFAULT_BATCH_SIZE, DEFAULT_GRID, DEFAULT_SAMPLES, DEFAULT_SOLVER

    parser = subparsers.add_parser(
        "generate", help="generate fields with a trained score model and write NetCDF",
        description="Generate fields with a trained score model (default: the shipped 64x64 turbulence model) "
                    "and write them, in physical units, to CF NetCDF with provenance. Samples are written batch "
                    "by batch; an interrupted file is marked incomplete and --resume finishes it.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--model", metavar="RUN_DIR", default=None,
                        help="run directory written by 'sciscore train' (default: the shipped default model)")
    parser.add_argument("--variable", action="append", metavar="NAME", dest="variables",
                        help="variable to write (repeatable; default: all of the model's variables)")
    parser.add_argument("-n", "--samples", type=integer(1, MAX_SAMPLES), default=DEFAULT_SAMPLES, help="number of fields")
    parser.add_argument("--solver", choices=SOLVERS, default=None,
                        help=f"sampler (default: the model's recommended sampler, its config.json 'sampler', with "
                             f"its steps, grid and options; else {DEFAULT_SOLVER})")
    parser.add_argument("--steps", type=POSITIVE, default=None,
                        help=f"solver steps (default: the recommended sampler's, else the solver's on the grid; "
                             f"{DEFAULT_SOLVER} on {DEFAULT_GRID}: {default_steps(DEFAULT_SOLVER, DEFAULT_GRID)})")
    parser.add_argument("--grid", choices=CONTINUOUS_GRIDS, default=None,
                        help=f"time grid of the solver steps (karras: EDM's rho = 7; default: the recommended "
                             f"sampler's, else {DEFAULT_GRID})")
    parser.add_argument("--solver-option", action="append", default=[], metavar="NAME=VALUE", dest="solver_options",
                        help="a setting of the solver (repeatable), e.g. --solver edm --solver-option s_churn=40; "
                             "the settings each solver takes are listed in docs/sde.md")
    parser.add_argument("--denoise", action=argparse.BooleanOptionalAction, default=True,
                        help="finish with one Tweedie denoising step (one more score evaluation)")
    parser.add_argument("--bf16", action="store_true",
                        help="run the network under bfloat16 autocast: faster on CUDA and on CPUs with bf16 "
                             "instructions; the fields differ from float32's by the network's rounding")
    parser.add_argument("--guidance", type=number(0), default=None, metavar="W",
                        help="autoguidance weight (Karras et al. 2024): D = D_guide + W (D_model - D_guide), with a "
                             "weaker model of the same data as guide; 1: none (default: the model's recommended "
                             "weight, else 1)")
    parser.add_argument("--guidance-interval", type=noise_interval, default=None, metavar="LO,HI",
                        help="guide only at noise levels LO < sigma <= HI (Kynkäänniemi et al. 2024; 0,inf: every "
                             "noise level; default: the model's recommended interval, else every noise level)")
    parser.add_argument("--guide-model", metavar="RUN_DIR", default=None,
                        help="the guide of --guidance: a run directory of a shorter-trained or smaller model of the "
                             "same data (default: the guide shipped with the model, if any)")
    parser.add_argument("--seed", type=SEED, default=0, help="random seed (sample i depends only on seed and i)")
    parser.add_argument("--batch-size", type=POSITIVE, default=DEFAULT_BATCH_SIZE, help="fields per batch")
    parser.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True,
                        help="use the exponential-moving-average weights")
    add_device(parser)
    parser.add_argument("--threads", type=POSITIVE, default=None, metavar="N",
                        help="torch CPU threads (default: torch's choice; 1 on a machine busy with other jobs)")
    parser.add_argument("-o", "--output", default=None, metavar="FILE.nc|OUT.zarr",
                        help="output file (default: generated_<variables>_seed<S>.nc); a name ending in .zarr "
                             "writes one Zarr store, of which each --shard writes its region")
    add_overwrite(parser)
    parser.add_argument("--resume", action="store_true", help="finish an interrupted output file")
    parser.add_argument("--shard", metavar="I/N|auto", default=None,
                        help="draw only shard I of N (0-based): the contiguous block of global sample indices "
                             "[I*n//N, (I+1)*n//N) of the -n samples, written with their global indices; "
                             "'auto' takes I/N from a SLURM array (SLURM_ARRAY_TASK_ID/COUNT) or torchrun "
                             "(RANK/WORLD_SIZE); '{shard}' in -o becomes I; join the shards with 'sciscore merge' "
                             "(or give all shards one -o OUT.zarr)")
    add_quiet(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from sciscore.errors import UserError
    from sciscore.generate import generate_file, load_model

    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other; choose one")
    # with --solver the options are checked now; without, against the model's recommended solver once loaded
    solver_options = parse_solver_options(args.solver, args.solver_options) if args.solver else args.solver_options
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    shard = None
    if args.shard is not None:
        from sciscore.generate.shards import parse_shard

        shard = parse_shard(args.shard)
    else:
        from sciscore.train.distributed import launched_by_torchrun

        if launched_by_torchrun():
            return _run_under_torchrun(args, solver_options)
    model = load_model(args.model, ema=args.ema, device=args.device, guide=args.guide_model)
    variables = model.select(args.variables)
    suffix = "_shard{shard}" if shard is not None else ""
    output = args.output or f"generated_{'_'.join(variables)}_seed{args.seed}{suffix}.nc"
    if shard is not None:
        from sciscore.generate.sample_store import is_store
        from sciscore.generate.shards import shard_output

        if is_store(output) and "{shard}" in output:
            raise UserError(f"the shards of a run write one zarr store together: drop '{{shard}}' from -o {output}")
        output = shard_output(output, shard)
    path = generate_file(model, output, args.samples, variables=variables, solver=args.solver, steps=args.steps,
                         seed=args.seed, grid=args.grid, denoise=args.denoise, batch_size=args.batch_size,
                         overwrite=args.overwrite, resume=args.resume, progress=not args.quiet, shard=shard,
                         solver_options=solver_options, bf16=args.bf16,
                         **_guidance(args))
    first, stop = (0, args.samples) if shard is None else shard.block(args.samples)
    count = stop - first
    which = "" if shard is None else f" (shard {shard} of a run of {args.samples})"
    logging.getLogger("sciscore").info("wrote %d fields of %s to %s%s", count, ", ".join(variables), path, which)
    return 0


def _guidance(args: argparse.Namespace) -> dict:
    return {"guidance": args.guidance, "guidance_interval": args.guidance_interval}


def _run_under_torchrun(args: argparse.Namespace, solver_options) -> int:
    """torchrun -m sciscore generate ... -o FILE: rank r of N writes shard r/N to a part file next to
    FILE; after all are done, rank 0 merges them into FILE (equal to the one-job run) and removes
    them. --resume continues the part files of an interrupted run. With -o OUT.zarr, rank r writes
    its region of the one store instead, and rank 0 checks it at the end."""
    from datetime import timedelta
    from pathlib import Path

    import torch
    import torch.distributed as dist

    from sciscore.devices import resolve_device
    from sciscore.errors import UserError
    from sciscore.fields.io import check_writable
    from sciscore.generate import generate_file, load_model
    from sciscore.generate.merge import merge_shards
    from sciscore.fields.sample_file import STATUS, read_header
    from sciscore.generate.sample_store import is_store, remove_store, shard_complete
    from sciscore.fields.sample_shards import Shard

    if args.output is None:
        raise UserError("under torchrun, name the output file with -o")
    store = is_store(args.output)
    if not store:
        check_writable(args.output, args.overwrite)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if resolve_device(args.device).type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
    # gloo: the only collective is a barrier; the shards may take hours
    dist.init_process_group("gloo", timeout=timedelta(hours=48))
    try:
        shard = Shard(rank, world_size)
        output = Path(args.output)
        if store:  # each rank writes its region of the one store
            if args.overwrite and rank == 0:
                remove_store(output)
            dist.barrier()
            model = load_model(args.model, ema=args.ema, device=args.device, guide=args.guide_model)
            resume = args.resume and output.exists()
            if not (resume and shard_complete(output, shard)):
                generate_file(model, output, args.samples, variables=model.select(args.variables),
                              solver=args.solver, steps=args.steps, seed=args.seed, grid=args.grid,
                              denoise=args.denoise, batch_size=args.batch_size, resume=resume,
                              progress=not args.quiet and rank == 0, shard=shard, solver_options=solver_options,
                              bf16=args.bf16, **_guidance(args))
            dist.barrier()
            if rank == 0:
                merge_shards([output], None)  # checks every sample is written; marks the store complete
                logging.getLogger("sciscore").info("wrote %d fields to %s (%d processes)", args.samples, output,
                                                   world_size)
            dist.barrier()  # as below: no rank leaves the group while rank 0 still merges
            return 0
        parts = [output.with_name(f".{output.name}.shard{i}of{world_size}.nc") for i in range(world_size)]
        model = load_model(args.model, ema=args.ema, device=args.device, guide=args.guide_model)
        variables = model.select(args.variables)
        resume = args.resume and parts[rank].exists()
        done = False
        if resume:
            done = read_header(parts[rank]).attrs.get(STATUS) == "complete"
        if not done:
            generate_file(model, parts[rank], args.samples, variables=variables, solver=args.solver,
                          steps=args.steps, seed=args.seed, grid=args.grid, denoise=args.denoise,
                          batch_size=args.batch_size, overwrite=not resume, resume=resume,
                          progress=not args.quiet and rank == 0, shard=shard,
                          solver_options=solver_options, bf16=args.bf16, **_guidance(args))
        dist.barrier()
        if rank == 0:
            path = merge_shards(parts, output, overwrite=args.overwrite)
            for part in parts:
                part.unlink()
            logging.getLogger("sciscore").info("wrote %d fields of %s to %s (%d processes)", args.samples,
                                               ", ".join(variables), path, world_size)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0
