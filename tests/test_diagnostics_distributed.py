"""`sciscore diagnose --scheduler`: the streaming diagnostics on a dask.distributed cluster give the
numbers of the local scheduler."""

import numpy as np
import pytest
import xarray as xr

from sciscore.cli import main
from sciscore.errors import UserError
from test_diagnostics_report import gaussian_random_fields

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distributed")
    paths = {}
    for key, seed, shift in (("reference", 1, 0.0), ("samples", 2, 0.3)):
        paths[key] = folder / f"{key}.nc"
        # several chunks along samples, so the reductions combine partial results across workers
        gaussian_random_fields(48, size=16, seed=seed, mean_shift=shift).to_netcdf(
            paths[key], encoding={"q": {"chunksizes": (8, 16, 16)}})
    return paths


@pytest.mark.slow  # two full reports with figures
def test_cluster_diagnose_equals_local(files, tmp_path):
    common = ["diagnose", "--reference", str(files["reference"]), "--samples", str(files["samples"]),
              "--bins", "50", "--quiet"]
    assert main([*common, "-o", str(tmp_path / "local")]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        assert main([*common, "-o", str(tmp_path / "cluster"), "--scheduler", cluster.scheduler_address]) == 0
    with xr.open_dataset(tmp_path / "local" / "diagnostics.nc") as a, \
            xr.open_dataset(tmp_path / "cluster" / "diagnostics.nc") as b:
        assert set(a.data_vars) == set(b.data_vars) and len(a.data_vars) > 10
        for name in a.data_vars:
            np.testing.assert_allclose(b[name].values, a[name].values, rtol=1e-12, atol=0, err_msg=name)


def test_unreachable_scheduler_is_one_line(files, tmp_path, capsys, monkeypatch):
    from sciscore.diagnostics import scheduler

    monkeypatch.setattr(scheduler, "CONNECT_TIMEOUT", "1s")
    argv = ["diagnose", "--reference", str(files["reference"]), "--samples", str(files["samples"]),
            "-o", str(tmp_path / "r"), "--quiet", "--scheduler", "tcp://127.0.0.1:9"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot reach the dask scheduler at tcp://127.0.0.1:9" in err and err.count("\n") == 1
    with pytest.raises(UserError, match="--scheduler must be 'local' or a scheduler address"):
        with scheduler.dask_scheduler("nonsense"):
            pass
