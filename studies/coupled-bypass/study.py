"""Coupled vs independent mean bypass: can the model tie a field's mean to its fluctuations?

Deck & Bischoff 2023 ("Easing Color Shifts in Score-Based Diffusion Models"), section 3.2, give
the spatial mean of the score to a small dense network that sees only the input's means, and the
fluctuation to a U-Net that sees only the de-meaned input; their section 5.1 notes that this
cannot represent a correlation between a field's mean and its fluctuations. Synthetic doubly
periodic fields x = m + a(m) phi (m ~ U(-1, 1), a = 0.6 - 0.45 m + 0.05 e, e ~ N(0, 1), phi a
smooth Gaussian random field with zero mean and unit spatial std) have corr(mean, std) ~ -0.98.
Two models identical except for `mean_bypass` ('independent', the paper's, and 'coupled') are
trained with `sciscore.train.train` on the same batches and noise, sampled with the
probability-flow ODE (Heun), and compared with held-out fields.

Run: `sciscore study run coupled-bypass [--quick]` (the parameters are in study.toml).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from sciscore.errors import UserError
from sciscore.study import StudyResult
from sciscore.validation import check_types

MODELS = ("independent", "coupled")
CLAIM_INDEPENDENT = "independent bypass cannot represent the mean-fluctuation correlation"
CLAIM_COUPLED = "coupled bypass reproduces it within 0.1"
COUPLED_TOLERANCE = 0.1     # |corr(coupled) - corr(data)| at most this: reproduced
INDEPENDENT_MISS = 0.5      # |corr(independent) - corr(data)| above this: the correlation is not represented


@dataclasses.dataclass(frozen=True)
class Params:
    """The keys of [full] / [quick] in study.toml."""

    steps: int                  # training steps per model
    train_fields: int           # synthetic training fields
    samples: int                # held-out reference fields, and fields generated per model
    size: int                   # grid points per side
    channels: list              # U-Net widths per level
    num_residual: int
    embed_dim: int
    bypass_width: int
    batch_size: int
    learning_rate: float
    warmup_steps: int
    sampler_steps: int          # probability-flow ODE (Heun) steps

    def __post_init__(self):
        check_types(self, "coupled-bypass params")
        for name in ("steps", "train_fields", "samples", "size", "num_residual", "embed_dim", "bypass_width",
                     "batch_size", "sampler_steps"):
            if getattr(self, name) < 1:
                raise UserError(f"coupled-bypass params: {name} must be >= 1, got {getattr(self, name)}")
        if self.samples < 3 or self.train_fields < 3:
            raise UserError("coupled-bypass params: samples and train_fields must be >= 3 (a correlation needs them)")


def parse_params(params: dict) -> Params:
    known = {f.name for f in dataclasses.fields(Params)}
    unknown, missing = sorted(set(params) - known), sorted(known - set(params))
    if unknown or missing:
        raise UserError(f"coupled-bypass params: unknown key(s) {unknown}, missing key(s) {missing}; "
                        "fix studies/coupled-bypass/study.toml")
    return Params(**params)


def synthetic_fields(n: int, size: int, seed: int) -> xr.Dataset:
    """n fields x = m + a(m) phi on a size x size doubly periodic grid (variable `q`, dims sample, y, x)."""
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
    return xr.Dataset(
        {"q": (("sample", "y", "x"), x.astype("float32"), {"units": "1", "long_name": "synthetic field"})},
        coords={"y": ("y", coords, {"units": "1", "long_name": "y"}), "x": ("x", coords, {"units": "1", "long_name": "x"})},
    )


def statistics(x: np.ndarray) -> dict:
    """The table's columns for fields x (sample, y, x): corr(spatial mean, spatial std) over the
    samples, the mean and std of the spatial means, and the mean spatial std."""
    x = np.asarray(x, dtype=np.float64)
    means, stds = x.mean(axis=(-2, -1)), x.std(axis=(-2, -1))
    return {"corr_mean_std": float(np.corrcoef(means, stds)[0, 1]), "mean_of_means": float(means.mean()),
            "std_of_means": float(means.std()), "mean_spatial_std": float(stds.mean())}


def seeds(seed: int) -> dict:
    """Independent seeds of the study's four random streams, all from the one study seed."""
    data, reference, training, sampling = np.random.SeedSequence(seed).generate_state(4)
    return {"data": int(data), "reference": int(reference), "training": int(training), "sampling": int(sampling)}


def training_config(p: Params, mode: str, seed: int, device: str, progress: bool) -> dict:
    return {
        "data": {"variables": ["q"], "shifts": True, "flips": True, "validation_fraction": 0.0},
        "network": {"channels": list(p.channels), "num_residual": p.num_residual, "embed_dim": p.embed_dim,
                    "bypass_width": p.bypass_width, "padding": "circular", "mean_bypass": mode},
        "optimizer": {"learning_rate": p.learning_rate, "warmup_steps": p.warmup_steps},
        "training": {"steps": p.steps, "batch_size": p.batch_size, "seed": seed, "log_every": max(1, p.steps // 30),
                     "checkpoint_every": p.steps, "validation_every": 0, "monitor_every": 0, "device": device,
                     "quiet": not progress},
    }


def train_and_sample(p: Params, mode: str, data: xr.Dataset, seed: dict, device: str, progress: bool,
                     run_dir: Path) -> tuple[np.ndarray, list[dict]]:
    """Train one model, draw p.samples fields with its EMA weights; (fields in physical units as
    float32 (sample, y, x), the training log records)."""
    from sciscore.sde import SamplingProblem, solve
    from sciscore.train import load_checkpoint, train

    train(training_config(p, mode, seed["training"], device, progress), run_dir, dataset=data)
    network, saved = load_checkpoint(run_dir, ema=True, device=device)
    solution = solve(SamplingProblem(network, network.process, (1, p.size, p.size)), solver="ode-heun",
                     steps=p.sampler_steps, n=p.samples, seed=seed["sampling"], batch_size=128, denoise=True,
                     progress=progress, device=device)
    fields = saved.normalizer.invert(solution.x.cpu().numpy().astype(np.float64))[:, 0].astype(np.float32)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return fields, [r for r in records if "loss" in r]


def verdicts(table: dict) -> dict:
    """The two claims, judged from the corr(mean, std) of the data and of each model."""
    data = table["data"]["corr_mean_std"]
    return {CLAIM_INDEPENDENT: abs(table["independent"]["corr_mean_std"] - data) > INDEPENDENT_MISS,
            CLAIM_COUPLED: abs(table["coupled"]["corr_mean_std"] - data) <= COUPLED_TOLERANCE}


def plot_mean_vs_std(panels: dict, path: Path) -> Path:
    """Scatter of each field's spatial mean vs its spatial std: data and each model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"data": "data (held out)", "independent": "independent bypass", "coupled": "coupled bypass"}
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), sharex=True, sharey=True)
    for ax, (name, x) in zip(np.atleast_1d(axes), panels.items()):
        x = np.asarray(x, dtype=np.float64)
        ax.scatter(x.mean(axis=(-2, -1)), x.std(axis=(-2, -1)), s=4, alpha=0.6)
        ax.set_title(f"{titles[name]}\ncorr(mean, std) = {statistics(x)['corr_mean_std']:.2f}")
        ax.set_xlabel("spatial mean")
    np.atleast_1d(axes)[0].set_ylabel("spatial std (fluctuation amplitude)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_training_loss(logs: dict, path: Path) -> Path:
    """The two terms of the split loss (Deck & Bischoff 2023, eq. 16-17) during training, per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for mode, records in logs.items():
        for ax, term in zip(axes, ("mean", "fluctuation")):
            ax.plot([r["step"] for r in records], [r[term] for r in records], label=f"{mode} bypass")
    for ax, title in zip(axes, ("spatial-mean term (eq. 16)", "fluctuation term (eq. 17)")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run(params: dict, *, seed: int, out: Path, device: str, progress: bool) -> StudyResult:
    from sciscore.fields import write_fields

    p = parse_params(params)
    seed_of = seeds(seed)
    out = Path(out)
    data = synthetic_fields(p.train_fields, p.size, seed_of["data"])
    reference = synthetic_fields(p.samples, p.size, seed_of["reference"])
    panels = {"data": reference["q"].values}
    logs = {}
    with tempfile.TemporaryDirectory(prefix="coupled-bypass-") as scratch:  # checkpoints are not results
        for mode in MODELS:
            fields, logs[mode] = train_and_sample(p, mode, data, seed_of, device, progress, Path(scratch) / mode)
            panels[mode] = fields
            generated = reference.copy(data={"q": fields})  # the grid and attributes of the data
            write_fields(generated, out / f"generated_{mode}.nc", overwrite=True,
                         title=f"coupled-bypass study: {p.samples} fields from the {mode}-bypass model",
                         source=f"sciscore study run coupled-bypass (seed {seed}): probability-flow ODE (Heun, "
                                f"{p.sampler_steps} steps), EMA weights after {p.steps} training steps")
            (out / f"training_{mode}.jsonl").write_text(
                "".join(json.dumps({k: r[k] for k in ("step", "loss", "mean", "fluctuation")}) + "\n"
                        for r in logs[mode]))
    table = {name: statistics(x) for name, x in panels.items()}
    rows = [{"model": name, **values} for name, values in table.items()]
    judged = verdicts(table)
    figures = [plot_mean_vs_std(panels, out / "mean_vs_std.png"), plot_training_loss(logs, out / "training_loss.png")]
    data_corr = table["data"]["corr_mean_std"]
    headline = (f"corr(spatial mean, spatial std): data {data_corr:.3f}, "
                f"independent bypass {table['independent']['corr_mean_std']:.3f} "
                f"({'cannot represent it' if judged[CLAIM_INDEPENDENT] else 'represents it: claim refuted'}), "
                f"coupled bypass {table['coupled']['corr_mean_std']:.3f} "
                f"({'within' if judged[CLAIM_COUPLED] else 'NOT within'} {COUPLED_TOLERANCE} of the data)")
    return StudyResult(rows=rows, headline=headline, figures=figures, verdicts=judged)
