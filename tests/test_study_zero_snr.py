"""The zero-snr study (Lin et al. 2024): its run() on tiny parameters, and its whole --quick version."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr


from sciscore.study.runner import import_study_module, load_study as load_definition

STUDY = Path(__file__).resolve().parents[1] / "studies" / "zero-snr"
DEFINITION = load_definition(STUDY)  # study.toml, checked by the runner


def load_study():
    """A fresh import of study.py, as `sciscore study run` imports it."""
    return import_study_module(DEFINITION)


TINY = dict(size=8, mean_halfwidth=1.0, amplitude=0.2, train_fields=64, reference_fields=256, samples=48,
            models=["common-eps", "zero-snr-v"], channels=[8, 16], num_residual=0, embed_dim=16,
            learning_rate=1e-3, batch_size=16, train_steps=4, sample_steps=5)


def test_tiny_run_table_netcdf_and_the_gaussian_prediction(tmp_path):
    study = load_study()
    torch.set_num_threads(1)
    result = study.run(dict(TINY), seed=3, out=tmp_path, device="cpu", progress=False)
    columns = list(DEFINITION.columns)
    assert [list(row) for row in result.rows] == [columns] * 5  # 3 spacings + 2 spacings
    assert [(r["schedule"], r["prediction"], r["spacing"]) for r in result.rows] == [
        ("scaled_linear", "eps", "leading"), ("scaled_linear", "eps", "linspace"), ("scaled_linear", "eps", "trailing"),
        ("scaled_linear-zero-snr", "v", "trailing"), ("scaled_linear-zero-snr", "v", "leading")]
    saved = xr.open_dataset(tmp_path / "generated.nc")
    data_means = saved["data_spatial_mean"].values
    data = study.synthetic_fields(256, 8, 2 * 3 + 2, 1.0, 0.2)["q"].values.mean(axis=(-2, -1))
    np.testing.assert_allclose(data_means, data, rtol=1e-6)
    for row, means in zip(result.rows, saved["spatial_mean"].values):  # the table is computed from these means
        ratio = study.quantile_range(means) / study.quantile_range(data_means)
        assert math.isclose(row["mean_range_ratio"], ratio, rel_tol=1e-9)
        assert np.isfinite(means).all()
    assert saved["q"].shape == (5, study.KEPT_FIELDS, 8, 8)
    saved.close()
    assert all(p.is_file() for p in result.figures)
    assert set(result.verdicts) == {"the common schedule (eps, leading/linspace) cannot reach the extreme means",
                                    "zero terminal SNR + v + trailing restores them"}


def test_gaussian_prediction_of_the_range_ratio():
    """At zero terminal SNR (s = 0, m = 1) the prior is the marginal: ratio 1; with the common
    schedule at T the prior's mean variance 1/n is short of s^2 var + m^2/n."""
    from sciscore.sde import DiscreteVP

    study = load_study()
    zero = DiscreteVP(zero_terminal_snr=True)
    assert study.predicted_range_ratio(zero, 1.0, 256, 1.0) == 1.0
    common = DiscreteVP(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    alpha_bar = float(common.alpha_bars[-1])
    assert math.isclose(alpha_bar / (1 - alpha_bar), 0.004682, rel_tol=1e-3)  # Lin et al. 2024, Table 1 (SD's SNR(T))
    expected = math.sqrt((1 / 256) / (alpha_bar + (1 - alpha_bar) / 256))
    assert math.isclose(study.predicted_range_ratio(common, 1.0, 256, 1.0), expected, rel_tol=1e-12)


@pytest.mark.study_quick
def test_quick_version(tmp_path):
    study = load_study()
    result = study.run(dict(DEFINITION.quick), seed=0, out=tmp_path, device="cpu", progress=False)
    assert len(result.rows) == 6 and all(np.isfinite(r["mean_range_ratio"]) for r in result.rows)
