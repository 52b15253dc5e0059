"""The dry tail of supersaturation: per-field spatial means of data and generated sets, and the
driest reference field.

    python studies/default-model/plot_dry_tail.py \
        --set "training (3200)" scratch/data/train3200.nc --set "seed 7 reference" scratch/data/reference-seed7.nc \
        --set "generated, seed-7 run" scratch/eval/guided-seed7/samples.nc \
        --driest scratch/data/reference-seed7.nc -o studies/default-model/results/autoguidance/dry_tail.png

Left: the distribution of <s> (per-field spatial mean), as a density on a log scale, so that rare
dry fields show. Right: the field of --driest with the lowest <s>, beside its median field. Prints
per set: fields, lowest <s>, the share of fields with <s> < -2 and < -3, the largest fluctuation
std, and the share of the set's total fluctuation variance that its largest field carries.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sciscore.fields import open_fields  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", nargs=2, action="append", required=True, metavar=("LABEL", "FILE"))
    parser.add_argument("--driest", required=True, metavar="FILE")
    parser.add_argument("-o", "--out", required=True)
    args = parser.parse_args()
    figure, axes = plt.subplots(1, 3, figsize=(14, 4))
    bins = np.linspace(-11, 0.5, 47)
    print("| set | fields | lowest <s> | <s> < -2 | <s> < -3 | largest fluct. std | variance share of the largest field |")
    print("|---|---|---|---|---|---|---|")
    for label, path in args.set:
        s = open_fields(path, ["supersaturation"])["supersaturation"].values.astype(np.float64)
        means = s.mean((1, 2))
        variances = (s - means[:, None, None]).var((1, 2))
        axes[0].hist(means, bins=bins, density=True, histtype="step", lw=1.5, label=label)
        print(f"| {label} | {len(means)} | {means.min():.2f} | {np.mean(means < -2):.2%} | {np.mean(means < -3):.2%} | "
              f"{np.sqrt(variances.max()):.2f} | {variances.max() / variances.sum():.2f} |")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("spatial mean of supersaturation <s>")
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=8)
    s = open_fields(args.driest, ["supersaturation"])["supersaturation"].values
    means = s.mean((1, 2))
    order = np.argsort(means)
    for ax, index, what in ((axes[1], order[0], "driest"), (axes[2], order[len(order) // 2], "median")):
        image = ax.imshow(s[index], origin="lower", cmap="RdBu_r", vmin=-np.abs(s[index]).max(), vmax=np.abs(s[index]).max())
        ax.set_title(f"{what} reference field (#{index}): <s> = {means[index]:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        figure.colorbar(image, ax=ax, shrink=0.8)
    figure.tight_layout()
    figure.savefig(args.out, dpi=100)


if __name__ == "__main__":
    main()
