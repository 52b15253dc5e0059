"""Benchmark: wall time of `sciscore --help` and of every subcommand's `--help`, as ratios.

Each command runs as a fresh `python -m sciscore ...` process. Three kinds of process are timed in
the same run, interleaved (round r runs every command once, in a shuffled order), and medians are
compared, so the ratios hold on a loaded machine:

- `python -c pass`: the interpreter's own start-up, the floor;
- `python -c "import torch, xarray"`: what the CLI used to import before parsing;
- `sciscore ... --help` from this checkout and, with `--before DIR`, from another source tree
  (e.g. `git archive <commit> sciscore | tar -x -C DIR`), put first on PYTHONPATH.

    python studies/performance/startup/benchmark.py --before /tmp/sciscore-before --rounds 15
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

SUBCOMMANDS = ("simulate", "train", "generate", "diagnose", "study")
HERE = Path(__file__).resolve().parents[3]  # the repository root


def _run(argv: list[str], tree: Path | None) -> float:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], env=env, cwd=tree or "/", stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed ({done.returncode}): {done.stderr.strip()}")
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=None, help="a source tree holding another sciscore/")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--json", default=None, help="also write the medians to this JSON file")
    args = parser.parse_args(argv)

    trees = {"now": HERE}
    if args.before is not None:
        trees["before"] = args.before.resolve()
    jobs = {("python", "-c pass"): (["-c", "pass"], None),
            ("python", "import torch, xarray"): (["-c", "import torch, xarray"], None)}
    for label, tree in trees.items():
        for command in ("",) + SUBCOMMANDS:
            help_argv = [command, "--help"] if command else ["--help"]
            jobs[(label, f"sciscore {command} --help".replace("  ", " "))] = (["-m", "sciscore", *help_argv], tree)
    for job in jobs.values():  # warm the file cache and the bytecode caches
        _run(*job)
    times = {key: [] for key in jobs}
    order = list(jobs)
    for _ in range(args.rounds):
        random.shuffle(order)
        for key in order:
            times[key].append(_run(*jobs[key]))
    medians = {key: statistics.median(values) for key, values in times.items()}

    floor = medians[("python", "-c pass")]
    print(f"load average {os.getloadavg()[0]:.1f}; medians of {args.rounds} interleaved rounds\n")
    print(f"| command | {' | '.join(f'{label}, s' for label in trees)} | "
          + ("before / now | " if "before" in trees else "") + "now / `python -c pass` |")
    print("|---|" + "---|" * (len(trees) + 1 + ("before" in trees)))
    for command in ("",) + SUBCOMMANDS:
        name = f"sciscore {command} --help".replace("  ", " ")
        cells = [f"{medians[(label, name)]:.3f}" for label in trees]
        if "before" in trees:
            cells.append(f"{medians[('before', name)] / medians[('now', name)]:.1f}")
        cells.append(f"{medians[('now', name)] / floor:.2f}")
        print(f"| `{name}` | " + " | ".join(cells) + " |")
    print(f"\n`python -c pass`: {floor:.3f} s; `import torch, xarray`: "
          f"{medians[('python', 'import torch, xarray')]:.3f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({" / ".join(k): v for k, v in medians.items()}, indent=2))


if __name__ == "__main__":
    main()
