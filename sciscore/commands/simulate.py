"""`sciscore simulate`: run the moist 2D turbulence simulator and write NetCDF training data."""

from sciscore.commands._common import register_not_ready


def register(subparsers):
    return register_not_ready(subparsers, "simulate", "Run the moist 2D turbulence simulator and write NetCDF training data", "the simulator issue")
