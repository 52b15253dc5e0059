"""`sciscore study`: run a reproducible study from a TOML file."""

from sciscore.commands._common import register_not_ready


def register(subparsers):
    return register_not_ready(subparsers, "study", "Run a reproducible study from a TOML file", "a later issue")
