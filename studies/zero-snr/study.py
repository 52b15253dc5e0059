"""Zero terminal SNR (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are
Flawed", section 3 and Figs. 1-3): can a model with the common noise schedule generate fields
whose spatial mean is far from the data's average ("very dark / very bright")?

Data: doubly periodic fields x = mu + a phi (phi a smooth Gaussian random field with zero mean and
unit spatial std, mu ~ U(-mean_halfwidth, mean_halfwidth), a = amplitude), so the spatial means
span a range many times the fluctuation std.

Models: one U-Net, one training budget (`sciscore.train.train`), differing only in the process,
what the network predicts and the loss:

    common-eps   DiscreteVP(schedule), eps-prediction (network F = -eps, DSM loss)
    zero-snr-v   DiscreteVP(schedule, zero_terminal_snr=True) (Lin et al. Alg. 1), v-prediction
                 (EDM preconditioning with sigma_data = 1 on VP: F = -v, loss |F + v|^2)
    common-v     DiscreteVP(schedule), v-prediction (separates the effect of v from the rescale)
    ddpm-eps     DiscreteVP("linear", Ho et al. 2020's table), eps-prediction
    ve-bypass    VE (sigma_max by Song & Ermon's rule) + coupled mean bypass (Deck & Bischoff 2023)

The discrete-VP models are sampled with the probability-flow ODE (Heun, `ode-heun`; its first
step is a DDIM step where the SNR is zero) on the spacings of Lin et al.'s Table 2
(leading, linspace, trailing); the VE model on the Karras grid.

Measured per (model, spacing): mean_range_ratio = (q95 - q5) of the generated spatial means over
that of the data's (the 5-95 % quantile range: robust to the few outliers of a briefly trained
model, which dominated the 1-99 % range in the quick run; details.json keeps both) and
w1_mean_over_std = W1(generated means, data means) / std(data means).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from sciscore.diagnostics.distances import color_shift_score
from sciscore.errors import UserError
from sciscore.sde import SamplingProblem, solve, time_grid
from sciscore.study import StudyResult
from sciscore.train import config_from_dict, load_checkpoint, train

SCHEDULES = {  # the common discrete schedules: (beta_start, beta_end, beta_schedule)
    "scaled_linear": (0.00085, 0.012, "scaled_linear"),  # Stable Diffusion's (Lin et al. 2024, Table 1)
    "linear": (1e-4, 0.02, "linear"),                     # DDPM's (Ho et al. 2020)
}
# model -> (schedule, zero terminal SNR, prediction, spacings)
MODELS = {
    "common-eps": ("scaled_linear", False, "eps", ("leading", "linspace", "trailing")),
    "zero-snr-v": ("scaled_linear", True, "v", ("trailing", "leading")),
    "common-v": ("scaled_linear", False, "v", ("leading", "trailing")),
    "ddpm-eps": ("linear", False, "eps", ("leading",)),
    "ve-bypass": ("ve", False, "eps", ("karras",)),
}
# verdict bars: "cannot reach the extremes" = range ratio below RANGE_FAIL; "restored" = within RANGE_OK of 1
RANGE_FAIL, RANGE_OK = 0.85, 0.1
KEPT_FIELDS = 32  # generated fields per row kept in the NetCDF (all spatial means are kept)


def synthetic_fields(n: int, size: int, seed: int, mean_halfwidth: float, amplitude: float,
                     length: float = 3.0) -> xr.Dataset:
    """n fields x = mu + amplitude * phi on a size x size periodic grid; mu ~ U(-w, w); phi is white
    noise filtered by exp(-k^2 / (2 length^2)), de-meaned and scaled to unit spatial std."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(size, 1 / size)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    white = rng.standard_normal((n, size, size))
    phi = np.fft.ifft2(np.fft.fft2(white) * np.exp(-k2 / (2 * length**2))).real
    phi -= phi.mean(axis=(1, 2), keepdims=True)
    phi /= phi.std(axis=(1, 2), keepdims=True)
    mu = rng.uniform(-mean_halfwidth, mean_halfwidth, n)
    x = mu[:, None, None] + amplitude * phi
    coords = np.arange(size) / size
    return xr.Dataset({"q": (("sample", "y", "x"), x.astype("float32"),
                             {"units": "1", "long_name": "synthetic field with widely spread means"})},
                      coords={"y": ("y", coords), "x": ("x", coords)})


def quantile_range(values, low: float = 0.05, high: float = 0.95) -> float:
    """q_high - q_low of `values` (the robust range of the spatial means)."""
    q = np.quantile(np.asarray(values, float), [low, high])
    return float(q[1] - q[0])


def predicted_range_ratio(process, t_start: float, pixels: int, mean_variance: float) -> float:
    """Gaussian estimate of the shrinkage of the generated means when sampling starts from N(0, I)
    at t_start instead of from the true marginal: the spatial mean of x_t has variance
    s^2 var(mu) + m^2 / pixels, the prior's mean m_prior^2 / pixels (m_prior = 1 for VP, sigma for
    VE), and the PF-ODE maps the start linearly onto the data (exact for Gaussian means)."""
    t = torch.tensor(t_start, dtype=torch.float64)
    s, m = float(process.scale(t)), float(process.marginal_std(t))
    prior = process.prior_std() ** 2 / pixels
    return math.sqrt(prior / (s**2 * mean_variance + m**2 / pixels))


def _config(model: str, params: dict, seed: int, device: str, progress: bool) -> dict:
    schedule, zero_snr, prediction, _ = MODELS[model]
    if schedule == "ve":
        process = {"name": "ve", "sigma_min": 0.01, "sigma_max": "auto"}
    else:
        beta_start, beta_end, beta_schedule = SCHEDULES[schedule]
        process = {"name": "discrete-vp", "num_timesteps": 1000, "beta_start": beta_start, "beta_end": beta_end,
                   "beta_schedule": beta_schedule, "zero_terminal_snr": zero_snr}
    return {
        "data": {"variables": ["q"], "shifts": True, "flips": True, "validation_fraction": 0.05},
        "network": {"channels": list(params["channels"]), "num_residual": params["num_residual"],
                    "embed_dim": params["embed_dim"], "bypass_width": params["embed_dim"], "padding": "circular",
                    "mean_bypass": "coupled" if model == "ve-bypass" else "none",
                    # EDM's preconditioning on VP with sigma_data = 1 makes F = -v (network.py docstring)
                    "preconditioning": "edm" if prediction == "v" else "c_in"},
        "process": process,
        "loss": {"kind": "v" if prediction == "v" else "dsm"},
        "optimizer": {"learning_rate": params["learning_rate"], "warmup_steps": 100},
        "training": {"steps": params["train_steps"], "batch_size": params["batch_size"], "seed": seed,
                     "log_every": 100, "checkpoint_every": params["train_steps"], "validation_every": 0,
                     "monitor_every": 0, "device": device, "quiet": not progress},
    }


def _problem(network, process, shape):
    if network.config.preconditioning == "edm":  # the denoiser is finite at zero terminal SNR
        return SamplingProblem(network.denoise, process, shape, parametrization="x0")
    return SamplingProblem(network, process, shape)


def _plot_histograms(data_means, rows, means, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(4, len(rows))
    lines = math.ceil(len(rows) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(3.4 * columns, 2.8 * lines), sharex=True, squeeze=False)
    edges = np.linspace(min(data_means.min(), *(m.min() for m in means)),
                        max(data_means.max(), *(m.max() for m in means)), 41)
    for ax, row, generated in zip(axes.flat, rows, means):
        ax.hist(data_means, bins=edges, density=True, histtype="stepfilled", color="0.8", label="data")
        ax.hist(generated, bins=edges, density=True, histtype="step", color="C3", lw=1.5, label="generated")
        ax.set_title(f"{row['schedule']}, {row['prediction']}, {row['spacing']}\n"
                     f"range ratio {row['mean_range_ratio']:.2f}, W1/std {row['w1_mean_over_std']:.2f}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("spatial mean", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_examples(data_fields, labelled_fields, path: Path, columns: int = 6) -> None:
    """Fields at the 0, 20, ..., 100 % quantiles of their spatial mean: data and each model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [("data", data_fields)] + labelled_fields
    low, high = np.percentile(data_fields, [0.5, 99.5])
    figure, axes = plt.subplots(len(sets), columns, figsize=(1.3 * columns + 1.2, 1.35 * len(sets)), squeeze=False)
    for line, (label, fields) in zip(axes, sets):
        order = np.argsort(fields.mean(axis=(-2, -1)))
        picks = order[np.round(np.linspace(0, len(order) - 1, columns)).astype(int)]
        for ax, index in zip(line, picks):
            image = ax.imshow(fields[index], vmin=low, vmax=high, cmap="gray")
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{fields[index].mean():+.2f}", fontsize=7)
        line[0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    figure.colorbar(image, ax=axes, shrink=0.6, label="q")
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def run(params: dict, *, seed: int, out: Path, device: str, progress: bool) -> StudyResult:
    out = Path(out)
    size = int(params["size"])
    shape = (1, size, size)
    width, amplitude = float(params["mean_halfwidth"]), float(params["amplitude"])
    data = synthetic_fields(params["train_fields"], size, 2 * seed + 1, width, amplitude)
    reference = synthetic_fields(params["reference_fields"], size, 2 * seed + 2, width, amplitude)["q"].values
    data_means = reference.mean(axis=(-2, -1)).astype(np.float64)
    data_range = quantile_range(data_means)
    models = list(params["models"])
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise UserError(f"unknown zero-snr model(s) {unknown}; expected some of {list(MODELS)}")

    rows, all_means, kept, labels, info = [], [], [], [], {}
    for model in models:
        schedule, zero_snr, prediction, spacings = MODELS[model]
        clock = time.process_time()
        with tempfile.TemporaryDirectory(prefix=f"zero-snr-{model}-") as run_dir:  # checkpoints are not kept
            trained = train(_config(model, params, seed, device, progress), run_dir, dataset=data)
            network, saved = load_checkpoint(run_dir, ema=True, device=device)
        train_cpu = time.process_time() - clock
        process, normalizer = saved.process, saved.normalizer
        mean_variance = float(np.var(data_means)) / normalizer.mean_scale[0] ** 2  # in the network's units
        for spacing in spacings:
            clock = time.process_time()
            solution = solve(_problem(network, process, shape), solver="ode-heun", steps=params["sample_steps"],
                             n=params["samples"], seed=seed, batch_size=256, grid=spacing, denoise=True,
                             progress=progress, device=device)
            generated = normalizer.invert(solution.x.numpy().astype(np.float64))[:, 0]
            means = generated.mean(axis=(-2, -1))
            shift = color_shift_score(data_means, means)
            label = schedule + ("-zero-snr" if zero_snr else "")
            row = {"schedule": label, "prediction": prediction, "spacing": spacing,
                   "mean_range_ratio": quantile_range(means) / data_range, "w1_mean_over_std": shift.score}
            rows.append(row)
            all_means.append(means)
            kept.append(generated[:KEPT_FIELDS].astype(np.float32))
            labels.append(f"{model}/{spacing}")
            t_start = float(time_grid(process, params["sample_steps"], spacing)[0])
            predicted = (predicted_range_ratio(process, t_start, size * size, mean_variance)
                         if math.isfinite(float(process.sigma(torch.tensor(t_start, dtype=torch.float64)))) else 1.0)
            info[labels[-1]] = {"train_cpu_seconds": train_cpu, "final_training_loss": trained.last_loss, "sample_cpu_seconds": time.process_time() - clock,
                                "nfe": solution.nfe, "t_start": t_start, "gaussian_predicted_range_ratio": predicted,
                                "mean_of_means": float(means.mean()), "std_of_means": float(means.std()),
                                "q01": float(np.quantile(means, 0.01)), "q99": float(np.quantile(means, 0.99)),
                                "range_ratio_1_99": quantile_range(means, 0.01, 0.99) / quantile_range(data_means, 0.01, 0.99),
                                "std_ratio": float(means.std() / data_means.std())}

    # one NetCDF: all spatial means, KEPT_FIELDS fields per row, and the data's
    dataset = xr.Dataset(
        {"spatial_mean": (("row", "sample"), np.stack(all_means)),
         "q": (("row", "kept", "y", "x"), np.stack(kept)),
         "data_spatial_mean": (("reference",), data_means)},
        coords={"row": labels, "y": np.arange(size) / size, "x": np.arange(size) / size},
        attrs={"study": "zero-snr", "seed": seed, "params": json.dumps(params)})
    dataset.to_netcdf(out / "generated.nc")
    (out / "details.json").write_text(json.dumps(info, indent=2))

    figures = [out / "mean_histograms.png", out / "examples.png"]
    _plot_histograms(data_means, rows, all_means, figures[0])
    # each model with its first spacing (the paper's recommended one for the zero-SNR model)
    first = [(label, fields) for label, fields in zip(labels, kept)
             if label.split("/")[1] == MODELS[label.split("/")[0]][3][0]]
    _plot_examples(reference[:KEPT_FIELDS], first, figures[1])

    def pick(label_prefix, spacings):
        return [r for r, lab in zip(rows, labels) if lab.split("/")[0] == label_prefix and r["spacing"] in spacings]

    verdicts = {}
    common = pick("common-eps", ("leading", "linspace"))
    if common:
        verdicts["the common schedule (eps, leading/linspace) cannot reach the extreme means"] = all(
            r["mean_range_ratio"] < RANGE_FAIL for r in common)
    fixed = pick("zero-snr-v", ("trailing",))
    if fixed:
        verdicts["zero terminal SNR + v + trailing restores them"] = all(
            abs(r["mean_range_ratio"] - 1) < RANGE_OK for r in fixed) and (
            not common or fixed[0]["w1_mean_over_std"] < min(r["w1_mean_over_std"] for r in common))
    ve = pick("ve-bypass", ("karras",))
    if ve:
        verdicts["VE + coupled mean bypass reaches them"] = abs(ve[0]["mean_range_ratio"] - 1) < RANGE_OK
    parts = [f"{r['schedule']}/{r['prediction']}/{r['spacing']}: range ratio {r['mean_range_ratio']:.2f}, "
             f"W1/std {r['w1_mean_over_std']:.2f}" for r in rows]
    headline = "Spatial means of generated vs data fields (5-95 % range ratio, W1 over std): " + "; ".join(parts) + "."
    return StudyResult(rows=rows, headline=headline, figures=figures, verdicts=verdicts)
