"""A diagnostics report on disk: ``diagnostics.nc``, ``summary.md`` and PNG figures.

`write_report(comparison, reference, samples, out_dir)` writes what `compare` returned;
`diagnose(reference_paths, samples_paths, out_dir)` opens the files lazily, compares and writes.
Every file is written under a temporary name and renamed, so a failed run leaves no file that
looks complete.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import xarray as xr

from sciscore.diagnostics import plots
from sciscore.diagnostics.compare import compare, summary_figures
from sciscore.errors import UserError
from sciscore.fields.io import check_writable_dir

REPORT_FILES = ("diagnostics.nc", "summary.md")

# rows of the summary table: key, label, what a good value looks like
TABLE_ROWS = (
    ("color_shift_score", "color-shift score: W1(spatial means) / reference scale", "≈ 0 (flag above threshold)"),
    ("color_shift_pvalue", "permutation p-value of W1(spatial means)", "large (not < alpha)"),
    ("w1_spatial_means", "W1 of spatial means", "≈ 0"),
    ("ks_spatial_means", "KS of spatial means", "≈ 0"),
    ("fluctuation_std_ratio", "fluctuation std ratio (generated / reference)", "≈ 1"),
    ("max_spectral_ratio", "max spectral ratio over 1 ≤ k ≤ N/4", "≈ 1"),
    ("w1_pixels", "W1 of pixel values (± w1 error bound)", "≈ 0"),
    ("w1_pixels_over_reference_std", "W1 of pixel values / reference pixel std", "≈ 0"),
    ("ks_pixels", "KS of pixel values (histogram; exact ≤ upper bound)", "≈ 0"),
    ("w1_skewness", "W1 of per-sample skewness", "≈ 0"),
    ("w1_excess_kurtosis", "W1 of per-sample excess kurtosis", "≈ 0"),
    ("condensation_rate_ratio", "mean condensation rate s⁺/τc, generated / reference", "≈ 1"),
    ("w1_condensation_rate", "W1 of per-sample mean condensation rate", "≈ 0"),
    ("mean_std_correlation_reference", "corr(spatial mean, fluctuation std), reference", "—"),
    ("mean_std_correlation_generated", "corr(spatial mean, fluctuation std), generated", "≈ reference"),
)


def _format(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.3e}"


def summary_markdown(comparison: xr.Dataset, figures: dict[str, list[str]] | None = None) -> str:
    """The summary as Markdown: one table per variable, then the quantile errors and figure links."""
    variables = comparison.attrs["variables"].split()
    lines = ["# sciscore diagnostics", ""]
    lines.append("Generated samples against the reference. Spatial-mean distances are exact; pixel-value "
                 "distances come from common fixed-bin histograms with the error bounds given. "
                 "Spectrum: " + comparison.attrs.get("spectrum_convention", "") + ".")
    for name in variables:
        figures_of = summary_figures(comparison, name)
        score = comparison[f"{name}_color_shift_score"]
        n_ref = comparison[f"{name}_spatial_mean_reference"].size
        n_gen = comparison[f"{name}_spatial_mean_generated"].size
        verdict = "**COLOR SHIFT**" if figures_of["color_shift_flag"] else "no color shift"
        units = comparison[f"{name}_w1_spatial_means"].attrs.get("units", "")
        lines += ["", f"## {name}", "",
                  f"{n_ref} reference and {n_gen} generated samples; verdict: {verdict} "
                  f"(a color shift is flagged when score > {score.attrs['threshold']} and p < {score.attrs['alpha']}; "
                  f"score normalised by "
                  f"the {score.attrs['color_shift_normalizer']}). Units: {units or 'those of the field'}.",
                  "", "| figure | value | good when |", "|---|---|---|"]
        for key, label, good in TABLE_ROWS:
            if key not in figures_of:
                continue
            value = _format(figures_of[key])
            if key == "w1_pixels":
                value += f" ± {_format(figures_of['w1_pixels_error_bound'])}"
            if key == "ks_pixels":
                value += f" (≤ {_format(figures_of['ks_pixels_upper_bound'])})"
            lines.append(f"| {label} | {value} | {good} |")
        probabilities = comparison["probability"].values
        lines += ["", "Quantile errors (generated − reference; normalised by the reference std):", "",
                  "| quantile | spatial means | normalised | pixels | normalised |", "|---|---|---|---|---|"]
        for i, p in enumerate(probabilities):
            row = [comparison[f"{name}_quantile_error_{kind}"].values[i]
                   for kind in ("spatial_means", "spatial_means_normalized", "pixels", "pixels_normalized")]
            lines.append(f"| {100 * p:g}% | " + " | ".join(_format(float(v)) for v in row) + " |")
        if figures and figures.get(name):
            lines += [""] + [f"![{Path(f).stem}]({f})" for f in figures[name]]
    lines.append("")
    return "\n".join(lines)


def _write_netcdf(comparison: xr.Dataset, path: Path) -> None:
    from sciscore.fields.io import cf_global_attrs

    out = comparison.copy()
    out.attrs = cf_global_attrs(comparison, title="sciscore diagnostics: generated samples against reference")
    encoding = {name: {"zlib": True, "complevel": 4, "_FillValue": None} for name in out.data_vars}
    encoding.update({name: {"_FillValue": None} for name in out.coords})
    for name in out.data_vars:  # 0-d variables cannot be compressed
        if out[name].ndim == 0:
            encoding[name] = {"_FillValue": None}
    out.to_netcdf(path, engine="netcdf4", format="NETCDF4", encoding=encoding)


def _figures(comparison: xr.Dataset, reference: xr.Dataset, samples: xr.Dataset, name: str,
             folder: Path) -> list[str]:
    """Draw the five figures of variable `name` into `folder`; return their file names."""
    units = reference[name].attrs.get("units")
    c = {key.removeprefix(f"{name}_"): comparison[key] for key in comparison.data_vars if key.startswith(f"{name}_")}
    drawn = {
        f"{name}_samples.png": lambda: plots.sample_grid(reference[name], samples[name]),
        f"{name}_spatial_means.png": lambda: plots.spatial_mean_histograms(
            c["spatial_mean_reference"], c["spatial_mean_generated"], name, units),
        f"{name}_spectra.png": lambda: plots.spectra_with_bands(
            comparison["wavenumber"].values,
            {k: c[f"spectrum_{k}_reference"] for k in ("mean", "lower", "upper")},
            {k: c[f"spectrum_{k}_generated"] for k in ("mean", "lower", "upper")}, name),
        f"{name}_cumulant_qq.png": lambda: plots.cumulant_qq(
            {label: (c[f"qq_{key}_reference"], c[f"qq_{key}_generated"])
             for key, label in (("variance", "variance κ2"), ("kappa3", "κ3"), ("kappa4", "κ4"))}, name),
        f"{name}_pixel_pdf.png": lambda: plots.pixel_pdfs(
            comparison[f"{name}_pixel_value"].values, c["pixel_density_reference"],
            c["pixel_density_generated"], name, units),
    }
    for file_name, draw in drawn.items():
        plots.save(draw(), folder / file_name)
    return list(drawn)


def check_report_dir(out_dir, overwrite: bool = False) -> Path:
    """`out_dir` can take a report: creatable/writable, and holding no report unless `overwrite`."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} exists and is not a directory; give a directory for the report")
    if out_dir.is_dir() and any((out_dir / f).exists() for f in REPORT_FILES) and not overwrite:
        raise UserError(f"{out_dir} already holds a report; pass --overwrite to replace it")
    return check_writable_dir(out_dir)  # the directory, or its nearest existing ancestor, is writable


def write_report(comparison: xr.Dataset, reference: xr.Dataset, samples: xr.Dataset, out_dir,
                 overwrite: bool = False) -> Path:
    """Write ``diagnostics.nc``, ``summary.md`` and ``<variable>_*.png`` into `out_dir` (created).

    Returns the report directory. Files are written in a temporary folder inside `out_dir`, then
    renamed into place one by one.
    """
    out_dir = check_report_dir(out_dir, overwrite)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the report directory {out_dir} ({error.strerror}); choose another -o") from None
    staging = Path(tempfile.mkdtemp(prefix=".sciscore-report-", dir=out_dir))
    try:
        figures = {name: _figures(comparison, reference, samples, name, staging)
                   for name in comparison.attrs["variables"].split()}
        _write_netcdf(comparison, staging / "diagnostics.nc")
        (staging / "summary.md").write_text(summary_markdown(comparison, figures), encoding="utf-8")
        for item in sorted(staging.iterdir(), key=lambda p: p.name == "summary.md"):  # summary last
            os.replace(item, out_dir / item.name)
    finally:
        for item in staging.glob("*"):
            item.unlink()
        staging.rmdir()
    return out_dir


def diagnose(reference_paths, samples_paths, out_dir, variables=None, *, overwrite: bool = False,
             sample_dim=None, spatial_dims=None, progress: bool = True, **options) -> xr.Dataset:
    """Open reference and samples files lazily, `compare` them and `write_report`; return the comparison."""
    from sciscore.fields.io import open_fields

    check_report_dir(out_dir, overwrite)
    reference = open_fields(reference_paths, variables, sample_dim=sample_dim, spatial_dims=spatial_dims)
    samples = open_fields(samples_paths, variables, sample_dim=sample_dim, spatial_dims=spatial_dims)
    if variables is None:
        variables = [v for v in reference.data_vars if v in samples.data_vars]
        if not variables:
            raise UserError(f"the reference ({', '.join(map(str, reference.data_vars))}) and the samples "
                            f"({', '.join(map(str, samples.data_vars))}) share no variable; name one with --variable")
    comparison = compare(reference, samples, variables, sample_dim=sample_dim, spatial_dims=spatial_dims,
                         progress=progress, **options)
    write_report(comparison, reference, samples, out_dir, overwrite=overwrite)
    return comparison


__all__ = ["check_report_dir", "diagnose", "summary_markdown", "write_report"]
