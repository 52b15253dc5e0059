"""Options and helpers shared by the subcommands."""

from __future__ import annotations

import argparse

from sciscore.devices import DEVICE_CHOICES
from sciscore.errors import UserError


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to an option's help unless the help already states its default or
    there is none to state (None, False)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False or action.default == argparse.SUPPRESS \
                or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info messages")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", choices=DEVICE_CHOICES,
        help="where to compute: 'auto' uses CUDA when available (default: %(default)s)",
    )


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace the output if it exists")


def not_ready(name: str, issue: str):
    """A `func` for a subcommand that is not implemented yet: says so and exits 2."""

    def run(args: argparse.Namespace) -> int:
        raise UserError(f"'sciscore {name}' is not implemented yet ({issue}); nothing was done")

    return run


def register_not_ready(subparsers, name: str, summary: str, issue: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name, help=f"{summary} [not implemented yet]",
        description=f"{summary}. NOT IMPLEMENTED YET ({issue}): this command exits with status 2.",
    )
    parser.set_defaults(func=not_ready(name, issue))
    return parser
