r"""Reynolds decomposition of fields into a mean and a fluctuation.

Two means are useful for generated fields:

- the **spatial mean** of each sample, :math:`\bar{x} = \frac{1}{N_y N_x}\sum_{ij} x_{ij}`, and the
  fluctuation :math:`x' = x - \bar{x}` about it (the color-shift view of the mean-bypass paper,
  Deck & Bischoff 2023, section 2: :math:`x = \bar{x} + x'`);
- the **ensemble mean** over samples, :math:`\langle x \rangle`, and the fluctuation
  :math:`x - \langle x \rangle` about it.

Every function takes a DataArray or Dataset and returns the same kind, lazily on dask, keeping
every non-reduced dim and coord. The identities the tests check: the fluctuation has zero mean,
and the variances add, :math:`\mathrm{Var}(x) = \mathrm{Var}(\bar{x}) + \langle \overline{x'^2} \rangle`
(population variances over all pixels of all samples).
"""

from __future__ import annotations

import xarray as xr

from sciscore.diagnostics._dims import resolve_dims

XarrayObject = xr.DataArray | xr.Dataset


def spatial_mean(field: XarrayObject, spatial_dims: tuple[str, str] | None = None) -> XarrayObject:
    """Spatial mean of each field, x̄ (dims: all but the spatial dims); attrs kept."""
    dims = resolve_dims(field, spatial_dims=spatial_dims)
    return field.mean(dims.spatial, keep_attrs=True)


def fluctuation(field: XarrayObject, spatial_dims: tuple[str, str] | None = None) -> XarrayObject:
    """Fluctuation about the spatial mean, x' = x - x̄ (same dims as `field`); attrs kept."""
    dims = resolve_dims(field, spatial_dims=spatial_dims)
    with xr.set_options(keep_attrs=True):
        return field - field.mean(dims.spatial)


def ensemble_mean(field: XarrayObject, sample_dim: str | None = None) -> XarrayObject:
    """Mean over samples, ⟨x⟩ (dims: all but the sample dim); attrs kept."""
    dims = resolve_dims(field, sample_dim=sample_dim)
    if dims.sample is None:
        raise ValueError(f"no sample dim to average over in dims {tuple(field.dims)}; pass sample_dim=")
    return field.mean(dims.sample, keep_attrs=True)


def ensemble_fluctuation(field: XarrayObject, sample_dim: str | None = None) -> XarrayObject:
    """Fluctuation about the ensemble mean, x - ⟨x⟩ (same dims as `field`); attrs kept."""
    mean = ensemble_mean(field, sample_dim=sample_dim)
    with xr.set_options(keep_attrs=True):
        return field - mean


def decompose(field: xr.DataArray, spatial_dims: tuple[str, str] | None = None) -> xr.Dataset:
    """Both parts of x = x̄ + x' as one Dataset with variables ``mean`` and ``fluctuation``."""
    mean = spatial_mean(field, spatial_dims)
    prime = fluctuation(field, spatial_dims)
    name = field.name or "field"
    mean.attrs["long_name"] = f"spatial mean of {name}"
    prime.attrs["long_name"] = f"fluctuation of {name} about its spatial mean"
    return xr.Dataset({"mean": mean, "fluctuation": prime})


class _ReynoldsAccessor:
    """``obj.reynolds``: the Reynolds decomposition as methods; each forwards to the plain function."""

    def __init__(self, xarray_obj: XarrayObject):
        self._obj = xarray_obj

    def spatial_mean(self, spatial_dims: tuple[str, str] | None = None) -> XarrayObject:
        return spatial_mean(self._obj, spatial_dims)

    def fluctuation(self, spatial_dims: tuple[str, str] | None = None) -> XarrayObject:
        return fluctuation(self._obj, spatial_dims)

    def ensemble_mean(self, sample_dim: str | None = None) -> XarrayObject:
        return ensemble_mean(self._obj, sample_dim)

    def ensemble_fluctuation(self, sample_dim: str | None = None) -> XarrayObject:
        return ensemble_fluctuation(self._obj, sample_dim)


@xr.register_dataarray_accessor("reynolds")
class ReynoldsDataArrayAccessor(_ReynoldsAccessor):
    __doc__ = _ReynoldsAccessor.__doc__

    def decompose(self, spatial_dims: tuple[str, str] | None = None) -> xr.Dataset:
        return decompose(self._obj, spatial_dims)


@xr.register_dataset_accessor("reynolds")
class ReynoldsDatasetAccessor(_ReynoldsAccessor):
    __doc__ = _ReynoldsAccessor.__doc__
