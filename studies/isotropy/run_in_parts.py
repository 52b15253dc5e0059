"""Run the isotropy study's [full] or [quick] parameters with its datasets split over processes,
then join the parts into one result directory (table.csv, per_seed.csv, samples.nc, figures,
run.json). Every (dataset, seed, lambda) model depends only on its own seed, so the joined result
is the one-process result (tests/test_study_isotropy.py checks that a run re-read from its files
summarizes to the same table).

    python studies/isotropy/run_in_parts.py full OUT_DIR [--jobs 4] [--seed 0] [--threads 1]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def _study():
    spec = importlib.util.spec_from_file_location("study_isotropy", HERE / "study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _toml() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads((HERE / "study.toml").read_text())


def run_part(kind: str, datasets: list, out: Path, seed: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    params = dict(_toml()[kind], datasets=datasets)
    out.mkdir(parents=True, exist_ok=True)
    started = time.process_time()
    _study().run(params, seed=seed, out=out, device="cpu", progress=False)
    (out / "cpu.json").write_text(json.dumps({"cpu_s": time.process_time() - started}))


def join(kind: str, parts: list, out: Path, seed: int) -> None:
    study = _study()
    per_seed, points, cpu = [], {}, 0.0
    for part in parts:
        rows, pts = study.read_run(part)
        per_seed += rows
        points.update(pts)
        cpu += json.loads((part / "cpu.json").read_text())["cpu_s"]
    out.mkdir(parents=True, exist_ok=True)
    datasets = list(dict.fromkeys(r["dataset"] for r in per_seed))
    study._write_per_seed(per_seed, out / "per_seed.csv")
    study._write_samples(points, datasets, sorted({r["lambda"] for r in per_seed}),
                         sorted({r["seed"] for r in per_seed}), out / "samples.nc")
    result = study.summarize(per_seed, points, out, cpu)
    columns = _toml()["study"]["columns"]
    with open(out / "table.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(result.rows)
    (out / "run.json").write_text(json.dumps(
        {"study": "isotropy", "parameters": kind, "seed": seed, "headline": result.headline,
         "verdicts": result.verdicts, "figures": [f.name for f in result.figures], "cpu_seconds": cpu}, indent=1))
    print(result.headline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["full", "quick"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--part", help=argparse.SUPPRESS)  # internal: comma-separated datasets of one part
    args = parser.parse_args()
    if args.part is not None:
        run_part(args.kind, args.part.split(","), args.out, args.seed, args.threads)
        return
    datasets = list(_toml()[args.kind]["datasets"])
    groups = [datasets[i::args.jobs] for i in range(min(args.jobs, len(datasets)))]
    parts = [args.out / f"part{i}" for i in range(len(groups))]
    processes = [subprocess.Popen([sys.executable, __file__, args.kind, str(part), "--seed", str(args.seed),
                                   "--threads", str(args.threads), "--part", ",".join(group)])
                 for group, part in zip(groups, parts)]
    if any(p.wait() for p in processes):
        sys.exit("a part failed; see its output above")
    join(args.kind, parts, args.out, args.seed)


if __name__ == "__main__":
    main()
