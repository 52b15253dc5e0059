"""The job templates of docs/hpc.md: valid bash, #SBATCH headers sbatch reads, and dry runs whose
commands parse with the sciscore (and torchrun) command lines."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from sciscore.cli import build_parser
from sciscore.generate.shards import parse_shard

HPC = Path(__file__).resolve().parents[1] / "docs" / "hpc"
SBATCH = sorted(HPC.glob("*.sbatch"))


def _dry_run(script: Path, cwd: Path, **env) -> list[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE"))}
    done = subprocess.run(["bash", str(script)], cwd=cwd, env={**environment, **env}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return shlex.split(done.stdout)


def test_templates_exist_and_are_linked_from_the_docs():
    names = {p.name for p in HPC.iterdir()}
    assert {"generate_array.sbatch", "merge.sbatch", "train_torchrun.sbatch", "diagnose_cluster.py"} <= names
    text = (HPC.parent / "hpc.md").read_text()
    assert all(f"hpc/{name}" in text for name in names)


@pytest.mark.parametrize("script", SBATCH, ids=lambda p: p.name)
def test_sbatch_headers_come_before_the_first_command(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/bin/bash"
    first_command = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    headers = [i for i, line in enumerate(lines) if line.startswith("#SBATCH")]
    assert headers and max(headers) < first_command  # sbatch stops reading options at the first command
    for i in headers:
        assert re.fullmatch(r"#SBATCH --[a-z-]+(=\S+)?", lines[i]), lines[i]


def test_generate_array_dry_run(tmp_path):
    argv = _dry_run(HPC / "generate_array.sbatch", tmp_path, SCISCORE="echo sciscore",
                    SLURM_ARRAY_TASK_ID="3", SLURM_ARRAY_TASK_COUNT="8")
    assert argv[0] == "sciscore"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "generate" and args.shard == "auto" and args.output == "shards/part_3.nc"
    assert not args.resume
    array = re.search(r"#SBATCH --array=(\d+)-(\d+)", (HPC / "generate_array.sbatch").read_text())
    count = int(array[2]) - int(array[1]) + 1
    assert str(parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": str(count)})) == "3/8"
    (tmp_path / "shards" / "part_3.nc").touch()  # a re-run task resumes its shard
    argv = _dry_run(HPC / "generate_array.sbatch", tmp_path, SCISCORE="echo sciscore",
                    SLURM_ARRAY_TASK_ID="3", SLURM_ARRAY_TASK_COUNT="8")
    assert build_parser().parse_args(argv[1:]).resume
    # one Zarr store for all tasks: --resume once the store exists (a task joining it starts its region)
    store = dict(SCISCORE="echo sciscore", SLURM_ARRAY_TASK_ID="3", SLURM_ARRAY_TASK_COUNT="8", STORE="all.zarr")
    args = build_parser().parse_args(_dry_run(HPC / "generate_array.sbatch", tmp_path, **store)[1:])
    assert args.output == "all.zarr" and args.shard == "auto" and not args.resume
    (tmp_path / "all.zarr").mkdir()
    assert build_parser().parse_args(_dry_run(HPC / "generate_array.sbatch", tmp_path, **store)[1:]).resume


def test_merge_dry_run(tmp_path):
    (tmp_path / "shards").mkdir()
    for i in range(3):
        (tmp_path / "shards" / f"part_{i}.nc").touch()
    argv = _dry_run(HPC / "merge.sbatch", tmp_path, SCISCORE="echo sciscore")
    args = build_parser().parse_args(argv[1:])
    assert args.command == "merge" and args.output == "generated.nc"
    assert args.shards == [f"shards/part_{i}.nc" for i in range(3)]
    args = build_parser().parse_args(_dry_run(HPC / "merge.sbatch", tmp_path, SCISCORE="echo sciscore",
                                              STORE="all.zarr")[1:])
    assert args.shards == ["all.zarr"] and args.output == "generated.nc"
    args = build_parser().parse_args(_dry_run(HPC / "merge.sbatch", tmp_path, SCISCORE="echo sciscore",
                                              STORE="all.zarr", MERGED="")[1:])
    assert args.shards == ["all.zarr"] and args.output is None  # the check alone


def test_train_torchrun_dry_run(tmp_path):
    from torch.distributed.run import get_args_parser

    argv = _dry_run(HPC / "train_torchrun.sbatch", tmp_path, SRUN="", TORCHRUN="echo torchrun",
                    PATH=os.environ["PATH"])
    assert argv[0] == "torchrun"
    launcher = get_args_parser().parse_args(argv[1:])
    assert launcher.module and launcher.training_script == "sciscore" and launcher.nproc_per_node == "4"
    args = build_parser().parse_args(launcher.training_script_args)
    assert args.command == "train" and args.config == "train.toml" and not args.resume


def test_diagnose_cluster_script_falls_back_to_a_local_cluster(tmp_path):
    done = subprocess.run([sys.executable, str(HPC / "diagnose_cluster.py"), "--reference", "a.nc", "--samples",
                           "b.nc", "-o", "report", "--dry-run"], env={**os.environ, "PATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "cluster: LocalCluster"  # no sbatch on this PATH
