r"""Per-sample statistics of fields: cumulants over pixels, pixel-value histograms, condensation rate.

Cumulants follow CliMAgen's `qq_plot` (StatsBase `cumulant`, population estimators over the
:math:`N = N_y N_x` pixels of one sample), with central moments :math:`m_p = \overline{x'^p}`:

.. math:: \kappa_2 = m_2, \quad \kappa_3 = m_3, \quad \kappa_4 = m_4 - 3 m_2^2,

plus the dimensionless skewness :math:`\kappa_3/\kappa_2^{3/2}` and excess kurtosis
:math:`\kappa_4/\kappa_2^2`; all vanish (but :math:`\kappa_2`) for Gaussian pixel values.
"""

from __future__ import annotations

import re

import dask.array
import numpy as np
import xarray as xr

from sciscore.diagnostics._dims import resolve_dims


def _moments_numpy(block: np.ndarray, batch: int = 8) -> np.ndarray:
    """(mean, m2, m3, m4) over the last two axes of `block` (..., ny, nx) -> (..., 4), float64."""
    ny, nx = block.shape[-2:]
    fields = np.asarray(block).reshape(-1, ny, nx)
    out = np.empty((fields.shape[0], 4))
    for start in range(0, fields.shape[0], batch):
        part = fields[start:start + batch].astype(np.float64)
        mean = part.mean(axis=(-2, -1), keepdims=True)
        part -= mean
        square = part * part
        out[start:start + batch, 0] = mean[:, 0, 0]
        out[start:start + batch, 1] = square.mean(axis=(-2, -1))
        out[start:start + batch, 2] = (square * part).mean(axis=(-2, -1))
        out[start:start + batch, 3] = (square * square).mean(axis=(-2, -1))
    return out.reshape(*block.shape[:-2], 4)


def cumulants(field: xr.DataArray, spatial_dims: tuple[str, str] | None = None) -> xr.Dataset:
    """Spatial mean and cumulants κ2–κ4 of each field over its pixels (float64, lazy on dask).

    Returns a Dataset with ``mean``, ``variance`` (κ2), ``kappa3``, ``kappa4``, ``skewness`` and
    ``excess_kurtosis``, each with the dims of `field` minus the spatial dims.
    """
    dims = resolve_dims(field, spatial_dims=spatial_dims)
    if isinstance(field.data, dask.array.Array):
        field = field.chunk({dims.y: -1, dims.x: -1})
    # one pass per chunk for all four moments (a chunk-wise kernel instead of four lazy powers of
    # the fluctuation keeps one float64 copy of the chunk in memory, not four)
    moments = xr.apply_ufunc(
        _moments_numpy, field, input_core_dims=[list(dims.spatial)], output_core_dims=[["moment"]],
        dask="parallelized", output_dtypes=[np.float64], dask_gufunc_kwargs={"output_sizes": {"moment": 4}},
    )
    mean, m2, m3, m4 = (moments.isel(moment=i, drop=True) for i in range(4))
    kappa4 = m4 - 3.0 * m2**2
    units = field.attrs.get("units")
    name = field.name or "field"
    out = xr.Dataset({
        "mean": mean,
        "variance": m2,
        "kappa3": m3,
        "kappa4": kappa4,
        "skewness": m3 / m2**1.5,
        "excess_kurtosis": kappa4 / m2**2,
    })
    descriptions = {
        "mean": ("spatial mean", units),
        "variance": ("spatial variance (kappa2)", unit_power(units, 2)),
        "kappa3": ("third cumulant over pixels", unit_power(units, 3)),
        "kappa4": ("fourth cumulant over pixels", unit_power(units, 4)),
        "skewness": ("skewness over pixels", "1"),
        "excess_kurtosis": ("excess kurtosis over pixels", "1"),
    }
    for key, (long_name, unit) in descriptions.items():
        out[key].attrs = {"long_name": f"{long_name} of {name}"}
        if unit is not None:
            out[key].attrs["units"] = unit
    return out


def unit_power(units: str | None, power: int) -> str | None:
    """UDUNITS string for `units` raised to `power` ("m" -> "m^2", "m s-1" -> "(m s-1)^2")."""
    if units is None:
        return None
    if units == "1":
        return "1"
    return f"{units}^{power}" if re.fullmatch(r"[A-Za-z_]+", units) else f"({units})^{power}"


def histogram_edges(low: float, high: float, bins: int) -> np.ndarray:
    """`bins` equal bins over [low, high] (widened by a hair when low == high)."""
    if not np.isfinite(low) or not np.isfinite(high):
        raise ValueError(f"histogram range must be finite, got [{low}, {high}]")
    if high <= low:
        pad = max(abs(low), 1.0) * 1e-6
        low, high = low - pad, high + pad
    return np.linspace(low, high, bins + 1)


def pixel_histogram(field: xr.DataArray, edges: np.ndarray) -> xr.DataArray:
    """Counts of all pixel values of all samples in the bins `edges` (bounded memory on dask).

    Returns a DataArray over dim ``pixel_bin`` with coords ``pixel_bin_center`` and the bin
    edges in attrs; values outside [edges[0], edges[-1]] are not counted (the last bin is closed,
    as in `numpy.histogram`).
    """
    data = field.data
    if isinstance(data, dask.array.Array):
        counts, _ = dask.array.histogram(data.ravel(), bins=edges)
    else:
        counts, _ = np.histogram(np.asarray(data).ravel(), bins=edges)
    centers = 0.5 * (edges[1:] + edges[:-1])
    return xr.DataArray(
        counts, dims=("pixel_bin",), coords={"pixel_bin_center": ("pixel_bin", centers)},
        name="pixel_counts",
        attrs={"long_name": f"pixel-value counts of {field.name or 'field'}", "units": "1"},
    )


def density(counts: xr.DataArray | np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Probability density from histogram counts: counts / (total · bin width)."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    return counts / (total * np.diff(edges)) if total > 0 else np.zeros_like(counts)


def condensation_rate(supersaturation: xr.DataArray, tau_c: float = 1e-2,
                      time_units: str | None = None) -> xr.DataArray:
    r"""Condensation rate :math:`s^+/\tau_c = s\,H(s)/\tau_c` of the supersaturation s (elementwise).

    The sink of the moist tracer (CliMAgen `make_icr`, τc = 1e-2 in the reference simulation):
    zero where the air is subsaturated (s ≤ 0). Units: those of s per `time_units` of τc.
    """
    if tau_c <= 0:
        raise ValueError(f"tau_c must be positive, got {tau_c}")
    rate = supersaturation.clip(min=0.0) / tau_c
    rate.name = "condensation_rate"
    rate.attrs = {"long_name": f"condensation rate s+/tau_c of {supersaturation.name or 'supersaturation'}",
                  "tau_c": tau_c}
    units = supersaturation.attrs.get("units")
    if units is not None and time_units is not None:
        rate.attrs["units"] = f"{units} {time_units}-1"
    return rate
