"""Generate fields with a trained model: `load_model`, `GenerativeModel.generate`, `generate_file`.

Names are imported on first use, so `sciscore.generate.defaults` (read by `sciscore generate --help`)
does not import torch.
"""

from __future__ import annotations

import importlib

# name -> module that defines it
_EXPORTS = {
    **dict.fromkeys(("DEFAULT_BATCH_SIZE", "DEFAULT_GRID", "DEFAULT_SAMPLES", "DEFAULT_SOLVER"),
                    "sciscore.generate.defaults"),
    **dict.fromkeys(("GenerativeModel", "SamplerOptions", "generate_file", "load_model"), "sciscore.generate.model"),
    **dict.fromkeys(("SampleFile", "SampleHeader", "append_samples", "create_sample_file", "read_header",
                     "resume_sample_file"),
                    "sciscore.fields.sample_file"),
    **dict.fromkeys(("check_store", "merge_store"), "sciscore.generate.sample_store"),
    "Shard": "sciscore.fields.sample_shards",
    "parse_shard": "sciscore.generate.shards",
    **dict.fromkeys(("check_shards", "merge_shards", "read_shard"), "sciscore.generate.merge"),
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sciscore.generate' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
