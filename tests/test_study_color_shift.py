"""studies/color-shift: the color shift against image size (Deck & Bischoff 2023)."""

from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import xarray as xr

from sciscore.errors import UserError
from sciscore.study import StudyResult
from sciscore.study.runner import import_study_module, load_study as load_definition


STUDY = Path(__file__).resolve().parents[1] / "studies" / "color-shift"


DEFINITION = load_definition(STUDY)  # study.toml, checked by the runner


def load_study():
    """A fresh import of study.py, as `sciscore study run` imports it."""
    return import_study_module(DEFINITION)


# the turbulence path is tested by itself below (the simulator is the slow part of it)
TINY = dict(datasets=["digits"], sizes=[8, 16], train_fields=24, reference_fields=16, samples=16, steps=10,
            batch_size=8, channels=[4, 8], num_residual=1, embed_dim=16, bypass_width=16, sampler_steps=3,
            sample_batch=16, loss_draws=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    study = load_study()
    out = tmp_path_factory.mktemp("color-shift")
    return study, out, study.run(dict(TINY), seed=3, out=out, device="cpu", progress=False)


def test_table_has_the_issue_columns_and_one_row_per_model_and_weights(tiny):
    study, out, result = tiny
    assert isinstance(result, StudyResult)
    assert list(DEFINITION.columns) == study.COLUMNS
    assert len(result.rows) == 1 * 2 * 3 * 2
    keys = {(r["dataset"], r["size"], r["network"], r["ema"]) for r in result.rows}
    assert len(keys) == len(result.rows)
    for row in result.rows:
        assert list(row) == study.COLUMNS
        assert np.isfinite([row["w1_mean_over_std"], row["mean_loss"], row["fluctuation_loss"],
                            row["spectrum_max_ratio"]]).all()
        assert row["spectrum_max_ratio"] >= 1
    assert all(path.is_file() and path.parent == out for path in result.figures)
    assert len(result.figures) == 4
    assert all(isinstance(v, bool) or v is None for v in result.verdicts.values())


def test_w1_column_is_recomputed_from_the_written_spatial_means(tiny):
    """Round trip: the NetCDF holds the spatial means the table was computed from."""
    _, out, result = tiny
    with xr.open_dataset(out / "generated.nc") as ds:
        for row in result.rows:
            weights = "ema" if row["ema"] else "raw"
            generated = ds[f"spatial_means_{row['dataset']}_{row['size']}_{row['network']}_{weights}"].values
            data = ds[f"spatial_means_{row['dataset']}_{row['size']}_data"].values
            expected = scipy.stats.wasserstein_distance(data, generated) / np.std(data.astype(np.float64))
            assert row["w1_mean_over_std"] == pytest.approx(expected, rel=1e-4)
        assert ds["fields_digits_coupled_ema"].shape == (2, 16, 16)


def test_bypass_mean_term_is_below_the_baseline(tiny):
    """The bypass predicts the mean of the score by a separate path scaled by 1/sqrt(N): its
    per-pixel mean term sits near 1/N, the baseline's U-Net output mean is off by far more."""
    _, _, result = tiny
    for row in result.rows:
        if row["network"] != "baseline":
            baseline = next(r for r in result.rows if r["network"] == "baseline" and
                            (r["dataset"], r["size"], r["ema"]) == (row["dataset"], row["size"], row["ema"]))
            assert row["mean_loss"] < baseline["mean_loss"]
            assert row["mean_loss"] < 3.0 / row["size"] ** 2


def test_rerun_reuses_a_finished_training(tiny):
    study, out, result = tiny
    run_dir = out / "cache" / "runs" / "digits-16-baseline"
    stamp = (run_dir / "model.safetensors").stat().st_mtime_ns
    p = study.Parameters.from_dict(dict(TINY))
    config = study.training_config(p, "intensity", "baseline", False, 3, "cpu", quiet=True)
    train, _ = study.digits_fields(p, 16, seed=3)
    study.train_cached(config, run_dir, train, study.data_key(p, "digits", 16, 3))
    assert (run_dir / "model.safetensors").stat().st_mtime_ns == stamp  # not retrained
    mean_loss, fluctuation_loss = study.final_loss_terms(run_dir, True, study.digits_fields(p, 16, seed=3)[1],
                                                         "intensity", 1, 3, "cpu")
    row = next(r for r in result.rows if (r["size"], r["network"], r["ema"]) == (16, "baseline", True))
    assert (mean_loss, fluctuation_loss) == (row["mean_loss"], row["fluctuation_loss"])  # fixed draws


def test_digits_upsampling_keeps_each_image_mean_plus_its_offset():
    """Bilinear resampling by 2 with align_corners=False weights every source pixel equally, so
    each resized digit keeps its 8 x 8 mean; the brightness offset adds to it."""
    from sklearn.datasets import load_digits

    study = load_study()
    p = study.Parameters(train_fields=100, reference_fields=50, brightness_offset=0.0)
    original = load_digits().images / 16.0
    order = np.random.default_rng(study._split_seed(0, 1)).permutation(len(original))
    for size in (16, 128):
        train, reference = study.digits_fields(p, size, seed=0)
        assert train["intensity"].shape == (100, size, size) and reference.sizes["sample"] == 50
        np.testing.assert_allclose(train["intensity"].mean(("y", "x")).values,
                                   original[order[:100]].mean(axis=(1, 2)), atol=1e-6)
    train, _ = study.digits_fields(p, 16, seed=0)
    shifted, _ = study.digits_fields(study.Parameters(train_fields=100, reference_fields=50), 16, seed=0)
    offsets = shifted["intensity"].mean(("y", "x")).values - train["intensity"].mean(("y", "x")).values
    assert np.abs(offsets).max() <= 0.25 and offsets.std() > 0.1
    np.testing.assert_allclose(shifted["intensity"].std(("y", "x")), train["intensity"].std(("y", "x")), atol=1e-5)


def test_turbulence_reference_members_are_held_out_whole(tmp_path):
    study = load_study()
    p = study.Parameters(train_fields=20, reference_fields=8, members=6, spinup=2.0, spinup_resolution=16,
                         relax=1.0, interval=1.0)
    train, reference = study.turbulence_fields(p, 16, seed=0, device="cpu", cache=tmp_path, progress=False)
    assert train.sizes["sample"] == 20 and reference.sizes["sample"] == 8
    assert list(train.data_vars) == ["supersaturation"]
    with xr.open_dataset(tmp_path / "turbulence-16-seed0.nc") as ds:
        members = ds["member"].values
        held_out = members >= 6 - 2
        np.testing.assert_array_equal(ds["supersaturation"].values[~held_out][:20], train["supersaturation"].values)
        np.testing.assert_array_equal(ds["supersaturation"].values[held_out][:8], reference["supersaturation"].values)
    stamp = (tmp_path / "turbulence-16-seed0.nc").stat().st_mtime_ns
    again, _ = study.turbulence_fields(p, 16, seed=0, device="cpu", cache=tmp_path, progress=False)
    assert (tmp_path / "turbulence-16-seed0.nc").stat().st_mtime_ns == stamp  # the cache is reused
    xr.testing.assert_identical(again, train)


@pytest.mark.parametrize("bad", [{"sizes": [64, 32]}, {"networks": ["independent"]}, {"datasets": ["mnist"]},
                                 {"stepz": 3}, {"resampling": "nearest"}])
def test_bad_parameters_are_one_clear_error(bad, tmp_path):
    study = load_study()
    with pytest.raises(UserError, match="color-shift study"):
        study.run(bad, seed=0, out=tmp_path, device="cpu", progress=False)


@pytest.mark.study_quick
def test_quick_version(tmp_path):
    study = load_study()
    params = DEFINITION.quick
    result = study.run(params, seed=0, out=tmp_path, device="cpu", progress=False)
    n = len(params["datasets"]) * len(params["sizes"]) * len(params["networks"]) * 2
    assert len(result.rows) == n
    for row in result.rows:
        if row["network"] != "baseline":
            baseline = next(r for r in result.rows if r["network"] == "baseline" and
                            (r["dataset"], r["size"], r["ema"]) == (row["dataset"], row["size"], row["ema"]))
            assert row["mean_loss"] < baseline["mean_loss"]
    assert set(result.verdicts.values()) <= {True, False, None}
