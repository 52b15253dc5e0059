"""The isotropy study (studies/isotropy): a tiny run through `run()`, its table, its per-seed CSV,
its NetCDF round trip, and the paired design (every lambda of a seed starts from the same weights
and sees the same draws); the whole --quick version under pytest --run-studies."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from sciscore.study.runner import import_study_module, load_study as load_definition

ROOT = Path(__file__).parents[1]

STUDY = ROOT / "studies" / "isotropy"
pytest.importorskip("prdc")
pytest.importorskip("sklearn")

DEFINITION = load_definition(STUDY)  # study.toml, checked by the runner


def _module():
    """A fresh import of study.py, as `sciscore study run` imports it."""
    return import_study_module(DEFINITION)


TINY = {"datasets": ["moons", "8gaussians"], "lambdas": [0.0, 0.3], "seeds": 2, "n_train": 500, "n_eval": 200,
        "train_steps": 60, "batch_size": 64, "hidden": 32, "layers": 3, "num_timesteps": 100, "sample_steps": 100,
        "nearest_k": 5}


def test_tiny_run_table_csv_netcdf_and_pairing(tmp_path):
    import xarray as xr
    from prdc import compute_prdc

    study = _module()
    result = study.run(TINY, seed=4, out=tmp_path, device="cpu", progress=False)
    columns = list(DEFINITION.columns)
    assert columns == ["dataset", "loss", "lambda", "precision", "recall", "density", "coverage"]
    assert [list(r) for r in result.rows] == [columns] * 4
    assert [(r["dataset"], r["loss"], r["lambda"]) for r in result.rows] == [
        ("moons", "plain", 0.0), ("moons", "isotropy", 0.3), ("8gaussians", "plain", 0.0), ("8gaussians", "isotropy", 0.3)]
    for r in result.rows:
        assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and 0 <= r["coverage"] <= 1 and r["density"] >= 0

    with open(tmp_path / "per_seed.csv") as handle:
        per_seed = list(csv.DictReader(handle))
    assert len(per_seed) == 8 and {int(r["seed"]) for r in per_seed} == {4, 5}
    for r in result.rows:  # the table is the mean over seeds of the per-seed rows
        group = [p for p in per_seed if p["dataset"] == r["dataset"] and float(p["lambda"]) == r["lambda"]]
        assert r["density"] == pytest.approx(np.mean([float(p["density"]) for p in group]), rel=1e-12)
    plain = [p for p in per_seed if p["lambda"] == "0.0"]
    assert all(float(p["isotropy_penalty"]) == 0 for p in plain)  # lambda 0: the regularizer is not computed

    # samples.nc round trip: the PRDC of the stored points is the per-seed row
    with xr.open_dataset(tmp_path / "samples.nc") as ds:
        assert ds["generated"].dims == ("dataset", "lambda", "seed", "sample", "coordinate")
        assert ds["generated"].shape == (2, 2, 2, 200, 2)
        fake = ds["generated"].sel(dataset="moons", seed=5, **{"lambda": 0.3}).values.astype(np.float64)
        real = ds["data"].sel(dataset="moons", seed=5).values.astype(np.float64)
    again = compute_prdc(real_features=real, fake_features=fake, nearest_k=5)
    row = next(p for p in per_seed if p["dataset"] == "moons" and p["seed"] == "5" and p["lambda"] == "0.3")
    for m in ("precision", "recall", "density", "coverage"):
        assert float(row[m]) == pytest.approx(again[m], abs=1e-6)  # float32 storage of the points
    per_seed_back, points = study.read_run(tmp_path)  # a run joined from its files is the same run
    (tmp_path / "joined").mkdir()
    again = study.summarize(per_seed_back, points, tmp_path / "joined", 0.0)
    assert again.rows == result.rows and again.verdicts == result.verdicts
    assert all(path.exists() and path.stat().st_size > 0 for path in result.figures)
    assert len(result.verdicts) == 3 and "seeds" in result.headline


def test_lambda_zero_equals_the_plain_eps_loss_and_runs_are_paired():
    """Same seed: lambda 0 trains exactly as plain eps-MSE written out by hand (the library loss on a
    1x1 field has no fluctuation term), and a lambda > 0 run starts from the same weights."""
    study = _module()
    from sciscore.sde import DiscreteVP

    process = DiscreteVP(num_timesteps=50)
    points = torch.as_tensor(study.toy_points("moons", 300, 0))
    options = dict(steps=5, batch_size=16, learning_rate=1e-3, hidden=16, layers=3, seed=7)
    net, losses = study.train_point_model(points, process, 0.0, **options)

    with torch.random.fork_rng():
        torch.manual_seed(7)
        ref = study.PointMLP(50, 16, 3)
    init = {k: v.clone() for k, v in ref.state_dict().items()}
    optimizer = torch.optim.Adam(ref.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(7)
    x_all = points.to(torch.float32).reshape(-1, 2, 1, 1)
    alpha_bar = process.alpha_bars
    for _ in range(5):
        index = torch.randint(0, len(x_all), (16,), generator=g)
        k = torch.randint(1, 51, (16,), generator=g)
        eps = torch.randn((16, 2, 1, 1), generator=g)
        ab = alpha_bar[k - 1].to(torch.float32).reshape(-1, 1, 1, 1)
        x_t = ab.sqrt() * x_all[index] + (1 - ab).sqrt() * eps       # Ho et al. 2020, eq. 4
        loss = (ref(x_t, k.to(torch.float32) / 50) + eps).square().mean()  # |eps - eps_hat|^2, eps_hat = -out
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, ref.state_dict()[key], rtol=1e-5, atol=1e-6)

    regularized, losses_iso = study.train_point_model(points, process, 0.3, **dict(options, steps=0))
    for key, value in regularized.state_dict().items():
        assert torch.equal(value, init[key])
    with pytest.raises(ValueError, match="unknown toy dataset 'spiral'"):
        study.toy_points("spiral", 10, 0)


@pytest.mark.study_quick
def test_quick(tmp_path):
    result = _module().run(DEFINITION.quick, seed=0, out=tmp_path, device="cpu", progress=False)
    assert len(result.rows) == 4 and (tmp_path / "samples.nc").exists()
