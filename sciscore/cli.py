"""The `sciscore` command line: parses arguments and calls the library (no logic of its own).

Each subcommand lives in `sciscore.commands.<name>` and exposes `register(subparsers)`, which adds
its parser and sets `func(args) -> int`. A `UserError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

from sciscore import __version__
from sciscore.errors import EXIT_USAGE, UserError

SUBCOMMANDS = ("simulate", "train", "ema", "generate", "merge", "diagnose", "study")


class UsageError(UserError):
    """A command line argparse rejects (unknown option, bad value, missing argument)."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block), as every other bad input."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="sciscore",
        description="Score-based diffusion models of geoscience fields.",
        epilog="Run 'sciscore COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"sciscore {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"sciscore.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            where = f"sciscore {args.command}" if args.command else "sciscore"
            # quoted when not printable (a newline in an argument must not break the one error line)
            shown = " ".join(arg if arg.isprintable() else repr(arg) for arg in unknown)
            raise UsageError(f"{where}: error: unrecognized arguments: {shown} (see '{where} --help')")
    except UsageError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from sciscore.allocator import keep_freed_memory
    from sciscore.provenance import command_line

    keep_freed_memory()  # a process setting: the command line makes it, the library does not
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
        format="%(message)s",
    )
    # Warnings from the libraries (numpy on the way to a NaN check, torch's unpickler on a planted
    # file) are held back: on bad input the one error line stands alone; otherwise they follow.
    with warnings.catch_warnings(record=True) as caught, command_line(list(sys.argv[1:] if argv is None else argv)):
        try:
            status = int(args.func(args) or 0)
        except UserError as error:
            print(f"sciscore {args.command}: error: {error}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            status = 130
            print(f"sciscore {args.command}: interrupted", file=sys.stderr)
    for warning in caught:
        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
