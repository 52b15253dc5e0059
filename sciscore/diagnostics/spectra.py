r"""Radially averaged (shell-summed) power spectrum of the fluctuation, per sample.

Convention (periodic fields on [0, 2π)², so wavenumbers are integers; on another periodic
domain read k in units of 2π/L). With :math:`x'` the fluctuation about the spatial mean and

.. math:: \hat{x}_{\mathbf{k}} = \frac{1}{N_y N_x} \sum_{j} x'_j \, e^{-i \mathbf{k}\cdot\mathbf{r}_j}

(`numpy.fft.fft2` divided by the number of pixels), shell k collects every mode with
:math:`k - 1/2 \le |\mathbf{k}| < k + 1/2` and **sums** (does not average) its power:

.. math:: E(k) = \sum_{k - 1/2 \le |\mathbf{k}| < k + 1/2} |\hat{x}_{\mathbf{k}}|^2 ,
   \qquad \sum_k E(k) = \overline{x'^2} \quad \text{(Parseval)}.

So the spectrum sums to the spatial variance of the field and a single Fourier mode
:math:`a\cos(\mathbf{k}_0\cdot\mathbf{r})` puts :math:`a^2/2` into shell :math:`\mathrm{round}(|\mathbf{k}_0|)`.
Shells run from 0 to the largest |k| on the grid (the corners, ≈ N/√2), so no power is lost;
shell 0 holds only the zero mode, which the fluctuation does not have. CliMAgen's
`power_spectrum2d` averages over the shell instead; multiply by the number of modes per shell
(`shell_mode_counts`) to convert.
"""

from __future__ import annotations

import dask.array
import numpy as np
import scipy.sparse
import xarray as xr

from sciscore.diagnostics._dims import resolve_dims
from sciscore.diagnostics.statistics import unit_power
from sciscore.fields.wavenumbers import integer_wavenumbers, shell_index, shell_mode_counts  # noqa: F401  (re-exported)

WAVENUMBER_DIM = "wavenumber"


def _shell_matrix(ny: int, nx: int) -> scipy.sparse.csr_matrix:
    """Sparse (n_shells, ny·nx) 0/1 matrix that sums mode power into shells."""
    shells = shell_index(ny, nx).ravel()
    n_modes = shells.size
    return scipy.sparse.csr_matrix(
        (np.ones(n_modes), (shells, np.arange(n_modes))), shape=(shells.max() + 1, n_modes)
    )


def _spectrum_numpy(block: np.ndarray, batch: int = 8) -> np.ndarray:
    """E(k) of every field in `block` (..., ny, nx) -> (..., n_shells), float64.

    Works on `batch` fields at a time so the complex FFT temporaries stay small.
    """
    ny, nx = block.shape[-2:]
    fields = np.asarray(block).reshape(-1, ny, nx)
    shell_matrix = _shell_matrix(ny, nx)
    out = np.empty((fields.shape[0], shell_matrix.shape[0]))
    for start in range(0, fields.shape[0], batch):
        part = fields[start:start + batch].astype(np.float64)
        part -= part.mean(axis=(-2, -1), keepdims=True)
        power = np.abs(np.fft.fft2(part)) ** 2 / float(ny * nx) ** 2
        out[start:start + batch] = (shell_matrix @ power.reshape(-1, ny * nx).T).T
    return out.reshape(*block.shape[:-2], -1)


def power_spectrum(field: xr.DataArray, spatial_dims: tuple[str, str] | None = None) -> xr.DataArray:
    """Shell-summed power spectrum E(k) of the fluctuation of each field (see the module doc).

    Parameters
    ----------
    field : DataArray (..., y, x)
        Periodic fields; numpy or dask (lazy; the spatial dims are rechunked to one chunk).
    spatial_dims : (y, x), optional
        Default from `sciscore.fields.field_dims`.

    Returns
    -------
    DataArray (..., wavenumber), units of field squared
        Non-spatial dims and coords kept; ``wavenumber`` coord 0..kmax (integers).
    """
    dims = resolve_dims(field, spatial_dims=spatial_dims)
    ny, nx = field.sizes[dims.y], field.sizes[dims.x]
    n_shells = int(shell_index(ny, nx).max()) + 1
    if isinstance(field.data, dask.array.Array):
        field = field.chunk({dims.y: -1, dims.x: -1})
    spectrum = xr.apply_ufunc(
        _spectrum_numpy, field,
        input_core_dims=[list(dims.spatial)], output_core_dims=[[WAVENUMBER_DIM]],
        dask="parallelized", output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {WAVENUMBER_DIM: n_shells}},
    )
    spectrum = spectrum.drop_vars([c for c in spectrum.coords if set(spectrum[c].dims) & set(dims.spatial)],
                                  errors="ignore")
    spectrum = spectrum.assign_coords({WAVENUMBER_DIM: np.arange(n_shells)})
    spectrum[WAVENUMBER_DIM].attrs = {"long_name": "shell wavenumber |k| (units of 2 pi / domain length)",
                                      "units": "1"}
    units = field.attrs.get("units")
    spectrum.name = "power_spectrum"
    spectrum.attrs = {"long_name": f"shell-summed power spectrum of the fluctuation of {field.name or 'field'}"}
    if units is not None:
        spectrum.attrs["units"] = unit_power(units, 2)
    return spectrum


def spectrum_bands(spectra: xr.DataArray, sample_dim: str, quantiles: tuple[float, float] = (0.1, 0.9)) -> xr.Dataset:
    """Mean spectrum over samples and the `quantiles` band (default 10–90 %), as a Dataset.

    Variables ``mean``, ``lower``, ``upper`` with dims of `spectra` minus `sample_dim`. The spectra
    are small (samples × shells), so they are loaded for the quantiles.
    """
    lower_q, upper_q = quantiles
    if not 0.0 <= lower_q < upper_q <= 1.0:
        raise ValueError(f"quantiles must satisfy 0 <= lower < upper <= 1, got {quantiles}")
    loaded = spectra.load()
    band = loaded.quantile([lower_q, upper_q], dim=sample_dim).drop_vars("quantile")
    out = xr.Dataset({
        "mean": loaded.mean(sample_dim),
        "lower": band.isel(quantile=0),
        "upper": band.isel(quantile=1),
    })
    out.attrs = {"lower_quantile": lower_q, "upper_quantile": upper_q}
    return out
