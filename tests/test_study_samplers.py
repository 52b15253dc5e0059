"""The samplers study (studies/samplers): exact identities, NFE counts, a convergence order and the
NetCDF it writes, on parameters smaller than its --quick version."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sciscore.sde import SOLVERS
from sciscore.study.runner import import_study_module, load_study as load_definition


STUDY = Path(__file__).resolve().parents[1] / "studies" / "samplers"


DEFINITION = load_definition(STUDY)  # study.toml, checked by the runner


def load_study():
    """A fresh import of study.py, as `sciscore study run` imports it."""
    return import_study_module(DEFINITION)


TINY_ORACLE = dict(oracle_size=32, oracle_samples=8, oracle_batch=8, oracle_mean=0.25, oracle_variance=0.25,
                   oracle_sde_steps=[8, 16], oracle_ode_steps=[8, 16], oracle_tolerances=[1e-2],
                   oracle_edm_churn=10.0, oracle_churn=[0.0, 2.0], oracle_churn_steps=16, pc_snr=0.16,
                   model_fields=0)
TINY_MODEL = dict(TINY_ORACLE, oracle_sde_steps=[8], oracle_ode_steps=[8], oracle_churn=[0.0], oracle_churn_steps=8,
                  model_fields=2, model_fields_saved=2, model_batch=2, model_ode_steps=[18], model_euler_steps=[4, 36],
                  model_churn=[0.0, 2.0], model_churn_steps=2, model_fine_steps=19, model_fine_sde_steps=38,
                  reference_fields=2, reference_members=2, reference_spinup=2.0)


def rows_by(rows, target, solver):
    return {r["steps"]: r for r in rows if r["target"] == target and r["solver"] == solver}


def check_table(result, columns):
    assert result.rows and all(list(row) == columns for row in result.rows)
    for figure in result.figures:
        assert figure.is_file() and figure.stat().st_size > 10_000


def test_the_toml_names_the_issue_columns_and_both_versions():
    assert list(DEFINITION.columns) == ["target", "solver", "steps", "nfe", "error"]
    assert set(DEFINITION.full) == set(DEFINITION.quick)
    assert set(TINY_MODEL) <= set(DEFINITION.quick) | {"model_fields"}


def test_oracle_identities_nfe_counts_and_heun_order(tmp_path):
    result = load_study().run(TINY_ORACLE, seed=3, out=tmp_path, device="cpu", progress=False)
    check_table(result, list(DEFINITION.columns))
    rows = result.rows
    oracle = "gaussian-oracle"
    # every solver of the table has rows
    labels = {r["solver"].split("(")[0] for r in rows}
    assert set(SOLVERS) <= labels
    # Milstein's correction g g' vanishes for additive noise: the same samples, bit for bit
    differences = rows_by(rows, oracle, "milstein-minus-euler")
    assert sorted(differences) == [8, 16] and all(r["error"] == 0.0 for r in differences.values())
    assert result.verdicts["milstein_equals_euler"] is True
    euler, milstein = rows_by(rows, oracle, "euler"), rows_by(rows, oracle, "milstein")
    assert {s: r["error"] for s, r in euler.items()} == {s: r["error"] for s, r in milstein.items()}
    # EDM Algorithm 2 without churn is Algorithm 1
    heun = rows_by(rows, oracle, "ode-heun")
    assert rows_by(rows, oracle, "edm(s_churn=0)")[16]["error"] == heun[16]["error"]
    # score evaluations per sample: 1 a step (euler, milstein), 2 (srk with its memo, Stratonovich
    # heun and midpoint, ode-heun, edm, pc with one corrector step), reversible Heun 1 + 1
    for solver, per_step, extra in (("euler", 1, 0), ("milstein", 1, 0), ("srk", 2, 0), ("heun", 2, 0),
                                    ("midpoint", 2, 0), ("reversible_heun", 1, 1), ("ode-heun", 2, 0),
                                    ("edm(s_churn=10)", 2, 0), ("pc(snr=0.16)", 2, 0)):
        for steps, row in rows_by(rows, oracle, solver).items():
            assert row["nfe"] == per_step * steps + extra, (solver, steps, row["nfe"])
    # Heun is second order: doubling the steps divides the error by about 4 (measured 4.3)
    ratio = heun[8]["error"] / heun[16]["error"]
    assert 3.0 < ratio < 6.0, ratio
    assert all(math.isfinite(r["error"]) and r["error"] >= 0 for r in rows)


def test_default_model_rows_milstein_and_netcdf(tmp_path):
    result = load_study().run(TINY_MODEL, seed=5, out=tmp_path, device="cpu", progress=False)
    check_table(result, list(DEFINITION.columns))
    model = [r for r in result.rows if r["target"] == "default-model"]
    # ode-heun 18 steps: 36 evaluations + Tweedie's denoising; euler 36 steps + 1
    assert rows_by(model, "default-model", "ode-heun")[18]["nfe"] == 37
    assert rows_by(model, "default-model", "euler")[36]["nfe"] == 37
    assert rows_by(model, "default-model", "edm(s_churn=2)")[2]["nfe"] == 5
    assert rows_by(model, "default-model", "milstein-minus-euler")[4]["error"] == 0.0
    assert all(math.isfinite(r["error"]) and r["error"] >= 0 for r in model)
    # the fine solves are the references of the self rows, and have none themselves
    assert sorted(rows_by(result.rows, "default-model-self", "ode-heun")) == [18]
    assert sorted(rows_by(result.rows, "default-model-self", "euler")) == [4, 36]
    assert isinstance(result.verdicts["heun_beats_euler_at_equal_nfe_model"], bool)
    # a known ordering: 18 Heun steps are far closer to their converged solve than 4 Euler steps
    self_rows = [r for r in result.rows if r["target"] == "default-model-self"]
    assert rows_by(self_rows, "default-model-self", "ode-heun")[18]["error"] < \
        0.2 * rows_by(self_rows, "default-model-self", "euler")[4]["error"]
    with open(tmp_path / "default_model_distances.csv") as f:
        distances = list(csv.DictReader(f))
    assert {"w1_supersaturation", "ks_supersaturation", "w1_vorticity", "ks_vorticity"} <= set(distances[0])
    for solver, steps in (("ode-heun", 18), ("euler", 36)):
        with xr.open_dataset(tmp_path / f"default-model-{solver}-{steps}.nc") as ds:
            assert ds["supersaturation"].shape == (2, 64, 64) and ds["vorticity"].shape == (2, 64, 64)
            assert ds.attrs["sciscore_solver"] == solver and int(ds.attrs["sciscore_nfe"]) == 37
            assert np.isfinite(ds["supersaturation"].values).all()
            # vorticity's spatial mean is 0 in the data; the model keeps it (mean bypass constant)
            assert np.abs(ds["vorticity"].mean(("y", "x")).values).max() < 1e-3


@pytest.mark.study_quick
def test_quick_version(tmp_path):
    result = load_study().run(DEFINITION.quick, seed=0, out=tmp_path, device="cpu", progress=False)
    check_table(result, list(DEFINITION.columns))
    assert result.verdicts["milstein_equals_euler"] is True
    heun = rows_by(result.rows, "gaussian-oracle", "ode-heun")
    errors = [heun[s]["error"] for s in sorted(heun)]
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert {"heun_beats_euler_at_equal_nfe_model", "churn_helps_model"} <= set(result.verdicts)
