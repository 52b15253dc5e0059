"""Synthetic check: can the mean bypass represent a field whose fluctuation amplitude depends
on its spatial mean? (the paper's section 5.1 limitation; supersaturation's condensation cap)

Fields x = m + a(m) phi on a doubly periodic grid: m ~ U(-1, 1), a = 0.6 - 0.45 m + 0.05 e
(e ~ N(0, 1)), phi a smooth Gaussian random field with zero mean and unit spatial std. So the
per-field correlation of mean and fluctuation std is about -0.99. Two models, identical except for
`mean_bypass` ("independent", the paper's, and "coupled"), are trained with the sciscore trainer
and sampled with the probability-flow ODE (Heun); we report corr(mean, std) of the samples.

    python studies/coupled-bypass/coupled_bypass.py [--steps 3000] [--modes independent,coupled] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from sciscore.sde import SamplingProblem, solve
from sciscore.train import config_from_dict, load_checkpoint, train


def synthetic_fields(n: int, size: int, seed: int) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(size, 1 / size)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    white = rng.standard_normal((n, size, size))
    phi = np.fft.ifft2(np.fft.fft2(white) * np.exp(-k2 / (2 * 3.0 ** 2))).real
    phi -= phi.mean(axis=(1, 2), keepdims=True)
    phi /= phi.std(axis=(1, 2), keepdims=True)
    m = rng.uniform(-1, 1, n)
    a = 0.6 - 0.45 * m + 0.05 * rng.standard_normal(n)
    x = m[:, None, None] + a[:, None, None] * phi
    coords = np.arange(size) / size
    return xr.Dataset({"q": (("sample", "y", "x"), x.astype("float32"), {"units": "1", "long_name": "synthetic field"})},
                      coords={"y": ("y", coords), "x": ("x", coords)})


def mean_std_correlation(x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    means, stds = x.mean(axis=(-2, -1)), x.std(axis=(-2, -1))
    return float(np.corrcoef(means, stds)[0, 1]), means, stds


def plot(out_dirs: list, figure: Path) -> dict:
    """Scatter of per-field mean vs fluctuation std: data and each model found in `out_dirs`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for directory in map(Path, out_dirs):
        results = json.loads((directory / "results.json").read_text())
        if not panels:
            panels.append(("data (held out)", np.load(directory / "data_samples.npz"), results["data"]))
        for mode in ("independent", "coupled"):
            if mode in results:
                panels.append((f"{mode} bypass", np.load(directory / f"{mode}_samples.npz"), results[mode]["correlation"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), sharex=True, sharey=True)
    for ax, (title, arrays, corr) in zip(np.atleast_1d(axes), panels):
        ax.scatter(arrays["means"], arrays["stds"], s=4, alpha=0.6)
        ax.set_title(f"{title}\ncorr(mean, std) = {corr:.2f}")
        ax.set_xlabel("spatial mean")
    np.atleast_1d(axes)[0].set_ylabel("spatial std (fluctuation amplitude)")
    fig.tight_layout()
    fig.savefig(figure, dpi=120)
    plt.close(fig)
    # training curves: the two loss terms of Deck & Bischoff 2023, eq. 16-17, for each model
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for directory in map(Path, out_dirs):
        for mode in ("independent", "coupled"):
            log = directory / mode / "metrics.jsonl"
            if not log.is_file():
                continue
            records = [json.loads(line) for line in log.read_text().splitlines()]
            records = [r for r in records if "loss" in r]
            for ax, term in zip(axes, ("mean", "fluctuation")):
                ax.plot([r["step"] for r in records], [r[term] for r in records], label=f"{mode} bypass")
    for ax, term in zip(axes, ("spatial-mean term (eq. 16)", "fluctuation term (eq. 17)")):
        ax.set_title(term), ax.set_xlabel("step"), ax.set_yscale("log"), ax.legend()
    fig.tight_layout()
    fig.savefig(figure.with_name("training_loss.png"), dpi=120)
    return {title: corr for title, _, corr in panels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--train-fields", type=int, default=2048)
    parser.add_argument("--modes", default="independent,coupled")
    parser.add_argument("--out", default=str(Path(__file__).parent / "output"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plot", nargs="+", metavar="OUT_DIR", help="only draw the figure from finished runs")
    args = parser.parse_args()
    if args.plot:
        print(plot(args.plot, Path(__file__).parent / "mean_vs_std.png"))
        return
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = synthetic_fields(args.train_fields, args.size, seed=1)
    reference = synthetic_fields(args.samples, args.size, seed=2)["q"].values
    results = {"data": mean_std_correlation(reference)[0], "steps": args.steps, "size": args.size,
               "train_fields": args.train_fields, "samples": args.samples}
    for mode in args.modes.split(","):
        config = config_from_dict({
            "data": {"variables": ["q"], "shifts": True, "flips": True, "validation_fraction": 0.05},
            "network": {"channels": [16, 32, 64], "num_residual": 2, "embed_dim": 128, "bypass_width": 128,
                        "padding": "circular", "mean_bypass": mode},
            "optimizer": {"learning_rate": 1e-3, "warmup_steps": 200},
            "training": {"steps": args.steps, "batch_size": 32, "log_every": 100, "checkpoint_every": 500,
                         "validation_every": 500, "device": "cpu", "threads": args.threads, "quiet": True},
        })
        run_dir = out / mode
        clock = time.perf_counter()
        resume = (run_dir / "config.json").exists()
        train(config, run_dir, dataset=data, resume=resume, overwrite=not resume)
        train_seconds = time.perf_counter() - clock
        network, saved = load_checkpoint(run_dir, ema=True)
        normalizer = saved.normalizer
        clock = time.perf_counter()
        solution = solve(SamplingProblem(network, network.process, (1, args.size, args.size)),
                         solver="ode-heun", steps=40, n=args.samples, seed=0, batch_size=128, denoise=True)
        sample_seconds = time.perf_counter() - clock
        generated = normalizer.invert(solution.x.numpy().astype(np.float64))[:, 0]
        corr, means, stds = mean_std_correlation(generated)
        np.savez(out / f"{mode}_samples.npz", means=means, stds=stds)
        results[mode] = {"correlation": corr, "mean_of_means": float(means.mean()), "std_of_means": float(means.std()),
                         "mean_std": float(stds.mean()), "train_seconds": train_seconds, "sample_seconds": sample_seconds}
        print(mode, results[mode], flush=True)
    ref_corr, ref_means, ref_stds = mean_std_correlation(reference)
    results["data_mean_of_means"], results["data_std_of_means"] = float(ref_means.mean()), float(ref_means.std())
    results["data_mean_std"] = float(ref_stds.mean())
    np.savez(out / "data_samples.npz", means=ref_means, stds=ref_stds)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
