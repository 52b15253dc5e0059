"""CPU training throughput of the default model's network (studies/default-model/edm.toml: widths
16, 32, 64, 128, 2 bottleneck blocks, coupled bypass, EDM loss, batch 32, 64 x 64, two channels),
through the real trainer (`sciscore.train.train`: batching, shift and x-flip augmentation, loss,
backward, clipping, Adam, EMA, one host sync per step).

Variants: 1 vs 2 torch threads, channels_last, torch.compile (inductor on CPU), bf16 autocast.
Each variant runs `--warmup` untimed steps (compilation happens there) and `--steps` timed steps;
samples/s is the trainer's own figure for the timed interval. Variants are interleaved over
`--repeats` rounds and the median is reported with its ratio to the fp32 eager 1-thread baseline
of the same run, so that load from other processes on a shared machine hits all variants alike.

    python studies/performance/training/benchmark_default_model.py --repeats 3 --out results_default_model_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

import torch
import xarray as xr

from benchmark_training import fields  # the same synthetic two-channel fields (this script's folder)
from sciscore.train import config_from_dict, read_toml, train

CONFIG = Path(__file__).resolve().parents[2] / "default-model" / "edm.toml"
VARIANTS = {
    "fp32, eager, 1 thread": {"threads": 1},
    "fp32, eager, 2 threads": {"threads": 2},
    "channels_last, 1 thread": {"threads": 1, "channels_last": True},
    "bf16 autocast, 1 thread": {"threads": 1, "bf16": True},
    "torch.compile, 1 thread": {"threads": 1, "compile": True},
}


def measure(data: xr.Dataset, warmup: int, steps: int, options: dict) -> float:
    options = dict(options)
    torch.set_num_threads(options.pop("threads", 1))  # a process setting: train() leaves threads alone
    base = read_toml(CONFIG)
    base["data"] = {**base["data"], "validation_fraction": 0.0}
    base["training"] = {**base["training"], "steps": warmup + steps, "log_every": warmup, "checkpoint_every": 10**9,
                        "validation_every": 0, "monitor_every": 0, "device": "cpu", "quiet": True, **options}
    with tempfile.TemporaryDirectory() as run_dir:
        result = train(config_from_dict(base), run_dir, dataset=data)
    return [r for r in result.history if "samples_per_second" in r][-1]["samples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), help="names from VARIANTS")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results_default_model_cpu.json"))
    args = parser.parse_args()
    data = fields(128, 64)
    samples = {name: [] for name in args.variants}
    for round_ in range(args.repeats):
        for name in args.variants:
            samples[name].append(measure(data, args.warmup, args.steps, VARIANTS[name]))
            print(json.dumps({"round": round_, "variant": name, "samples_per_second": samples[name][-1]}), flush=True)
    baseline = statistics.median(samples[args.variants[0]])
    rows = [{"variant": name, "median_samples_per_second": statistics.median(values),
             "ratio_to_baseline": statistics.median(values) / baseline, "samples_per_second": values}
            for name, values in samples.items()]
    for row in rows:
        print(f"| {row['variant']} | {row['median_samples_per_second']:.1f} | {row['ratio_to_baseline']:.2f} |")
    meta = {"torch": torch.__version__, "machine": platform.machine(), "cpu_count": torch.get_num_threads(),
            "config": str(CONFIG.name), "warmup": args.warmup, "steps": args.steps, "rows": rows}
    Path(args.out).write_text(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
