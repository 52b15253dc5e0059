"""The default model shipped inside the package loads and generates sensible fields."""

import numpy as np

from sciscore.cli import main
from sciscore.generate import load_model
from sciscore.pretrained import default_model_path


def test_shipped_default_model_generates_fields_with_the_right_schema(tmp_path):
    path = default_model_path()
    assert sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) <= 25 * 2**20
    model = load_model(device="cpu")
    assert model.variables == ("supersaturation", "vorticity")
    ds = model.generate(3, batch_size=3, seed=0)          # the default sampler (18 Heun steps)
    assert ds["supersaturation"].dims == ("sample", "y", "x")
    assert ds.sizes == {"sample": 3, "y": 64, "x": 64}
    assert np.isfinite(ds["supersaturation"].values).all() and np.isfinite(ds["vorticity"].values).all()
    assert ds["supersaturation"].attrs["units"] and ds["vorticity"].attrs["long_name"]
    np.testing.assert_allclose(ds["x"].values, 2 * np.pi * np.arange(64) / 64, rtol=1e-6)
    # vorticity has zero spatial mean in every training field; the model keeps it exactly
    assert float(abs(ds["vorticity"].mean(("y", "x"))).max()) < 1e-4 * float(ds["vorticity"].std())
    # physical units, not normalized ones: the data have <s> = -0.71 and std(vorticity) = 4.2
    assert -2.0 < float(ds["supersaturation"].mean()) < 0.5
    assert 2.0 < float(ds["vorticity"].std()) < 8.0


def test_plain_generate_command_uses_the_default_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "--variable", "supersaturation", "-n", "2", "--steps", "3", "--quiet"]) == 0
    import xarray as xr

    ds = xr.open_dataset(tmp_path / "generated_supersaturation_seed0.nc")
    assert list(ds.data_vars) == ["supersaturation"] and ds.attrs["sciscore_status"] == "complete"
    # provenance: the command as typed, the model by name (no local path)
    assert ds.attrs["sciscore_command"] == "sciscore generate --variable supersaturation -n 2 --steps 3 --quiet"
    assert ds.attrs["sciscore_model"].startswith("turbulence2d-64 (shipped with sciscore ")
    assert str(default_model_path()) not in str(ds.attrs)


def test_default_model_output_is_pinned():
    """The shipped model's fields for a fixed seed are what tests/data/default_model_pin.json
    recorded: refactors must not change them. An intended change (a new shipped model, new noise
    streams) regenerates the pin with `python tests/data/make_default_model_pin.py`."""
    import importlib.util
    import json
    from pathlib import Path

    script = Path(__file__).parent / "data" / "make_default_model_pin.py"
    spec = importlib.util.spec_from_file_location("make_default_model_pin", script)
    pin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pin)
    expected = json.loads(pin.PIN.read_text())
    assert expected["samples"] == pin.SAMPLES and expected["seed"] == pin.SEED
    got = pin.pinned_values()
    assert got.keys() == expected["values"].keys()
    for case, variables in expected["values"].items():
        for variable, values in variables.items():
            for key in ("mean", "std", "pixels"):
                np.testing.assert_allclose(got[case][variable][key], values[key], rtol=1e-5, atol=1e-5,
                                           err_msg=f"{case} {variable} {key}")
