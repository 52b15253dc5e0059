"""`compare`: every diagnostic of a generated set against a reference set, as one xr.Dataset.

Streaming: each variable takes two passes over the data (dask, one chunk of samples at a time):
pass 1 computes per-sample cumulants, per-sample spectra and the value range; pass 2 counts
pixel values of both sets in common fixed bins. Only per-sample numbers (samples × shells) and
histograms are held in memory, so the inputs may be larger than memory.

The result has one group of variables per field variable ``v``, named ``{v}_<statistic>``, with
dims ``reference_sample``, ``generated_sample``, ``wavenumber``, ``probability``,
``qq_probability`` and ``{v}_pixel_bin``; scalars are 0-d variables. `summary_figures` reads the
scalars back as a dict.
"""

from __future__ import annotations

import dask.array
import numpy as np
import xarray as xr

from sciscore.diagnostics import distances
from sciscore.diagnostics._dims import resolve_dims
from sciscore.diagnostics._progress import compute
from sciscore.diagnostics.spectra import power_spectrum, spectrum_bands
from sciscore.diagnostics.statistics import (condensation_rate, cumulants, density, histogram_edges, pixel_histogram,
                                             unit_power)
from sciscore.errors import UserError

CUMULANT_NAMES = ("variance", "kappa3", "kappa4", "skewness", "excess_kurtosis")
QQ_PROBABILITIES = np.linspace(0.01, 0.99, 99)
DEFAULT_BINS = 1000
DEFAULT_TAU_C = 1e-2  # the reference simulation's condensation time (CliMAgen `make_icr`)
CONDENSATION_TIMESCALE = "condensation_timescale"  # variable attribute: tau_c of a supersaturation field
DEFAULT_CONDENSING = ("supersaturation",)  # taken as supersaturation when no variable has the attribute
CHUNK_BYTES = 64 * 2**20

# Scalars reported per variable: name -> (long name, units relation to the field: 0 none, 1 same)
SCALARS = {
    "color_shift_score": ("W1 of spatial means over the reference scale (see color_shift_normalizer)", 0),
    "color_shift_pvalue": ("permutation-test p-value of W1 of spatial means", 0),
    "color_shift_flag": ("1 when the spatial means are shifted: score > threshold and p < alpha", 0),
    "w1_spatial_means": ("Wasserstein-1 distance of spatial means", 1),
    "ks_spatial_means": ("Kolmogorov-Smirnov statistic of spatial means", 0),
    "reference_std_spatial_means": ("std of reference spatial means", 1),
    "fluctuation_std_reference": ("rms fluctuation about the spatial mean, reference", 1),
    "fluctuation_std_generated": ("rms fluctuation about the spatial mean, generated", 1),
    "fluctuation_std_ratio": ("generated over reference rms fluctuation", 0),
    "max_spectral_ratio": ("largest factor between mean spectra over 1 <= k <= N/4", 0),
    "w1_pixels": ("Wasserstein-1 distance of pixel values (histogram)", 1),
    "w1_pixels_error_bound": ("bound on the histogram error of w1_pixels (one bin width)", 1),
    "w1_pixels_over_reference_std": ("w1_pixels over the reference pixel std", 0),
    "ks_pixels": ("Kolmogorov-Smirnov statistic of pixel values at the bin edges (lower bound)", 0),
    "ks_pixels_upper_bound": ("upper bound on the exact pixel KS statistic", 0),
    "pixel_std_reference": ("std of all reference pixel values", 1),
    "w1_skewness": ("Wasserstein-1 distance of per-sample skewness", 0),
    "w1_excess_kurtosis": ("Wasserstein-1 distance of per-sample excess kurtosis", 0),
    "mean_std_correlation_reference": ("correlation of spatial mean and fluctuation std over reference samples", 0),
    "mean_std_correlation_generated": ("correlation of spatial mean and fluctuation std over generated samples", 0),
}
# only for a supersaturation (compare_variable with tau_c); units: those of s per unit time
CONDENSATION_SCALARS = {
    "w1_condensation_rate": ("Wasserstein-1 distance of per-sample mean condensation rate s+/tau_c", 2),
    "condensation_rate_ratio": ("generated over reference mean condensation rate", 0),
}


def _as_field(ds: xr.Dataset, name: str, where: str, sample_dim, spatial_dims):
    if name not in ds.data_vars:
        raise UserError(f"variable {name!r} not found in {where}; available: {', '.join(map(str, ds.data_vars)) or 'none'}")
    field = ds[name]
    dims = resolve_dims(field, sample_dim=sample_dim, spatial_dims=spatial_dims)
    if dims.sample is None or field.ndim != 3:
        raise UserError(f"variable {name!r} in {where} has dims {field.dims}; expected (sample, y, x)")
    field = field.transpose(dims.sample, dims.y, dims.x)
    if not isinstance(field.data, dask.array.Array):
        per_sample = field.sizes[dims.y] * field.sizes[dims.x] * field.dtype.itemsize
        field = field.chunk({dims.sample: max(1, CHUNK_BYTES // per_sample), dims.y: -1, dims.x: -1})
    else:
        field = field.chunk({dims.y: -1, dims.x: -1})
    return field, dims


def _check_same_grid(name, reference, ref_dims, generated, gen_dims):
    ref_shape = (reference.sizes[ref_dims.y], reference.sizes[ref_dims.x])
    gen_shape = (generated.sizes[gen_dims.y], generated.sizes[gen_dims.x])
    if ref_shape != gen_shape:
        raise UserError(f"variable {name!r}: the reference grid is {ref_shape} but the samples grid is "
                        f"{gen_shape}; compare fields on the same grid")
    for ref_dim, gen_dim in zip(ref_dims.spatial, gen_dims.spatial):
        if ref_dim in reference.coords and gen_dim in generated.coords:
            a, b = reference[ref_dim].values, generated[gen_dim].values
            if np.issubdtype(a.dtype, np.number) and np.issubdtype(b.dtype, np.number) and not np.allclose(a, b):
                raise UserError(f"variable {name!r}: the {ref_dim!r} coordinates of the reference and the "
                                f"samples differ; compare fields on the same grid")


def _per_sample(values: xr.DataArray, sample_dim: str, new_dim: str) -> xr.DataArray:
    out = values.rename({sample_dim: new_dim})
    return out.drop_vars(list(out.coords))


def compare_variable(reference: xr.DataArray, generated: xr.DataArray, *, sample_dim=None,
                     spatial_dims=None, bins: int = DEFAULT_BINS,
                     probabilities=distances.QUANTILE_PROBABILITIES, band=(0.1, 0.9),
                     color_shift_threshold: float = 0.3, alpha: float = 0.01,
                     n_permutations: int = 200, seed: int = 0, tau_c: float | None = None,
                     progress: bool = True) -> xr.Dataset:
    """All diagnostics of one variable (DataArrays (sample, y, x) on the same grid); names unprefixed.

    With `tau_c`, the variable is a supersaturation s and the per-sample mean condensation rate
    mean(s⁺)/τc of both sets is compared too.
    """
    name = str(reference.name or "field")
    ref, ref_dims = _as_field(reference.to_dataset(name=name), name, "the reference", sample_dim, spatial_dims)
    gen, gen_dims = _as_field(generated.to_dataset(name=name), name, "the samples", sample_dim, spatial_dims)
    _check_same_grid(name, ref, ref_dims, gen, gen_dims)
    units = reference.attrs.get("units")

    # pass 1: per-sample cumulants and spectra, and the value range of both sets
    ref_stats, gen_stats = cumulants(ref, ref_dims.spatial), cumulants(gen, gen_dims.spatial)
    if tau_c is not None:
        ref_stats["condensation_rate"] = condensation_rate(ref.astype("float64"), tau_c).mean(ref_dims.spatial)
        gen_stats["condensation_rate"] = condensation_rate(gen.astype("float64"), tau_c).mean(gen_dims.spatial)
    ref_spectra, gen_spectra = power_spectrum(ref, ref_dims.spatial), power_spectrum(gen, gen_dims.spatial)
    ref_stats, gen_stats, ref_spectra, gen_spectra, extremes, non_finite = compute(
        ref_stats, gen_stats, ref_spectra, gen_spectra,
        [(ref.min(), ref.max()), (gen.min(), gen.max())],
        [(~np.isfinite(ref)).sum(), (~np.isfinite(gen)).sum()],
        description=f"{name}: moments and spectra", progress=progress)
    for count, where in zip(non_finite, ("the reference", "the samples")):
        if int(count):
            raise UserError(f"variable {name!r} in {where} has {int(count)} non-finite value(s) (NaN or inf); "
                            f"remove or fill those samples")
    low = min(float(pair[0]) for pair in extremes)
    high = max(float(pair[1]) for pair in extremes)

    # pass 2: pixel histograms in common bins
    edges = histogram_edges(low, high, bins)
    ref_counts, gen_counts = compute(pixel_histogram(ref, edges), pixel_histogram(gen, edges),
                                     description=f"{name}: pixel histograms", progress=progress)

    out = xr.Dataset()
    for source, stats, dims in (("reference", ref_stats, ref_dims), ("generated", gen_stats, gen_dims)):
        sample = f"{source}_sample"
        out[f"spatial_mean_{source}"] = _per_sample(stats["mean"], dims.sample, sample)
        for key in CUMULANT_NAMES + (("condensation_rate",) if tau_c is not None else ()):
            out[f"{key}_{source}"] = _per_sample(stats[key], dims.sample, sample)
    ref_bands = spectrum_bands(ref_spectra, ref_dims.sample, band)
    gen_bands = spectrum_bands(gen_spectra, gen_dims.sample, band)
    out["spectrum_reference"] = _per_sample(ref_spectra, ref_dims.sample, "reference_sample")
    out["spectrum_generated"] = _per_sample(gen_spectra, gen_dims.sample, "generated_sample")
    for key in ("mean", "lower", "upper"):
        out[f"spectrum_{key}_reference"] = ref_bands[key]
        out[f"spectrum_{key}_generated"] = gen_bands[key]
    wavenumber = ref_spectra["wavenumber"].values
    log_ratio = distances.spectral_log10_ratio(ref_bands["mean"], gen_bands["mean"])
    out["spectral_log10_ratio"] = ("wavenumber", log_ratio)
    out = out.assign_coords(wavenumber=ref_spectra["wavenumber"])

    pixel_dim = f"{name}_pixel_bin"
    centers = 0.5 * (edges[1:] + edges[:-1])
    out = out.assign_coords({f"{name}_pixel_value": (pixel_dim, centers)})
    out[f"{name}_pixel_value"].attrs = {"long_name": f"pixel-value bin centre of {name}",
                                        "bin_width": float(edges[1] - edges[0])}
    if units is not None:
        out[f"{name}_pixel_value"].attrs["units"] = units
    for source, counts in (("reference", ref_counts), ("generated", gen_counts)):
        out[f"pixel_counts_{source}"] = (pixel_dim, np.asarray(counts))
        out[f"pixel_density_{source}"] = (pixel_dim, density(counts, edges))

    # distances of spatial means (exact, small) and of pixel values (histograms, bounded error)
    ref_means, gen_means = ref_stats["mean"].values, gen_stats["mean"].values
    ref_rms = float(np.sqrt(ref_stats["variance"].mean()))
    gen_rms = float(np.sqrt(gen_stats["variance"].mean()))
    shift = distances.color_shift_score(ref_means, gen_means, reference_fluctuation_std=ref_rms)
    pvalue = distances.permutation_pvalue(ref_means, gen_means, n_permutations=n_permutations, seed=seed)
    flag = bool(np.isfinite(shift.score) and shift.score > color_shift_threshold and pvalue < alpha)
    ref_q_pixels = distances.histogram_quantiles(ref_counts, edges, probabilities)
    gen_q_pixels = distances.histogram_quantiles(gen_counts, edges, probabilities)
    pixel_std = float(np.sqrt(np.mean(ref_stats["variance"] + (ref_stats["mean"] - ref_stats["mean"].mean()) ** 2)))
    ks_low, ks_high = distances.histogram_ks(ref_counts, gen_counts)
    w1_pixels = distances.histogram_wasserstein1(ref_counts, gen_counts, edges)
    k_quarter = min(ref.sizes[ref_dims.y], ref.sizes[ref_dims.x]) / 4

    out = out.assign_coords(probability=("probability", np.asarray(probabilities, dtype=float)))
    out["probability"].attrs = {"long_name": "cumulative probability of the quantile", "units": "1"}
    quantile_errors_means = distances.quantile_errors(ref_means, gen_means, probabilities)
    out["quantile_error_spatial_means"] = ("probability", quantile_errors_means)
    out["quantile_error_spatial_means_normalized"] = ("probability", quantile_errors_means / shift.normalizer
                                                      if shift.normalizer > 0 else np.full(len(probabilities), np.nan))
    out["quantile_error_pixels"] = ("probability", gen_q_pixels - ref_q_pixels)
    out["quantile_error_pixels_normalized"] = ("probability", (gen_q_pixels - ref_q_pixels) / pixel_std)

    out = out.assign_coords(qq_probability=("qq_probability", QQ_PROBABILITIES))
    out["qq_probability"].attrs = {"long_name": "cumulative probability of the QQ-plot quantiles", "units": "1"}
    for key in ("variance", "kappa3", "kappa4"):
        ref_q, gen_q = distances.qq(ref_stats[key].values, gen_stats[key].values, QQ_PROBABILITIES)
        out[f"qq_{key}_reference"] = ("qq_probability", ref_q)
        out[f"qq_{key}_generated"] = ("qq_probability", gen_q)

    scalars = {
        "color_shift_score": shift.score,
        "color_shift_pvalue": pvalue,
        "color_shift_flag": np.int8(flag),
        "w1_spatial_means": shift.w1_means,
        "ks_spatial_means": distances.ks_statistic(ref_means, gen_means),
        "reference_std_spatial_means": float(np.std(ref_means)),
        "fluctuation_std_reference": ref_rms,
        "fluctuation_std_generated": gen_rms,
        "fluctuation_std_ratio": gen_rms / ref_rms if ref_rms > 0 else float("nan"),
        "max_spectral_ratio": distances.max_spectral_ratio(log_ratio, wavenumber, k_quarter),
        "w1_pixels": w1_pixels,
        "w1_pixels_error_bound": float(edges[1] - edges[0]),
        "w1_pixels_over_reference_std": w1_pixels / pixel_std if pixel_std > 0 else float("nan"),
        "ks_pixels": ks_low,
        "ks_pixels_upper_bound": ks_high,
        "pixel_std_reference": pixel_std,
        "w1_skewness": distances.wasserstein1(ref_stats["skewness"], gen_stats["skewness"]),
        "w1_excess_kurtosis": distances.wasserstein1(ref_stats["excess_kurtosis"], gen_stats["excess_kurtosis"]),
        "mean_std_correlation_reference": _mean_std_correlation(ref_means, ref_stats["variance"], ref_rms),
        "mean_std_correlation_generated": _mean_std_correlation(gen_means, gen_stats["variance"], gen_rms),
    }
    if tau_c is not None:
        ref_rate, gen_rate = ref_stats["condensation_rate"].values, gen_stats["condensation_rate"].values
        scalars["w1_condensation_rate"] = distances.wasserstein1(ref_rate, gen_rate)
        scalars["condensation_rate_ratio"] = float(gen_rate.mean() / ref_rate.mean()) if ref_rate.mean() > 0 else float("nan")
    for key, value in scalars.items():
        out[key] = ((), value)
        long_name, same_units = {**SCALARS, **CONDENSATION_SCALARS}[key]
        out[key].attrs = {"long_name": long_name}
        if same_units == 2:
            out[key].attrs["tau_c"] = tau_c
        elif same_units and units is not None:
            out[key].attrs["units"] = units
        elif not same_units:
            out[key].attrs["units"] = "1"
    out["color_shift_score"].attrs.update({
        "color_shift_normalizer": shift.normalizer_name, "threshold": color_shift_threshold, "alpha": alpha,
        "n_permutations": n_permutations, "seed": seed})
    out["color_shift_flag"].attrs.update({"flag_values": np.array([0, 1], dtype=np.int8),
                                          "flag_meanings": "no_color_shift color_shift"})
    del out["color_shift_flag"].attrs["units"]
    _describe(out, name, units)
    return out


def _mean_std_correlation(means, variances, rms: float, constant_tolerance: float = 1e-6) -> float:
    """corr(x̄, std x') over samples; NaN when the means are constant up to round-off (below
    `constant_tolerance` · rms fluctuation), where a correlation would only measure round-off."""
    if np.std(means) <= constant_tolerance * rms:
        return float("nan")
    return distances.pearson_correlation(means, np.sqrt(np.asarray(variances)))


def _describe(out: xr.Dataset, name: str, units: str | None) -> None:
    """long_name / units of the non-scalar variables."""
    for var in out.data_vars:
        attrs = out[var].attrs
        if "long_name" in attrs:
            continue
        source = "reference" if var.endswith("_reference") else "generated" if var.endswith("_generated") else ""
        unit = None
        if var.startswith("spatial_mean") or var.startswith("quantile_error") and not var.endswith("normalized"):
            unit = units
        elif var.startswith(("variance", "qq_variance", "spectrum")):
            unit = unit_power(units, 2)
        elif var.startswith(("kappa3", "qq_kappa3")):
            unit = unit_power(units, 3)
        elif var.startswith(("kappa4", "qq_kappa4")):
            unit = unit_power(units, 4)
        elif var.startswith("condensation_rate"):
            unit = None  # units of s per time unit of tau_c, which the data do not state
            attrs["long_name"] = f"spatial mean condensation rate s+/tau_c of {name}, {source}"
        elif var.startswith("pixel_density"):
            unit = unit_power(units, -1)
        else:
            unit = "1"
        attrs.setdefault("long_name", f"{var.removesuffix('_' + source).replace('_', ' ')} of {name}"
                         + (f", {source}" if source else ""))
        if unit is not None:
            attrs["units"] = unit


def compare(reference: xr.Dataset, samples: xr.Dataset, variables=None, *, sample_dim=None,
            spatial_dims=None, condensation_variables=None, progress: bool = True,
            **options) -> xr.Dataset:
    """Compare generated `samples` with `reference` for each of `variables` (default: all shared ones).

    Parameters
    ----------
    reference, samples : Dataset with variables (sample, y, x)
        Lazy (dask) or in memory; only per-sample statistics and histograms are held in memory.
    variables : list of str, optional
        Default: every variable with three dims present in both.
    sample_dim, spatial_dims : optional
        Dim names when `sciscore.fields.field_dims` cannot tell them.
    condensation_variables : names of supersaturation variables, optional
        For these the condensation rate s⁺/τc is compared too, with τc from the variable's
        ``condensation_timescale`` attribute, else the reference's ``param_tau_c`` (both written by
        `sciscore simulate`), else 1e-2. Default: the variables with a ``condensation_timescale``
        attribute, and those named in DEFAULT_CONDENSING when the data carry no such attribute.
    **options
        Passed to `compare_variable`: ``bins`` (pixel histogram bins, default 1000),
        ``probabilities``, ``band``, ``color_shift_threshold`` (0.3), ``alpha`` (0.01),
        ``n_permutations`` (200), ``seed`` (0).

    Returns
    -------
    Dataset with variables ``{v}_<statistic>`` for each v (see the module doc); attrs
    ``variables`` lists v.
    """
    if variables is None:
        variables = [v for v in reference.data_vars if v in samples.data_vars and reference[v].ndim == 3]
        if not variables:
            raise UserError("the reference and the samples share no (sample, y, x) variable; name one with --variable")
    elif isinstance(variables, str):
        variables = [variables]
    for name in variables:
        for ds, where in ((reference, "the reference"), (samples, "the samples")):
            if name not in ds.data_vars:
                raise UserError(f"variable {name!r} not found in {where}; available: "
                                f"{', '.join(map(str, ds.data_vars)) or 'none'}")
    parts = []
    if condensation_variables is None:
        marked = [v for v in variables if CONDENSATION_TIMESCALE in reference[v].attrs]
        condensation_variables = marked or [v for v in variables if v in DEFAULT_CONDENSING]
    for name in variables:
        tau_c = None
        if name in condensation_variables:
            tau_c = float(reference[name].attrs.get(CONDENSATION_TIMESCALE,
                                                    reference.attrs.get("param_tau_c", DEFAULT_TAU_C)))
            tau_c = tau_c if np.isfinite(tau_c) and tau_c > 0 else None
        part = compare_variable(reference[name], samples[name], sample_dim=sample_dim,
                                spatial_dims=spatial_dims, progress=progress, tau_c=tau_c, **options)
        rename = {var: f"{name}_{var}" for var in part.data_vars}
        parts.append(part.rename(rename))
    out = xr.merge(parts, compat="override", join="outer", combine_attrs="override")
    out.attrs = {"variables": " ".join(variables),
                 "spectrum_convention": "E(k) = sum over k-1/2 <= |k| < k+1/2 of |fft2(x')/N|^2; sum_k E(k) = spatial variance",
                 "pixel_distances": "fixed-bin histograms over the common value range; see *_error_bound"}
    return out


def summary_figures(comparison: xr.Dataset, variable: str) -> dict:
    """The scalar figures of one variable as a plain dict (name -> float)."""
    keys = list(SCALARS) + [key for key in CONDENSATION_SCALARS if f"{variable}_{key}" in comparison]
    return {key: float(comparison[f"{variable}_{key}"]) for key in keys}
