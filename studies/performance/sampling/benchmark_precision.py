"""Sampling in bfloat16 autocast against float32: the default model's network and the whole command.

Part 1 (in this process): CPU time of one network evaluation of the shipped default model on a batch
of `--batch` fields, float32 against bfloat16 autocast (and float32 with channels_last), medians of
interleaved repeats, one torch thread unless `--threads`; and the relative difference of the bf16
score from the float32 one at a few noise levels.
Part 2 (whole processes): `sciscore generate --variable supersaturation` (32 fields, the default
sampler) with and without `--bf16`, run alternately `--runs` times; wall and CPU seconds of the
child, the ratio taken pair by pair.

Quality is judged separately with `studies/default-model/evaluate.py --bf16` (the bars of issue 10).

Usage: python studies/performance/sampling/benchmark_precision.py [--runs 5] [--threads 1] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from sciscore.generate import load_model


def network_times(batch: int, repeats: int) -> dict:
    model = load_model(device="cpu")
    network = model.network
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((batch, *model.shape), generator=generator)
    x_channels_last = x.contiguous(memory_format=torch.channels_last)
    variants = {
        "float32": lambda t: network.score(x, t),
        "bfloat16 autocast": lambda t: _autocast(network.score, x, t),
        "float32, channels_last input": lambda t: network.score(x_channels_last, t),
    }
    times = {name: [] for name in variants}
    t = torch.full((batch,), 1.0)
    with torch.no_grad():
        for function in variants.values():  # warm-up (oneDNN primitives, allocator)
            function(t)
        for _ in range(repeats):
            for name, function in variants.items():
                start = time.thread_time()
                function(t)
                times[name].append(time.thread_time() - start)
        errors = {}
        for sigma in (0.05, 1.0, 20.0):
            level = torch.full((batch,), sigma)
            exact = network.score(x * (1 + sigma), level)
            errors[str(sigma)] = float((_autocast(network.score, x * (1 + sigma), level) - exact).norm() / exact.norm())
    base = statistics.median(times["float32"])
    row = {"batch": batch, "shape": list(model.shape),
           "ms_per_evaluation": {name: 1e3 * statistics.median(v) for name, v in times.items()},
           "ratio_to_float32": {name: statistics.median(v) / base for name, v in times.items()},
           "bf16_relative_score_difference_at_sigma": errors}
    print(json.dumps(row), flush=True)
    return row


def _autocast(score, x, t):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return score(x, t).float()


def run_once(arguments: list[str]) -> dict:
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "sciscore", *arguments], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    stderr = process.stderr.read().decode()
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"sciscore {' '.join(arguments)} failed: {stderr.strip()}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime}


def whole_command(runs: int, threads: int | None) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        plain = ["generate", "--variable", "supersaturation", "-o", str(Path(scratch) / "out.nc"), "--overwrite", "-q"]
        if threads:
            plain += ["--threads", str(threads)]
        run_once(plain)  # warm-up: file caches
        float32, bfloat16 = [], []
        for _ in range(runs):
            float32.append(run_once(plain))
            bfloat16.append(run_once(plain + ["--bf16"]))
    row = {"command": "sciscore generate --variable supersaturation" + (f" --threads {threads}" if threads else ""),
           "runs": runs}
    for key in ("wall", "cpu"):
        row[f"{key}_float32"] = statistics.median(r[key] for r in float32)
        row[f"{key}_bf16"] = statistics.median(r[key] for r in bfloat16)
        ratios = [b[key] / a[key] for a, b in zip(float32, bfloat16)]
        row[f"{key}_ratio_bf16_to_float32"] = statistics.median(ratios)
        row[f"{key}_ratio_range"] = [min(ratios), max(ratios)]
    print(json.dumps(row), flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16, help="fields per network evaluation (generate's default)")
    parser.add_argument("--repeats", type=int, default=9, help="interleaved repeats of part 1")
    parser.add_argument("--runs", type=int, default=5, help="pairs of whole commands in part 2 (0: skip)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, both parts")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [network_times(args.batch, args.repeats)]
    if args.runs:
        rows.append(whole_command(args.runs, args.threads))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
