"""`sciscore diagnose`: compare generated fields with reference data (Reynolds decomposition, spectra, distances)."""

from __future__ import annotations

import argparse
import logging

from sciscore.commands._common import add_overwrite, add_quiet
from sciscore.validation import SEED, integer, number

log = logging.getLogger(__name__)

MAX_BINS = 100_000  # histograms of (variables x bins) float64 counts; more bins than pixels resolve nothing


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {value}")
    return value


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "diagnose",
        help="Compare generated fields with reference data (Reynolds decomposition, spectra, distances)",
        description=(
            "Compare generated fields with reference data: spatial means (color shift), cumulants, "
            "power spectra, pixel-value distributions. Writes diagnostics.nc, summary.md and PNG "
            "figures into the report directory. Streams the data, so files may exceed memory."
        ),
    )
    parser.add_argument("--reference", required=True, nargs="+", metavar="DATA.nc",
                        help="reference fields: NetCDF file(s), a glob, or a zarr store")
    parser.add_argument("--samples", required=True, nargs="+", metavar="GEN.nc",
                        help="generated fields (same grid): NetCDF file(s), a glob, or a zarr store")
    parser.add_argument("-o", "--output", required=True, metavar="REPORT_DIR",
                        help="directory for the report (created if missing)")
    parser.add_argument("--variable", action="extend", nargs="+", metavar="NAME",
                        help="variable(s) to compare (default: every variable in both)")
    parser.add_argument("--sample-dim", metavar="NAME", help="name of the sample dimension (default: recognised)")
    parser.add_argument("--spatial-dims", nargs=2, metavar=("Y", "X"),
                        help="names of the spatial dimensions (default: recognised)")
    parser.add_argument("--bins", type=integer(1, MAX_BINS), default=1000, metavar="N",
                        help="pixel-value histogram bins; pixel W1 is within one bin width (default: %(default)s)")
    parser.add_argument("--color-shift-threshold", type=number(0), default=0.3, metavar="SCORE",
                        help="flag a color shift when the score exceeds this and the p-value is below --alpha (default: %(default)s)")
    parser.add_argument("--alpha", type=_probability, default=0.01, metavar="P",
                        help="significance level of the permutation test of the spatial means (default: %(default)s)")
    parser.add_argument("--seed", type=SEED, default=0, metavar="N", help="seed of the permutation test (default: %(default)s)")
    parser.add_argument("--scheduler", metavar="local|ADDRESS", default=None,
                        help="compute on dask.distributed: 'local' starts a LocalCluster on this machine, an "
                             "address (tcp://host:8786) joins a running cluster, e.g. a dask-jobqueue SLURMCluster; "
                             "needs the hpc extra (default: dask's local threaded scheduler)")
    add_overwrite(parser)
    add_quiet(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from sciscore.diagnostics.report import diagnose
    from sciscore.diagnostics.scheduler import dask_scheduler

    with dask_scheduler(args.scheduler) as client:
        if client is not None:
            log.info("computing on the dask cluster at %s (dashboard %s)", client.scheduler.address,
                     client.dashboard_link)
        comparison = diagnose(
            args.reference, args.samples, args.output, args.variable, overwrite=args.overwrite,
            sample_dim=args.sample_dim, spatial_dims=args.spatial_dims, progress=not args.quiet and client is None,
            bins=args.bins, color_shift_threshold=args.color_shift_threshold, alpha=args.alpha, seed=args.seed,
        )
    for name in comparison.attrs["variables"].split():
        score = float(comparison[f"{name}_color_shift_score"])
        flagged = bool(comparison[f"{name}_color_shift_flag"])
        log.info("%s: color-shift score %.3g%s", name, score, " (COLOR SHIFT)" if flagged else "")
    log.info("report written to %s", args.output)
    return 0
