"""`sciscore ema`: choose the EMA profile of a trained run after training, from its weight snapshots."""

from __future__ import annotations

import argparse
import logging

from sciscore.commands._common import add_overwrite, add_quiet
from sciscore.validation import integer, number


def register(subparsers):
    parser = subparsers.add_parser(
        "ema", help="form post-hoc EMA weights of a run from its weight snapshots",
        description="Write a checkpoint directory whose EMA weights average the raw-weight snapshots of a run "
                    "('sciscore train --snapshot-every N') with a chosen profile: Karras et al. 2024's power "
                    "function of relative width --sigma-rel, or the trainer's own rule (--decay). The output "
                    "loads like any checkpoint: 'sciscore generate --model OUT'.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory with snapshots/")
    profile = parser.add_mutually_exclusive_group(required=True)
    profile.add_argument("--sigma-rel", type=number(), metavar="S",
                         help="relative width of a power-function EMA in (0, 0.28] (Karras et al. 2024: 0.05-0.15; "
                              "sciscore's trainer gives ~0.09 in runs under ~9000 steps)")
    profile.add_argument("--decay", type=number(0, 1, high_open=True), metavar="D",
                         help="the trainer's rule with this decay and its (1+k)/(10+k) warm-up")
    parser.add_argument("--step", type=integer(0), default=None, metavar="K",
                        help="optimizer step to average up to (a snapshot's; default: the last)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="checkpoint directory to write")
    add_overwrite(parser)
    add_quiet(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sciscore import checkpoint as ckpt
    from sciscore.errors import UserError
    from sciscore.fields.io import check_writable_dir
    from sciscore.train.posthoc_ema import PowerProfile, TrainerProfile, write_posthoc_checkpoint

    run_dir, output = Path(args.run_dir), Path(args.output)
    ckpt.read_checkpoint(run_dir)  # a one-line error for anything that is not a run directory
    if output.exists() and output.resolve() == run_dir.resolve():
        raise UserError(f"-o {output} is the run directory itself; write the averaged checkpoint elsewhere")
    if output.exists() and not output.is_dir():
        raise UserError(f"-o {output} is a file; give a directory for the checkpoint")
    if (output / ckpt.CONFIG).exists() and not args.overwrite:
        raise UserError(f"{output} already holds a checkpoint; pass --overwrite to replace it")
    check_writable_dir(output)
    profile = PowerProfile(args.sigma_rel) if args.sigma_rel is not None else TrainerProfile(args.decay)
    path = write_posthoc_checkpoint(run_dir, output, profile, args.step)
    record = ckpt.read_checkpoint(path)
    logging.getLogger("sciscore").info("wrote %s: %s EMA over %d snapshots up to optimizer step %d", path,
                                       record.ema["profile"], record.ema["snapshots"], record.ema["optimizer_steps"])
    return 0
