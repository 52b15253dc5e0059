"""Diagnostics against analytic answers: spectra, Parseval, Reynolds identities, cumulants, distances.

Tolerances: identities computed in float64 are checked to 1e-12 (round-off of a few hundred
additions); sampling statements about Gaussian fields use 5 standard errors of the estimator.
"""

from __future__ import annotations

import dask
import numpy as np
import pytest
import scipy.stats
import xarray as xr

from sciscore.diagnostics import (condensation_rate, cumulants, distances, ensemble_mean, fluctuation,
                                  pixel_histogram, power_spectrum, shell_mode_counts, spatial_mean,
                                  spectrum_bands)
from sciscore.diagnostics.statistics import histogram_edges
from sciscore.errors import UserError

IDENTITY = 1e-12


def _raise_on_compute(dsk, keys, **kwargs):
    raise RuntimeError("a dask graph was computed where the result should stay lazy")


def fields(values: np.ndarray, name: str = "q") -> xr.DataArray:
    """(sample, y, x) DataArray on [0, 2π)² with coords and units."""
    n, ny, nx = values.shape
    return xr.DataArray(
        values, dims=("sample", "y", "x"), name=name,
        coords={"sample": np.arange(n), "y": 2 * np.pi * np.arange(ny) / ny, "x": 2 * np.pi * np.arange(nx) / nx},
        attrs={"units": "m", "long_name": "test field"},
    )


def grid(ny: int, nx: int):
    y = 2 * np.pi * np.arange(ny) / ny
    x = 2 * np.pi * np.arange(nx) / nx
    return np.meshgrid(y, x, indexing="ij")


# --- spectra -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("ny", "nx", "ky", "kx", "shell"), [
    (32, 32, 4, 3, 5),     # |k| = 5 exactly
    (32, 32, 0, 7, 7),
    (32, 32, 5, 5, 7),     # |k| = 7.07 -> shell 7
    (32, 32, 2, 2, 3),     # |k| = 2.83 -> shell 3 (k - 1/2 <= |k| < k + 1/2)
    (16, 32, 3, -6, 7),    # non-square grid, |k| = 6.71
    (32, 32, 0, 16, 16),   # the Nyquist mode
])
def test_single_fourier_mode_lands_in_its_shell_with_its_power(ny, nx, ky, kx, shell):
    Y, X = grid(ny, nx)
    amplitude, offset = 2.5, 7.0
    field = offset + amplitude * np.cos(ky * Y + kx * X + 0.3)
    spectrum = power_spectrum(fields(field[None])).isel(sample=0)
    expected = np.zeros(spectrum.sizes["wavenumber"])
    # a cos puts a²/4 in ±k, except the Nyquist mode, which is its own conjugate (cos² sampled: a² cos²(0.3))
    nyquist = (kx == nx // 2 and ky == 0)
    expected[shell] = amplitude**2 * (np.cos(0.3) ** 2 if nyquist else 0.5)
    np.testing.assert_allclose(spectrum.values, expected, rtol=IDENTITY, atol=IDENTITY)


@pytest.mark.parametrize("use_dask", [False, True])
def test_parseval_spectrum_sums_to_spatial_variance(use_dask):
    rng = np.random.default_rng(42)
    da = fields(rng.normal(3.0, 2.0, size=(6, 24, 40)))
    if use_dask:
        da = da.chunk({"sample": 2})
        with dask.config.set(scheduler=_raise_on_compute):
            spectrum = power_spectrum(da)  # stays lazy
        assert isinstance(spectrum.data, dask.array.Array)
    else:
        spectrum = power_spectrum(da)
    variance = da.var(("y", "x"))
    xr.testing.assert_allclose(spectrum.sum("wavenumber").compute(), variance.compute(), rtol=IDENTITY)
    assert spectrum.isel(wavenumber=0).max() < IDENTITY  # the fluctuation has no zero mode
    assert spectrum.dims == ("sample", "wavenumber")
    np.testing.assert_array_equal(spectrum["sample"], da["sample"])
    assert spectrum.attrs["units"] == "m^2"


def test_shell_mode_counts_cover_every_mode():
    counts = shell_mode_counts(16, 16)
    # shell 1 holds (±1, 0), (0, ±1) and the diagonals (±1, ±1), |k| = 1.41 < 1.5
    assert counts.sum() == 256 and counts[0] == 1 and counts[1] == 8


def test_spectrum_bands_are_mean_and_quantiles_over_samples():
    rng = np.random.default_rng(0)
    spectra = xr.DataArray(rng.random((50, 9)), dims=("sample", "wavenumber"))
    bands = spectrum_bands(spectra, "sample")
    np.testing.assert_allclose(bands["mean"], spectra.values.mean(0))
    np.testing.assert_allclose(bands["lower"], np.quantile(spectra.values, 0.1, axis=0))
    np.testing.assert_allclose(bands["upper"], np.quantile(spectra.values, 0.9, axis=0))


# --- Reynolds decomposition ----------------------------------------------------------------------


def test_reynolds_identities_fluctuation_zero_mean_and_variances_add():
    rng = np.random.default_rng(1)
    da = fields(rng.normal(size=(20, 16, 12)) + rng.normal(size=(20, 1, 1)) * 3.0)
    prime = fluctuation(da)
    np.testing.assert_allclose(prime.mean(("y", "x")), 0.0, atol=IDENTITY)
    # Var over all pixels = Var of spatial means + mean of spatial variances (population variances)
    total = da.var()
    parts = spatial_mean(da).var() + (prime**2).mean(("y", "x")).mean()
    np.testing.assert_allclose(float(total), float(parts), rtol=IDENTITY)
    # the ensemble decomposition: zero ensemble mean of the ensemble fluctuation
    np.testing.assert_allclose((da - ensemble_mean(da)).mean("sample"), 0.0, atol=IDENTITY)
    np.testing.assert_allclose(da.reynolds.ensemble_fluctuation().mean("sample"), 0.0, atol=IDENTITY)


def test_accessor_forwards_to_functions_and_keeps_dims_coords_attrs():
    rng = np.random.default_rng(2)
    da = fields(rng.normal(size=(3, 8, 8)))
    xr.testing.assert_identical(da.reynolds.spatial_mean(), spatial_mean(da))
    xr.testing.assert_identical(da.reynolds.fluctuation(), fluctuation(da))
    xr.testing.assert_identical(da.reynolds.ensemble_mean(), ensemble_mean(da))
    assert da.reynolds.fluctuation().dims == da.dims and da.reynolds.fluctuation().attrs == da.attrs
    np.testing.assert_array_equal(da.reynolds.spatial_mean()["sample"], da["sample"])
    ds = xr.Dataset({"q": da, "w": 2 * da})
    xr.testing.assert_identical(ds.reynolds.fluctuation()["w"], fluctuation(2 * da).rename("w"))
    parts = da.reynolds.decompose()
    xr.testing.assert_allclose(parts["mean"] + parts["fluctuation"], da)


def test_reynolds_is_lazy_on_dask():
    da = fields(np.random.default_rng(3).normal(size=(4, 8, 8))).chunk({"sample": 1})
    with dask.config.set(scheduler=_raise_on_compute):
        prime = da.reynolds.fluctuation()
        means = da.reynolds.spatial_mean()
        stats = cumulants(da)
    assert isinstance(prime.data, dask.array.Array) and isinstance(means.data, dask.array.Array)
    assert isinstance(stats["kappa4"].data, dask.array.Array)
    xr.testing.assert_allclose(stats["kappa4"].compute(), cumulants(da.compute())["kappa4"], rtol=IDENTITY)


def test_bad_dim_names_raise_user_error():
    da = xr.DataArray(np.zeros((2, 4, 4)), dims=("n", "a", "b"))
    with pytest.raises(UserError, match="spatial"):
        spatial_mean(da)
    assert spatial_mean(da, spatial_dims=("a", "b")).dims == ("n",)


# --- statistics ----------------------------------------------------------------------------------


def test_cumulants_of_gaussian_fields_are_near_zero():
    rng = np.random.default_rng(4)
    n, size = 40, 64
    stats = cumulants(fields(rng.normal(1.0, 2.0, size=(n, size, size))))
    pixels = size * size
    # standard errors of the sample skewness and excess kurtosis: sqrt(6/N), sqrt(24/N), over n samples
    assert abs(float(stats["skewness"].mean())) < 5 * np.sqrt(6 / pixels / n)
    assert abs(float(stats["excess_kurtosis"].mean())) < 5 * np.sqrt(24 / pixels / n)
    np.testing.assert_allclose(stats["variance"].mean(), 4.0, rtol=5 * np.sqrt(2 / pixels / n))


def test_cumulants_match_scipy_and_a_two_valued_field_exactly():
    rng = np.random.default_rng(5)
    values = rng.gamma(2.0, size=(3, 10, 14))
    stats = cumulants(fields(values))
    flat = values.reshape(3, -1)
    np.testing.assert_allclose(stats["skewness"], scipy.stats.skew(flat, axis=1, bias=True), rtol=1e-10)
    np.testing.assert_allclose(stats["excess_kurtosis"], scipy.stats.kurtosis(flat, axis=1, bias=True), rtol=1e-10)
    np.testing.assert_allclose(stats["kappa3"], scipy.stats.moment(flat, 3, axis=1), rtol=1e-10)
    # ±1 with equal weight: m2 = 1, m3 = 0, m4 = 1, so κ4 = 1 - 3 = -2
    checker = np.where((np.add.outer(np.arange(8), np.arange(8)) % 2) == 0, 1.0, -1.0)
    exact = cumulants(fields(checker[None])).isel(sample=0)
    assert float(exact["variance"]) == 1.0 and float(exact["kappa3"]) == 0.0 and float(exact["kappa4"]) == -2.0


def test_pixel_histogram_counts_every_value_lazily():
    rng = np.random.default_rng(6)
    da = fields(rng.normal(size=(5, 8, 8)))
    edges = histogram_edges(float(da.min()), float(da.max()), 17)
    lazy = pixel_histogram(da.chunk({"sample": 2}), edges)
    np.testing.assert_array_equal(lazy.compute(), np.histogram(da.values, edges)[0])
    assert int(lazy.sum()) == da.size


def test_condensation_rate_is_positive_part_over_tau():
    s = xr.DataArray([-2.0, 0.0, 0.5, 3.0], dims="x", name="s", attrs={"units": "1"})
    rate = condensation_rate(s, tau_c=0.01, time_units="s")
    np.testing.assert_allclose(rate, [0.0, 0.0, 50.0, 300.0], rtol=IDENTITY)
    assert rate.attrs["units"] == "1 s-1"
    with pytest.raises(ValueError, match="tau_c"):
        condensation_rate(s, tau_c=0.0)


# --- distances -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [0.0, 0.37, -2.5])
def test_wasserstein1_of_a_shifted_set_is_the_shift(shift):
    values = np.random.default_rng(7).normal(size=500)
    assert distances.wasserstein1(values, values + shift) == pytest.approx(abs(shift), rel=IDENTITY, abs=IDENTITY)
    edges = histogram_edges(values.min() - 3, values.max() + 3, 3000)
    width = edges[1] - edges[0]
    counts_a = np.histogram(values, edges)[0]
    counts_b = np.histogram(values + shift, edges)[0]
    assert abs(distances.histogram_wasserstein1(counts_a, counts_b, edges) - abs(shift)) <= width


def test_ks_of_identical_sets_is_zero_and_bounds_hold():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=4000), rng.normal(0.2, 1.1, size=3000)
    assert distances.ks_statistic(a, a.copy()) == 0.0
    edges = histogram_edges(min(a.min(), b.min()), max(a.max(), b.max()), 400)
    counts_a, counts_b = np.histogram(a, edges)[0], np.histogram(b, edges)[0]
    assert distances.histogram_ks(counts_a, counts_a) == (0.0, pytest.approx(counts_a.max() / counts_a.sum()))  # one bin's mass
    lower, upper = distances.histogram_ks(counts_a, counts_b)
    assert lower <= distances.ks_statistic(a, b) <= upper
    width = edges[1] - edges[0]
    assert abs(distances.histogram_wasserstein1(counts_a, counts_b, edges) - distances.wasserstein1(a, b)) <= width


def test_histogram_quantiles_within_one_bin_of_inverted_cdf_quantiles():
    values = np.random.default_rng(9).standard_t(5, size=20000)
    edges = histogram_edges(values.min(), values.max(), 500)
    estimate = distances.histogram_quantiles(np.histogram(values, edges)[0], edges)
    exact = np.quantile(values, distances.QUANTILE_PROBABILITIES, method="inverted_cdf")
    assert np.all(np.abs(estimate - exact) <= edges[1] - edges[0])


def test_quantile_errors_of_shifted_set_equal_the_shift():
    values = np.random.default_rng(10).normal(size=300)
    np.testing.assert_allclose(distances.quantile_errors(values, values + 1.5), 1.5, rtol=IDENTITY)


def test_color_shift_score_and_its_fallback_for_constant_means():
    means = np.random.default_rng(11).normal(0.0, 2.0, size=1000)
    score = distances.color_shift_score(means, means + 1.0)
    assert score.score == pytest.approx(1.0 / np.std(means), rel=IDENTITY)
    assert score.normalizer_name == "reference std of spatial means"
    constant = distances.color_shift_score(np.zeros(10), np.full(10, 0.3), reference_fluctuation_std=3.0)
    assert constant.score == pytest.approx(0.1) and constant.normalizer_name == "reference fluctuation std"


def test_permutation_pvalue_is_seeded_and_detects_a_shift():
    rng = np.random.default_rng(12)
    a, b = rng.normal(size=80), rng.normal(size=80)
    assert distances.permutation_pvalue(a, b, seed=3) == distances.permutation_pvalue(a, b, seed=3)
    assert distances.permutation_pvalue(a, b + 1.0, n_permutations=99) == pytest.approx(0.01)


def test_spectral_ratio_of_a_doubled_spectrum_is_two():
    reference = np.array([0.0, 1.0, 0.5, 0.25, 0.1])
    log_ratio = distances.spectral_log10_ratio(reference, 2 * reference)
    assert np.isnan(log_ratio[0])
    assert distances.max_spectral_ratio(log_ratio, np.arange(5), k_max=4) == pytest.approx(2.0, rel=IDENTITY)
    assert distances.max_spectral_ratio(distances.spectral_log10_ratio(reference, reference / 3), np.arange(5), 4) \
        == pytest.approx(3.0, rel=IDENTITY)
