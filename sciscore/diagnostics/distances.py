r"""Distances between a generated set and a reference set of values.

Two families:

- **exact**, on small 1-D sets (per-sample spatial means, cumulants): Wasserstein-1
  (`scipy.stats.wasserstein_distance`), two-sample Kolmogorov–Smirnov statistic, quantiles;
- **histogram**, on pixel values of sets too large for memory: both sets are counted in the same
  fixed bins of width Δ (`statistics.pixel_histogram`, one streaming pass), and the distances are
  computed from the counts with these bounds, stated in the output attrs:

  * W1: every value moves at most Δ/2 to its bin centre, so
    :math:`|W_1^{hist} - W_1| \le \Delta` (triangle inequality, Δ/2 per set);
  * KS: the CDFs are known exactly at the bin edges and lie between their edge values inside a
    bin, so :math:`KS^{hist} \le KS \le \max_j \max(A_j - B_{j-1}, B_j - A_{j-1})` (A, B the
    CDFs at the upper bin edges). An atom (many equal values, e.g. saturated air at s = 0) keeps
    this bound loose: its bin's mass cannot be ordered;
  * quantiles: the CDF is interpolated linearly inside the bin where it crosses p, the bin that
    holds the order statistic :math:`x_{(\lceil pn \rceil)}` (numpy's ``method="inverted_cdf"``),
    so each quantile is within Δ of it and a difference of two quantiles within 2Δ.

The **color-shift score** (Deck & Bischoff 2023, "Easing Color Shifts in Score-Based Diffusion
Models": a color shift is an error in the
spatial means) is :math:`W_1(\bar{x}_{gen}, \bar{x}_{ref}) / \mathrm{std}(\bar{x}_{ref})`. A
variable whose reference means are constant (vorticity on a periodic domain has mean 0 exactly)
is normalised by the reference fluctuation std instead (`color_shift_score` says which).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.stats

QUANTILE_PROBABILITIES = (0.01, 0.05, 0.10, 0.90, 0.95, 0.99)


def _values(a) -> np.ndarray:
    values = np.asarray(a, dtype=np.float64).ravel()
    return values[np.isfinite(values)]


def wasserstein1(reference, generated) -> float:
    """Exact Wasserstein-1 distance between two 1-D empirical distributions (units of the values)."""
    return float(scipy.stats.wasserstein_distance(_values(reference), _values(generated)))


def ks_statistic(reference, generated) -> float:
    """Exact two-sample Kolmogorov–Smirnov statistic sup |F_ref − F_gen| (dimensionless, in [0, 1])."""
    return float(scipy.stats.ks_2samp(_values(reference), _values(generated)).statistic)


def quantile_errors(reference, generated, probabilities=QUANTILE_PROBABILITIES) -> np.ndarray:
    """q_gen(p) − q_ref(p) at each probability (exact empirical quantiles, linear interpolation)."""
    return np.quantile(_values(generated), probabilities) - np.quantile(_values(reference), probabilities)


def qq(reference, generated, probabilities) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles of both sets at common `probabilities`: the two coordinates of a QQ plot."""
    return np.quantile(_values(reference), probabilities), np.quantile(_values(generated), probabilities)


def permutation_pvalue(reference, generated, statistic=wasserstein1, n_permutations: int = 200,
                       seed: int = 0) -> float:
    """Permutation-test p-value of `statistic` for "both sets come from one distribution".

    Pools the sets, splits them at random into sets of the original sizes `n_permutations`
    times (one seeded generator), and returns (1 + #{permuted ≥ observed}) / (1 + n_permutations).
    """
    a, b = _values(reference), _values(generated)
    observed = statistic(a, b)
    pooled = np.concatenate([a, b])
    rng = np.random.default_rng(seed)
    exceed = 0
    for _ in range(n_permutations):
        permuted = rng.permutation(pooled)
        exceed += statistic(permuted[: a.size], permuted[a.size:]) >= observed
    return (1 + exceed) / (1 + n_permutations)


@dataclass(frozen=True)
class ColorShift:
    """Color-shift score: W1 of spatial means over a reference scale, and which scale was used."""

    score: float
    w1_means: float
    normalizer: float
    normalizer_name: str  # "reference std of spatial means" or "reference fluctuation std"


def color_shift_score(reference_means, generated_means, reference_fluctuation_std: float | None = None,
                      constant_tolerance: float = 1e-6) -> ColorShift:
    """W1(x̄_gen, x̄_ref) / std(x̄_ref), or over the fluctuation std when the reference means are constant.

    The means count as constant when their std is below `constant_tolerance` times the
    reference fluctuation std (or exactly zero if that is not given).
    """
    w1 = wasserstein1(reference_means, generated_means)
    std_means = float(np.std(_values(reference_means)))
    floor = constant_tolerance * reference_fluctuation_std if reference_fluctuation_std else 0.0
    if std_means > floor:
        return ColorShift(w1 / std_means, w1, std_means, "reference std of spatial means")
    if reference_fluctuation_std:
        return ColorShift(w1 / reference_fluctuation_std, w1, reference_fluctuation_std,
                          "reference fluctuation std")
    return ColorShift(float("nan") if w1 == 0 else float("inf"), w1, 0.0, "none (constant field)")


def pearson_correlation(a, b) -> float:
    """Pearson correlation of paired values; NaN when either is constant (e.g. a fixed mean)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


# --- histogram distances (bounded memory, pixel values) -------------------------------------


def _cdf_at_upper_edges(counts) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("a histogram with no counts has no distribution")
    return np.cumsum(counts) / total


def histogram_wasserstein1(reference_counts, generated_counts, edges) -> float:
    """W1 between the two histograms with each bin's mass at its centre; |error| ≤ bin width."""
    centers = 0.5 * (edges[1:] + edges[:-1])
    cdf_a = _cdf_at_upper_edges(reference_counts)
    cdf_b = _cdf_at_upper_edges(generated_counts)
    # ∫|F_a − F_b| dx with step CDFs that jump at the bin centres
    return float(np.sum(np.abs(cdf_a[:-1] - cdf_b[:-1]) * np.diff(centers)))


def histogram_ks(reference_counts, generated_counts) -> tuple[float, float]:
    """(KS at the bin edges, upper bound on the exact KS): KS_hist ≤ KS ≤ bound.

    Inside bin j each CDF lies between its values at the bin's edges, so
    |F_a − F_b| ≤ max(A_j − B_{j−1}, B_j − A_{j−1}) there (A, B: CDFs at the upper edges).
    """
    cdf_a = _cdf_at_upper_edges(reference_counts)
    cdf_b = _cdf_at_upper_edges(generated_counts)
    at_edges = float(np.max(np.abs(cdf_a - cdf_b)))
    below_a = np.concatenate([[0.0], cdf_a[:-1]])
    below_b = np.concatenate([[0.0], cdf_b[:-1]])
    bound = float(np.max(np.maximum(cdf_a - below_b, cdf_b - below_a)))
    return at_edges, min(1.0, max(bound, at_edges))


def histogram_quantiles(counts, edges, probabilities=QUANTILE_PROBABILITIES) -> np.ndarray:
    """Quantiles from histogram counts, CDF linear inside each bin.

    Within one bin width of the exact ``numpy.quantile(values, p, method="inverted_cdf")``.
    """
    cdf = np.concatenate([[0.0], _cdf_at_upper_edges(counts)])
    edges = np.asarray(edges, dtype=np.float64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    # the bin j whose CDF rise C_j < p <= C_{j+1} holds the quantile (empty bins never match)
    upper = np.clip(np.searchsorted(cdf, probabilities, side="left"), 1, cdf.size - 1)
    lower = upper - 1
    rise = cdf[upper] - cdf[lower]
    fraction = np.where(rise > 0, (probabilities - cdf[lower]) / np.where(rise > 0, rise, 1.0), 0.0)
    return edges[lower] + np.clip(fraction, 0.0, 1.0) * (edges[upper] - edges[lower])


# --- spectra ---------------------------------------------------------------------------------


def spectral_log10_ratio(reference_spectrum, generated_spectrum) -> np.ndarray:
    """log10(E_gen(k) / E_ref(k)) per shell; NaN where either spectrum is zero (e.g. shell 0)."""
    ref = np.asarray(reference_spectrum, dtype=np.float64)
    gen = np.asarray(generated_spectrum, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log10(gen / ref)
    ratio[~np.isfinite(ratio)] = np.nan
    return ratio


def max_spectral_ratio(log10_ratio, wavenumbers, k_max: float) -> float:
    """The largest factor max(E_gen/E_ref, E_ref/E_gen) over shells 1 ≤ k ≤ k_max (≥ 1; 1 is perfect)."""
    log10_ratio = np.asarray(log10_ratio, dtype=np.float64)
    k = np.asarray(wavenumbers)
    selected = log10_ratio[(k >= 1) & (k <= k_max)]
    selected = selected[np.isfinite(selected)]
    if selected.size == 0:
        return float("nan")
    return float(10.0 ** np.max(np.abs(selected)))
