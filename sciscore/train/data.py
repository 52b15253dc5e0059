"""The training data in memory: normalized (N, C, H, W) tensors for the train and validation
splits, plus what the checkpoint records about them (grid, attributes, normalizers) and the
statistics the network derives from them (sigma_data, the std of the spatial means, the
channels whose spatial mean is constant)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import xarray as xr

from sciscore.errors import UserError
from sciscore.fields import (Augmentation, FieldDataset, Normalizer, field_dims, fit_normalizer, open_fields,
                             pseudoscalars_of, reflection_signs, train_validation_split)

MAX_IN_MEMORY_BYTES = 8 * 2**30
CONSTANT_MEAN_TOLERANCE = 1e-4  # spread of the spatial means / fluctuation std below which a mean is constant


@dataclass
class TrainingData:
    train: torch.Tensor                      # (N, C, H, W) float32, normalized
    validation: torch.Tensor                 # (M, C, H, W)
    context_train: torch.Tensor | None       # (N, Cc, H, W)
    context_validation: torch.Tensor | None
    normalizer: Normalizer
    context_normalizer: Normalizer | None
    variables: list
    context_variables: list
    dataset: xr.Dataset                      # the opened (lazy) data, for grid and attributes
    augmentation: Augmentation
    sign_on_reflection: torch.Tensor         # (C,) -1 for pseudoscalars (vorticity)
    context_sign_on_reflection: torch.Tensor | None  # (Cc,)


def _load(ds, variables, normalizer, indices) -> torch.Tensor:
    if len(indices) == 0:
        return torch.zeros((0, len(variables), *(ds.sizes[d] for d in field_dims(ds).spatial)))
    dataset = FieldDataset(ds, variables, normalizer, indices)
    return torch.stack([dataset[i] for i in range(len(dataset))])


def _normalizers_of(run_dir, variables, context_variables) -> tuple[Normalizer, Normalizer | None]:
    """The normalizers of an existing model (`data.normalizer_from`), so that a new model works in
    its units: a guide for autoguidance, or a model to compare weight for weight. Its variables
    must be the ones trained here, in the same order."""
    from sciscore.checkpoint import read_checkpoint

    record = read_checkpoint(run_dir)
    for what, theirs, ours in (("variables", record.variables, variables),
                               ("context variables", record.context_variables, context_variables)):
        if list(theirs) != list(ours):
            raise UserError(f"data.normalizer_from: {run_dir} normalizes the {what} {list(theirs)}, this run trains "
                            f"on {list(ours)}; train the same variables in the same order or drop normalizer_from")
    return record.normalizer, record.context_normalizer


def load_training_data(data_config, seed: int = 0, dataset: xr.Dataset | None = None) -> TrainingData:
    """Open the files of `data_config` (or use `dataset`), split, fit the normalizers on the
    training split and load both splits into memory."""
    c = data_config
    if not c.variables:
        raise UserError("no variables to train on; pass --variable NAME (or data.variables in the config)")
    names = list(c.variables) + list(c.context_variables)
    if dataset is None:
        if not c.paths:
            raise UserError("no training data; pass --data FILE.nc (or data.paths in the config)")
        dataset = open_fields(c.paths, names, sample_dim=c.sample_dim, spatial_dims=c.spatial_dims)
    else:
        missing = [v for v in names if v not in dataset.data_vars]
        if missing:
            raise UserError(f"variable {missing} not found; available: {', '.join(map(str, dataset.data_vars))}")
    dims = field_dims(dataset, c.sample_dim, c.spatial_dims)
    n = dataset.sizes[dims.sample]
    size = n * len(names) * dataset.sizes[dims.y] * dataset.sizes[dims.x] * 4
    if size > MAX_IN_MEMORY_BYTES:
        raise UserError(f"the training data need {size / 2**30:.1f} GiB in memory (limit 8 GiB); "
                        "train on fewer samples or a coarser grid")
    train_idx, val_idx = train_validation_split(n, c.validation_fraction, seed)
    if c.normalizer_from:
        normalizer, context_normalizer = _normalizers_of(c.normalizer_from, c.variables, c.context_variables)
    else:
        normalizer = fit_normalizer(dataset, c.variables, c.normalization, indices=train_idx,
                                    positive_stretch=c.positive_stretch, spectral_whitening=c.spectral_whitening)
        context_normalizer = (fit_normalizer(dataset, c.context_variables, c.normalization, indices=train_idx)
                              if c.context_variables else None)
    train = _load(dataset, c.variables, normalizer, train_idx)
    validation = _load(dataset, c.variables, normalizer, val_idx)
    context_train = context_validation = None
    if c.context_variables:
        context_train = _load(dataset, c.context_variables, context_normalizer, train_idx)
        context_validation = _load(dataset, c.context_variables, context_normalizer, val_idx)
    if not (torch.isfinite(train).all() and torch.isfinite(validation).all()):
        raise UserError("the training data contain NaN or inf; remove or fill those samples")
    augmentation = Augmentation(shifts=c.shifts, flips=c.flips, rotations=c.rotations, seed=seed)
    if c.rotations and dataset.sizes[dims.y] != dataset.sizes[dims.x]:
        raise UserError("rotations need a square grid; turn off data.rotations")
    pseudoscalars = c.pseudoscalars
    if pseudoscalars is None:
        pseudoscalars = pseudoscalars_of(dataset, [*c.variables, *c.context_variables])
    else:
        unknown = [v for v in pseudoscalars if v not in (*c.variables, *c.context_variables)]
        if unknown:
            raise UserError(f"data.pseudoscalars names {', '.join(map(repr, unknown))}, which is not among the "
                            f"variables or context variables; remove it")
    sign = reflection_signs(c.variables, pseudoscalars)
    context_sign = reflection_signs(c.context_variables, pseudoscalars) if c.context_variables else None
    return TrainingData(train, validation, context_train, context_validation, normalizer, context_normalizer,
                        list(c.variables), list(c.context_variables), dataset, augmentation, sign, context_sign)


def data_statistics(train: torch.Tensor) -> dict:
    """sigma_data (std of all values), sigma_data_mean (per-channel std of the spatial means)
    and constant_means (per channel: the mean if it is the same in every sample, else None)."""
    x = train.to(torch.float64)
    means = x.mean(dim=(-2, -1))                                  # (N, C)
    fluct_std = (x - means[..., None, None]).std(dim=(0, 2, 3))   # (C,)
    spread = means.max(dim=0).values - means.min(dim=0).values
    constant = spread <= CONSTANT_MEAN_TOLERANCE * fluct_std.clamp_min(1e-30)
    mean_std = means.std(dim=0) if len(x) > 1 else torch.ones(x.shape[1], dtype=torch.float64)
    sigma_data = float(x.std()) if x.numel() > 1 else 1.0
    return {
        "sigma_data": sigma_data,
        "sigma_data_mean": [sigma_data if bool(k) else max(float(s), 1e-2) for s, k in zip(mean_std, constant)],
        "constant_means": [float(m) if bool(k) else None for m, k in zip(means.mean(dim=0), constant)],
    }


def augment_batch(x: torch.Tensor, context: torch.Tensor | None, data: TrainingData, generators):
    """Apply the data's random symmetry operations to each sample of x (B, C, H, W) and, with the
    same operation, to its context (B, Cc, H, W) (CPU). `generators`: a callable giving sample b's
    generator, so that a sample's operation does not depend on the rest of the batch (or on which
    rank of a data-parallel run draws it)."""
    if not data.augmentation.active:
        return x, context
    sign = data.sign_on_reflection
    both = x
    if context is not None:
        sign, both = torch.cat([sign, data.context_sign_on_reflection]), torch.cat([x, context], dim=1)
    out = torch.stack([data.augmentation(sample, sign, generators(b)) for b, sample in enumerate(both)])
    c = x.shape[1]
    return out[:, :c], (out[:, c:] if context is not None else None)
