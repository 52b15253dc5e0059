"""Per-channel normalizers fitted on the training split with streaming (dask) reductions.

Every method is one affine map that treats a field's spatial mean m and its fluctuation x - m
separately (Reynolds decomposition x = m + x'):

    y = (m - offset) / mean_scale + (x - m) / fluctuation_scale            (1)

- `standard`:      offset = data mean, mean_scale = fluctuation_scale = data std (z-score);
- `minmax`:        offset = (max + min)/2, scales = (max - min)/2 (pixel values to [-1, 1]);
- `mean-spatial`:  CliMAgen's MeanSpatialScaling: the per-sample spatial means are mapped to
  [-1, 1] by their own min/max, the fluctuation by max |x'|. Unlike CliMAgen, the fluctuation is
  not shifted, so the spatial mean of y carries the field mean only.

Inverse of (1): the spatial mean of y is m_y = (m - offset)/mean_scale because x' has zero mean,
so m = offset + mean_scale m_y and x = m + fluctuation_scale (y - m_y). A channel whose spatial
mean is the same in every sample gets mean_scale = 1 (its normalized mean is then 0 up to the
data's round-off), so the map stays exactly invertible.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Sequence

import dask
import numpy as np
import xarray as xr

from sciscore.errors import UserError
from sciscore.fields.dims import field_dims

METHODS = ("standard", "minmax", "mean-spatial")
ATTRIBUTE_NAME = "sciscore_normalizer"


@dataclass(frozen=True)
class Normalizer:
    """Per-channel affine normalization, eq. (1); channels in the order of `variables`."""

    method: str
    variables: tuple[str, ...]
    offset: tuple[float, ...]
    mean_scale: tuple[float, ...]
    fluctuation_scale: tuple[float, ...]

    def _params(self, x):
        shape = (len(self.variables), 1, 1)
        if x.shape[-3] != len(self.variables):
            raise UserError(
                f"normalizer for {list(self.variables)} expects {len(self.variables)} channels, got an array "
                f"of shape {tuple(x.shape)}"
            )
        if hasattr(x, "new_tensor"):  # torch tensor: keep device and dtype
            make = lambda v: x.new_tensor(v).reshape(shape)  # noqa: E731
        else:
            make = lambda v: np.asarray(v, dtype=x.dtype).reshape(shape)  # noqa: E731
        return make(self.offset), make(self.mean_scale), make(self.fluctuation_scale)

    def apply(self, x):
        """Physical -> normalized. `x`: (..., C, H, W) torch tensor or numpy array."""
        offset, mean_scale, fluct_scale = self._params(x)
        m = x.mean(axis=(-2, -1), keepdims=True) if isinstance(x, np.ndarray) else x.mean(dim=(-2, -1), keepdim=True)
        return (m - offset) / mean_scale + (x - m) / fluct_scale

    def invert(self, y):
        """Normalized -> physical; exact inverse of `apply` up to floating-point round-off."""
        offset, mean_scale, fluct_scale = self._params(y)
        m_y = y.mean(axis=(-2, -1), keepdims=True) if isinstance(y, np.ndarray) else y.mean(dim=(-2, -1), keepdim=True)
        return offset + mean_scale * m_y + fluct_scale * (y - m_y)

    def to_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "Normalizer":
        try:
            if data["method"] not in METHODS:
                raise UserError(f"unknown normalizer method {data['method']!r}; choose one of {', '.join(METHODS)}")
            n = len(data["variables"])
            fields = {k: tuple(float(v) for v in data[k]) for k in ("offset", "mean_scale", "fluctuation_scale")}
            if any(len(v) != n for v in fields.values()):
                raise ValueError("parameter lengths differ from the number of variables")
            return cls(method=data["method"], variables=tuple(data["variables"]), **fields)
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(f"invalid normalizer description ({error}); refit it with fit_normalizer") from None

    def to_attrs(self) -> dict:
        """NetCDF global attributes that store this normalizer (one JSON string)."""
        return {ATTRIBUTE_NAME: json.dumps(self.to_dict())}

    @classmethod
    def from_attrs(cls, attrs: dict) -> "Normalizer":
        if ATTRIBUTE_NAME not in attrs:
            raise UserError(f"no {ATTRIBUTE_NAME!r} attribute found; the file was not written with a normalizer")
        return cls.from_dict(json.loads(attrs[ATTRIBUTE_NAME]))


def _nonzero(scale: float, fallback: float = 1.0) -> float:
    return scale if scale > 0 and np.isfinite(scale) else fallback


def fit_normalizer(
    ds: xr.Dataset,
    variables: Sequence[str],
    method: str = "standard",
    indices: Sequence[int] | None = None,
) -> Normalizer:
    """Fit a `Normalizer` on `ds` (optionally only the samples `indices`, e.g. the training split).

    Statistics are dask reductions computed in one pass, so the data are streamed, not loaded.
    """
    if method not in METHODS:
        raise UserError(f"unknown normalization {method!r}; choose one of {', '.join(METHODS)}")
    variables = [variables] if isinstance(variables, str) else list(variables)
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise UserError(f"variable {missing} not found; available: {', '.join(map(str, ds.data_vars))}")
    dims = field_dims(ds)
    if indices is not None:
        ds = ds.isel({dims.sample: np.asarray(indices)})
    lazy = []
    for name in variables:
        da = ds[name].astype("float64")
        m = da.mean(dims.spatial)
        fluct = da - m
        lazy.append((da.mean(), da.std(), da.min(), da.max(), m.min(), m.max(), abs(fluct).max()))
    stats = dask.compute(*lazy)
    offset, mean_scale, fluct_scale = [], [], []
    for name, values in zip(variables, stats):
        mean, std, lo, hi, m_lo, m_hi, fluct_max = (float(v) for v in values)
        if not (hi > lo):
            raise UserError(f"variable {name!r} is constant ({lo}); it cannot be normalized or learned")
        if method == "standard":
            offset.append(mean), mean_scale.append(std), fluct_scale.append(std)
        elif method == "minmax":
            offset.append((hi + lo) / 2), mean_scale.append((hi - lo) / 2), fluct_scale.append((hi - lo) / 2)
        else:
            # A constant spatial mean (up to the data's round-off) gets mean_scale 1; see module doc.
            constant_mean = (m_hi - m_lo) <= 1e-6 * fluct_max
            offset.append((m_hi + m_lo) / 2)
            mean_scale.append(1.0 if constant_mean else _nonzero((m_hi - m_lo) / 2))
            fluct_scale.append(_nonzero(fluct_max))
    return Normalizer(method, tuple(variables), tuple(offset), tuple(mean_scale), tuple(fluct_scale))
