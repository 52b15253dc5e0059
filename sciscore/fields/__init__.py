"""The xarray side of sciscore: open/validate/write NetCDF fields, normalizers, torch dataset."""

from sciscore.fields.dataset import (Augmentation, ChunkShuffleSampler, FieldDataset, pseudoscalars_of, reflection_signs,
                                     train_validation_split)
from sciscore.fields.dims import FieldDims, field_dims
from sciscore.fields.io import check_finite, check_writable, open_fields, write_fields
from sciscore.fields.normalize import Normalizer, fit_normalizer

__all__ = [
    "Augmentation", "ChunkShuffleSampler", "FieldDataset", "pseudoscalars_of", "reflection_signs", "train_validation_split",
    "FieldDims", "field_dims",
    "check_finite", "check_writable", "open_fields", "write_fields",
    "Normalizer", "fit_normalizer",
]
