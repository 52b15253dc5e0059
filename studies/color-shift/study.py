"""The color shift against image size: a plain U-Net vs the mean bypass, with and without EMA.

Deck & Bischoff 2023, "Easing Color Shifts in Score-Based Diffusion Models": the spatial means
of generated images drift from the data's ("color shift"), more so for larger images (their
Figs 1, 2, 4); a mean-bypass layer that predicts the spatial mean of the score from the input's
spatial mean removes it at every size (their eq. 14-15, Figs 2, 5); EMA weights alone do not
remove it for large images; the fluctuations (power spectra, Fig. 7) are learned either way.

For each dataset and size, three networks that differ only in `network.mean_bypass`
("none" = baseline, "independent" = the paper's bypass, "coupled" = sciscore's default) are
trained with `sciscore.train.train` on the same data, seed and budget, then sampled with their
EMA and their raw weights. Per (dataset, size, network, weights) the table has

    w1_mean_over_std    W1(generated spatial means, data spatial means) / std(data spatial means)
                        (`sciscore.diagnostics.compare_variable`'s color-shift score)
    mean_loss           the per-pixel spatial-mean term of the split loss (eq. 16), mean_b r_bar^2
    fluctuation_loss    the per-pixel fluctuation term (eq. 17), mean_{b,y,x} (r - r_bar)^2
    spectrum_max_ratio  the largest factor between mean power spectra over 1 <= k <= N/4

with both loss terms evaluated at the end of training on the held-out fields with fixed draws of
t and z, the same for every network (paired), so the EMA and the raw weights are comparable.
"""

# no `from __future__ import annotations`: the runner may load this file without registering it in
# sys.modules, and dataclasses then cannot resolve string annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import xarray as xr

from sciscore.errors import UserError
from sciscore.study import StudyResult
from sciscore.validation import require

COLUMNS = ["dataset", "size", "network", "ema", "w1_mean_over_std", "mean_loss", "fluctuation_loss",
           "spectrum_max_ratio"]
NETWORKS = {"baseline": "none", "independent": "independent", "coupled": "coupled"}
DATASETS = ("turbulence", "digits")
RESAMPLING = ("bilinear", "bicubic")
RECIPE = Path(__file__).resolve().parents[2] / "datasets" / "turbulence2d-64.toml"  # the model and schedule
STYLE = {"baseline": "tab:red", "independent": "tab:blue", "coupled": "tab:green"}


@dataclass
class Parameters:
    """The keyword parameters of `run` ([full] and [quick] tables of study.toml)."""

    datasets: list = field(default_factory=lambda: list(DATASETS))
    sizes: list = field(default_factory=lambda: [32, 64, 128])
    networks: list = field(default_factory=lambda: list(NETWORKS))
    train_fields: int = 384          # training fields per dataset and size
    reference_fields: int = 128      # held-out fields: the data side of every comparison
    samples: int = 128               # generated fields per network and weights
    # training: the same budget and widths at every size (the U-Net depth is fixed too)
    steps: int = 400
    batch_size: int = 16
    channels: list = field(default_factory=lambda: [8, 16, 32, 64])
    num_residual: int = 2
    embed_dim: int = 64
    bypass_width: int = 64
    learning_rate: float = 1e-3      # the paper's Adam learning rate
    warmup_steps: int = 50
    ema_decay: float = 0.999         # the paper's EMA rate
    # sampling and evaluation
    solver: str = "ode-heun"
    sampler_steps: int = 10
    sample_batch: int = 32
    loss_draws: int = 2              # (t, z) draws per held-out field for the final loss terms
    kept_fields: int = 2             # generated fields per model written to NetCDF (largest size)
    # turbulence: sciscore's simulator (datasets/turbulence2d-64.toml's model), supersaturation
    members: int = 32
    spinup: float = 200.0
    spinup_resolution: int = 32
    relax: float = 10.0
    interval: float = 3.0
    # digits: scikit-learn's 8 x 8 digits upsampled, plus a uniform brightness offset per image
    resampling: str = "bilinear"
    brightness_offset: float = 0.25  # offsets ~ U(-a, a), in units of the full intensity range

    def __post_init__(self):
        problems = [
            (set(self.datasets) <= set(DATASETS) and self.datasets, f"datasets must be some of {list(DATASETS)}"),
            (set(self.networks) <= set(NETWORKS) and self.networks, f"networks must be some of {list(NETWORKS)}"),
            ("baseline" in self.networks, "networks must include 'baseline' (every claim compares with it)"),
            (self.sizes and all(isinstance(s, int) and s >= 8 and s % 8 == 0 for s in self.sizes),
             "sizes must be integers >= 8 and multiples of 8"),
            (self.sizes == sorted(set(self.sizes)), "sizes must be increasing and distinct"),
            (self.resampling in RESAMPLING, f"resampling must be one of {list(RESAMPLING)}"),
            (min(self.train_fields, self.reference_fields, self.samples, self.steps, self.batch_size,
                 self.sampler_steps, self.sample_batch, self.loss_draws, self.members) >= 1,
             "counts (fields, samples, steps, batch sizes, draws, members) must be >= 1"),
            (self.reference_fields >= 4 and self.samples >= 4, "reference_fields and samples must be >= 4"),
            (self.kept_fields >= 0 and self.kept_fields <= self.samples, "kept_fields must be in [0, samples]"),
            (0 <= self.brightness_offset < 1, "brightness_offset must be in [0, 1)"),
        ]
        require(problems, "color-shift study")

    @classmethod
    def from_dict(cls, params: dict) -> "Parameters":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise UserError(f"color-shift study: unknown parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**params)


# ---------------------------------------------------------------------------------------------
# data


def _split_seed(seed: int, *labels) -> int:
    return int(np.random.SeedSequence([seed, *labels]).generate_state(1, dtype=np.uint64)[0] % (2**62))


def turbulence_fields(p: Parameters, size: int, seed: int, device: str, cache: Path, progress: bool):
    """(training, reference) supersaturation of sciscore's moist-turbulence model at `size`:
    `members` independent members (datasets/turbulence2d-64.toml's model and schedule, fewer
    rounds); the reference members are held out whole, so the two sets are independent."""
    from sciscore.simulate.recipes import Recipe, load_recipe, simulate_dataset

    path = cache / f"turbulence-{size}-seed{seed}.nc"
    reference_members = max(1, round(p.members * p.reference_fields / (p.train_fields + p.reference_fields)))
    if reference_members >= p.members:
        raise UserError(f"color-shift study: {p.members} members cannot be split into training and held-out "
                        "members; raise members")
    rounds = max(math.ceil(p.train_fields / (p.members - reference_members)),
                 math.ceil(p.reference_fields / reference_members))
    options = load_recipe(RECIPE) | {
        "resolution": size, "samples": rounds * p.members, "seed": seed, "members": p.members, "spinup": p.spinup,
        "spinup_resolution": min(p.spinup_resolution, size), "relax": p.relax, "interval": p.interval,
        "device": device, "threads": None, "name": f"color-shift-{size}"}   # threads: the caller's
    recipe = Recipe(**options)
    ds = None
    if path.is_file():  # the cache: reused only if made by the same recipe
        with xr.open_dataset(path) as cached:
            if all(cached.attrs.get(key) == value for key, value in recipe.to_attrs().items()):
                ds = cached.load()
    if ds is None:
        from sciscore.fields import write_fields
        ds = simulate_dataset(recipe, progress=progress)[["supersaturation"]]
        write_fields(ds, path, overwrite=True, title=f"color-shift study: moist turbulence at {size}^2")
    held_out = ds["member"].values >= p.members - reference_members
    train = ds.isel(sample=np.flatnonzero(~held_out)[:p.train_fields])
    reference = ds.isel(sample=np.flatnonzero(held_out)[:p.reference_fields])
    return _plain(train, "supersaturation"), _plain(reference, "supersaturation")


def digits_fields(p: Parameters, size: int, seed: int):
    """(training, reference) of scikit-learn's 1797 handwritten digits (8 x 8, 0..16) scaled to
    [0, 1], plus one brightness offset per image ~ U(-a, a) (the same for every size), resampled
    to size x size (torch `interpolate`, align_corners=False). The split is by image."""
    import torch
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32) / 16.0           # (1797, 8, 8)
    rng = np.random.default_rng(_split_seed(seed, 1))
    order = rng.permutation(len(images))
    offsets = rng.uniform(-p.brightness_offset, p.brightness_offset, len(images)).astype(np.float32)
    if p.train_fields + p.reference_fields > len(images):
        raise UserError(f"color-shift study: digits has {len(images)} images, fewer than train_fields + "
                        f"reference_fields = {p.train_fields + p.reference_fields}")
    with torch.no_grad():
        resized = torch.nn.functional.interpolate(torch.from_numpy(images)[:, None], size=(size, size),
                                                  mode=p.resampling, align_corners=False)[:, 0].numpy()
    resized = resized + offsets[:, None, None]
    coords = {"y": ("y", (np.arange(size) + 0.5) / size), "x": ("x", (np.arange(size) + 0.5) / size)}
    attrs = {"units": "1", "long_name": "digit intensity plus brightness offset"}

    def subset(index):
        return xr.Dataset({"intensity": (("sample", "y", "x"), resized[index], attrs)},
                          coords={**coords, "sample": ("sample", np.arange(len(index)))})

    return subset(order[:p.train_fields]), subset(order[p.train_fields:p.train_fields + p.reference_fields])


def data_key(p: Parameters, dataset: str, size: int, seed: int) -> str:
    """What the training fields of (dataset, size) depend on: the cache key of their trainings."""
    if dataset == "turbulence":
        made = (p.members, p.spinup, p.spinup_resolution, p.relax, p.interval)
    else:
        made = (p.resampling, p.brightness_offset)
    return json.dumps([dataset, size, seed, p.train_fields, p.reference_fields, *made])


def _plain(ds: xr.Dataset, variable: str) -> xr.Dataset:
    """One variable on (sample, y, x), in memory, samples renumbered."""
    out = ds[[variable]].drop_vars([c for c in ds.coords if c not in ("y", "x")])
    out.attrs = {}  # the same whether simulated now or read from the cache
    return out.assign_coords(sample=np.arange(out.sizes["sample"])).load()


# ---------------------------------------------------------------------------------------------
# training, sampling and evaluation


def training_config(p: Parameters, variable: str, network: str, periodic: bool, seed: int, device: str,
                    quiet: bool) -> dict:
    """The `sciscore train` configuration (TOML layout) of one network; only mean_bypass differs."""
    return {
        "data": {"variables": [variable], "shifts": periodic, "flips": periodic, "validation_fraction": 0.0},
        "network": {"channels": list(p.channels), "num_residual": p.num_residual, "embed_dim": p.embed_dim,
                    "bypass_width": p.bypass_width, "padding": "circular" if periodic else "zero",
                    "mean_bypass": NETWORKS[network]},
        "process": {"name": "ve", "sigma_min": 0.01, "sigma_max": "auto"},   # the paper's process
        "optimizer": {"learning_rate": p.learning_rate, "warmup_steps": p.warmup_steps, "ema_decay": p.ema_decay},
        "training": {"steps": p.steps, "batch_size": p.batch_size, "seed": seed, "log_every": max(1, p.steps // 60),
                     "checkpoint_every": p.steps, "validation_every": 0, "monitor_every": 0, "device": device,
                     "quiet": quiet},
    }


def train_cached(config: dict, run_dir: Path, data: xr.Dataset, key_of_data: str) -> None:
    """Train unless `run_dir` already holds this run (same configuration and data), finished."""
    from sciscore.checkpoint import read_checkpoint
    from sciscore.train import train

    key_file = run_dir / "study-key.json"
    key = json.dumps({"config": {k: v for k, v in config.items() if k != "training"} | {
        "training": {k: v for k, v in config["training"].items() if k not in ("device", "quiet")}}, "data": key_of_data},
        sort_keys=True)
    if key_file.is_file() and key_file.read_text() == key:
        try:
            if read_checkpoint(run_dir).step == config["training"]["steps"]:
                return
        except UserError:
            pass
    train(config, run_dir, dataset=data, overwrite=True)
    key_file.write_text(key)


def final_loss_terms(run_dir: Path, ema: bool, reference: xr.Dataset, variable: str, draws: int, seed: int,
                     device: str, batch: int = 64) -> tuple[float, float]:
    """(mean, fluctuation) per-pixel terms of the split loss (Deck & Bischoff 2023, eq. 16-17) of
    one checkpoint on the held-out fields, `draws` fixed (t, z) draws per field, seeded by `seed`
    alone, so every network and weights see the same draws."""
    import torch
    from sciscore.train import LossConfig, denoising_loss, draw_times, load_checkpoint

    network, record = load_checkpoint(run_dir, ema=ema, device=device)
    x_all = record.normalizer.apply(torch.from_numpy(reference[variable].values[:, None].astype(np.float32)))
    config = LossConfig()
    sums, count = np.zeros(2), 0
    with torch.no_grad():
        for draw in range(draws):
            generator = torch.Generator(device=device).manual_seed(_split_seed(seed, 2, draw))
            for start in range(0, len(x_all), batch):
                x0 = x_all[start:start + batch].to(device)
                t = draw_times(network.process, len(x0), config, generator, device)
                noise = torch.randn(x0.shape, generator=generator, device=device)
                terms = denoising_loss(network, network.process, x0, t, noise, config, None, network.config.sigma_data)
                sums += [float(terms["mean"]) * len(x0), float(terms["fluctuation"]) * len(x0)]
                count += len(x0)
    return float(sums[0] / count), float(sums[1] / count)


def loss_curve(run_dir: Path) -> dict:
    """step, mean and fluctuation terms (interval means of the raw network's training batches)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    records = [r for r in records if "mean" in r]
    return {key: np.array([r[key] for r in records], dtype=float) for key in ("step", "mean", "fluctuation")}


# ---------------------------------------------------------------------------------------------
# the study


def run(params: dict, *, seed: int, out: Path, device: str, progress: bool) -> StudyResult:
    """Train, sample and judge every (dataset, size, network); see the module docstring."""
    import sciscore
    from sciscore.diagnostics import compare_variable
    from sciscore.diagnostics.distances import color_shift_score
    from tqdm.auto import tqdm

    p = Parameters.from_dict(params)
    out = Path(out)
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    rows, records, curves, spectra, kept = [], {}, {}, {}, []
    floors = {}
    jobs = [(d, s) for d in p.datasets for s in p.sizes]
    bar = tqdm(total=len(jobs) * len(p.networks), disable=not progress, desc="color-shift", unit="network")
    for dataset, size in jobs:
        if dataset == "turbulence":
            variable, periodic = "supersaturation", True
            train_data, reference = turbulence_fields(p, size, seed, device, cache, progress)
        else:
            variable, periodic = "intensity", False
            train_data, reference = digits_fields(p, size, seed)
        ref_means = reference[variable].mean(("y", "x")).values
        half = len(ref_means) // 2
        floors[(dataset, size)] = color_shift_score(ref_means[:half], ref_means[half:2 * half]).score
        records[(dataset, "data", size)] = {"means": ref_means}
        for network in p.networks:
            run_dir = cache / "runs" / f"{dataset}-{size}-{network}"
            config = training_config(p, variable, network, periodic, seed, device, quiet=True)
            train_cached(config, run_dir, train_data, data_key(p, dataset, size, seed))
            curves[(dataset, size, network)] = loss_curve(run_dir)
            for ema in (True, False):
                model = sciscore.load_model(run_dir, ema=ema, device=device)
                generated = model.generate(p.samples, solver=p.solver, steps=p.sampler_steps, seed=seed,
                                           batch_size=p.sample_batch)
                comparison = compare_variable(reference[variable], generated[variable], progress=False, seed=seed)
                mean_loss, fluctuation_loss = final_loss_terms(run_dir, ema, reference, variable, p.loss_draws, seed, device)
                rows.append({"dataset": dataset, "size": size, "network": network, "ema": ema,
                             "w1_mean_over_std": float(comparison["color_shift_score"]),
                             "mean_loss": mean_loss, "fluctuation_loss": fluctuation_loss,
                             "spectrum_max_ratio": float(comparison["max_spectral_ratio"])})
                records[(dataset, network, size, ema)] = {
                    "means": generated[variable].mean(("y", "x")).values,
                    "flagged": bool(comparison["color_shift_flag"]),
                }
                spectra[(dataset, size, "data")] = comparison["spectrum_mean_reference"].values
                spectra[(dataset, size, network, ema)] = comparison["spectrum_mean_generated"].values
                if size == p.sizes[-1] and p.kept_fields:
                    kept.append((dataset, network, ema, generated[variable].values[:p.kept_fields]))
            bar.update()
    bar.close()

    figures = [
        plot_spatial_means(p, records, out / "spatial_means.png"),
        plot_loss_curves(p, curves, out / "loss_curves.png"),
        plot_mean_loss_vs_size(p, rows, out / "mean_loss_vs_size.png"),
        plot_spectra(p, spectra, out / "spectra.png"),
    ]
    write_generated(p, records, spectra, kept, floors, out / "generated.nc")
    verdicts, headline = judge(p, rows, records, floors)
    return StudyResult(rows=rows, headline=headline, figures=figures, verdicts=verdicts)


def _row(rows, dataset, size, network, ema):
    for r in rows:
        if (r["dataset"], r["size"], r["network"], r["ema"]) == (dataset, size, network, ema):
            return r
    raise KeyError((dataset, size, network, ema))


def judge(p: Parameters, rows: list, records: dict, floors: dict) -> tuple[dict, str]:
    """The paper's claims, per dataset, from the table (README.md: Verdicts), and the headline."""
    verdicts, parts = {}, []
    small, large = p.sizes[0], p.sizes[-1]
    bypasses = [n for n in p.networks if n != "baseline"]
    for dataset in p.datasets:
        w1 = {(n, s, e): _row(rows, dataset, s, n, e)["w1_mean_over_std"]
              for n in p.networks for s in p.sizes for e in (True, False)}
        grows = len(p.sizes) > 1 and all(w1[("baseline", large, e)] > w1[("baseline", small, e)] for e in (True, False))
        verdicts[f"{dataset}: the baseline's mean error grows with size (EMA and raw weights)"] = (
            grows if len(p.sizes) > 1 else None)
        for bypass in bypasses:
            every = all(w1[(bypass, s, e)] < w1[("baseline", s, e)] for s in p.sizes for e in (True, False))
            threefold = all(w1[("baseline", large, e)] >= 3 * w1[(bypass, large, e)] for e in (True, False))
            verdicts[f"{dataset}: the {bypass} bypass lowers the mean error at every size and weights"] = every
            verdicts[f"{dataset}: the {bypass} bypass is >= 3x lower than the baseline at {large}^2"] = threefold
        verdicts[f"{dataset}: EMA alone does not fix the baseline at {large}^2 (flagged color shift)"] = \
            records[(dataset, "baseline", large, True)]["flagged"]
        ratio = " / ".join(f"{n} {w1[(n, large, True)]:.2f}" for n in p.networks)
        trend = ", ".join(f"{w1[('baseline', s, True)]:.2f}" for s in p.sizes)
        parts.append(f"{dataset}: baseline EMA W1/std {trend} at sizes {', '.join(map(str, p.sizes))}; "
                     f"at {large}^2 (EMA) {ratio} (sampling floor {floors[(dataset, large)]:.2f})")
    headline = "W1 of generated vs data spatial means over the data's std of means. " + "; ".join(parts) + "."
    return verdicts, headline


# ---------------------------------------------------------------------------------------------
# outputs


def write_generated(p: Parameters, records: dict, spectra: dict, kept: list, floors: dict, path: Path) -> None:
    """Spatial means of every generated set and of the data, mean spectra, and `kept_fields`
    generated fields per model at the largest size, as one small NetCDF file."""
    from sciscore.fields import write_fields

    variables = {}
    for key, record in records.items():
        if key[1] == "data":
            dataset, _, size = key
            name = f"spatial_means_{dataset}_{size}_data"
        else:
            dataset, network, size, ema = key
            name = f"spatial_means_{dataset}_{size}_{network}_{'ema' if ema else 'raw'}"
        variables[name] = xr.DataArray(record["means"].astype(np.float32), dims=(f"sample_{len(record['means'])}",),
                                       attrs={"long_name": "spatial mean of each field", "units": "1"})
    for key, values in spectra.items():
        dataset, size = key[:2]
        suffix = "data" if key[2] == "data" else f"{key[2]}_{'ema' if key[3] else 'raw'}"
        variables[f"spectrum_{dataset}_{size}_{suffix}"] = xr.DataArray(
            values.astype(np.float32), dims=(f"wavenumber_{size}",),
            attrs={"long_name": "mean shell-summed power spectrum of the fluctuation", "units": "1"})
    for dataset, network, ema, values in kept:
        variables[f"fields_{dataset}_{network}_{'ema' if ema else 'raw'}"] = xr.DataArray(
            values.astype(np.float32), dims=("kept", "y", "x"),
            attrs={"long_name": f"generated fields at {p.sizes[-1]}^2", "units": "1"})
    ds = xr.Dataset(variables, attrs={f"sampling_floor_{d}_{s}": float(v) for (d, s), v in floors.items()})
    write_fields(ds, path, overwrite=True, title="color-shift study: generated spatial means, spectra, fields")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_spatial_means(p: Parameters, records: dict, path: Path) -> Path:
    """Figs 2/5: distributions of spatial means (standardized by the data's), per size."""
    plt = _pyplot()
    rows = [(d, e) for d in p.datasets for e in (True, False)]
    fig, axes = plt.subplots(len(rows), len(p.sizes), figsize=(3.2 * len(p.sizes), 2.6 * len(rows)),
                             squeeze=False, sharex=True)
    edges = np.linspace(-4, 4, 41)
    for i, (dataset, ema) in enumerate(rows):
        for j, size in enumerate(p.sizes):
            ax = axes[i, j]
            data = records[(dataset, "data", size)]["means"]
            centre, scale = data.mean(), data.std()
            ax.hist((data - centre) / scale, bins=edges, density=True, color="0.85", label="data")
            for network in p.networks:
                means = (records[(dataset, network, size, ema)]["means"] - centre) / scale
                ax.hist(np.clip(means, edges[0], edges[-1]), bins=edges, density=True, histtype="step",
                        color=STYLE[network], linewidth=1.4, label=network)
            ax.set_title(f"{dataset} {size}² ({'EMA' if ema else 'raw'})", fontsize=9)
            if i == len(rows) - 1:
                ax.set_xlabel("(spatial mean − data mean) / data std")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_loss_curves(p: Parameters, curves: dict, path: Path) -> Path:
    """Fig. 3: per-pixel mean and fluctuation terms during training (raw weights)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(p.datasets), 2, figsize=(10, 3.2 * len(p.datasets)), squeeze=False)
    dashes = {s: style for s, style in zip(p.sizes, ["-", "--", ":", "-."] * 4)}
    for i, dataset in enumerate(p.datasets):
        for j, term in enumerate(("mean", "fluctuation")):
            ax = axes[i, j]
            for size in p.sizes:
                for network in p.networks:
                    c = curves[(dataset, size, network)]
                    ax.plot(c["step"], c[term], color=STYLE[network], linestyle=dashes[size], linewidth=1.1,
                            label=f"{network} {size}²")
            ax.set_yscale("log")
            ax.set_xlabel("training step")
            ax.set_title(f"{dataset}: {'spatial-mean term (eq. 16)' if term == 'mean' else 'fluctuation term (eq. 17)'}",
                         fontsize=9)
    axes[0, 0].legend(fontsize=6, ncol=len(p.sizes))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_mean_loss_vs_size(p: Parameters, rows: list, path: Path) -> Path:
    """Fig. 4: final per-pixel mean term vs size, raw (left) and EMA (right); the dotted line is
    1/N, the value of a network whose output has zero spatial mean (N = size^2 pixels)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(p.datasets), 2, figsize=(8, 3.2 * len(p.datasets)), squeeze=False)
    sizes = np.array(p.sizes)
    for i, dataset in enumerate(p.datasets):
        for j, ema in enumerate((False, True)):
            ax = axes[i, j]
            for network in p.networks:
                values = [_row(rows, dataset, s, network, ema)["mean_loss"] for s in p.sizes]
                ax.loglog(sizes, values, "o-", color=STYLE[network], label=network)
            ax.loglog(sizes, 1.0 / sizes ** 2, ":", color="0.4", label="1/N (zero-mean output)")
            ax.xaxis.set_minor_locator(plt.NullLocator())
            ax.set_xticks(sizes, [str(s) for s in sizes])
            ax.set_xlabel("image size")
            ax.set_title(f"{dataset}: final mean term ({'EMA' if ema else 'raw'} weights)", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_spectra(p: Parameters, spectra: dict, path: Path) -> Path:
    """Fig. 7: mean power spectra of the fluctuations, data vs every network and weights."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(p.datasets), len(p.sizes), figsize=(3.3 * len(p.sizes), 3.0 * len(p.datasets)),
                             squeeze=False)
    for i, dataset in enumerate(p.datasets):
        for j, size in enumerate(p.sizes):
            ax = axes[i, j]
            data = spectra[(dataset, size, "data")]
            k = np.arange(len(data))
            ax.loglog(k[1:], data[1:], color="black", linewidth=2, label="data")
            for network in p.networks:
                for ema in (True, False):
                    values = spectra[(dataset, size, network, ema)]
                    ax.loglog(k[1:], values[1:], color=STYLE[network], linestyle="-" if ema else "--",
                              linewidth=1, label=f"{network} {'EMA' if ema else 'raw'}")
            ax.axvline(size / 4, color="0.6", linewidth=0.8)
            ax.set_title(f"{dataset} {size}²", fontsize=9)
            ax.set_xlabel("wavenumber k")
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
