"""`sciscore diagnose`: compare generated fields with reference data (Reynolds decomposition, spectra, distances)."""

from sciscore.commands._common import register_not_ready


def register(subparsers):
    return register_not_ready(subparsers, "diagnose", "Compare generated fields with reference data (Reynolds decomposition, spectra, distances)", "the diagnostics issue")
