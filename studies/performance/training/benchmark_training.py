"""Training throughput (samples/s) of the default score network, measured through the real
trainer (`sciscore.train.train`: data batching, augmentation, loss, backward, clipping, Adam, EMA).

CPU: 64x64 two-channel fields, the default network (channels 32,64,128,256, 8 residual blocks),
each mean-bypass mode (contiguous), and the coupled one with channels_last. CUDA (when available): 64^2, 256^2 and 512^2,
fp32 vs bf16 autocast, eager vs torch.compile.

Each configuration runs `--warmup` steps then `--steps` timed steps; samples/s is taken from the
trainer's own log for the timed interval only. Ratios between rows are measured in one run.

    python studies/performance/training/benchmark_training.py [--device cpu|cuda] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from sciscore.train import config_from_dict, train


def fields(n: int, size: int, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((n, size, size)).astype("float32") + rng.standard_normal((n, 1, 1)).astype("float32")
    w = rng.standard_normal((n, size, size)).astype("float32")
    w -= w.mean(axis=(1, 2), keepdims=True)
    return xr.Dataset({"supersaturation": (("sample", "y", "x"), s), "vorticity": (("sample", "y", "x"), w)},
                      coords={"y": np.arange(size, dtype=float), "x": np.arange(size, dtype=float)})


def measure(data, batch: int, warmup: int, steps: int, device: str, **options) -> float:
    training = {"steps": warmup + steps, "batch_size": batch, "log_every": warmup, "checkpoint_every": 10**9,
                "validation_every": 0, "device": device, "quiet": True}
    network = {"mean_bypass": options.pop("mean_bypass", "coupled")}
    training.update(options)
    config = config_from_dict({"data": {"variables": ["supersaturation", "vorticity"], "validation_fraction": 0.0,
                                        "shifts": True},
                               "network": network, "process": {"name": "ve", "sigma_max": 100.0},
                               "training": training})
    with tempfile.TemporaryDirectory() as run_dir:
        # log_every = warmup: record 1 covers the warm-up, the last record the timed steps
        result = train(config, run_dir, dataset=data)
    timed = [r for r in result.history if "samples_per_second" in r][-1]
    return timed["samples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / f"results_{'cuda' if torch.cuda.is_available() else 'cpu'}.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []

    def record(**row):
        rows.append(row)
        print(json.dumps(row), flush=True)

    if args.device == "cpu":
        data = fields(args.batch * 4, 64)
        for mode, channels_last in (("coupled", False), ("coupled", True), ("independent", False), ("none", False)):
            if True:
                sps = measure(data, args.batch, args.warmup, args.steps, "cpu", mean_bypass=mode, channels_last=channels_last)
                record(device="cpu", size=64, mean_bypass=mode, channels_last=channels_last, precision="fp32",
                       compiled=False, batch=args.batch, samples_per_second=sps)
    else:
        for size, batch in ((64, 64), (256, 16), (512, 4)):
            data = fields(batch * 4, size)
            for bf16 in (False, True):
                for compiled in (False, True):
                    clock = time.perf_counter()
                    sps = measure(data, batch, max(args.warmup, 5), args.steps * 3, "cuda", bf16=bf16, compile=compiled,
                                  channels_last=True)
                    record(device=torch.cuda.get_device_name(), size=size, mean_bypass="coupled", channels_last=True,
                           precision="bf16" if bf16 else "fp32", compiled=compiled, batch=batch,
                           samples_per_second=sps, wall_seconds=time.perf_counter() - clock)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            "processor": platform.processor(), "rows": rows}
    Path(args.out).write_text(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
