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
                    "write one CF NetCDF file, block by block, equal to the file of a one-job run.",
    )
    parser.add_argument("shards", nargs="+", metavar="SHARD.nc", help="the shard files, in any order")
    parser.add_argument("-o", "--output", required=True, metavar="ALL.nc", help="the merged file")
    add_overwrite(parser)
    add_quiet(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from sciscore.generate.merge import merge_shards

    path = merge_shards(args.shards, args.output, overwrite=args.overwrite)
    logging.getLogger("sciscore").info("merged %d shard files into %s", len(args.shards), path)
    return 0
