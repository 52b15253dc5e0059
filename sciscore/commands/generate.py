"""`sciscore generate`: sample a trained score model and write CF NetCDF with provenance."""

from __future__ import annotations

import argparse
import logging

from sciscore.commands._common import DefaultsHelpFormatter, add_device, add_overwrite, add_quiet
from sciscore.validation import POSITIVE, SEED, integer
from sciscore.sde.solvers import CONTINUOUS_GRIDS, SOLVERS, default_steps  # the solver table (no torch)

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
    parser.add_argument("--solver", choices=SOLVERS, default=DEFAULT_SOLVER, help="sampler")
    parser.add_argument("--steps", type=POSITIVE, default=None,
                        help=f"solver steps (default: the solver's on the grid; {DEFAULT_SOLVER} on "
                             f"{DEFAULT_GRID}: {default_steps(DEFAULT_SOLVER, DEFAULT_GRID)})")
    parser.add_argument("--grid", choices=CONTINUOUS_GRIDS, default=DEFAULT_GRID,
                        help="time grid of the solver steps (karras: EDM's rho = 7)")
    parser.add_argument("--denoise", action=argparse.BooleanOptionalAction, default=True,
                        help="finish with one Tweedie denoising step (one more score evaluation)")
    parser.add_argument("--seed", type=SEED, default=0, help="random seed (sample i depends only on seed and i)")
    parser.add_argument("--batch-size", type=POSITIVE, default=DEFAULT_BATCH_SIZE, help="fields per batch")
    parser.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True,
                        help="use the exponential-moving-average weights")
    add_device(parser)
    parser.add_argument("--threads", type=POSITIVE, default=None, metavar="N",
                        help="torch CPU threads (default: torch's choice; 1 on a machine busy with other jobs)")
    parser.add_argument("-o", "--output", default=None, metavar="FILE.nc",
                        help="output file (default: generated_<variables>_seed<S>.nc)")
    add_overwrite(parser)
    parser.add_argument("--resume", action="store_true", help="finish an interrupted output file")
    add_quiet(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from sciscore.errors import UserError
    from sciscore.generate import generate_file, load_model

    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other; choose one")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    model = load_model(args.model, ema=args.ema, device=args.device)
    variables = model.select(args.variables)
    output = args.output or f"generated_{'_'.join(variables)}_seed{args.seed}.nc"
    path = generate_file(model, output, args.samples, variables=variables, solver=args.solver, steps=args.steps,
                         seed=args.seed, grid=args.grid, denoise=args.denoise, batch_size=args.batch_size, overwrite=args.overwrite, resume=args.resume,
                         progress=not args.quiet)
    logging.getLogger("sciscore").info("wrote %d fields of %s to %s", args.samples, ", ".join(variables), path)
    return 0
