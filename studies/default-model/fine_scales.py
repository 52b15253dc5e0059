"""Per-field fine-scale power of generated and reference fields, and how sure check (c) can be.

    python studies/default-model/fine_scales.py --reference reference.nc --samples samples.nc \
        --out studies/default-model/results/fine-scales [--band 11 16] [--large 1 4]

Check (c) compares the *mean* power spectrum over fields. In this turbulence the power of a
field's fine scales is intermittent: a few fields carry much of it. So the mean spectrum at high k
depends on how well the generated set reproduces that field-to-field spread, and a 256-field
reference pins it down only to within its own sampling error. This script measures both, with
`sciscore.diagnostics.power_spectrum` (shell-summed, per field):

- per variable, the distribution over fields of the band power P = sum of E(k) for k in `--band`
  (quantiles, the share of the total carried by the top 10 % of fields) and corr(log P, log P_large)
  with P_large the band power at `--large` (how tightly the fine scales follow the large ones);
- a bootstrap (fields resampled with replacement in both sets, `--bootstrap` times, seed
  `--seed`) of check (c)'s figure max over 1 <= k <= N/4 of max(r, 1/r), r = E_gen(k) / E_ref(k):
  its median and 5-95 % interval.

Writes OUT/fine_scales.json and OUT/fine_scales.png (histograms of log10 P; log P against log
P_large) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from sciscore.diagnostics import power_spectrum  # noqa: E402
from sciscore.diagnostics.distances import max_spectral_ratio as factor_from_log_ratio  # noqa: E402
from sciscore.diagnostics.distances import spectral_log10_ratio  # noqa: E402

QUANTILES = (0.01, 0.1, 0.5, 0.9, 0.99)


def field_spectra(path: str, variable: str) -> tuple[np.ndarray, int]:
    """(fields, shells) shell-summed spectra of `variable` in the NetCDF file `path`, and the
    smaller side N of its grid."""
    with xr.open_dataset(path) as ds:
        field = ds[variable].load()
    return power_spectrum(field).values, min(field.shape[-2:])


def band_power(spectra: np.ndarray, band: tuple[int, int]) -> np.ndarray:
    """Per-field power summed over shells band[0]..band[1] (inclusive)."""
    return spectra[:, band[0]:band[1] + 1].sum(axis=1)


def max_spectral_ratio(reference: np.ndarray, generated: np.ndarray, k_max: float) -> float:
    """Check (c)'s figure from per-field spectra (as `sciscore.diagnostics.compare` forms it from
    the mean spectra): max over 1 <= k <= k_max of max(r, 1/r)."""
    log_ratio = spectral_log10_ratio(reference.mean(axis=0), generated.mean(axis=0))
    return factor_from_log_ratio(log_ratio, np.arange(len(log_ratio)), k_max)


def bootstrap_ratio(reference: np.ndarray, generated: np.ndarray, k_max: int, repeats: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Check (c)'s figure over `repeats` resamplings (with replacement) of both sets of fields."""
    out = np.empty(repeats)
    for r in range(repeats):
        ref = reference[rng.integers(0, len(reference), len(reference))]
        gen = generated[rng.integers(0, len(generated), len(generated))]
        out[r] = max_spectral_ratio(ref, gen, k_max)
    return out


def describe(power: np.ndarray, large: np.ndarray) -> dict:
    top = np.sort(power)[::-1][: max(1, len(power) // 10)]
    return {
        "mean": float(power.mean()),
        "quantiles": dict(zip([str(q) for q in QUANTILES], np.quantile(power, QUANTILES).tolist())),
        "top10_share": float(top.sum() / power.sum()),
        "corr_log_large": float(np.corrcoef(np.log(power), np.log(large))[0, 1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--samples", required=True)
    parser.add_argument("--variables", nargs="+", default=["supersaturation", "vorticity"])
    parser.add_argument("--band", nargs=2, type=int, default=(11, 16), metavar=("K0", "K1"))
    parser.add_argument("--large", nargs=2, type=int, default=(1, 4), metavar=("K0", "K1"))
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    results = {"reference": args.reference, "samples": args.samples, "band": list(args.band),
               "large": list(args.large), "bootstrap": args.bootstrap, "variables": {}}
    figure, axes = plt.subplots(2, len(args.variables), figsize=(5 * len(args.variables), 8), squeeze=False)
    rows = []
    for column, variable in enumerate(args.variables):
        reference, n = field_spectra(args.reference, variable)
        generated, n_generated = field_spectra(args.samples, variable)
        if n_generated != n:
            raise SystemExit(f"{args.samples} is on a {n_generated}-point grid, {args.reference} on {n}: give one grid")
        k_check = n / 4
        sets = {}
        for name, spectra in (("reference", reference), ("generated", generated)):
            sets[name] = describe(band_power(spectra, args.band), band_power(spectra, args.large))
        boot = bootstrap_ratio(reference, generated, k_check, args.bootstrap, rng)
        ratio_now = max_spectral_ratio(reference, generated, k_check)
        results["variables"][variable] = {
            **sets, "max_spectral_ratio": ratio_now,
            "bootstrap_median": float(np.median(boot)),
            "bootstrap_5_95": [float(np.quantile(boot, 0.05)), float(np.quantile(boot, 0.95))],
            "band_mean_ratio": sets["generated"]["mean"] / sets["reference"]["mean"],
        }
        for name in ("reference", "generated"):
            q = sets[name]["quantiles"]
            rows.append(f"| {variable} | {name} | {sets[name]['mean']:.3g} | "
                        + " ".join(f"{q[str(p)]:.3g}" for p in QUANTILES)
                        + f" | {sets[name]['top10_share']:.2f} | {sets[name]['corr_log_large']:.2f} |")
        rows.append(f"| {variable} | check (c) | ×{ratio_now:.2f} | bootstrap median ×{np.median(boot):.2f}, "
                    f"5–95 % ×{np.quantile(boot, 0.05):.2f}–×{np.quantile(boot, 0.95):.2f} | | |")
        top, bottom = axes[0, column], axes[1, column]
        for name, spectra, colour in (("reference", reference, "k"), ("generated", generated, "tab:red")):
            power = band_power(spectra, args.band)
            top.hist(np.log10(power), bins=40, histtype="step", density=True, color=colour, label=name)
            bottom.scatter(np.log10(band_power(spectra, args.large)), np.log10(power), s=4, color=colour,
                           alpha=0.5, label=name)
        top.set_xlabel(f"log10 band power, k = {args.band[0]}–{args.band[1]}")
        top.set_ylabel("density")
        top.set_title(variable)
        top.legend()
        bottom.set_xlabel(f"log10 band power, k = {args.large[0]}–{args.large[1]}")
        bottom.set_ylabel(f"log10 band power, k = {args.band[0]}–{args.band[1]}")
        bottom.legend()
    figure.tight_layout()
    figure.savefig(out / "fine_scales.png", dpi=110)
    (out / "fine_scales.json").write_text(json.dumps(results, indent=1))
    print(f"| variable | set | mean band power | quantiles {', '.join(map(str, QUANTILES))} | top-10 % share "
          "| corr(log P, log P_large) |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
