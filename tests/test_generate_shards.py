"""`sciscore generate --shard I/N` and `sciscore merge`: the merged shards equal the one-job run."""

import json
import re

import netCDF4
import numpy as np
import pytest
import xarray as xr

from sciscore.cli import main
from sciscore.errors import UserError
from sciscore.generate import generate_file, load_model, merge_shards
from sciscore.fields.sample_shards import Shard
from sciscore.generate.shards import parse_shard
from test_generate import FAST, interrupt_after, run_dir, sciscore_process  # noqa: F401  (run_dir: the tiny trained checkpoint fixture)


@pytest.fixture(scope="module")
def model(run_dir):  # noqa: F811
    return load_model(run_dir, device="cpu")


def test_shard_blocks_tile_the_run():
    for n, count in [(7, 3), (10, 10), (1000, 7)]:
        blocks = [Shard(i, count).block(n) for i in range(count)]
        assert blocks[0][0] == 0 and blocks[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
        assert max(b - a for a, b in blocks) - min(b - a for a, b in blocks) <= 1


def test_shard_auto_reads_slurm_array_then_torchrun():
    slurm = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1",
             "RANK": "0", "WORLD_SIZE": "2"}
    assert parse_shard("auto", slurm) == Shard(2, 4)
    assert parse_shard("auto", {"RANK": "1", "WORLD_SIZE": "2"}) == Shard(1, 2)
    assert parse_shard("2/5", {}) == Shard(2, 5)
    with pytest.raises(UserError, match="neither a SLURM array"):
        parse_shard("auto", {})
    for bad in ("3/3", "-1/2", "1of2", "a/b"):
        with pytest.raises(UserError, match="--shard"):
            parse_shard(bad, {})


def _shards(model, tmp_path, n=7, count=3, seed=4, **kwargs):
    return [generate_file(model, tmp_path / f"part{i}.nc", n, seed=seed, batch_size=2, shard=Shard(i, count),
                          **{**FAST, **kwargs}) for i in range(count)]


def test_merged_shards_equal_the_one_job_run(model, tmp_path):
    # batches line up (batch 2: [0,2) [2,4) [4,6) [6,7) in both), so the samples are equal bit for bit
    one = generate_file(model, tmp_path / "one.nc", 7, seed=4, batch_size=2, **FAST)
    parts = _shards(model, tmp_path)
    with xr.open_dataset(parts[1]) as part:
        assert part["sample"].values.tolist() == [2, 3]  # global indices of shard 1/3 of 7
        assert part.attrs["sciscore_shard"] == "1/3" and part.attrs["sciscore_status"] == "complete"
    merged = merge_shards(list(reversed(parts)), tmp_path / "all.nc", block_samples=1)
    with xr.open_dataset(one) as a, xr.open_dataset(merged) as b:
        assert b["sample"].values.tolist() == list(range(7))
        for name in ("temperature", "vorticity"):
            np.testing.assert_array_equal(a[name].values, b[name].values)
            assert a[name].attrs == b[name].attrs
        assert b.attrs["sciscore_status"] == "complete" and "sciscore_shard" not in b.attrs
        assert json.loads(a.attrs["sciscore_request"]) == json.loads(b.attrs["sciscore_request"])
        for key in ("sciscore_model_checksum", "sciscore_seed", "sciscore_solver", "sciscore_steps",
                    "sciscore_nfe_per_sample", "Conventions"):
            assert a.attrs[key] == b.attrs[key]


def test_an_interrupted_shard_resumes_to_the_same_samples(model, tmp_path, monkeypatch):
    reference = generate_file(model, tmp_path / "ref.nc", 7, seed=4, batch_size=1, shard=Shard(2, 3), **FAST)
    interrupt_after(monkeypatch, "append_samples", 1)
    with pytest.raises(KeyboardInterrupt):
        generate_file(model, tmp_path / "s.nc", 7, seed=4, batch_size=1, shard=Shard(2, 3), **FAST)
    monkeypatch.undo()
    generate_file(model, tmp_path / "s.nc", 7, seed=4, batch_size=1, shard=Shard(2, 3), resume=True, **FAST)
    with xr.open_dataset(reference) as a, xr.open_dataset(tmp_path / "s.nc") as b:
        assert b["sample"].values.tolist() == [4, 5, 6]
        np.testing.assert_array_equal(a["vorticity"].values, b["vorticity"].values)


def test_merge_refuses_missing_incomplete_and_foreign_shards(model, tmp_path, capsys):
    parts = _shards(model, tmp_path)
    with pytest.raises(UserError, match=r"samples 2\.\.3 of 7 are missing \(shard 1/3\)"):
        merge_shards([parts[0], parts[2]], tmp_path / "a.nc")
    with pytest.raises(UserError, match=r"samples 4\.\.6 of 7 are missing \(shard 2/3\)"):
        merge_shards(parts[:2], tmp_path / "a.nc")
    with pytest.raises(UserError, match="overlaps"):
        merge_shards([*parts, parts[1]], tmp_path / "a.nc")
    foreign = generate_file(model, tmp_path / "foreign.nc", 7, seed=5, batch_size=2, shard=Shard(1, 3), **FAST)
    with pytest.raises(UserError, match=r"foreign.nc belongs to another run .*\(different seed\)"):
        merge_shards([parts[0], foreign, parts[2]], tmp_path / "a.nc")
    with netCDF4.Dataset(parts[1], "a") as nc:  # as an interrupted job leaves it
        nc.setncattr("sciscore_status", "incomplete")
        nc.setncattr("sciscore_samples_written", np.int64(1))
    argv = ["merge", *map(str, parts), "-o", str(tmp_path / "a.nc"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "part1.nc (shard 1/3, samples 2..3) is incomplete (1 of 2 samples written)" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "a.nc").exists()
    assert main(["merge", str(tmp_path / "nothing.nc"), "-o", str(tmp_path / "a.nc")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_shard_and_merge(run_dir, tmp_path, monkeypatch):  # noqa: F811
    common = ["generate", "--model", str(run_dir), "-n", "5", "--solver", "ode-heun", "--steps", "2",
              "--seed", "3", "--device", "cpu", "--batch-size", "1", "--quiet"]
    for task in ("0", "1"):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", task)
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
        assert main([*common, "--shard", "auto", "-o", str(tmp_path / "part_{shard}.nc")]) == 0
    assert main([*common, "-o", str(tmp_path / "one.nc")]) == 0
    assert main(["merge", str(tmp_path / "part_1.nc"), str(tmp_path / "part_0.nc"), "-o", str(tmp_path / "all.nc"),
                 "--quiet"]) == 0
    with xr.open_dataset(tmp_path / "one.nc") as a, xr.open_dataset(tmp_path / "all.nc") as b:
        np.testing.assert_array_equal(a["vorticity"].values, b["vorticity"].values)
        np.testing.assert_array_equal(a["sample"].values, b["sample"].values)


@pytest.mark.slow  # two fresh interpreters import torch
def test_torchrun_generate_writes_one_file_equal_to_one_job(run_dir, tmp_path):  # noqa: F811
    import os
    import subprocess
    import sys

    common = ["generate", "--model", str(run_dir), "-n", "5", "--solver", "ode-heun", "--steps", "2",
              "--seed", "3", "--device", "cpu", "--batch-size", "1", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "sciscore", *common, "-o", str(tmp_path / "ranks.nc")],
                          env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert main([*common, "-o", str(tmp_path / "one.nc")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.nc", "ranks.nc"]  # the part files are gone
    with xr.open_dataset(tmp_path / "one.nc") as a, xr.open_dataset(tmp_path / "ranks.nc") as b:
        assert b.attrs["sciscore_status"] == "complete"
        for name in ("temperature", "vorticity", "sample"):
            np.testing.assert_array_equal(a[name].values, b[name].values)


def test_zarr_shards_write_one_store_equal_to_the_one_job_file(model, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from sciscore.fields import open_fields

    one = generate_file(model, tmp_path / "one.nc", 7, seed=4, batch_size=2, **FAST)
    store = tmp_path / "all.zarr"
    # the three shards at once: each may be the first to make the store; they write their regions of it
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda i: generate_file(model, store, 7, seed=4, batch_size=2, shard=Shard(i, 3), **FAST),
                      (2, 0, 1)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.zarr", "one.nc"]  # no temporary store left
    with xr.open_dataset(one) as a, xr.open_zarr(store) as b:
        assert b.attrs["sciscore_status"] == "complete" and b.attrs["sciscore_shards"] == 3
        assert b["sample_written"].values.tolist() == [1] * 7
        assert b["sample"].values.tolist() == list(range(7))
        for name in ("temperature", "vorticity"):
            np.testing.assert_array_equal(a[name].values, b[name].values)  # sample for sample, bit for bit
            assert a[name].attrs == b[name].attrs
        assert json.loads(a.attrs["sciscore_request"]) == json.loads(b.attrs["sciscore_request"])
        for key in ("sciscore_model_checksum", "sciscore_model", "sciscore_seed", "sciscore_solver",
                    "sciscore_steps", "sciscore_nfe_per_sample", "sciscore_version", "sciscore_torch_version",
                    "Conventions", "title", "source"):
            assert a.attrs[key] == b.attrs[key]
        assert "generate_file(n=7" in b.attrs["history"]  # the CF history of the NetCDF output
    opened = open_fields(store)  # complete now: diagnose and train read it as any field file
    assert list(opened.data_vars) == ["temperature", "vorticity"]
    # the store converted to NetCDF is the one-job file
    merged = merge_shards([store], tmp_path / "merged.nc", block_samples=3)
    with xr.open_dataset(one) as a, xr.open_dataset(merged) as b:
        for name in ("temperature", "vorticity", "sample"):
            np.testing.assert_array_equal(a[name].values, b[name].values)
        assert b.attrs["sciscore_status"] == "complete" and "sciscore_shards" not in b.attrs
        assert json.loads(a.attrs["sciscore_request"]) == json.loads(b.attrs["sciscore_request"])


def test_a_killed_zarr_shard_resumes_and_an_incomplete_store_is_refused(model, run_dir, tmp_path, capsys,  # noqa: F811
                                                                        monkeypatch):
    from sciscore.fields import open_fields
    reference = generate_file(model, tmp_path / "ref.nc", 7, seed=4, batch_size=1, shard=Shard(2, 3), **FAST)
    store = tmp_path / "s.zarr"
    interrupt_after(monkeypatch, "append_store_samples", 1)
    with pytest.raises(KeyboardInterrupt):
        generate_file(model, store, 7, seed=4, batch_size=1, shard=Shard(2, 3), **FAST)
    monkeypatch.undo()
    with pytest.raises(UserError, match=r"shard 2/3 of .*s.zarr already holds 1 of its 3 samples; pass --resume"):
        generate_file(model, store, 7, seed=4, batch_size=1, shard=Shard(2, 3), **FAST)
    with pytest.raises(UserError, match=r"holds another run \(different seed\)"):
        generate_file(model, store, 7, seed=5, batch_size=1, shard=Shard(0, 3), **FAST)
    with pytest.raises(UserError, match=r"laid out for 3 shard\(s\), not 2; use --shard I/3"):
        generate_file(model, store, 7, seed=4, batch_size=1, shard=Shard(1, 2), **FAST)
    generate_file(model, store, 7, seed=4, batch_size=1, shard=Shard(2, 3), resume=True, **FAST)
    with xr.open_dataset(reference) as a, xr.open_zarr(store) as b:
        np.testing.assert_array_equal(a["vorticity"].values, b["vorticity"].values[4:])
        assert np.isnan(b["vorticity"].values[:4]).all()  # shards 0/3 and 1/3 never ran
    with pytest.raises(UserError, match=r"s.zarr is incomplete: 4 of 7 samples are missing "
                                        r"\(samples 0\.\.3; shards 0/3, 1/3\); run those shards again with --resume"):
        open_fields(store)
    argv = ["merge", str(store), "-o", str(tmp_path / "all.nc"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "s.zarr is incomplete: 4 of 7 samples are missing (samples 0..3; shards 0/3, 1/3)" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "all.nc").exists()
    # the command line: the two missing shards, then merge checks the store
    common = ["generate", "--model", str(run_dir), "-n", "7", "--solver", "ode-heun", "--steps", "3",
              "--seed", "4", "--device", "cpu", "--batch-size", "1", "--quiet", "-o", str(store)]
    for shard in ("0/3", "1/3"):
        assert main([*common, "--shard", shard]) == 0
    assert main(["merge", str(store), "--quiet"]) == 0
    assert main(["merge", str(store), "-o", str(tmp_path / "copy.zarr")]) == 2
    assert "give a name ending in .nc" in capsys.readouterr().err
    # a SIGKILL between a batch's fields and its flags: fields half-written, flags still 0
    import zarr

    group = zarr.open_group(str(store), mode="r+")
    group["vorticity"][5:7] = 0.0
    group["sample_written"][5:7] = 0
    assert main([*common, "--shard", "2/3", "--resume"]) == 0  # redraws samples 5 and 6
    with xr.open_dataset(reference) as a, xr.open_zarr(store) as b:
        np.testing.assert_array_equal(a["vorticity"].values, b["vorticity"].values[4:])
        assert b["sample_written"].values.tolist() == [1] * 7
    assert main(["merge", str(store), str(reference), "-o", str(tmp_path / "all.nc")]) == 2
    assert "give that store alone" in capsys.readouterr().err


def test_torchrun_generate_to_a_store_writes_the_rank_regions(run_dir, tmp_path, monkeypatch):  # noqa: F811
    # the torchrun code path in this process, as a group of one gloo rank (the two-rank launch is
    # test_torchrun_generate_writes_one_file_equal_to_one_job; regions of a store are tested above)
    import argparse
    import socket

    from sciscore.commands import generate as command

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(name, value)
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    common = ["generate", "--model", str(run_dir), "-n", "5", "--solver", "ode-heun", "--steps", "2",
              "--seed", "3", "--device", "cpu", "--batch-size", "2", "--quiet"]
    assert command._run_under_torchrun(parser.parse_args([*common, "-o", str(tmp_path / "ranks.zarr")]), {}) == 0
    # --resume after the end does nothing; --overwrite starts again
    assert command._run_under_torchrun(parser.parse_args([*common, "--resume", "-o", str(tmp_path / "ranks.zarr")]),
                                       {}) == 0
    assert command._run_under_torchrun(parser.parse_args([*common, "--overwrite", "-o", str(tmp_path / "ranks.zarr")]),
                                       {}) == 0
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name)
    assert main([*common, "-o", str(tmp_path / "one.nc")]) == 0
    with xr.open_dataset(tmp_path / "one.nc") as a, xr.open_zarr(tmp_path / "ranks.zarr") as b:
        assert b.attrs["sciscore_status"] == "complete"
        for name in ("temperature", "vorticity", "sample"):
            np.testing.assert_array_equal(a[name].values, b[name].values)


def test_merge_refuses_a_file_that_simulate_wrote(tmp_path, capsys):
    """`sciscore simulate` writes the same progress attributes as generate; merge takes only shards."""
    from sciscore.simulate.output import simulate_file
    from sciscore.simulate.recipes import Recipe

    path = tmp_path / "simulated.nc"
    simulate_file(Recipe(resolution=8, samples=2, members=2, spinup=0.5, interval=0.5, threads=1), path)
    assert main(["merge", str(path), "-o", str(tmp_path / "all.nc")]) == 2
    assert capsys.readouterr().err.strip().endswith("was not written by 'sciscore generate'; only its output files can be merged")
    assert not (tmp_path / "all.nc").exists()


def _assert_same_store(reference, path):
    """The samples, flags and status of two stores of one run are equal, sample for sample, bit for bit."""
    with xr.open_zarr(reference) as a, xr.open_zarr(path) as b:
        assert b.attrs["sciscore_status"] == "complete" and b.sizes["sample"] == a.sizes["sample"]
        assert b["sample_written"].values.tolist() == [1] * a.sizes["sample"]
        for name in ("temperature", "vorticity", "sample"):
            np.testing.assert_array_equal(a[name].values, b[name].values)
        assert json.loads(a.attrs["sciscore_request"]) == json.loads(b.attrs["sciscore_request"])
        # the provenance too, the number of score evaluations included; only the command lines (-o)
        # and the layout (the number of shards) differ
        differ = {key for key in set(a.attrs) | set(b.attrs) if a.attrs.get(key) != b.attrs.get(key)}
        assert differ <= {"history", "sciscore_command", "sciscore_shards"}, differ
        assert a.attrs["sciscore_nfe_per_sample"] == b.attrs["sciscore_nfe_per_sample"] == 2 * 3 + 1


ZARR_RUN = ["generate", "-n", "40", "--batch-size", "1", "--solver", "ode-heun", "--steps", "3", "--seed", "5",
            "--device", "cpu", "--threads", "1", "--quiet"]


@pytest.mark.slow  # three more interpreters start (torch imports); a few seconds each on an idle machine
def test_a_sigkilled_store_is_refused_then_resumed_to_the_one_job_store(run_dir, tmp_path, capsys):  # noqa: F811
    """A real `python -m sciscore generate -o killed.zarr` killed (SIGKILL: no handler runs) at a
    seeded random batch: merge and open name the missing samples; --resume finishes the store with
    exactly the samples of an uninterrupted run."""
    import random
    import signal
    import time

    import zarr

    from sciscore.fields import open_fields

    argv = [*ZARR_RUN, "--model", str(run_dir)]
    reference, store = tmp_path / "reference.zarr", tmp_path / "killed.zarr"
    assert main([*argv, "-o", str(reference)]) == 0
    process = sciscore_process([*argv, "-o", str(store)])
    # watch the batches land by the chunk files of one variable (batch 1: one chunk a batch); the
    # template leaves the data chunks unwritten, so each file is a batch's fields (zarr writes a
    # chunk to NAME.<uuid>.partial and renames it)
    draw = random.Random(29)
    batches, deadline = draw.randrange(2, 20), time.monotonic() + 120
    chunks = store / "vorticity"
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the run ended before it could be killed: {process.communicate()}"
        if chunks.is_dir() and sum(not p.name.startswith(".") and p.suffix != ".partial" for p in chunks.iterdir()) >= batches:
            break
        time.sleep(0.001)
    time.sleep(draw.uniform(0, 0.005))
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    process.communicate()
    flags = zarr.open_group(str(store), mode="r")["sample_written"][:]
    written = int(flags.sum())
    assert batches - 1 <= written < 40 and flags[:written].all()  # a prefix: the batches in order
    missing = f"{40 - written} of 40 samples are missing (samples {written}..39; shard 0/1)"
    # (a) merge and open refuse the store, naming the samples a --resume must draw
    assert main(["merge", str(store), "-o", str(tmp_path / "all.nc"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"killed.zarr is incomplete: {missing}" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "all.nc").exists()
    with pytest.raises(UserError, match=re.escape(missing)):
        open_fields(store)
    with xr.open_zarr(store) as partial:
        assert partial.attrs["sciscore_status"] == "incomplete"
    # (b) --resume finishes it; (c) into the store of the uninterrupted run
    assert main([*argv, "--resume", "-o", str(store)]) == 0
    _assert_same_store(reference, store)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed.zarr", "reference.zarr"]  # nothing hidden left
    # a SIGKILL after the last sample's flags, before the store is marked complete (so neither the
    # status nor the killed job's attributes reached the group): --resume marks it, with the score
    # evaluations per sample that the jobs kept on the flags; so does merge
    for finish in ([*argv, "--resume", "-o", str(store)], ["merge", str(store), "--quiet"]):
        group = zarr.open_group(str(store), mode="r+")
        group.attrs["sciscore_status"] = "incomplete"
        del group.attrs["sciscore_nfe_per_sample"]
        zarr.consolidate_metadata(str(store))
        assert main(finish) == 0
        _assert_same_store(reference, store)
    assert main([*argv, "--resume", "-o", str(store)]) == 2
    assert "is already complete (40 samples); nothing to resume" in capsys.readouterr().err
    assert main(["merge", str(store), "--quiet"]) == 0


@pytest.mark.slow  # two more interpreters start at once (torch imports)
def test_two_shard_processes_write_one_store_at_once_equal_to_the_one_job_store(run_dir, tmp_path):  # noqa: F811
    """`--shard 0/2` and `--shard 1/2` started together as separate processes on one -o OUT.zarr:
    either may create the store, the other joins it; the store is the one-job run's."""
    argv = [*ZARR_RUN, "--model", str(run_dir)]
    store = tmp_path / "shared.zarr"
    processes = [sciscore_process([*argv, "--shard", shard, "-o", str(store)]) for shard in ("1/2", "0/2")]
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        assert err == ""  # -q: not a warning from the other writer
    assert main([*argv, "-o", str(tmp_path / "one.zarr")]) == 0
    _assert_same_store(tmp_path / "one.zarr", store)
    with xr.open_zarr(store) as shared:
        assert shared.attrs["sciscore_shards"] == 2
    assert main(["merge", str(store), "-o", str(tmp_path / "all.nc"), "--quiet"]) == 0
    with xr.open_zarr(store) as a, xr.open_dataset(tmp_path / "all.nc") as b:
        for name in ("temperature", "vorticity", "sample"):
            np.testing.assert_array_equal(a[name].values, b[name].values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.nc", "one.zarr", "shared.zarr"]  # no temporary store
