"""Measure the statistics of a simulated dataset for its card (datasets/*.md).

    python datasets/measure.py turbulence2d-64.nc [--json stats.json]

Reports: energy and enstrophy (mean ± std over samples), ⟨s⟩, std(s), fraction s > 0, percentiles
and skewness of s, the condensation budget ⟨s⁺⟩/(e τc) (1 in a steady state), stationarity (first
vs second half of the sampling rounds), the autocorrelation of snapshots of one member at lags of
1, 2, 3 sampling intervals (pointwise ζ and s; domain-mean E and ⟨s⟩), the integrated
autocorrelation time and effective sample size, and spectra (energy at |k| <= 2, E(k) slope).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import xarray as xr


def spectra(field: np.ndarray):
    """Isotropic shell sums of |f̂|²/n⁴ over integer shells, (samples, K), and the |k|² grid."""
    n = field.shape[-1]
    f_hat = np.fft.rfft2(field)
    kx = np.fft.rfftfreq(n, 1 / n)[None, :]
    ky = np.fft.fftfreq(n, 1 / n)[:, None]
    k2 = kx**2 + ky**2
    weights = np.full(k2.shape, 2.0)
    weights[:, 0] = 1
    weights[:, -1] = 1
    shells = np.rint(np.sqrt(k2)).astype(int)
    density = weights * np.abs(f_hat) ** 2 / n**4
    out = np.zeros((field.shape[0], shells.max() + 1))
    for j in range(shells.max() + 1):
        out[:, j] = density[:, shells == j].sum(-1)
    return out, k2, f_hat, weights


def autocorrelation(series: np.ndarray, max_lag: int) -> np.ndarray:
    """ρ(L), L = 0..max_lag, of (rounds, members, ...) data: anomalies about the overall mean,
    products averaged over members, points and start times, divided by the overall variance."""
    anomalies = series - series.mean()
    variance = (anomalies**2).mean()
    return np.array([1.0] + [float((anomalies[:-lag] * anomalies[lag:]).mean() / variance)
                             for lag in range(1, max_lag + 1)])


def integrated_time(rho: np.ndarray) -> float:
    """τ = 1 + 2 Σ_{L>=1} ρ(L), summed until ρ first drops below 0.05 (in units of the interval)."""
    total = 1.0
    for value in rho[1:]:
        if value < 0.05:
            break
        total += 2 * value
    return total


def measure(path: str) -> dict:
    ds = xr.open_dataset(path)
    members = int(ds.attrs["recipe_members"])
    e, tau_c = float(ds.attrs["param_e"]), float(ds.attrs["param_tau_c"])
    zeta = ds["vorticity"].values.astype(np.float64)
    s = ds["supersaturation"].values.astype(np.float64)
    m, n = zeta.shape[0], zeta.shape[-1]
    rounds = m // members
    zeta_spectrum, k2, zeta_hat, weights = spectra(zeta)
    inv_k2 = np.where(k2 > 0, 1 / np.where(k2 > 0, k2, 1), 0)
    energy = (weights * inv_k2 * np.abs(zeta_hat) ** 2 / 2).sum((-2, -1)) / n**4
    enstrophy = 0.5 * (zeta**2).mean((-2, -1))
    s_mean = s.mean((-2, -1))
    s_plus = np.maximum(s, 0).mean((-2, -1))
    k = np.arange(zeta_spectrum.shape[1])
    energy_spectrum = np.where(k > 0, zeta_spectrum / (2 * np.maximum(k, 1) ** 2), 0).mean(0)
    s_spectrum, *_ = spectra(s - s.mean((-2, -1), keepdims=True))
    k_f = float(ds.attrs["param_k_f"])
    fit = (k >= 2 * k_f) & (k <= n // 6)
    slope = float(np.polyfit(np.log(k[fit]), np.log(energy_spectrum[fit]), 1)[0]) if fit.sum() >= 3 else None
    s_slope = float(np.polyfit(np.log(k[fit]), np.log(s_spectrum.mean(0)[fit]), 1)[0]) if fit.sum() >= 3 else None
    centred = s - s.mean()
    stats = {
        "file": str(path), "samples": m, "resolution": n, "members": members, "rounds": rounds,
        "interval": float(ds.attrs["recipe_interval"]),
        "energy_mean": float(energy.mean()), "energy_std": float(energy.std()),
        "energy_equilibrium_estimate_eps_over_2mu": float(ds.attrs["param_epsilon"]) / (2 * float(ds.attrs["param_mu"])),
        "enstrophy_mean": float(enstrophy.mean()), "enstrophy_std": float(enstrophy.std()),
        "vorticity_std": float(zeta.std()),
        "s_mean": float(s.mean()), "s_std": float(s.std()), "s_fraction_positive": float((s > 0).mean()),
        "s_percentiles_1_50_99": [float(v) for v in np.percentile(s, [1, 50, 99])],
        "s_skewness": float((centred**3).mean() / (centred**2).mean() ** 1.5),
        "s_plus_over_e_tau_c": float(s_plus.mean() / (e * tau_c)),
        "s_plus_over_e_tau_c_std_of_snapshots": float(s_plus.std() / (e * tau_c)),
        "energy_fraction_k_le_2": float(energy_spectrum[:3].sum() / energy_spectrum.sum()),
        "energy_spectrum_slope": slope, "energy_spectrum_fit_range": [int(k[fit].min()), int(k[fit].max())] if fit.any() else None,
        "s_variance_spectrum_slope": s_slope,
        "energy_spectrum": [float(v) for v in energy_spectrum],
    }
    if rounds >= 4:
        shape = (rounds, members)
        half = rounds // 2
        e_rounds = energy[: rounds * members].reshape(shape)
        sm_rounds = s_mean[: rounds * members].reshape(shape)
        stats["stationarity_energy_first_second_half"] = [float(e_rounds[:half].mean()), float(e_rounds[half:].mean())]
        stats["stationarity_s_mean_first_second_half"] = [float(sm_rounds[:half].mean()), float(sm_rounds[half:].mean())]
        max_lag = min(5, rounds - 1)
        fields = {
            "vorticity_pointwise": zeta[: rounds * members].reshape(rounds, members, n, n),
            "supersaturation_pointwise": s[: rounds * members].reshape(rounds, members, n, n),
            "energy": e_rounds, "s_mean": sm_rounds,
        }
        for name, values in fields.items():
            rho = autocorrelation(values, max_lag)
            tau = integrated_time(rho)
            stats[f"acf_{name}"] = [round(float(v), 4) for v in rho]
            stats[f"integrated_time_{name}"] = tau  # in sampling intervals
            stats[f"effective_samples_{name}"] = m / tau
    return stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--json", help="write the statistics to this JSON file")
    args = parser.parse_args(argv)
    stats = measure(args.path)
    for key, value in stats.items():
        if key != "energy_spectrum":
            print(f"{key:45s} {value}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(stats, handle, indent=1)


if __name__ == "__main__":
    main()
