"""`sciscore merge`: join the shard files of one sharded `sciscore generate` run into one file."""

from __future__ import annotations

import argparse
import logging

from sciscore.commands._common import add_overwrite, add_quiet


def register(subparsers):
    parser = subparsers.add_parser(
        "merge", help="merge the shard files of 'sciscore generate --shard' into one NetCDF file",
        description="Check that the shard files belong to one run (same model checksum, weights, seed, solver, "
                    "steps, grid, n, variables), are each complete and hold every sample index exactly once, then "
                    "write one CF NetCDF file, block by block, equal to the file of a one-job run. Given the zarr "
                    "store that the shards of 'sciscore generate -o OUT.zarr --shard I/N' wrote together, check that "
                    "every sample is written (and mark the store complete); with -o, also write it to one NetCDF file.",
    )
    parser.add_argument("shards", nargs="+", metavar="SHARD.nc|OUT.zarr", help="the shard files, in any order, "
                        "or one zarr store")
    parser.add_argument("-o", "--output", default=None, metavar="ALL.nc",
                        help="the merged file (required for shard files; optional for a zarr store)")
    add_overwrite(parser)
    add_quiet(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from sciscore.generate.merge import merge_shards

    from sciscore.generate.sample_store import is_store

    path = merge_shards(args.shards, args.output, overwrite=args.overwrite)
    if not is_store(args.shards[0]):
        logging.getLogger("sciscore").info("merged %d shard files into %s", len(args.shards), path)
    elif args.output is None:
        logging.getLogger("sciscore").info("%s is complete: every sample is written", path)
    else:
        logging.getLogger("sciscore").info("%s is complete; written to %s", args.shards[0], path)
    return 0
