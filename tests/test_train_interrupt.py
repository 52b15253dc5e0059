"""Interrupted training: SIGTERM (a batch job's time limit) and SIGINT save a checkpoint and exit
130, and --resume then continues bit-exactly; a torn last line of metrics.jsonl is dropped."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import make_fields
from sciscore import checkpoint as ckpt
from sciscore.cli import main

CONFIG = """
[network]
channels = [8, 16]
num_residual = 1
embed_dim = 16
bypass_width = 16
padding = "circular"
"""


def _argv(tmp_path, run, steps):
    return ["train", "--data", str(tmp_path / "data.nc"), "--variable", "temperature", "--variable", "vorticity",
            "--config", str(tmp_path / "net.toml"), "--batch-size", "4", "--validation-fraction", "0",
            "--steps", str(steps), "--log-every", "1", "--checkpoint-every", "100000", "--validation-every", "0",
            "--monitor-every", "0", "--threads", "1", "--device", "cpu", "-q", "-o", str(run)]


@pytest.fixture
def inputs(tmp_path):
    make_fields(n=16, ny=8, nx=8).to_netcdf(tmp_path / "data.nc")
    (tmp_path / "net.toml").write_text(CONFIG)
    return tmp_path


def _weights(run, step):
    return ckpt.read_weights(run, step, ema=True)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_is_bit_exact(inputs):
    """A real SIGTERM to a running `sciscore train` (SIGINT takes the same handler, tested below)."""
    run = inputs / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "sciscore", *_argv(inputs, run, 1_000_000)],
                               stderr=subprocess.PIPE, text=True, env=env)
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.is_file() and metrics.read_text().count("\n") >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "checkpoint saved" in err and "--resume" in err
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]
    stopped = ckpt.read_checkpoint(run).step
    assert stopped >= 3
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps[-1] == stopped

    assert main([*_argv(inputs, run, stopped + 3), "--resume"]) == 0
    reference = inputs / "reference"
    assert main(_argv(inputs, reference, stopped + 3)) == 0
    resumed, uninterrupted = _weights(run, stopped + 3), _weights(reference, stopped + 3)
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
    losses = [[r["loss"] for r in map(json.loads, (path / "metrics.jsonl").read_text().splitlines())]
              for path in (run, reference)]
    assert losses[0] == losses[1]


def test_torn_last_metrics_line_is_dropped_on_resume(inputs):
    run = inputs / "run"
    assert main(_argv(inputs, run, 3)) == 0
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "loss": 0.12')  # killed while writing
    assert main([*_argv(inputs, run, 5), "--resume"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]


def test_corrupt_earlier_metrics_line_is_one_line_error(inputs, capsys):
    run = inputs / "run"
    assert main(_argv(inputs, run, 3)) == 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[0] = lines[0][:10]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main([*_argv(inputs, run, 5), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 1 is corrupt" in err[0]


def test_sigint_and_sigterm_set_the_stop_request_and_a_second_signal_interrupts():
    from sciscore.stopping import stop_on_signals

    # the handlers in place before (SIGINT is ignored when the tests run as a background job)
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in (signal.SIGINT, signal.SIGTERM):
        with stop_on_signals() as stop:
            os.kill(os.getpid(), signum)
            assert stop.requested and stop.signal == signum
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signum)
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_stop_request_saves_the_step_and_raises(inputs):
    from sciscore.stopping import StopRequest
    from sciscore.train.trainer import train

    stop = StopRequest()
    stop.signal = signal.SIGINT  # as if Ctrl-C came during the first step
    config = {"data": {"paths": [str(inputs / "data.nc")], "variables": ["temperature"], "validation_fraction": 0.0},
              "network": {"channels": [8, 16], "num_residual": 1, "embed_dim": 16, "bypass_width": 16},
              "training": {"steps": 50, "batch_size": 4, "validation_every": 0, "quiet": True, "device": "cpu"}}
    with pytest.raises(KeyboardInterrupt):
        train(config, inputs / "run", stop=stop)
    assert ckpt.read_checkpoint(inputs / "run").step == 1


def test_save_killed_halfway_resumes_from_the_previous_checkpoint(inputs):
    """A SIGKILL between the renames of a save leaves weights of step 4 with config.json and the
    training state of step 2: --resume puts back the previous checkpoint (kept as hard links in
    .previous/) and repeats the uninterrupted run bit for bit; stray temporary files go."""
    import shutil

    run, reference = inputs / "run", inputs / "reference"
    argv = lambda path, steps: [*_argv(inputs, path, steps)[:-3], "--checkpoint-every", "2", "-o", str(path)]
    assert main(argv(run, 4)) == 0
    assert ckpt.read_checkpoint(run / ".previous").step == 2
    for name in (ckpt.CONFIG, ckpt.STATE):  # the state a kill after the EMA rename leaves
        shutil.copy2(run / ".previous" / name, run / name)
    (run / ".training_state.pt.tmp").write_bytes(b"torn")
    with pytest.raises(Exception):
        ckpt.read_weights(run, 2)
    assert main([*argv(run, 6), "--resume"]) == 0
    assert not list(run.glob(".*.tmp"))
    assert main(argv(reference, 6)) == 0
    resumed, uninterrupted = _weights(run, 6), _weights(reference, 6)
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)


def test_resume_from_another_directory_with_a_relative_data_path(inputs, monkeypatch):
    monkeypatch.chdir(inputs)
    argv = _argv(inputs, inputs / "run", 2)
    argv[argv.index(str(inputs / "data.nc"))] = "data.nc"
    assert main(argv) == 0
    assert ckpt.read_checkpoint(inputs / "run").training_config["data"]["paths"] == [str(inputs / "data.nc")]
    elsewhere = inputs / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", "-o", str(inputs / "run"), "--resume", "--steps", "3", "-q", "--device", "cpu"]) == 0
    assert ckpt.read_checkpoint(inputs / "run").step == 3
