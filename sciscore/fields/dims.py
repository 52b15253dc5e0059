"""Which dimensions of a dataset are the sample dimension and the two spatial dimensions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import xarray as xr

from sciscore.errors import UserError

SAMPLE_DIM_NAMES = ("sample", "time", "member", "ensemble", "realization", "t")
Y_DIM_NAMES = ("y", "lat", "latitude", "rlat", "south_north", "j")
X_DIM_NAMES = ("x", "lon", "longitude", "rlon", "west_east", "i")


@dataclass(frozen=True)
class FieldDims:
    """Names of the sample dimension and the spatial dimensions (y, x) of a field dataset."""

    sample: str
    y: str
    x: str

    @property
    def spatial(self) -> tuple[str, str]:
        return (self.y, self.x)

    @property
    def all(self) -> tuple[str, str, str]:
        return (self.sample, self.y, self.x)


def _pick(dims: Sequence[str], candidates: Sequence[str]) -> str | None:
    lowered = {d.lower(): d for d in dims}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    return None


def field_dims(
    obj: xr.Dataset | xr.DataArray,
    sample_dim: str | None = None,
    spatial_dims: Sequence[str] | None = None,
) -> FieldDims:
    """Recognise the sample and spatial dimensions of `obj`.

    Defaults look for `sample`/`time`/`member`/... and `y`/`lat`/..., `x`/`lon`/...; pass
    `sample_dim` or `spatial_dims=(y, x)` to name them explicitly.
    """
    dims = list(obj.dims)
    if spatial_dims is not None:
        if len(spatial_dims) != 2:
            raise UserError(f"spatial_dims must name two dimensions (y, x), got {list(spatial_dims)}")
        y, x = spatial_dims
        missing = [d for d in (y, x) if d not in dims]
        if missing:
            raise UserError(f"spatial dimension(s) {', '.join(map(repr, missing))} not found; the dimensions "
                            f"are {dims}")
    else:
        y, x = _pick(dims, Y_DIM_NAMES), _pick(dims, X_DIM_NAMES)
    if y is None or x is None or y not in dims or x not in dims:
        raise UserError(
            f"cannot find two spatial dimensions among {dims}; name them with spatial_dims=(y, x) "
            f"(or --spatial-dims Y X)"
        )
    if sample_dim is None:
        sample_dim = _pick([d for d in dims if d not in (y, x)], SAMPLE_DIM_NAMES)
        if sample_dim is None:
            others = [d for d in dims if d not in (y, x)]
            if len(others) != 1:
                raise UserError(
                    f"cannot tell the sample dimension among {others or dims}; name it with "
                    f"sample_dim=... (or --sample-dim NAME)"
                )
            sample_dim = others[0]
    elif sample_dim not in dims:
        raise UserError(f"sample dimension {sample_dim!r} not found; the dimensions are {dims}")
    return FieldDims(sample=sample_dim, y=y, x=x)
