"""Whole commands with and without the command line's allocator setting (`sciscore.allocator`).

Each command runs as its own process, alternately with the setting (what `sciscore` does) and with
glibc's defaults (the same entry point with `keep_freed_memory` replaced by a no-op), so both see
the same machine drift; pairs are reduced to the median of their ratios. Per run: wall seconds, CPU
seconds (user + system) and minor page faults of the child, from `os.wait4`.

Commands (small enough for a 2-core machine; one torch thread each):
  simulate  8 members, 50 time units of spin-up, 32 snapshots of 64 x 64;
  train     the default model's recipe, 30 optimizer steps at batch 32 on those snapshots;
  generate  the plain `sciscore generate --variable supersaturation` (32 fields, default model).

Usage: python studies/performance/allocator/benchmark.py [--runs 5] [--only simulate,train,generate]
       [--out results.json]
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

ROOT = Path(__file__).resolve().parents[3]
# the CLI's own main, with the allocator setting left out when DEFAULT_MALLOC is set
DRIVER = ("import os, sys\n"
          "if os.environ.get('DEFAULT_MALLOC'):\n"
          "    import sciscore.allocator as allocator\n"
          "    allocator.keep_freed_memory = lambda: None\n"
          "from sciscore.cli import main\n"
          "sys.exit(main())\n")


def commands(work: Path) -> dict[str, list[str]]:
    data = work / "data.nc"
    return {
        "simulate": ["simulate", "--recipe", str(ROOT / "datasets/turbulence2d-64.toml"), "--members", "8",
                     "--samples", "32", "--spinup", "50", "-o", str(work / "simulated.nc"), "--overwrite",
                     "--threads", "1", "-q"],
        "train": ["train", "--config", str(ROOT / "studies/default-model/edm-stretch-wide-levels-attention.toml"),
                  "--data", str(data), "-o", str(work / "run"), "--steps", "30", "--batch-size", "32",
                  "--checkpoint-every", "30", "--monitor-every", "0", "--overwrite", "--threads", "1", "-q"],
        "generate": ["generate", "--variable", "supersaturation", "-o", str(work / "generated.nc"), "--overwrite",
                     "-q"],
    }


def run_once(arguments: list[str], default_malloc: bool) -> dict:
    environment = dict(os.environ)
    environment.pop("DEFAULT_MALLOC", None)
    if default_malloc:
        environment["DEFAULT_MALLOC"] = "1"
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", DRIVER, *arguments], env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    stderr = process.stderr.read().decode()
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(arguments[:1])} failed: {stderr.strip()}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "system": usage.ru_stime,
            "minor_faults": usage.ru_minflt}


def compare(name: str, arguments: list[str], runs: int) -> dict:
    run_once(arguments, False)  # warm-up: file caches, the data file of `train`
    kept, default = [], []
    for _ in range(runs):
        kept.append(run_once(arguments, False))
        default.append(run_once(arguments, True))

    def median(rows, key):
        return statistics.median(row[key] for row in rows)

    row = {"command": name, "runs": runs}
    for key in ("wall", "cpu", "system", "minor_faults"):
        row[f"{key}_setting"], row[f"{key}_glibc"] = median(kept, key), median(default, key)
    for key in ("wall", "cpu"):
        row[f"{key}_ratio"] = statistics.median(a[key] / b[key] for a, b in zip(kept, default))
        row[f"{key}_ratio_range"] = [min(a[key] / b[key] for a, b in zip(kept, default)),
                                     max(a[key] / b[key] for a, b in zip(kept, default))]
    print(json.dumps(row), flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="pairs of runs per command (default 5)")
    parser.add_argument("--only", default="simulate,train,generate", help="comma list of commands")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        table = commands(work)
        chosen = [name for name in args.only.split(",") if name]
        if "train" in chosen:  # its data: the simulate command's output
            run_once(table["simulate"], False)
            (work / "simulated.nc").rename(work / "data.nc")
        rows = [compare(name, table[name], args.runs) for name in chosen]
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
