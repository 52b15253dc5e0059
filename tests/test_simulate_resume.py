"""`sciscore simulate` interrupted anywhere (a stop request, SIGKILL, SIGTERM, SIGINT) and `--resume`d
writes exactly the file of an uninterrupted run; resume refuses files it cannot continue."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import torch
import xarray as xr
from safetensors import safe_open

from sciscore.cli import main
from sciscore.simulate.output import simulate_file
from sciscore.simulate.recipes import Recipe, simulate_dataset
from sciscore.simulate.resume import KEY, state_path, temporary_state_path

ROOT = Path(__file__).resolve().parents[1]
# a coarse spin-up long enough for three chunks of steps, a relax phase, three sampling rounds (the last partial)
LADDER = Recipe(resolution=16, samples=5, members=2, spinup=12.0, interval=0.5, spinup_resolution=8, relax=0.5,
                context_wavenumber=2, threads=1)
# the command-line run that the signal tests interrupt: 60 rounds of a few steps each (long enough that
# none of three runs started side by side ends while the test waits for another on a quiet machine)
KILLED = ["--resolution", "32", "--samples", "120", "--members", "2", "--spinup", "1", "--interval", "0.5",
          "--threads", "1", "-q"]


def assert_same_file(reference, path):
    """The same data, coordinates and run attributes; `path` complete, its saved state removed."""
    with xr.open_dataset(reference) as a, xr.open_dataset(path) as b:
        assert b.attrs["sciscore_status"] == "complete"
        assert b.attrs["sciscore_samples_written"] == a.sizes["sample"] == b.sizes["sample"]
        assert set(a.data_vars) == set(b.data_vars) and set(a.coords) == set(b.coords)
        for name in [*a.data_vars, *a.coords]:
            np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
        for name in ("spinup_end_time", "steps_at_resolution"):
            assert a.attrs[name] == b.attrs[name], name
    assert not state_path(path).exists()


class StopAfter:
    """A stop request that comes after `chunks` chunks of steps (what a signal handler sets)."""

    def __init__(self, chunks: int):
        self.left = chunks

    @property
    def requested(self) -> bool:
        self.left -= 1
        return self.left < 0


@pytest.fixture(scope="module")
def ladder_reference(tmp_path_factory):
    # one thread, as every test runs (conftest): the FFTs round differently with another count, and a
    # module fixture runs before the function-scoped thread fixture
    path = tmp_path_factory.mktemp("reference") / "reference.nc"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        simulate_file(LADDER, path)
    finally:
        torch.set_num_threads(threads)
    return path


def test_streamed_file_equals_the_in_memory_dataset(ladder_reference):
    ds = simulate_dataset(LADDER, progress=False)
    with xr.open_dataset(ladder_reference) as written:
        for name in [*ds.data_vars, *ds.coords]:
            np.testing.assert_array_equal(ds[name].values, written[name].values, err_msg=name)
        for name, value in ds.attrs.items():
            assert np.all(written.attrs[name] == value), name
        assert written.attrs["sciscore_writer"] == "simulate"
        assert json.loads(written.attrs["sciscore_request"])["seed"] == LADDER.seed


def test_stop_after_any_chunk_then_resume_is_bit_exact(ladder_reference, tmp_path):
    counter = StopAfter(10**9)
    simulate_file(LADDER, tmp_path / "counted.nc", stop=counter)
    chunks = 10**9 - counter.left
    seen = set()
    for k in range(chunks):
        path = tmp_path / f"stopped{k}.nc"
        with pytest.raises(KeyboardInterrupt):
            simulate_file(LADDER, path, stop=StopAfter(k), checkpoint_seconds=1e9)
        with safe_open(str(state_path(path)), framework="pt") as state:
            record = json.loads(state.metadata()[KEY])
        seen.add((record["phase"], record["remaining"] > 1e-9))
        with netCDF4.Dataset(path) as nc:
            assert nc.getncattr("sciscore_status") == "incomplete"
            assert nc.getncattr("sciscore_samples_written") == record["samples_written"] == 2 * record["rounds"]
        simulate_file(LADDER, path, resume=True)
        assert_same_file(ladder_reference, path)
    # stopped in the middle of the coarse spin-up, at the end of each phase, and after sampling rounds
    assert {("spinup", True), ("spinup", False), ("relax", False), ("sampling", False)} <= seen


def test_a_state_half_written_by_a_kill_is_removed_on_resume(ladder_reference, tmp_path):
    """A SIGKILL while the state is written leaves its temporary file (never renamed): resume removes
    it and finishes the run; nothing else is ever staged in the output's folder."""
    path = tmp_path / "run.nc"
    with pytest.raises(KeyboardInterrupt):
        simulate_file(LADDER, path, stop=StopAfter(3))
    staged = temporary_state_path(state_path(path))
    staged.write_bytes(b"half a safetensors file")
    assert sorted(p.name for p in tmp_path.iterdir()) == [staged.name, "run.nc", state_path(path).name]
    simulate_file(LADDER, path, resume=True)
    assert_same_file(ladder_reference, path)
    assert [p.name for p in tmp_path.iterdir()] == ["run.nc"]


def test_resume_refuses_what_it_cannot_continue(tmp_path, capsys):
    recipe = Recipe(resolution=16, samples=4, members=2, spinup=0.5, interval=0.5, threads=1)
    small = ["--resolution", "16", "--samples", "4", "--members", "2", "--spinup", "0.5", "--interval", "0.5",
             "--threads", "1", "-q"]  # the same run from the command line

    def refused(argv, message):
        assert main(["simulate", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("sciscore simulate: error:"), err
        assert message in err, err

    path = tmp_path / "run.nc"
    with pytest.raises(KeyboardInterrupt):
        simulate_file(recipe, path, stop=StopAfter(2))
    before = path.read_bytes()
    refused([*small, "--seed", "1", "--resume", "-o", str(path)], "different settings (seed)")
    refused([*small, "--model-param", "tau_c=0.2", "--resume", "-o", str(path)], "different settings (model)")
    refused([*small, "--resume", "--overwrite", "-o", str(path)], "contradict")
    assert path.read_bytes() == before  # a refused resume leaves the file as it was
    refused([*small, "--resume", "-o", str(tmp_path / "missing.nc")], "does not exist")
    other = tmp_path / "other.nc"
    xr.Dataset({"vorticity": (("sample", "y", "x"), np.zeros((2, 8, 8), np.float32))}).to_netcdf(other)
    refused([*small, "--resume", "-o", str(other)], "was not written by 'sciscore simulate'")
    netcdf = tmp_path / "generated.nc"  # an incomplete file of another command is not simulate's to finish
    netcdf.write_bytes(before)
    with netCDF4.Dataset(netcdf, "a") as nc:
        nc.setncattr("sciscore_writer", "generate")
    refused([*small, "--resume", "-o", str(netcdf)], "was not written by 'sciscore simulate'")
    state_path(path).write_bytes(b"not a safetensors file")
    refused([*small, "--resume", "-o", str(path)], "cannot be read")
    state_path(path).unlink()
    refused([*small, "--resume", "-o", str(path)], "saved state")
    assert main(["simulate", *small, "--overwrite", "-o", str(path)]) == 0
    state_path(path).write_bytes(b"left by a run killed after its last write")
    refused([*small, "--resume", "-o", str(path)], "already complete")
    assert not state_path(path).exists()  # the stale state of a complete file is removed
    # an incomplete file refuses to be analysed and names the command that finishes it
    with netCDF4.Dataset(netcdf, "a") as nc:
        nc.setncattr("sciscore_writer", "simulate")
    assert main(["diagnose", "--reference", str(netcdf), "--samples", str(netcdf), "-o", str(tmp_path / "report")]) == 2
    assert "sciscore simulate --resume" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Real signals to a `python -m sciscore simulate` process

def _start(path: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "sciscore", "simulate", *KILLED, "--checkpoint-seconds", "0",
                             "-o", str(path)], env=env, stderr=subprocess.PIPE, text=True)


def _wait_for_round(process: subprocess.Popen, path: Path, rounds: int, timeout: float = 60.0) -> None:
    """Wait until the saved state of the run into `path` is at least `rounds` rounds in (the state
    file is replaced atomically, so reading it never disturbs the run)."""
    state, deadline = state_path(path), time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be interrupted"
        try:
            with safe_open(str(state), framework="pt") as file:
                if json.loads(file.metadata()[KEY])["rounds"] >= rounds:
                    return
        except Exception:  # not there yet, or replaced while being opened
            pass
        time.sleep(0.002)
    raise AssertionError(f"no saved state of round {rounds} after {timeout} s")


@pytest.fixture(scope="module")
def killed_reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("reference") / "reference.nc"
    assert main(["simulate", *KILLED, "-o", str(path)]) == 0
    return path


@pytest.mark.slow  # three interpreters start (torch imports); a few seconds on an idle machine
def test_real_signals_sigkill_anywhere_sigterm_sigint_exit_130_and_resume_bit_exact(killed_reference, tmp_path):
    """Three runs side by side (their start-up overlaps): SIGKILL at a seeded random point,
    SIGTERM and SIGINT after a few rounds; each resumes to the uninterrupted file."""
    draw = random.Random(13)
    signals = {"killed": signal.SIGKILL, "terminated": signal.SIGTERM, "interrupted": signal.SIGINT}
    processes = {name: _start(tmp_path / f"{name}.nc") for name in signals}
    for name, signum in signals.items():
        path = tmp_path / f"{name}.nc"
        _wait_for_round(processes[name], path, draw.randrange(1, 10))
        if signum == signal.SIGKILL:
            time.sleep(draw.uniform(0, 0.02))  # anywhere in the next round: steps, snapshot write or state save
        processes[name].send_signal(signum)
    for name, signum in signals.items():
        process, path = processes[name], tmp_path / f"{name}.nc"
        if signum == signal.SIGKILL:
            assert process.wait(timeout=60) == -signal.SIGKILL
        else:  # the state is saved at the end of the current chunk of steps, then exit 130
            assert process.wait(timeout=60) == 130
            assert process.stderr.read().strip().splitlines()[-1] == "sciscore simulate: interrupted"
        process.stderr.close()
        with netCDF4.Dataset(path) as nc:
            assert nc.getncattr("sciscore_status") == "incomplete"
            assert 2 <= nc.getncattr("sciscore_samples_written") < 120
        assert main(["simulate", *KILLED, "--resume", "-o", str(path)]) == 0
        assert_same_file(killed_reference, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{name}.nc" for name in signals)  # nothing hidden
