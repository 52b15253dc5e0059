"""Quality checks: pass/fail bars on the figures of `compare`, one set per variable.

Five checks per variable (the default-model bars of the generate issue):

  spatial_means         W1(spatial means) <= 0.25 max(reference std of the means, 1 % of the
                        reference fluctuation std)  (the floor keeps a constant-mean variable,
                        vorticity, from being judged against round-off)
  fluctuation_std       generated / reference rms fluctuation in [0.9, 1.1]
  spectrum              mean power spectra within a factor 1.5 for 1 <= k <= N/4
  pixel_ks              exact two-sample KS statistic of all pixel values <= 0.1
  mean_std_correlation  |corr(mean, fluctuation std) generated - reference| <= 0.1 (passes when
                        the reference means are constant: there is no correlation to reproduce)

Each check also has a ratio to its bar (<= 1 passes) so that two models that pass the same
checks can be ranked by how far inside or outside the bars they are (`quality_rank`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr

from sciscore.diagnostics.distances import ks_statistic

CHECKS = ("spatial_means", "fluctuation_std", "spectrum", "pixel_ks", "mean_std_correlation")


@dataclass(frozen=True)
class QualityBars:
    spatial_means: float = 0.25         # W1 of means over the scale
    scale_floor: float = 0.01           # of the fluctuation std, for the scale of the means
    fluctuation_std: tuple = (0.9, 1.1)
    spectrum: float = 1.5
    pixel_ks: float = 0.1
    mean_std_correlation: float = 0.1


def _ratio_to_bars(figures: dict, bars: QualityBars) -> dict:
    low, high = bars.fluctuation_std
    std = figures["fluctuation_std_ratio"]
    std_ratio = math.log(std) / math.log(high) if std >= 1 else math.log(std) / math.log(low)
    return {
        "spatial_means": figures["w1_means_over_scale"] / bars.spatial_means,
        "fluctuation_std": std_ratio if math.isfinite(std_ratio) else math.inf,
        "spectrum": math.log(max(figures["max_spectral_ratio"], 1.0)) / math.log(bars.spectrum),
        "pixel_ks": figures["ks_pixels"] / bars.pixel_ks,
        "mean_std_correlation": figures["correlation_gap"] / bars.mean_std_correlation,
    }


def quality_checks(comparison: xr.Dataset, reference: xr.DataArray, generated: xr.DataArray, variable: str,
                   bars: QualityBars = QualityBars()) -> dict:
    """The five checks of `variable` from `compare`'s result and the two sets of fields.

    `reference` and `generated` are the fields themselves (any shape; all pixels are used for the
    exact KS statistic). Returns the figures, "ratio_to_bar" per check and "passed" per check."""
    def scalar(name):
        return float(comparison[f"{variable}_{name}"])

    scale = max(scalar("reference_std_spatial_means"), bars.scale_floor * scalar("fluctuation_std_reference"))
    figures = {
        "w1_means": scalar("w1_spatial_means"),
        "w1_means_over_scale": scalar("w1_spatial_means") / scale,
        "fluctuation_std_ratio": scalar("fluctuation_std_ratio"),
        "max_spectral_ratio": scalar("max_spectral_ratio"),
        "ks_pixels": ks_statistic(np.asarray(reference), np.asarray(generated)),
        "corr_reference": scalar("mean_std_correlation_reference"),
        "corr_generated": scalar("mean_std_correlation_generated"),
    }
    gap = abs(figures["corr_generated"] - figures["corr_reference"])
    if not math.isfinite(figures["corr_reference"]):
        gap = 0.0  # constant reference means (vorticity): no correlation to reproduce
    figures["correlation_gap"] = gap if math.isfinite(gap) else math.inf
    ratios = _ratio_to_bars(figures, bars)
    figures["ratio_to_bar"] = ratios
    figures["passed"] = {check: bool(ratios[check] <= 1) for check in CHECKS}
    return figures


def count_passed(results: dict) -> tuple[int, int]:
    """(passed, total) over {variable: quality_checks(...)}."""
    flags = [ok for figures in results.values() for ok in figures["passed"].values()]
    return sum(flags), len(flags)


def quality_rank(results: dict) -> tuple[int, float]:
    """A sort key, larger is better: (checks passed, minus the summed ratios to the bars, each
    capped at 10 so that one wild figure does not decide)."""
    passed, _ = count_passed(results)
    total = sum(min(r, 10.0) for figures in results.values() for r in figures["ratio_to_bar"].values())
    return passed, -total
