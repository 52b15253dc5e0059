"""Judge a model against a simulated reference set with the default-model quality bars.

    python studies/default-model/evaluate.py --model RUN_DIR --reference reference.nc \
        --solver ode-heun --steps 18 -n 512 --out studies/default-model/results/heun18

Generates `-n` fields with `sciscore.generate.generate_file` (sample i depends only on the seed
and i), runs `sciscore diagnose` on them (report with figures in OUT/report/), and checks, per
variable, the five bars of `sciscore.diagnostics.quality_checks` (the generate issue's):

  (a) W1 of per-sample spatial means <= 0.25 max(reference std of the means, 1% of the reference
      fluctuation std);
  (b) fluctuation std ratio in [0.9, 1.1];
  (c) radially averaged power spectrum within a factor 1.5 of the reference for k <= N/4;
  (d) pixel-value KS statistic <= 0.1 (exact two-sample KS on all pixels);
  (e) |corr(mean, fluctuation std) generated - reference| <= 0.1.

Writes OUT/results.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import xarray as xr

from sciscore.diagnostics import compare, count_passed, quality_checks
from sciscore.diagnostics.report import write_report
from sciscore.fields import open_fields
from sciscore.generate import generate_file, load_model
from sciscore.sde.solvers import parse_solver_options
from sciscore.validation import noise_interval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="run directory (default: the shipped model)")
    parser.add_argument("--reference", required=True)
    parser.add_argument("--solver", default="ode-heun")
    parser.add_argument("--steps", type=int, default=18)
    parser.add_argument("-n", type=int, default=512)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--raw", action="store_true", help="the raw weights instead of the EMA")
    parser.add_argument("--bf16", action="store_true", help="the network under bfloat16 autocast")
    parser.add_argument("--solver-option", action="append", default=[], metavar="NAME=VALUE",
                        help="a solver setting, e.g. s_churn=10 with --solver edm (repeatable)")
    parser.add_argument("--guidance", type=float, default=None,
                        help="autoguidance weight (default: the model's recommended, else 1 = none)")
    parser.add_argument("--guidance-interval", type=noise_interval, default=None, metavar="LO,HI",
                        help="noise levels LO < sigma <= HI where the guidance applies")
    parser.add_argument("--guide-model", default=None, help="the guide's run directory (default: the model's own)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 beside other jobs)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    solver_options = parse_solver_options(args.solver, args.solver_option)
    model = load_model(args.model, ema=not args.raw, device="cpu", guide=args.guide_model)
    samples_path = out / "samples.nc"
    start = time.perf_counter()
    generate_file(model, samples_path, args.n, solver=args.solver, steps=args.steps, seed=args.seed,
                  batch_size=args.batch_size, overwrite=True, progress=True,
                  solver_options=solver_options, bf16=args.bf16, guidance=args.guidance,
                  guidance_interval=args.guidance_interval)
    seconds = time.perf_counter() - start
    variables = list(model.variables)
    reference = open_fields(args.reference, variables).load()
    samples = open_fields(samples_path, variables).load()
    comparison = compare(reference, samples, variables, progress=False)
    write_report(comparison, reference, samples, out / "report", overwrite=True)
    results = {"model": str(model.path), "checksum": model.checksum, "weights": model.weights, "solver": args.solver,
               "solver_options": solver_options, "steps": args.steps, "bf16": args.bf16,
               **{k: v for k, v in xr.open_dataset(samples_path).attrs.items() if "guid" in k},
               "n": args.n, "seed": args.seed, "generation_seconds": seconds,
               "nfe_per_sample": int(xr.open_dataset(samples_path).attrs.get("sciscore_nfe_per_sample", -1)),
               "reference": str(args.reference), "n_reference": int(reference.sizes["sample"]),
               "variables": {v: quality_checks(comparison, reference[v], samples[v], v) for v in variables}}
    results["passed"], results["checks"] = count_passed(results["variables"])
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"| variable | (a) W1 means / scale | (b) std ratio | (c) max spectral ratio | (d) pixel KS | (e) corr gen vs ref | passes |")
    print("|---|---|---|---|---|---|---|")
    for v, f in results["variables"].items():
        passed = "".join(letter for letter, ok in zip("abcde", f["passed"].values()) if ok) or "-"
        print(f"| {v} | {f['w1_means_over_scale']:.3f} | {f['fluctuation_std_ratio']:.3f} | {f['max_spectral_ratio']:.2f} | "
              f"{f['ks_pixels']:.3f} | {f['corr_generated']:.2f} vs {f['corr_reference']:.2f} | {passed} |")
    print(f"{results['passed']}/{results['checks']} checks pass")
    print(f"generation: {args.n} fields in {seconds:.0f} s ({results['nfe_per_sample']} NFE per field)")


if __name__ == "__main__":
    main()
