"""Generate fields with a trained model: `load_model`, `GenerativeModel.generate`, `generate_file`."""

from sciscore.generate.model import (
    DEFAULT_BATCH_SIZE, DEFAULT_GRID, DEFAULT_SAMPLES, DEFAULT_SOLVER, GenerativeModel, SamplerOptions,
    generate_file, load_model,
)
from sciscore.generate.sample_file import SampleFile, append_samples, create_sample_file, resume_sample_file

__all__ = [
    "DEFAULT_BATCH_SIZE", "DEFAULT_GRID", "DEFAULT_SAMPLES", "SamplerOptions", "DEFAULT_SOLVER", "GenerativeModel", "generate_file",
    "load_model", "SampleFile", "append_samples", "create_sample_file", "resume_sample_file",
]
