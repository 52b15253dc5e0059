"""Data-parallel training under torchrun: 2 gloo ranks on the CPU take the steps of one process
with the same global batch, up to the order of floating-point summation; rank 0 alone writes."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import make_fields
from sciscore import checkpoint as ckpt
from sciscore.cli import main
from sciscore.fields import write_fields
from sciscore.train.distributed import launched_by_torchrun

STEPS = 4
CONFIG = f"""
[data]
variables = ["temperature", "vorticity"]
normalization = "standard"
validation_fraction = 0.25
shifts = true
flips = true
[network]
channels = [8, 16]
num_residual = 1
embed_dim = 16
bypass_width = 16
padding = "circular"
[optimizer]
learning_rate = 0.003
warmup_steps = 1
# a large epsilon: Adam turns the rounding noise of an analytically zero gradient (the output bias
# under the mean bypass) into steps of +-lr, whatever the summation order; that is not data parallelism
eps = 0.001
[training]
steps = {STEPS}
batch_size = 4
checkpoint_every = {STEPS}
validation_every = 2
log_every = 1
monitor_every = 0
quiet = true
device = "cpu"
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    data = write_fields(make_fields(n=16, ny=8, nx=8), root / "fields.nc")
    config = root / "config.toml"
    config.write_text(CONFIG)
    return root, data, config


def _weights(run):
    return ckpt.read_weights(run, STEPS, ema=False)


@pytest.mark.slow  # two fresh interpreters import torch: about 12 s of CPU
def test_two_gloo_ranks_equal_one_process(setup):
    root, data, config = setup
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "sciscore", "train", "--config", str(config), "--data", str(data),
                           "-o", str(root / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(["train", "--config", str(config), "--data", str(data), "-o", str(root / "one")]) == 0
    assert main(["train", "--config", str(config), "--data", str(data), "-o", str(root / "half"),
                 "--batch-size", "2"]) == 0
    one, two, half = _weights(root / "one"), _weights(root / "two"), _weights(root / "half")
    scale = max(float(w.abs().max()) for w in one.values())
    worst = max(float((two[k] - one[k]).abs().max()) for k in one)
    assert worst <= 1e-5 * scale
    # a different global batch moves the weights beyond ten times that tolerance (by 2.7e-4 of scale)
    assert max(float((half[k] - one[k]).abs().max()) for k in one) > 1e-4 * scale
    # rank 0 alone wrote the metrics: one record per step and validation, equal losses
    records = [json.loads(line) for line in (root / "two" / "metrics.jsonl").read_text().splitlines()]
    reference = [json.loads(line) for line in (root / "one" / "metrics.jsonl").read_text().splitlines()]
    assert [sorted(r) for r in records] == [sorted(r) for r in reference]
    for r, s in zip(records, reference):
        for key in ("loss", "validation_loss", "validation_loss_ema"):
            if key in s:
                assert r[key] == pytest.approx(s[key], rel=1e-5)


def test_batch_must_split_evenly(setup):
    import torch.distributed as dist

    root, data, config = setup
    from sciscore.errors import UserError
    from sciscore.train.config import config_from_dict, read_toml
    from sciscore.train.trainer import train

    raw = read_toml(config)
    raw["data"]["paths"] = [str(data)]
    raw["training"]["batch_size"] = 3
    store = torch.distributed.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        with pytest.raises(UserError, match="not a multiple of the 2 processes"):
            train(config_from_dict(raw), root / "odd", rank=0, world_size=2)
    finally:
        dist.destroy_process_group()


def test_torchrun_environment_is_recognized():
    assert launched_by_torchrun({"WORLD_SIZE": "2", "RANK": "0"})
    assert not launched_by_torchrun({"WORLD_SIZE": "1"}) and not launched_by_torchrun({})


@pytest.mark.slow  # two fresh torchruns of two interpreters: about 25 s of CPU
def test_resume_on_another_number_of_ranks(setup):
    # the first half on 2 gloo ranks, the second half resumed by one process (and the reverse): the
    # weights of the uninterrupted one-process run, within the tolerance of the equivalence test above
    root, data, config = setup
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    half = STEPS // 2
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "sciscore", "train", "--config", str(config), "--data", str(data),
                           "--steps", str(half), "-o", str(root / "two_then_one")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ckpt.read_checkpoint(root / "two_then_one").step == half
    assert main(["train", "--config", str(config), "--resume", "--steps", str(STEPS),
                 "-o", str(root / "two_then_one")]) == 0
    if not (root / "one").exists():
        assert main(["train", "--config", str(config), "--data", str(data), "-o", str(root / "one")]) == 0
    one, resumed = _weights(root / "one"), _weights(root / "two_then_one")
    scale = max(float(w.abs().max()) for w in one.values())
    assert max(float((resumed[k] - one[k]).abs().max()) for k in one) <= 1e-5 * scale
    records = [json.loads(line) for line in (root / "two_then_one" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, STEPS + 1))
    # and the other way: the first half in one process, the second resumed on 2 gloo ranks
    assert main(["train", "--config", str(config), "--data", str(data), "--steps", str(half),
                 "-o", str(root / "one_then_two")]) == 0
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "sciscore", "train", "--config", str(config), "--resume", "--steps", str(STEPS),
                           "-o", str(root / "one_then_two")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = _weights(root / "one_then_two")
    assert max(float((resumed[k] - one[k]).abs().max()) for k in one) <= 1e-5 * scale
