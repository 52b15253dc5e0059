import numpy as np
import pytest
import torch
import xarray as xr


def pytest_addoption(parser):
    parser.addoption("--run-studies", action="store_true",
                     help="also run the tests marked study_quick (each study's whole --quick version)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-studies"):
        return
    skip = pytest.mark.skip(reason="a study's whole --quick version: run with pytest --run-studies")
    for item in items:
        if "study_quick" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread for every test: the tensors are small, and on a busy 2-core machine
    spinning OpenMP threads made small reductions and convolutions 10-30x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_fields(n=12, ny=8, nx=16, seed=0, sample_dim="sample", y="y", x="x"):
    """A small two-variable dataset: `temperature` with varying spatial means and `vorticity`
    whose spatial mean is exactly 0 in every sample (as on a periodic domain)."""
    rng = np.random.default_rng(seed)
    temperature = 280 + 5 * rng.standard_normal((n, 1, 1)) + rng.standard_normal((n, ny, nx))
    vorticity = rng.standard_normal((n, ny, nx))
    vorticity -= vorticity.mean(axis=(1, 2), keepdims=True)
    ds = xr.Dataset(
        {
            "temperature": ((sample_dim, y, x), temperature, {"units": "K", "long_name": "air temperature"}),
            "vorticity": ((sample_dim, y, x), vorticity, {"units": "s-1", "long_name": "relative vorticity"}),
        },
        coords={
            y: (y, np.arange(ny) * 2 * np.pi / ny, {"units": "1", "long_name": f"{y} coordinate"}),
            x: (x, np.arange(nx) * 2 * np.pi / nx, {"units": "1", "long_name": f"{x} coordinate"}),
        },
    )
    return ds


@pytest.fixture
def fields():
    return make_fields()


@pytest.fixture(scope="session")
def cli_inputs(tmp_path_factory):
    """Valid inputs for the command-line tests, made once: two 16-sample field files (data.nc,
    other.nc) and a run directory `run` trained on data.nc for 2 steps with a tiny network."""
    from sciscore.train.trainer import train

    root = tmp_path_factory.mktemp("cli_inputs")
    make_fields(n=16, ny=8, nx=8).to_netcdf(root / "data.nc")
    make_fields(n=16, ny=8, nx=8, seed=1).to_netcdf(root / "other.nc")
    train({**TINY_TRAINING, "data": {**TINY_TRAINING["data"], "paths": [str(root / "data.nc")]}}, root / "run")
    return root


# a network and a run small enough to train in a second on the CPU
TINY_TRAINING = {
    "data": {"variables": ["temperature", "vorticity"], "validation_fraction": 0.0},
    "network": {"channels": [8, 16], "num_residual": 1, "embed_dim": 16, "bypass_width": 16, "padding": "circular"},
    "training": {"steps": 2, "batch_size": 4, "checkpoint_every": 2, "validation_every": 0, "log_every": 1,
                 "quiet": True, "device": "cpu"},
}
