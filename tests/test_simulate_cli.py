"""`sciscore simulate`: options, recipes, reproducibility, interruption and resume, the written file."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from sciscore.cli import main
from sciscore.simulate import recipes
from sciscore.simulate.recipes import Recipe, load_recipe, simulate_dataset

DATASETS = Path(__file__).resolve().parents[1] / "datasets"
SMALL = ["--resolution", "16", "--samples", "7", "--members", "3", "--spinup", "1", "--interval", "0.5",
         "--threads", "1", "-q"]




def test_simulate_writes_cf_fields_and_is_bit_reproducible(tmp_path):
    a, b, c = tmp_path / "a.nc", tmp_path / "b.nc", tmp_path / "c.nc"
    assert main(["simulate", *SMALL, "--seed", "4", "-o", str(a)]) == 0
    assert main(["simulate", *SMALL, "--seed", "4", "-o", str(b)]) == 0
    assert main(["simulate", *SMALL, "--seed", "5", "-o", str(c)]) == 0
    assert filecmp.cmp(a, b, shallow=False)  # same seed: the same bytes
    with xr.open_dataset(a) as ds, xr.open_dataset(c) as other:
        assert set(ds.data_vars) == {"supersaturation", "vorticity"}
        assert ds["vorticity"].dims == ("sample", "y", "x") and ds["vorticity"].shape == (7, 16, 16)
        assert ds["vorticity"].dtype == np.float32
        assert ds.attrs["Conventions"].startswith("CF-")
        assert 0 <= ds.x.min() and ds.x.max() < 2 * np.pi
        assert list(ds.member.values) == [0, 1, 2, 0, 1, 2, 0]
        np.testing.assert_allclose(ds.time.values, [1.5, 1.5, 1.5, 2.0, 2.0, 2.0, 2.5], atol=1e-9)
        for name in ("param_nu", "param_mu", "param_epsilon", "param_tau_c", "param_e", "param_gamma0",
                     "recipe_seed", "recipe_interval", "recipe_spinup", "stepper"):
            assert name in ds.attrs
        assert ds.attrs["recipe_seed"] == 4
        for name in ds.data_vars:
            assert ds[name].attrs["units"] and ds[name].attrs["long_name"]
        np.testing.assert_allclose(ds["vorticity"].mean(("y", "x")), 0, atol=1e-5)
        assert not np.array_equal(ds["vorticity"].values, other["vorticity"].values)


def test_context_wavenumber_adds_the_context_variable(tmp_path):
    out = tmp_path / "ctx.nc"
    assert main(["simulate", *SMALL, "--context-wavenumber", "2", "-o", str(out)]) == 0
    with xr.open_dataset(out) as ds:
        assert "context" in ds
        pattern = np.sin(2 * ds.y.values)[:, None] * np.sin(2 * ds.x.values)[None, :]
        np.testing.assert_allclose(ds["context"].values[3], pattern, atol=1e-6)
        assert ds.attrs["param_context_wavenumber"] == 2 and ds.attrs["param_context_amplitude"] == 0.5


def test_recipe_file_and_overrides(tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('[simulate]\nresolution = 16\nsamples = 4\nmembers = 2\nspinup = 1.0\ninterval = 0.5\n'
                      'seed = 9\nspinup_resolution = 8\nrelax = 0.5\nthreads = 1\n[model]\ntau_c = 0.1\n')
    out = tmp_path / "r.nc"
    assert main(["simulate", "--recipe", str(recipe), "--samples", "5", "-q", "-o", str(out)]) == 0
    with xr.open_dataset(out) as ds:
        assert ds.sizes["sample"] == 5
        assert ds.attrs["param_tau_c"] == 0.1 and ds.attrs["recipe_seed"] == 9
        assert ds.attrs["recipe_spinup_resolution"] == 8
        assert ds.attrs["recipe_name"] == "tiny (modified)"
        np.testing.assert_allclose(ds.time.values[0], 2.0, atol=1e-9)  # spin-up 1 + relax 0.5 + interval 0.5


@pytest.mark.parametrize("name", ["turbulence2d-64", "turbulence2d-128", "turbulence2d-512"])
def test_shipped_recipes_load_and_meet_their_sample_counts(name):
    options = load_recipe(DATASETS / f"{name}.toml")
    recipe = Recipe(**options)
    assert recipe.samples >= 800 and recipe.rounds * recipe.members >= recipe.samples
    assert recipe.resolution == int(name.rsplit("-", 1)[1])
    assert (DATASETS / f"{name}.md").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--resolution", "15"], "even integer"),
    (["--samples", "0"], "samples"),
    (["--model-param", "bogus=1"], "unknown model parameter"),
    (["--recipe", "/nonexistent/recipe.toml"], "does not exist"),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--interval", "-1"], "cuda|interval"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, argv, message):
    assert main(["simulate", *SMALL, *argv, "-o", str(tmp_path / "x.nc")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("sciscore simulate: error:")
    import re
    assert re.search(message, err)
    assert not (tmp_path / "x.nc").exists()


def test_existing_output_is_kept_without_overwrite(tmp_path):
    out = tmp_path / "o.nc"
    out.write_text("keep me")
    assert main(["simulate", *SMALL, "-o", str(out)]) == 2
    assert out.read_text() == "keep me"
    assert main(["simulate", *SMALL, "--overwrite", "-o", str(out)]) == 0
    with xr.open_dataset(out) as ds:
        assert ds.sizes["sample"] == 7


def test_interrupted_run_leaves_a_file_that_resume_finishes_bit_for_bit(tmp_path, monkeypatch):
    reference = tmp_path / "reference.nc"
    assert main(["simulate", *SMALL, "-o", str(reference)]) == 0
    calls = {"n": 0}
    real_advance = recipes.advance

    def interrupted_advance(problem, duration, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # spin-up, round 1, then Ctrl-C in round 2
            raise KeyboardInterrupt
        return real_advance(problem, duration, **kwargs)

    monkeypatch.setattr(recipes, "advance", interrupted_advance)
    out = tmp_path / "partial.nc"
    assert main(["simulate", *SMALL, "-o", str(out)]) == 130
    monkeypatch.undo()
    # the finished round is in the file, marked incomplete; the state to go on is next to it; no hidden files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["partial.nc", "partial.nc.state.safetensors",
                                                          "reference.nc"]
    with xr.open_dataset(out) as ds:
        assert ds.attrs["sciscore_status"] == "incomplete" and ds.attrs["sciscore_samples_written"] == 3
        assert ds.sizes["sample"] == 3
    assert main(["simulate", *SMALL, "--resume", "-o", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["partial.nc", "reference.nc"]
    with xr.open_dataset(reference) as a, xr.open_dataset(out) as b:
        assert b.attrs["sciscore_status"] == "complete" and b.sizes["sample"] == 7
        for name in [*a.data_vars, *a.coords]:
            np.testing.assert_array_equal(a[name].values, b[name].values)
        assert a.attrs["steps_at_resolution"] == b.attrs["steps_at_resolution"]
        assert a.attrs["spinup_end_time"] == b.attrs["spinup_end_time"]


def test_simulate_dataset_sample_count_does_not_depend_on_rounding():
    ds = simulate_dataset(Recipe(resolution=16, samples=5, members=4, spinup=0.5, interval=0.25, threads=1),
                          progress=False)
    assert ds.sizes["sample"] == 5 and ds.attrs["recipe_samples"] == 5
    assert np.isfinite(ds["supersaturation"].values).all()


def test_simulate_dataset_leaves_the_thread_count_alone():
    """Library functions change no global state: a recipe's `threads` is for the command to set."""
    import torch

    before = torch.get_num_threads()
    simulate_dataset(Recipe(resolution=16, samples=4, members=4, spinup=0.25, interval=0.25, threads=before + 1),
                     progress=False)
    assert torch.get_num_threads() == before
