"""Diagnostics of generated fields against reference data.

Reynolds decomposition (`spatial_mean`, `fluctuation`, `ensemble_mean`; accessor ``obj.reynolds``),
per-sample statistics (`cumulants`, `pixel_histogram`, `condensation_rate`), shell-summed power
spectra (`power_spectrum`, `spectrum_bands`), distances (`distances` module), figures (`plots`),
the report (`compare`, `write_report`, `diagnose`) and pass/fail bars on it (`quality_checks`). xarray in, xarray out, lazy on dask.
"""

from sciscore.diagnostics import distances, plots
from sciscore.diagnostics.compare import compare, compare_variable, summary_figures
from sciscore.diagnostics.quality import CHECKS, QualityBars, count_passed, quality_checks, quality_rank
from sciscore.diagnostics.report import diagnose, summary_markdown, write_report
from sciscore.diagnostics.reynolds import (decompose, ensemble_fluctuation, ensemble_mean, fluctuation,
                                           spatial_mean)
from sciscore.diagnostics.spectra import power_spectrum, shell_mode_counts, spectrum_bands
from sciscore.diagnostics.statistics import condensation_rate, cumulants, density, pixel_histogram

__all__ = [
    "CHECKS", "QualityBars", "compare", "compare_variable", "count_passed", "quality_checks", "quality_rank", "condensation_rate", "cumulants", "decompose", "density", "diagnose",
    "distances", "ensemble_fluctuation", "ensemble_mean", "fluctuation", "pixel_histogram", "plots",
    "power_spectrum", "shell_mode_counts", "spatial_mean", "spectrum_bands", "summary_figures",
    "summary_markdown", "write_report",
]
