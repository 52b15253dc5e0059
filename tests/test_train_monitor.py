"""The training-time quality monitor: its figures are those of `compare` + `quality_checks` on
the same fields, drawn again from the saved checkpoint; the best checkpoint is kept; resume
stays bit-exact with the monitor on; the quality bars pass and fail where they should."""

import json
import math

import numpy as np
import pytest
import xarray as xr

from sciscore.diagnostics import CHECKS, QualityBars, compare, count_passed, quality_checks, quality_rank
from sciscore.generate import load_model
from sciscore.train import config_from_dict, train
from sciscore.train.data import load_training_data
from sciscore.train.monitor import AUTO_EVERY, monitor_interval

from test_train import TINY, fields


def monitored_config(steps=4, every=2, samples=6):
    return config_from_dict({
        "data": {"variables": ["s", "vorticity"], "validation_fraction": 0.25},
        "network": TINY,
        "training": {"steps": steps, "batch_size": 2, "log_every": 1, "checkpoint_every": 2, "validation_every": 0,
                     "device": "cpu", "quiet": True, "monitor_every": every, "monitor_samples": samples,
                     "monitor_steps": 3},
    })


def monitor_records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "monitor" in r]


def test_monitor_figures_equal_compare_on_fields_drawn_from_the_checkpoint(tmp_path):
    ds = fields(n=12)
    config = monitored_config()
    train(config, tmp_path / "run", dataset=ds)
    records = monitor_records(tmp_path / "run")
    assert [r["step"] for r in records] == [2, 4]
    last = records[-1]
    assert last["monitor_checks"] == 10 and 0 <= last["monitor_passed"] <= 10
    # the same fields again, by the public generate path from the saved EMA weights
    model = load_model(tmp_path / "run", device="cpu")
    generated = model.generate(6, solver="ode-heun", steps=3, seed=config.training.seed, grid="karras",
                               denoise=True, batch_size=6)
    data = load_training_data(config.data, config.training.seed, ds)
    reference_values = data.normalizer.invert(data.validation.numpy().astype(np.float64)).astype(np.float32)
    reference = xr.Dataset({v: (("sample", "y", "x"), reference_values[:, i]) for i, v in enumerate(data.variables)})
    generated = generated.drop_vars(["y", "x", "sample"])
    comparison = compare(reference, generated, data.variables, progress=False)
    for v in data.variables:
        expected = quality_checks(comparison, reference[v], generated[v], v)
        for key, value in expected.items():
            if isinstance(value, dict):
                assert last["monitor"][v][key] == pytest.approx(value, rel=1e-5), (v, key)
            elif math.isfinite(value):
                assert last["monitor"][v][key] == pytest.approx(value, rel=1e-5, abs=1e-7), (v, key)


def test_best_checkpoint_is_the_highest_ranked_and_loads(tmp_path):
    train(monitored_config(steps=6), tmp_path / "run", dataset=fields(n=12))
    records = monitor_records(tmp_path / "run")
    best = max(records, key=lambda r: tuple(r["monitor_rank"]))
    saved = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert saved["step"] == best["step"] and saved["monitor"]["monitor_rank"] == best["monitor_rank"]
    model = load_model(tmp_path / "run" / "best", device="cpu")
    assert np.isfinite(model.generate(2, steps=2)["s"].values).all()


def test_resume_with_the_monitor_is_bit_exact(tmp_path):
    ds = fields(n=12)
    whole = train(monitored_config(steps=4), tmp_path / "whole", dataset=ds)
    train(monitored_config(steps=2), tmp_path / "split", dataset=ds)
    train(monitored_config(steps=4), tmp_path / "split", dataset=ds, resume=True)
    losses = [[r["loss"] for r in map(json.loads, (tmp_path / d / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
              for d in ("whole", "split")]
    assert losses[0] == losses[1] and len(losses[0]) == 4
    a, b = (monitor_records(tmp_path / d) for d in ("whole", "split"))
    assert [r["monitor_rank"] for r in a] == [r["monitor_rank"] for r in b]
    assert whole.step == 4


def test_monitor_interval_defaults():
    assert monitor_interval(None, 20_000) == AUTO_EVERY and monitor_interval(None, 300) == 0
    assert monitor_interval(0, 20_000) == 0 and monitor_interval(7, 10) == 7


def test_bad_monitor_settings_are_user_errors():
    from sciscore.errors import UserError
    for key, value in (("monitor_every", -1), ("monitor_samples", 0), ("monitor_steps", "ten")):
        with pytest.raises(UserError, match=key):
            config_from_dict({"training": {key: value}})


# ---------------------------------------------------------------------------------------------
# the bars themselves
def gaussian_fields(n, scale=1.0, mean_spread=0.3, seed=0, size=16):
    rng = np.random.default_rng(seed)
    values = scale * rng.standard_normal((n, size, size)) + mean_spread * rng.standard_normal((n, 1, 1))
    return xr.Dataset({"q": (("sample", "y", "x"), values.astype(np.float32))})


def judge(reference, generated):
    comparison = compare(reference, generated, ["q"], progress=False, n_permutations=20)
    return {"q": quality_checks(comparison, reference["q"], generated["q"], "q")}


def test_same_distribution_passes_every_check():
    results = judge(gaussian_fields(400, seed=1), gaussian_fields(400, seed=2))
    assert results["q"]["passed"] == {c: True for c in CHECKS}
    assert count_passed(results) == (5, 5)


def test_amplitude_and_mean_errors_fail_their_checks():
    reference = gaussian_fields(400, seed=1)
    loud = judge(reference, gaussian_fields(400, scale=1.3, seed=2))["q"]
    assert not loud["passed"]["fluctuation_std"] and not loud["passed"]["spectrum"]
    assert loud["fluctuation_std_ratio"] == pytest.approx(1.3, rel=0.02)
    assert loud["ratio_to_bar"]["fluctuation_std"] == pytest.approx(math.log(1.3) / math.log(1.1), rel=0.1)
    shifted = gaussian_fields(400, seed=2)
    shifted["q"] = shifted["q"] + 1.0
    result = judge(reference, shifted)["q"]
    assert not result["passed"]["spatial_means"] and not result["passed"]["pixel_ks"]
    assert result["passed"]["fluctuation_std"]


def test_rank_prefers_more_passes_then_smaller_ratios():
    def results(ratios):
        return {"q": {"ratio_to_bar": dict(zip(CHECKS, ratios)), "passed": {c: r <= 1 for c, r in zip(CHECKS, ratios)}}}
    good, better, more = results([0.5] * 5), results([0.2] * 5), results([0.9, 0.9, 0.9, 0.9, 2.0])
    assert quality_rank(better) > quality_rank(good) > quality_rank(more)
    assert QualityBars().fluctuation_std == (0.9, 1.1)
