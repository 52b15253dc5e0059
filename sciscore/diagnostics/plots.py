"""Figures of a comparison (matplotlib): each function returns a `matplotlib.figure.Figure`.

Figures are built without pyplot, so importing this module never changes the user's backend and
no global figure state leaks (saving uses the Agg canvas).

`sample_grid` draws maps with cartopy when the fields have lat/lon coordinates and cartopy is
installed (extra ``maps``); coastlines come from Debian's ``python-cartopy-data`` GSHHS folder
when present, and are left out otherwise (a missing coastline never breaks a report).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from sciscore.diagnostics._dims import resolve_dims

log = logging.getLogger(__name__)

REFERENCE_COLOR, GENERATED_COLOR = "tab:blue", "tab:orange"
CARTOPY_DATA_DIRS = ("/usr/share/cartopy/data", "/usr/local/share/cartopy/data")
LAT_NAMES, LON_NAMES = ("lat", "latitude"), ("lon", "longitude")


def _lat_lon(field: xr.DataArray):
    lat = next((field[n] for n in LAT_NAMES if n in field.coords), None)
    lon = next((field[n] for n in LON_NAMES if n in field.coords), None)
    return (lat, lon) if lat is not None and lon is not None else (None, None)


def _cartopy():
    try:
        import cartopy
        import cartopy.crs as ccrs
        import cartopy.feature as cfeature
    except ImportError:
        return None
    for folder in CARTOPY_DATA_DIRS:
        if os.path.isdir(folder):
            cartopy.config["pre_existing_data_dir"] = folder
            break
    return ccrs, cfeature


def sample_grid(reference: xr.DataArray, generated: xr.DataArray, n: int = 4) -> Figure:
    """The first `n` reference fields (top row) and generated fields (bottom row), one colour scale."""
    ref_dims = resolve_dims(reference)
    gen_dims = resolve_dims(generated)
    ref = reference.isel({ref_dims.sample: slice(0, n)}).load()
    gen = generated.isel({gen_dims.sample: slice(0, n)}).load()
    columns = max(ref.sizes[ref_dims.sample], gen.sizes[gen_dims.sample])
    values = np.concatenate([ref.values.ravel(), gen.values.ravel()])
    low, high = np.nanpercentile(values, [1, 99]) if values.size else (0.0, 1.0)
    lat, lon = _lat_lon(reference)
    cartopy = _cartopy() if lat is not None else None
    subplot_kw = {"projection": cartopy[0].PlateCarree()} if cartopy else {}
    figure = Figure(figsize=(2.6 * columns, 5.4), layout="constrained")
    axes = figure.subplots(2, columns, squeeze=False, subplot_kw=subplot_kw)
    image = None
    for row, (fields, dims, label) in enumerate(((ref, ref_dims, "reference"), (gen, gen_dims, "generated"))):
        for column in range(columns):
            ax = axes[row, column]
            if column >= fields.sizes[dims.sample]:
                ax.set_axis_off()
                continue
            field = fields.isel({dims.sample: column}).transpose(dims.y, dims.x)
            if cartopy:
                image = ax.pcolormesh(lon.values, lat.values, field.values, vmin=low, vmax=high,
                                      cmap="RdBu_r", transform=cartopy[0].PlateCarree(), shading="auto")
                _coastlines(ax, cartopy[1])
            else:
                image = ax.imshow(field.values, origin="lower", vmin=low, vmax=high, cmap="RdBu_r")
                ax.set_xticks([])
                ax.set_yticks([])
            ax.set_title(f"{label} {column}", fontsize=9)
    if image is not None:
        label = reference.name or "field"
        units = reference.attrs.get("units")
        figure.colorbar(image, ax=axes, shrink=0.8, label=f"{label} ({units})" if units else str(label))
    return figure


def _coastline_file_exists() -> bool:
    """True when the coarse GSHHS coastline is on disk (cartopy would otherwise download it at draw time)."""
    import cartopy
    from cartopy.io import Downloader

    downloader = Downloader.from_config(("shapefiles", "gshhs", "c", 1))
    format_dict = {"config": cartopy.config, "scale": "c", "level": 1}
    found = downloader.pre_downloaded_path(format_dict)
    return (found is not None and Path(found).exists()) or Path(downloader.target_path(format_dict)).exists()


def _coastlines(ax, cfeature) -> None:
    # the feature is read lazily when the figure is drawn, so check for the file first: offline, a
    # missing coastline must not become a failed download inside savefig
    try:
        available = _coastline_file_exists()
    except Exception as error:  # an unexpected cartopy layout: draw the map without coastlines
        log.info("no coastlines drawn (%s)", error)
        return
    if available:
        ax.add_feature(cfeature.GSHHSFeature(scale="c"), linewidth=0.5)
    else:
        log.info("no coastlines drawn: GSHHS data not found (install Debian's python-cartopy-data)")


def spatial_mean_histograms(reference_means, generated_means, name: str, units: str | None = None,
                            bins: int = 30) -> Figure:
    """Histograms (densities) of the per-sample spatial means of both sets."""
    ref, gen = np.asarray(reference_means, float), np.asarray(generated_means, float)
    both = np.concatenate([ref, gen])
    low, high = float(both.min()), float(both.max())
    if high <= low:
        low, high = low - 0.5 * max(abs(low), 1e-12), high + 0.5 * max(abs(high), 1e-12)
    edges = np.linspace(low, high, bins + 1)
    figure = Figure(figsize=(5, 3.5), layout="constrained")
    ax = figure.subplots()
    ax.hist(ref, bins=edges, density=True, histtype="step", color=REFERENCE_COLOR, label="reference")
    ax.hist(gen, bins=edges, density=True, histtype="step", color=GENERATED_COLOR, label="generated")
    ax.set_xlabel(f"spatial mean of {name}" + (f" ({units})" if units else ""))
    ax.set_ylabel("density")
    ax.legend()
    return figure


def spectra_with_bands(wavenumber, reference_bands: dict, generated_bands: dict, name: str) -> Figure:
    """Mean spectra of both sets with their quantile bands, log-log over k >= 1.

    Each of `reference_bands`, `generated_bands` maps ``mean``, ``lower``, ``upper`` to arrays.
    """
    k = np.asarray(wavenumber)
    keep = k >= 1
    figure = Figure(figsize=(5, 3.8), layout="constrained")
    ax = figure.subplots()
    for bands, color, label in ((reference_bands, REFERENCE_COLOR, "reference"),
                                (generated_bands, GENERATED_COLOR, "generated")):
        ax.fill_between(k[keep], np.asarray(bands["lower"])[keep], np.asarray(bands["upper"])[keep],
                        color=color, alpha=0.25, linewidth=0)
        ax.plot(k[keep], np.asarray(bands["mean"])[keep], color=color, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("wavenumber k")
    ax.set_ylabel(f"E(k) of {name}")
    ax.legend(title="mean, 10-90% band")
    return figure


def cumulant_qq(qq_pairs: dict, name: str) -> Figure:
    """QQ plots, one panel per statistic: `qq_pairs` maps a label to (reference, generated) quantiles."""
    figure = Figure(figsize=(3.6 * len(qq_pairs), 3.6), layout="constrained")
    axes = figure.subplots(1, len(qq_pairs), squeeze=False)
    for ax, (label, (ref, gen)) in zip(axes[0], qq_pairs.items()):
        ref, gen = np.asarray(ref, float), np.asarray(gen, float)
        ax.plot(ref, gen, ".", color=GENERATED_COLOR, markersize=3)
        both = np.concatenate([ref, gen])
        ax.plot([both.min(), both.max()], [both.min(), both.max()], color="k", linewidth=0.8)
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"generated {label}")
        ax.set_title(f"{name}: {label}", fontsize=9)
    return figure


def pixel_pdfs(values, reference_density, generated_density, name: str, units: str | None = None) -> Figure:
    """Pixel-value probability densities of both sets (log y)."""
    figure = Figure(figsize=(5, 3.5), layout="constrained")
    ax = figure.subplots()
    values = np.asarray(values)
    for density, color, label in ((reference_density, REFERENCE_COLOR, "reference"),
                                  (generated_density, GENERATED_COLOR, "generated")):
        density = np.asarray(density, float)
        ax.plot(values, np.where(density > 0, density, np.nan), color=color, label=label)
    ax.set_yscale("log")
    ax.set_xlabel(f"{name}" + (f" ({units})" if units else ""))
    ax.set_ylabel("probability density")
    ax.legend()
    return figure


def save(figure: Figure, path) -> None:
    """Write `figure` as PNG (Agg canvas)."""
    figure.savefig(path, dpi=110)
