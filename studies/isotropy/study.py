"""Iso-Diffusion on 2D toy sets: the plain DDPM loss vs the isotropy-regularized loss.

Fernando et al. 2024, "Iso-Diffusion: Improving Diffusion Probabilistic Models Using the Isotropy
of the Additive Gaussian Noise", Tables 1-5: on swiss roll, moons, s-curve and 8 gaussians, a DDPM
MLP trained with L_simple + lambda (mean_b ||eps_hat_b||^2 / d - 1)^2 (their eq. 27) has higher
precision and density (Kynkaanniemi et al. 2019; Naeem et al. 2020) than with L_simple alone, and
both rise with lambda in {0.01, 0.05, 0.1, 0.2, 0.3} while recall and coverage fall.

Here a 2D point is a (2, 1, 1) field, so the library's process (`DiscreteVP`, 1000 linear betas),
loss (`denoising_loss` with `LossConfig.isotropy_weight`; on a 1x1 field its mean term is the plain
eps-MSE and its fluctuation term is 0) and sampler (`solve(..., solver="ddpm")`, Ho et al. 2020
Algorithm 2) are used unchanged; only the MLP and its few-line training loop live here (the U-Net
trainer works on fields with a spatial extent). For each seed every lambda starts from the same
initial weights and sees the same batches, times and noise, so the comparison is paired.
Metrics: `prdc.compute_prdc` (Naeem et al.'s implementation) between held-out data and generated
points, nearest_k from the parameters (5, Naeem et al.'s choice).
"""

from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sciscore.sde import DiscreteVP, SamplingProblem, solve
from sciscore.study import StudyResult
from sciscore.train.losses import LossConfig, denoising_loss

METRICS = ("precision", "recall", "density", "coverage")
DATASETS = ("swiss_roll", "moons", "s_curve", "8gaussians")
LABELS = {"swiss_roll": "Swiss roll", "moons": "Moons", "s_curve": "S-curve", "8gaussians": "8 gaussians"}


# ---------------------------------------------------------------------------------------------
# data
def toy_points(name: str, n: int, seed: int) -> np.ndarray:
    """(n, 2) float64 raw points of a toy set (scikit-learn's generators; 8 gaussians as in
    Gulrajani et al. 2017: centres on a circle of radius 2, std 0.02, then / sqrt(2))."""
    from sklearn import datasets

    rng = np.random.RandomState(seed)
    if name == "swiss_roll":  # the roll lies in the x-z plane of scikit-learn's 3D swiss roll
        return datasets.make_swiss_roll(n, noise=0.5, random_state=rng)[0][:, [0, 2]]
    if name == "s_curve":
        return datasets.make_s_curve(n, noise=0.05, random_state=rng)[0][:, [0, 2]]
    if name == "moons":
        return datasets.make_moons(n, noise=0.05, random_state=rng)[0]
    if name == "8gaussians":
        angles = 2 * np.pi * rng.randint(0, 8, n) / 8
        centres = 2 * np.stack([np.cos(angles), np.sin(angles)], 1)
        return (centres + 0.02 * rng.randn(n, 2)) / math.sqrt(2)
    raise ValueError(f"unknown toy dataset {name!r}; expected one of {list(DATASETS)}")


# ---------------------------------------------------------------------------------------------
# network: the paper's "conditional dense network, 3 fully-connected hidden layers, ReLU"
class PointMLP(nn.Module):
    """-eps_hat(x_t, t) for points x (B, 2, 1, 1) (the project's sigma * score convention).
    The time enters as Ho et al.'s sinusoidal embedding of the step index t N, concatenated to x."""

    def __init__(self, num_timesteps: int, hidden: int = 128, layers: int = 3, embedding: int = 32):
        super().__init__()
        self.num_timesteps, self.embedding = num_timesteps, embedding
        widths = [2 + embedding] + [hidden] * layers
        blocks = []
        for a, b in zip(widths[:-1], widths[1:]):
            blocks += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*blocks, nn.Linear(hidden, 2))

    def forward(self, x, t, context=None):
        half = self.embedding // 2
        frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, device=x.device) / half)
        angle = (t.to(torch.float32) * self.num_timesteps)[:, None] * frequencies[None]
        h = torch.cat([x.reshape(len(x), 2).to(torch.float32), angle.sin(), angle.cos()], 1)
        return self.body(h).reshape(x.shape).to(x.dtype)


def train_point_model(points: torch.Tensor, process: DiscreteVP, isotropy_weight: float, *, steps: int,
                      batch_size: int, learning_rate: float, hidden: int, layers: int, seed: int,
                      device: str = "cpu"):
    """Adam on the library's denoising loss with discrete DDPM times t = k/N, k ~ U{1..N}
    (Ho et al. 2020, Algorithm 1); returns the network and the mean losses of the last 10 %.
    Every draw is made on the CPU from `seed` and moved to `device`, so devices see the same draws."""
    with torch.random.fork_rng():  # initial weights from `seed`, the caller's stream untouched
        torch.manual_seed(seed)
        network = PointMLP(process.num_timesteps, hidden, layers).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
    config = LossConfig(kind="dsm", isotropy_weight=isotropy_weight)
    generator = torch.Generator().manual_seed(seed)
    x_all = points.to(torch.float32).reshape(-1, 2, 1, 1).to(device)
    tail = max(1, steps // 10)
    sums = {"eps_mse": 0.0, "isotropy": 0.0}
    for step in range(steps):
        index = torch.randint(0, len(x_all), (batch_size,), generator=generator)
        k = torch.randint(1, process.num_timesteps + 1, (batch_size,), generator=generator)
        noise = torch.randn((batch_size, 2, 1, 1), generator=generator)
        terms = denoising_loss(network, process, x_all[index.to(device)],
                               (k.to(torch.float32) / process.num_timesteps).to(device), noise.to(device), config)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        if step >= steps - tail:
            sums["eps_mse"] += float(terms["mean"].detach()) / tail
            sums["isotropy"] += float(terms["isotropy"].detach()) / tail
    network.eval()
    return network, sums


# ---------------------------------------------------------------------------------------------
def _paired_significance(differences: np.ndarray) -> float:
    """t statistic of the mean of paired per-seed differences (+-inf when they do not vary but
    their mean is not 0; nan with one seed)."""
    n, mean = len(differences), float(differences.mean())
    if n < 2:
        return float("nan")
    spread = float(differences.std(ddof=1))
    if spread == 0:
        return math.copysign(math.inf, mean) if mean else 0.0
    return mean / (spread / math.sqrt(n))


def run(params: dict, *, seed: int, out: Path, device: str = "cpu", progress: bool = False) -> StudyResult:
    from prdc import compute_prdc

    datasets = list(params.get("datasets", DATASETS))
    lambdas = [float(v) for v in params["lambdas"]]
    if 0.0 not in lambdas:
        lambdas = [0.0] + lambdas
    seeds = [seed + j for j in range(int(params["seeds"]))]
    steps, batch = int(params["train_steps"]), int(params["batch_size"])
    n_train, n_eval, k_nn = int(params["n_train"]), int(params["n_eval"]), int(params.get("nearest_k", 5))
    sample_steps = int(params.get("sample_steps", 1000))
    process = DiscreteVP(num_timesteps=int(params.get("num_timesteps", 1000)), beta_start=1e-4, beta_end=0.02)
    out = Path(out)

    per_seed, generated = [], {}
    total = len(datasets) * len(seeds) * len(lambdas)
    bar = tqdm(total=total, disable=not progress, desc="isotropy", unit="model")
    started = time.process_time()
    for name in datasets:
        for s in seeds:
            train_raw = toy_points(name, n_train, 2 * s)
            shift, scale = train_raw.mean(0), train_raw.std(0)   # standardize each coordinate
            train = torch.as_tensor((train_raw - shift) / scale)
            real = (toy_points(name, n_eval, 2 * s + 1) - shift) / scale  # held-out reference
            for lam in lambdas:
                network, losses = train_point_model(
                    train, process, lam, steps=steps, batch_size=batch, seed=s,
                    learning_rate=float(params.get("learning_rate", 1e-3)),
                    hidden=int(params.get("hidden", 128)), layers=int(params.get("layers", 3)), device=device)
                problem = SamplingProblem(network, process, (2, 1, 1))
                with torch.no_grad():
                    solution = solve(problem, solver="ddpm", steps=sample_steps, grid="leading", n=n_eval,
                                     seed=s, denoise=True, device=device)
                fake = solution.x.reshape(n_eval, 2).numpy().astype(np.float64)
                finite = np.isfinite(fake).all(1)
                metrics = compute_prdc(real_features=real, fake_features=fake[finite], nearest_k=k_nn)
                per_seed.append({"dataset": name, "loss": "plain" if lam == 0 else "isotropy", "lambda": lam,
                                 "seed": s, **{m: float(metrics[m]) for m in METRICS},
                                 "eps_mse": losses["eps_mse"], "isotropy_penalty": losses["isotropy"],
                                 "nonfinite": int((~finite).sum())})
                generated[(name, lam, s)] = fake.astype(np.float32)
                generated[(name, "data", s)] = real.astype(np.float32)
                bar.update(1)
    bar.close()
    _write_per_seed(per_seed, out / "per_seed.csv")
    _write_samples(generated, datasets, lambdas, seeds, out / "samples.nc")
    return summarize(per_seed, generated, out, time.process_time() - started)


def summarize(per_seed: list, generated: dict, out: Path, cpu_seconds: float) -> StudyResult:
    """Table rows (means over seeds), verdicts, headline and figures from the per-seed rows and the
    points {(dataset, lambda or "data", seed): (n, 2)}; also used to join runs made in parts."""
    datasets = list(dict.fromkeys(r["dataset"] for r in per_seed))
    lambdas = sorted({r["lambda"] for r in per_seed})
    seeds = sorted({r["seed"] for r in per_seed})
    rows, spread = [], {}
    for name in datasets:
        for lam in lambdas:
            group = [r for r in per_seed if r["dataset"] == name and r["lambda"] == lam]
            values = {m: np.array([r[m] for r in group]) for m in METRICS}
            rows.append({"dataset": name, "loss": "plain" if lam == 0 else "isotropy", "lambda": lam,
                         **{m: float(values[m].mean()) for m in METRICS}})
            spread[(name, lam)] = {m: float(values[m].std(ddof=1)) if len(group) > 1 else float("nan")
                                   for m in METRICS}

    # the claims, lambda_max vs plain, paired over seeds (t > 2: a change beyond the seed spread)
    top = max(lambdas)
    t_stats = {}
    for name in datasets:
        for m in METRICS:
            base = np.array([r[m] for r in per_seed if r["dataset"] == name and r["lambda"] == 0.0])
            high = np.array([r[m] for r in per_seed if r["dataset"] == name and r["lambda"] == top])
            t_stats[(name, m)] = _paired_significance(high - base)
    need = math.ceil(0.75 * len(datasets))
    up = {m: sum(t_stats[(n, m)] > 2 for n in datasets) for m in METRICS}
    down = {m: sum(t_stats[(n, m)] < -2 for n in datasets) for m in METRICS}
    measured = len(seeds) > 1 and top > 0
    verdicts = {
        f"precision rises with the isotropy loss (lambda {top:g} vs plain, >= {need}/{len(datasets)} sets)":
            (up["precision"] >= need) if measured else None,
        f"density rises with the isotropy loss (lambda {top:g} vs plain, >= {need}/{len(datasets)} sets)":
            (up["density"] >= need) if measured else None,
        f"recall and coverage fall with the isotropy loss (lambda {top:g} vs plain)":
            (down["recall"] >= need and down["coverage"] >= need) if measured else None,
    }
    best = {name: max((lam for lam in lambdas if lam > 0), default=0.0,
                      key=lambda lam: next(r["density"] for r in rows if r["dataset"] == name and r["lambda"] == lam))
            for name in datasets}
    figures = [_scatter_figure(generated, datasets, best, seeds[0], out / "samples.png"),
               _metrics_figure(rows, spread, datasets, lambdas, len(seeds), out / "metrics_vs_lambda.png")]
    changes = "; ".join(
        f"{LABELS[n]} density {_row(rows, n, 0.0)['density']:.3f}±{spread[(n, 0.0)]['density']:.3f} -> "
        f"{_row(rows, n, top)['density']:.3f}±{spread[(n, top)]['density']:.3f}, precision "
        f"{_row(rows, n, 0.0)['precision']:.3f} -> {_row(rows, n, top)['precision']:.3f}"
        for n in datasets)
    headline = (f"plain DDPM loss vs isotropy-regularized (lambda {top:g}), mean±std over {len(seeds)} seeds: "
                f"{changes}. Beyond the seed spread (paired t > 2): precision up on {up['precision']}, "
                f"density up on {up['density']}, recall down on {down['recall']}, coverage down on "
                f"{down['coverage']} of {len(datasets)} sets. ({cpu_seconds:.0f} CPU-s)")
    return StudyResult(rows=rows, headline=headline, figures=figures, verdicts=verdicts)


def read_run(out: Path) -> tuple[list, dict]:
    """(per_seed rows, points) of a finished run directory, the inputs of `summarize`."""
    import xarray as xr

    with open(Path(out) / "per_seed.csv") as handle:
        per_seed = [{k: (v if k in ("dataset", "loss") else int(v) if k in ("seed", "nonfinite") else float(v))
                     for k, v in r.items()} for r in csv.DictReader(handle)]
    generated = {}
    with xr.open_dataset(Path(out) / "samples.nc") as ds:
        for d in ds["dataset"].values.tolist():
            for s in ds["seed"].values.tolist():
                generated[(d, "data", s)] = ds["data"].sel(dataset=d, seed=s).values
                for lam in ds["lambda"].values.tolist():
                    generated[(d, lam, s)] = ds["generated"].sel({"dataset": d, "seed": s, "lambda": lam}).values
    return per_seed, generated


def _row(rows, name, lam):
    return next(r for r in rows if r["dataset"] == name and r["lambda"] == lam)


def _write_per_seed(per_seed: list, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(per_seed[0]))
        writer.writeheader()
        writer.writerows(per_seed)
    os.replace(temporary, path)


def _write_samples(generated: dict, datasets, lambdas, seeds, path: Path) -> None:
    """samples.nc: generated (dataset, lambda, seed, sample, coordinate) and the held-out data
    (dataset, seed, sample, coordinate), in standardized coordinates."""
    import xarray as xr

    fake = np.stack([np.stack([np.stack([generated[(d, lam, s)] for s in seeds]) for lam in lambdas])
                     for d in datasets])
    real = np.stack([np.stack([generated[(d, "data", s)] for s in seeds]) for d in datasets])
    ds = xr.Dataset({"generated": (("dataset", "lambda", "seed", "sample", "coordinate"), fake),
                     "data": (("dataset", "seed", "sample", "coordinate"), real)},
                    coords={"dataset": list(datasets), "lambda": list(lambdas), "seed": list(seeds),
                            "coordinate": ["x", "y"]},
                    attrs={"title": "DDPM samples, plain vs isotropy-regularized loss (Fernando et al. 2024)",
                           "sampler": "DDPM ancestral, 1000 steps (sciscore solve solver='ddpm')"})
    encoding = {v: {"zlib": True, "complevel": 4} for v in ds.data_vars}
    temporary = path.with_name(path.name + ".tmp")
    ds.to_netcdf(temporary, encoding=encoding)
    os.replace(temporary, path)


def _scatter_figure(generated, datasets, best, s, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(datasets), 3, figsize=(9, 3 * len(datasets)), squeeze=False)
    for i, name in enumerate(datasets):
        real = generated[(name, "data", s)]
        panels = [("held-out data", real), ("plain loss", generated[(name, 0.0, s)]),
                  (f"isotropy loss, lambda {best[name]:g}", generated[(name, best[name], s)])]
        for ax, (title, pts) in zip(axes[i], panels):
            if title != "held-out data":
                ax.scatter(real[:, 0], real[:, 1], s=1, c="0.8", rasterized=True)
            ax.scatter(pts[:, 0], pts[:, 1], s=1, c="C0" if title == "held-out data" else "C3", rasterized=True)
            ax.set_title(f"{LABELS[name]}: {title}", fontsize=9)
            ax.set_xlim(-3, 3), ax.set_ylim(-3, 3), ax.set_aspect("equal")
            ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"seed {s}; best lambda = highest mean density", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _metrics_figure(rows, spread, datasets, lambdas, n_seeds, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    positions = np.arange(len(lambdas))
    for ax, m in zip(axes, METRICS):
        for j, name in enumerate(datasets):
            mean = [_row(rows, name, lam)[m] for lam in lambdas]
            std = [spread[(name, lam)][m] for lam in lambdas]
            ax.errorbar(positions + 0.06 * (j - 1.5), mean, yerr=std, marker="o", ms=3, capsize=2, label=LABELS[name])
        ax.set_xticks(positions, [f"{lam:g}" for lam in lambdas])
        ax.set_xlabel("lambda (0 = plain loss)")
        ax.set_title(m)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"PRDC vs isotropy weight, mean ± std over {n_seeds} seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
