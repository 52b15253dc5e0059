"""`sciscore generate`: generate fields with a trained score model and write NetCDF."""

from sciscore.commands._common import register_not_ready


def register(subparsers):
    return register_not_ready(subparsers, "generate", "Generate fields with a trained score model and write NetCDF", "the generate issue")
