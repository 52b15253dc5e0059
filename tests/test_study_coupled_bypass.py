"""studies/coupled-bypass under the runner: a tiny run through `run()` (the table is what the
fields say: the data row equals the statistics of the regenerated held-out fields, the model rows
those of the NetCDF written), and the whole [quick] version through the command."""

import json
from pathlib import Path

import numpy as np
import pytest

from sciscore.cli import main
from sciscore.errors import UserError
from sciscore.study import import_study_module, load_study, read_table

STUDY = Path(__file__).resolve().parents[1] / "studies" / "coupled-bypass"
COLUMNS = ["model", "corr_mean_std", "mean_of_means", "std_of_means", "mean_spatial_std"]
TINY = {"steps": 6, "train_fields": 48, "samples": 24, "size": 8, "channels": [4, 8], "num_residual": 1,
        "embed_dim": 16, "bypass_width": 16, "batch_size": 8, "learning_rate": 1e-3, "warmup_steps": 2,
        "sampler_steps": 3}


@pytest.fixture(scope="module")
def study():
    return import_study_module(load_study(STUDY))


def test_synthetic_fields_have_the_designed_mean_fluctuation_dependence(study):
    x = study.synthetic_fields(4000, 16, seed=5)["q"].values.astype(np.float64)
    stats = study.statistics(x)
    # m ~ U(-1, 1): mean 0, std 1/sqrt(3); a = 0.6 - 0.45 m + 0.05 e: E[a] = 0.6, corr(m, a) =
    # -0.45/sqrt(3) / sqrt(0.45^2/3 + 0.05^2) = -0.982
    assert stats["mean_of_means"] == pytest.approx(0.0, abs=0.03)
    assert stats["std_of_means"] == pytest.approx(1 / np.sqrt(3), abs=0.02)
    assert stats["mean_spatial_std"] == pytest.approx(0.6, abs=0.01)
    expected = -0.45 / np.sqrt(3) / np.sqrt(0.45 ** 2 / 3 + 0.05 ** 2)
    assert stats["corr_mean_std"] == pytest.approx(expected, abs=0.005)


def test_verdicts_follow_the_stated_bars(study):
    table = {"data": {"corr_mean_std": -0.98}, "independent": {"corr_mean_std": 0.0},
             "coupled": {"corr_mean_std": -0.95}}
    assert study.verdicts(table) == {study.CLAIM_INDEPENDENT: True, study.CLAIM_COUPLED: True}
    table["coupled"]["corr_mean_std"] = -0.85
    table["independent"]["corr_mean_std"] = -0.9
    assert study.verdicts(table) == {study.CLAIM_INDEPENDENT: False, study.CLAIM_COUPLED: False}


def test_bad_params_are_named(study, tmp_path):
    with pytest.raises(UserError, match="unknown key.*'stepz'.*missing key.*'steps'"):
        study.run({**{k: v for k, v in TINY.items() if k != "steps"}, "stepz": 3}, seed=0, out=tmp_path,
                  device="cpu", progress=False)
    with pytest.raises(UserError, match="steps must be an integer"):
        study.run({**TINY, "steps": "ten"}, seed=0, out=tmp_path, device="cpu", progress=False)


def test_full_and_quick_params_make_valid_training_configs(study):
    from sciscore.train import config_from_dict

    definition = load_study(STUDY)
    for params in (definition.full, definition.quick):
        config = config_from_dict(study.training_config(study.parse_params(params), "coupled", 1, "cpu", False))
        assert config.training.steps == params["steps"]
        # no validation split and no quality monitor (it needs held-out fields): the study measures samples itself
        assert config.data.validation_fraction == 0 and config.training.monitor_every == 0
    assert definition.full["steps"] == 3000 and definition.full["train_fields"] == 2048
    assert definition.full["samples"] == 512 and definition.full["sampler_steps"] == 40


def test_tiny_run_table_matches_the_fields_it_wrote(study, tmp_path):
    import xarray as xr

    result = study.run(TINY, seed=4, out=tmp_path, device="cpu", progress=False)
    assert [row["model"] for row in result.rows] == ["data", "independent", "coupled"]
    assert all(list(row) == COLUMNS for row in result.rows)
    # the data row is the statistics of the held-out fields drawn from the study seed
    reference = study.synthetic_fields(TINY["samples"], TINY["size"], study.seeds(4)["reference"])["q"].values
    assert result.rows[0] == {"model": "data", **study.statistics(reference)}
    # each model row is the statistics of the NetCDF written (a round trip through the file)
    for row in result.rows[1:]:
        with xr.open_dataset(tmp_path / f"generated_{row['model']}.nc") as ds:
            fields = ds["q"].values
            assert fields.shape == (TINY["samples"], TINY["size"], TINY["size"])
            assert "coupled-bypass" in ds.attrs["source"]
        assert row == {"model": row["model"], **study.statistics(fields)}
        assert -1 <= row["corr_mean_std"] <= 1
        log = [json.loads(line) for line in (tmp_path / f"training_{row['model']}.jsonl").read_text().splitlines()]
        assert log[-1]["step"] == TINY["steps"]
    assert {p.name for p in result.figures} == {"mean_vs_std.png", "training_loss.png"}
    assert all(p.stat().st_size > 1000 for p in result.figures)
    assert set(result.verdicts) == {study.CLAIM_INDEPENDENT, study.CLAIM_COUPLED}
    assert f"{result.rows[0]['corr_mean_std']:.3f}" in result.headline
    # same seed, same models (training and sampling draw from the study seed): the same table
    (tmp_path / "again").mkdir()
    again = study.run(TINY, seed=4, out=tmp_path / "again", device="cpu", progress=False)
    assert again.rows == result.rows


@pytest.mark.study_quick
def test_quick_version_through_the_command(tmp_path, capsys):
    out = tmp_path / "quick"
    assert main(["study", "run", "coupled-bypass", "--quick", "-o", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert f"table: {out / 'table.csv'}" in printed
    rows = read_table(out / "table.csv")
    assert [row["model"] for row in rows] == ["data", "independent", "coupled"]
    record = json.loads((out / "run.json").read_text())
    assert record["mode"] == "quick" and record["study"] == "coupled-bypass"
    corr = {row["model"]: float(row["corr_mean_std"]) for row in rows}
    assert corr["data"] < -0.95
    # the qualitative gap at quick precision: independent far from the data, coupled much closer
    assert abs(corr["independent"] - corr["data"]) > 0.5, corr
    assert abs(corr["coupled"] - corr["data"]) < abs(corr["independent"] - corr["data"]) / 2, corr
