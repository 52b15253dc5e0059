"""Data-parallel training throughput: samples/s of `torchrun --nproc_per_node=R -m sciscore train`
for R = 1, 2, ... ranks at the same global batch, in one run (the ratio is the figure).

    python studies/performance/training/benchmark_ranks.py --ranks 1 2 --batch 16 --steps 8   # CPU, gloo
    python studies/performance/training/benchmark_ranks.py --device cuda --ranks 1 2 4        # NCCL

Each rank runs one torch thread on the CPU. The figure is the trainer's own samples/s (global
batch x steps / wall time of the logging interval) over the timed steps, after --warmup steps.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr


def fields(n: int, size: int, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    data = {v: (("sample", "y", "x"), rng.normal(size=(n, size, size)).astype("float32"), {"units": "1"})
            for v in ("supersaturation", "vorticity")}
    return xr.Dataset(data, coords={"y": np.arange(size, dtype=float), "x": np.arange(size, dtype=float)})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=16, help="global batch")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", default="16,32,64")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default=None, help="JSON file for the results")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fields(4 * args.batch, args.size).to_netcdf(tmp / "fields.nc")
        channels = ", ".join(args.channels.split(","))
        (tmp / "config.toml").write_text(f"""
[data]
variables = ["supersaturation", "vorticity"]
validation_fraction = 0.0
shifts = true
[network]
channels = [{channels}]
num_residual = 1
[training]
steps = {args.warmup + args.steps}
batch_size = {args.batch}
log_every = 1
checkpoint_every = {args.warmup + args.steps}
validation_every = 0
monitor_every = 0
quiet = true
device = "{args.device}"
""")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        for ranks in args.ranks:
            run = tmp / f"run{ranks}"
            subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            f"--nproc_per_node={ranks}", "-m", "sciscore", "train", "--config",
                            str(tmp / "config.toml"), "--data", str(tmp / "fields.nc"), "-o", str(run)],
                           env=env, check=True)
            records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            rates = [r["samples_per_second"] for r in records if "samples_per_second" in r][args.warmup:]
            results.append({"ranks": ranks, "samples_per_second": statistics.median(rates),
                            "per_step": [round(r, 3) for r in rates]})
            print(f"{ranks} rank(s): {results[-1]['samples_per_second']:.2f} samples/s (median of {len(rates)} steps)")
    base = results[0]["samples_per_second"]
    for r in results:
        r["speedup"] = r["samples_per_second"] / base
        print(f"{r['ranks']} rank(s): x{r['speedup']:.2f} of {results[0]['ranks']} rank(s)")
    record = {"device": args.device, "batch": args.batch, "size": args.size, "channels": args.channels,
              "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "results": results}
    if args.output:
        Path(args.output).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
