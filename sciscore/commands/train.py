"""`sciscore train`: train a score network on NetCDF fields."""

from sciscore.commands._common import register_not_ready


def register(subparsers):
    return register_not_ready(subparsers, "train", "Train a score network on NetCDF fields", "the training issue")
