"""The default model(s) shipped inside the package, used by `sciscore generate` with no --model.

Each model is a `sciscore train` run directory (config.json + model/ema safetensors; no training
state) with a MODEL_CARD.md that records how it was trained and how well it does.
"""

from __future__ import annotations

from pathlib import Path

from sciscore.errors import UserError

DEFAULT_MODEL = "turbulence2d-64"


def default_model_path(name: str = DEFAULT_MODEL) -> Path:
    """Directory of the shipped model `name`."""
    path = Path(__file__).parent / name
    if not (path / "config.json").is_file():
        raise UserError(f"the default model {name!r} is not installed with this copy of sciscore; pass --model RUN_DIR")
    return path
