"""At which noise level does a model lose the fine scales? Restart its sampler from noised data.

    python studies/default-model/where_fine_scales_form.py --reference reference.nc \
        --out studies/default-model/results/where-fine-scales-form [--model RUN_DIR] [-n 128]

Check (c) sees only the end of sampling. To find where along the reverse process the missing
power is made, take `-n` reference fields x0 (normalized as the model's training data), noise them
to each point sigma_i of the model's sampling grid — x = x0 + sigma_i z, a draw of the *true*
marginal p(x; sigma_i) (Karras et al. 2022, eq. 7; SDEdit's start, Meng et al. 2022) — and run the
rest of the sampler from there (`SamplingProblem(start=x0)`, the same solver, the grid's remaining
steps, Tweedie's final denoising). A perfect model returns fields distributed like the data from
every start, so the power spectrum of the outputs over that of the same x0, per wavenumber, stays
at 1; where it first drops as sigma_i grows is where the model makes the deficit. The last row
starts from the prior (ordinary generation from the same streams).

Writes OUT/where_fine_scales_form.json and OUT/where_fine_scales_form.png (band ratio against
sigma_i per variable) and prints a Markdown table (power ratio per k = 1 ... N/4 for each start).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402

from sciscore.diagnostics import power_spectrum  # noqa: E402
from sciscore.fields import field_dims  # noqa: E402
from sciscore.generate import load_model  # noqa: E402
from sciscore.sde import SamplingProblem, solve, time_grid  # noqa: E402


def spectra(fields: np.ndarray, names, dims) -> dict:
    """Mean shell-summed spectrum E(k) per variable of physical fields (n, C, H, W)."""
    return {name: power_spectrum(xr.DataArray(fields[:, c], dims=("sample", *dims))).mean("sample").values
            for c, name in enumerate(names)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="run directory (default: the shipped model)")
    parser.add_argument("--reference", required=True)
    parser.add_argument("-n", type=int, default=128, help="reference fields, taken evenly over the file")
    parser.add_argument("--max-sigma", type=float, default=15.0, help="latest start: the grid's sigma_i up to this")
    parser.add_argument("--band", type=int, nargs=2, default=(11, 16), metavar=("K0", "K1"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model = load_model(args.model)
    options = model.sampler_options()
    names = list(model.variables)
    reference = xr.open_dataset(args.reference)
    found = field_dims(reference[names[0]])
    dims, sample_dim = found.spatial, found.sample
    total = reference.sizes[sample_dim]
    pick = np.linspace(0, total - 1, min(args.n, total)).round().astype(int)
    physical = np.stack([reference[v].isel({sample_dim: pick}).values for v in names], axis=1).astype(np.float32)
    x0 = model.normalizer.apply(torch.from_numpy(physical)).float()
    truth = spectra(physical, names, dims)
    kmax = model.shape[-1] // 4

    process = model.process
    grid = time_grid(process, options.steps, options.grid)
    starts = [i for i in range(1, len(grid) - 1) if float(process.sigma(grid[i])) <= args.max_sigma]
    rows = []
    for i in [*reversed(starts), 0]:
        from_prior = i == 0
        problem = SamplingProblem(model.network.score, process, model.shape,
                                  tspan=(float(grid[i]), float(grid[-1])), start=None if from_prior else x0)
        with torch.no_grad():
            solution = solve(problem, solver=options.solver, steps=len(grid) - 1 - i, n=len(x0), seed=args.seed,
                             batch_size=args.batch_size, grid=options.grid, denoise=options.denoise,
                             **options.solver_options)
        generated = model.normalizer.invert(solution.x.double()).numpy()
        ratio = {v: e[1:kmax + 1] / truth[v][1:kmax + 1] for v, e in spectra(generated, names, dims).items()}
        sigma = float(process.sigma(grid[i]))
        rows.append({"start": "prior" if from_prior else "data", "sigma_start": sigma, "steps": len(grid) - 1 - i,
                     "ratio": {v: r.tolist() for v, r in ratio.items()},
                     "band_ratio": {v: float(r[args.band[0] - 1:args.band[1]].mean()) for v, r in ratio.items()}})
        print(f"sigma_start {sigma:8.3f} ({rows[-1]['start']}): "
              + " | ".join(f"{v} k={args.band[0]}-{args.band[1]} {rows[-1]['band_ratio'][v]:.2f}" for v in names),
              flush=True)

    record = {"model": model.name, "checksum": model.checksum, "reference": str(args.reference), "n": len(x0),
              "solver": options.solver, "grid_steps": options.steps, "band": list(args.band), "rows": rows}
    (out / "where_fine_scales_form.json").write_text(json.dumps(record, indent=1))

    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
    data_rows = [r for r in rows if r["start"] == "data"]
    prior = [r for r in rows if r["start"] == "prior"][0]
    for ax, v in zip(axes[0], names):
        for k0, k1, color in ((1, 4, "C0"), (5, 10, "C1"), tuple(args.band) + ("C3",)):
            values = [np.mean(r["ratio"][v][k0 - 1:k1]) for r in data_rows]
            ax.semilogx([r["sigma_start"] for r in data_rows], values, "o-", color=color, label=f"k = {k0}-{k1}")
            ax.axhline(np.mean(prior["ratio"][v][k0 - 1:k1]), color=color, ls=":", lw=1)
        ax.axhline(1, color="k", lw=0.8)
        ax.axhspan(1 / 1.5, 1.5, color="0.9", zorder=0)
        ax.set(title=f"{v}: restarted from data noised to sigma", xlabel="sigma at the start",
               ylabel="power, output / data")
        ax.legend(fontsize=8)
    fig.suptitle(f"{model.name}: dotted = from the prior; grey = check (c)'s bar", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "where_fine_scales_form.png", dpi=110)

    print(f"\n| start sigma | " + " | ".join(f"{v}: ratio at k = 1 ... {kmax}" for v in names) + " |")
    print("|---|" + "---|" * len(names))
    for r in rows:
        label = f"{r['sigma_start']:.3g}" + (" (prior)" if r["start"] == "prior" else "")
        print(f"| {label} | " + " | ".join(" ".join(f"{x:.2f}" for x in r["ratio"][v]) for v in names) + " |")


if __name__ == "__main__":
    main()
