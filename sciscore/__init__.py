"""sciscore: score-based diffusion models of geoscience fields.

The public surface is re-exported here lazily, so ``import sciscore`` stays fast and the
command-line interface does not import torch before it needs it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    "UserError": "sciscore.errors",
    "open_fields": "sciscore.fields",
    "write_fields": "sciscore.fields",
    "check_finite": "sciscore.fields",
    "field_dims": "sciscore.fields",
    "Normalizer": "sciscore.fields",
    "fit_normalizer": "sciscore.fields",
    "FieldDataset": "sciscore.fields",
    "load_model": "sciscore.generate",
    "GenerativeModel": "sciscore.generate",
    "SamplingProblem": "sciscore.sde",
    "solve": "sciscore.sde",
    "compare": "sciscore.diagnostics",
}
# subpackages reachable as attributes after a plain `import sciscore` (imported on first use;
# `sciscore.diagnostics` also registers the `.reynolds` xarray accessor)
_SUBPACKAGES = ("checkpoint", "diagnostics", "fields", "generate", "nn", "sde", "simulate", "train")


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"sciscore.{name}")
    raise AttributeError(f"module 'sciscore' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBPACKAGES))
