"""Figure of the training-time quality monitor: each check's ratio to its bar against the training
step (<= 1 passes), one panel per variable, and the number of checks passed, for one or more runs.

    python studies/default-model/plot_monitor.py RUN_DIR [RUN_DIR ...] --labels edm wide -o monitor.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sciscore.diagnostics import CHECKS  # noqa: E402


def monitor_records(run_dir: Path) -> list[dict]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line of a running job
        if "monitor" in record:
            records.append(record)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--labels", nargs="*")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    labels = args.labels or [run.name for run in args.runs]
    runs = {label: monitor_records(run) for label, run in zip(labels, args.runs)}
    variables = list(next(r for r in runs.values() if r)[0]["monitor"])
    figure, axes = plt.subplots(1, len(variables) + 1, figsize=(4.2 * (len(variables) + 1), 3.6), squeeze=False)
    styles = ["-", "--", ":", "-."]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for r, (label, records) in enumerate(runs.items()):
        steps = [rec["step"] for rec in records]
        for v, variable in enumerate(variables):
            ax = axes[0, v]
            for c, check in enumerate(CHECKS):
                ratios = [rec["monitor"][variable]["ratio_to_bar"][check] for rec in records]
                ax.plot(steps, ratios, styles[r % len(styles)], marker=".", color=colors[c],
                        label=check if r == 0 else None)
        axes[0, -1].plot(steps, [rec["monitor_passed"] for rec in records], styles[r % len(styles)], marker="o",
                         color=f"{0.6 * r / max(1, len(runs) - 1):.2f}", label=label)
    for v, variable in enumerate(variables):
        ax = axes[0, v]
        ax.axhline(1.0, color="0.5", lw=0.8)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_title(f"{variable}: figure / bar (≤ 1 passes)")
        if len(runs) > 1:
            ax.text(0.99, 0.99, "  ".join(f"{styles[i % len(styles)]} {lab}" for i, lab in enumerate(runs)),
                    transform=ax.transAxes, ha="right", va="top", fontsize=7)
        ax.set_xlabel("training step")
        ax.legend(fontsize=7)
    total = next(r for r in runs.values() if r)[0]["monitor_checks"]
    axes[0, -1].set_ylim(0, total + 0.5)
    axes[0, -1].set_title("checks passed (monitor)")
    axes[0, -1].set_xlabel("training step")
    axes[0, -1].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(args.output, dpi=110)


if __name__ == "__main__":
    main()
