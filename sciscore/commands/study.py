"""`sciscore study`: list the reproducible studies of a checkout and run one from its study.toml.

    sciscore study list
    sciscore study run NAME [--quick] [--seed S] [-o DIR] [--device ...] [--threads N] [--overwrite]

The engine is `sciscore.study.runner`; this module parses options and sets torch's threads.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sciscore.commands._common import DefaultsHelpFormatter, add_device, add_overwrite, add_quiet
from sciscore.validation import POSITIVE, SEED

log = logging.getLogger("sciscore.study")

SUMMARY = "Run the reproducible studies of the seed papers' claims"


def register(subparsers):
    parser = subparsers.add_parser(
        "study", help=SUMMARY, formatter_class=DefaultsHelpFormatter,
        description=SUMMARY + ". A study is a folder studies/NAME/ with study.toml (description, columns, "
        "[full] and [quick] parameters) and study.py (docs/studies.md).",
        epilog="Example: sciscore study list; sciscore study run coupled-bypass --quick",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    parser.set_defaults(func=_missing_action(parser))

    listing = actions.add_parser(
        "list", help="name every study with its one-line description", formatter_class=DefaultsHelpFormatter,
        description="Name every study (each folder of studies/ with a study.toml) with its one-line description.",
    )
    _add_studies_dir(listing)
    listing.set_defaults(func=list_command)

    run = actions.add_parser(
        "run", help="run one study and write its table, figures and run record",
        formatter_class=DefaultsHelpFormatter,
        description="Run the study NAME with the parameters of its study.toml ([full], or [quick] with --quick) "
        "and write table.csv, run.json (parameters, seed, device, version, commit, timing, verdicts), the "
        "figures and any NetCDF to the output folder; print the headline.",
        epilog="Example: sciscore study run coupled-bypass --quick -o /tmp/quick",
    )
    run.add_argument("name", metavar="NAME", help="the study (see 'sciscore study list')")
    run.add_argument("--quick", action="store_true",
                     help="the reduced version ([quick] in study.toml): the same checks at lower precision, "
                          "<= 10 minutes on 2 CPU cores")
    run.add_argument("--seed", type=SEED, default=0, help="seed of every random draw of the study")
    run.add_argument("-o", "--output", metavar="DIR", default=None,
                     help="output folder (default: studies/NAME/results/ for the full run, "
                          "studies/NAME/results/quick/ with --quick)")
    add_device(run)
    run.add_argument("--threads", type=POSITIVE, default=1, metavar="N",
                     help="torch CPU threads (1 is fastest on a machine busy with other jobs)")
    add_overwrite(run)
    _add_studies_dir(run)
    add_quiet(run)
    run.set_defaults(func=run_command)
    return parser


def _add_studies_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--studies-dir", metavar="DIR", default=None,
                        help="the studies folder (default: studies/ of the current directory or of its nearest "
                             "parent that has one)")


def _missing_action(parser: argparse.ArgumentParser):
    def run(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return run


def _studies_dir(args: argparse.Namespace):
    from sciscore.study.runner import check_studies_dir, find_studies_dir

    return check_studies_dir(args.studies_dir) if args.studies_dir is not None else find_studies_dir()


def list_command(args: argparse.Namespace) -> int:
    from sciscore.study.runner import list_studies

    studies_dir = _studies_dir(args)
    studies = list_studies(studies_dir)
    if not studies:
        print(f"no studies in {studies_dir} (a study is a folder with a study.toml)")
        return 0
    width = max(len(study.name) for study in studies)
    for study in studies:
        print(f"{study.name:<{width}}  {study.description}")
    return 0


def run_command(args: argparse.Namespace) -> int:
    from sciscore.study.runner import TABLE, StudyDefinitionError, get_study, run_study

    study = get_study(args.name, _studies_dir(args))
    out = args.output if args.output is not None else study.default_output(args.quick)
    import torch

    torch.set_num_threads(args.threads)  # a process setting: the command sets it, the library does not
    log.info("study %s (%s, seed %d) -> %s", study.name, "quick" if args.quick else "full", args.seed, out)
    try:
        result = run_study(study, quick=args.quick, seed=args.seed, out=out, device=args.device,
                           progress=not args.quiet, overwrite=args.overwrite)
    except StudyDefinitionError as error:  # a bug in the study's code: one line, not exit 2 (not user input)
        print(f"sciscore study: error: {error}", file=sys.stderr)
        return 1
    print(result.headline)
    print(f"table: {Path(out) / TABLE}")
    return 0
