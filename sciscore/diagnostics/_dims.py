"""Which dims of a field are the sample dim and the two spatial dims.

The data layer (`sciscore.fields.field_dims`) owns the rule; this module forwards to it and adds
the one case it does not cover: a single 2-D field with no sample dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import xarray as xr

from sciscore.errors import UserError


@dataclass(frozen=True)
class Dims:
    """Names of the sample dim (None for a single field) and the spatial dims (y, x)."""

    sample: str | None
    y: str
    x: str

    @property
    def spatial(self) -> tuple[str, str]:
        return (self.y, self.x)


def _fallback(obj, sample_dim, spatial_dims) -> Dims:
    dims = list(obj.dims)
    if spatial_dims is None:
        if len(dims) < 2:
            raise UserError(f"a field needs two spatial dims, but found dims {tuple(dims)}; pass spatial_dims=(y, x)")
        spatial_dims = tuple(dims[-2:])
    y, x = spatial_dims
    for name in (y, x):
        if name not in dims:
            raise UserError(f"spatial dim {name!r} does not exist; expected one of {tuple(dims)}")
    if sample_dim is None:
        others = [d for d in dims if d not in (y, x)]
        sample_dim = others[0] if others else None
    elif sample_dim not in dims:
        raise UserError(f"sample dim {sample_dim!r} does not exist; expected one of {tuple(dims)}")
    return Dims(sample_dim, y, x)


def resolve_dims(obj: xr.DataArray | xr.Dataset, sample_dim: str | None = None,
                 spatial_dims: tuple[str, str] | None = None) -> Dims:
    """The sample and spatial dim names of `obj`, from `sciscore.fields.field_dims`.

    Explicit `sample_dim` / `spatial_dims` always win.
    """
    from sciscore.fields.dims import field_dims

    if len(obj.dims) == 2 and sample_dim is None:  # a single field: no sample dim
        y, x = spatial_dims if spatial_dims is not None else obj.dims
        return _fallback(obj, None, (y, x))
    found = field_dims(obj, sample_dim=sample_dim, spatial_dims=spatial_dims)
    return Dims(found.sample, found.y, found.x)
