"""Per-wavenumber spectral ratio (generated / reference) of sets of generated fields, for check (c).

    python studies/default-model/plot_guidance.py \
        --set "seed 3, model alone" scratch/data/reference-seed3.nc scratch/eval/plain-seed3/samples.nc \
        --set "seed 3, autoguided" scratch/data/reference-seed3.nc scratch/eval/guided-seed3/samples.nc \
        -o studies/default-model/results/autoguidance/spectral_ratios.png

One panel per variable: E_gen(k) / E_ref(k) of the mean shell-summed power spectra
(`sciscore.diagnostics.power_spectrum`) for 1 <= k <= N/4, with check (c)'s bar (x1.5 either way).
`--drop-reference I,J` leaves reference fields out of the last --set before it (a diagnostic of
one field's weight, not a judgement). Prints the ratios as a Markdown table.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sciscore.diagnostics.spectra import power_spectrum  # noqa: E402
from sciscore.fields import open_fields  # noqa: E402

VARIABLES = ("supersaturation", "vorticity")


def ratios(reference_path: str, samples_path: str, drop: list[int]) -> dict:
    reference = open_fields(reference_path, list(VARIABLES)).load()
    if drop:
        reference = reference.isel(sample=[i for i in range(reference.sizes["sample"]) if i not in drop])
    samples = open_fields(samples_path, list(VARIABLES)).load()
    kmax = reference.sizes[reference[VARIABLES[0]].dims[-1]] // 4
    out = {}
    for v in VARIABLES:
        ref = power_spectrum(reference[v]).mean("sample").values
        gen = power_spectrum(samples[v]).mean("sample").values
        out[v] = gen[1:kmax + 1] / ref[1:kmax + 1]   # k = 0 (the spatial mean) is not a fluctuation
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", nargs=3, action="append", required=True, metavar=("LABEL", "REFERENCE", "SAMPLES"))
    parser.add_argument("--drop-reference", action="append", default=[], metavar="SET:I,J",
                        help="LABEL:I,J - reference fields left out for that set")
    parser.add_argument("-o", "--out", required=True)
    args = parser.parse_args()
    drops = {}
    for item in args.drop_reference:
        label, _, indices = item.rpartition(":")
        drops[label] = [int(i) for i in indices.split(",")]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    print("| set | variable | E_gen/E_ref at k = 1 ... N/4 | check (c) |")
    print("|---|---|---|---|")
    for label, reference, samples in args.set:
        r = ratios(reference, samples, drops.get(label, []))
        for ax, v in zip(axes, VARIABLES):
            k = np.arange(1, len(r[v]) + 1)
            ax.plot(k, r[v], marker="o", ms=3, label=label, ls="--" if "alone" in label else "-")
            worst = float(np.max(np.maximum(r[v], 1 / r[v])))
            print(f"| {label} | {v} | {' '.join(f'{x:.2f}' for x in r[v])} | x{worst:.2f} |")
    for ax, v in zip(axes, VARIABLES):
        ax.axhspan(1 / 1.5, 1.5, color="0.92", zorder=0)
        ax.axhline(1, color="0.5", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("wavenumber k")
        ax.set_title(v)
    axes[0].set_ylabel("E_gen(k) / E_ref(k)  (grey: check (c)'s bar)")
    axes[1].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
