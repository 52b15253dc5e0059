"""Samplers: error against score evaluations (NFE) for every solver of `sciscore.sde.solvers.TABLE`,
on an exact Gaussian oracle and on the shipped default model; Milstein = Euler-Maruyama for
additive noise; EDM's Heun (Karras et al. 2022, Algorithm 1) against Euler-Maruyama at equal NFE;
the churn of EDM's stochastic sampler (Karras et al. 2022, Algorithm 2); the predictor-corrector
sampler (Song et al. 2021, Algorithms 2-3) against its predictor alone at equal NFE.

Table rows (target, solver, steps, nfe, error):
- target "gaussian-oracle": error = W2 / std between the sampled law (Gaussian fit of all pixels
  of all samples) and the exact p(x; t_min) (`sciscore.sde.gaussian_w2`); solver
  "milstein-minus-euler": error = max |x_milstein - x_euler| over all samples (same seed).
- target "default-model": error = W1 of supersaturation pixel values, generated vs simulated
  reference, over the reference pixel std.
- target "default-model-self": the same W1, against the model's own fields from a fine solve of the
  same equation with the same seed (ode-heun with `model_fine_steps` steps for ode-heun and edm,
  euler with `model_fine_sde_steps` steps for euler and milstein): the solver's error alone.
NFE = score evaluations per sample path as counted by `solve` (every call of the score or x0:
Heun 2 a step, SRK 2, pc 1 + corrector steps, ode-adaptive every dopri5 stage, + 1 for
Tweedie's denoising on the model).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from sciscore.diagnostics.distances import ks_statistic, wasserstein1  # noqa: E402
from sciscore.fields import write_fields  # noqa: E402
from sciscore.generate import load_model  # noqa: E402
from sciscore.sde import EDM, SOLVERS, GaussianMixtureScore, SamplingProblem, gaussian_w2, solve  # noqa: E402
from sciscore.simulate.recipes import Recipe, load_recipe, simulate_dataset  # noqa: E402
from sciscore.study import StudyResult  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "datasets" / "turbulence2d-64.toml"
REFERENCE_SEED_OFFSET = 100   # the reference simulation uses seed + 100 (training data: seed 1)
TWO_NFE_A_STEP = ("srk", "heun", "midpoint", "ode-heun", "edm")


def _label(solver: str, options: dict) -> str:
    if not options:
        return solver
    return f"{solver}({','.join(f'{k}={v:g}' for k, v in options.items())})"


def _slope(nfe, error, floor, largest=0.3):
    """Least-squares slope of log error against log NFE over the asymptotic points: error between
    3 x the noise floor and `largest` (coarser steps are outside the range where an order shows)."""
    points = [(math.log(n), math.log(e)) for n, e in zip(nfe, error) if 3 * floor < e < largest and n > 0]
    if len(points) < 2:
        return float("nan")
    x, y = np.array(points).T
    return float(np.polyfit(x, y, 1)[0])


# ------------------------------------------------------------------------------------------------
def oracle_part(p: dict, seed: int, progress: bool):
    """Every solver on Gaussian data (every pixel ~ N(mean, variance)) with the EDM process."""
    process = EDM()
    shape = (1, p["oracle_size"], p["oracle_size"])
    oracle = GaussianMixtureScore.gaussian(process, p["oracle_mean"], p["oracle_variance"], shape)
    mean, variance = (float(v.flatten()[0]) for v in oracle.marginal_moments(process.t_min))
    problem = SamplingProblem(oracle, process, shape)
    n = p["oracle_samples"]
    floor = math.sqrt(1.5 / (n * math.prod(shape)))
    # the PF-ODE carries the prior's missing mean (0 instead of mean) down scaled by
    # sqrt(V(t_min) / V(t_max)): an error of mean / sqrt(variance + sigma_max^2) in units of the std
    sigma_max = float(process.sigma(torch.tensor(process.t_max, dtype=torch.float64)))
    ode_floor = abs(p["oracle_mean"]) / math.sqrt(p["oracle_variance"] + sigma_max**2)

    def run_one(solver, steps, **options):
        solution = solve(problem, solver=solver, steps=steps, n=n, seed=seed, batch_size=p["oracle_batch"], **options)
        return solution, gaussian_w2(solution.x, mean, variance)

    plans = []
    for solver in SOLVERS:
        if solver == "ode-adaptive":
            plans += [(solver, None, {"rtol": tol, "atol": tol}) for tol in p["oracle_tolerances"]]
            continue
        steps_list = p["oracle_ode_steps"] if solver in ("ode-heun", "edm") else p["oracle_sde_steps"]
        options = {"s_churn": p["oracle_edm_churn"]} if solver == "edm" else {"snr": p["pc_snr"]} if solver == "pc" else {}
        plans += [(solver, steps, options) for steps in steps_list]
    plans += [("edm", p["oracle_churn_steps"], {"s_churn": c}) for c in p["oracle_churn"]
              if not (c == p["oracle_edm_churn"] and p["oracle_churn_steps"] in p["oracle_ode_steps"])]

    rows, samples = [], {}
    for solver, steps, options in tqdm(plans, disable=not progress, desc="gaussian oracle", unit="solve"):
        solution, error = run_one(solver, steps if steps is not None else 1, **options)
        label = _label(solver, {"tol": options["rtol"]} if solver == "ode-adaptive" else options)
        rows.append({"target": "gaussian-oracle", "solver": label, "steps": steps if steps is not None else "",
                     "nfe": solution.nfe, "error": error})
        if solver in ("euler", "milstein"):
            samples[solver, steps] = solution.x
    for steps in p["oracle_sde_steps"]:
        difference = (samples["milstein", steps] - samples["euler", steps]).abs().max().item()
        rows.append({"target": "gaussian-oracle", "solver": "milstein-minus-euler", "steps": steps,
                     "nfe": steps, "error": difference})
    info = {"mean": mean, "variance": variance, "noise_floor": floor, "ode_prior_floor": ode_floor,
            "values": n * math.prod(shape)}
    return rows, info


# ------------------------------------------------------------------------------------------------
def reference_fields(p: dict, seed: int, progress: bool):
    """Simulated reference fields: the default model's training recipe with its own seed and the
    study's members / spin-up (no thread setting: the caller's)."""
    options = load_recipe(RECIPE)
    options.update(samples=p["reference_fields"], members=p["reference_members"], spinup=p["reference_spinup"],
                   seed=seed + REFERENCE_SEED_OFFSET, threads=None, device="cpu", name="samplers-study-reference")
    return simulate_dataset(Recipe(**options), progress=progress)


def model_part(p: dict, seed: int, device: str, progress: bool, out: Path):
    """The shipped default model, sampled by a few solvers at a few step counts."""
    model = load_model(device=device)
    problem = SamplingProblem(model.network.score, model.process, model.shape)
    variables = list(model.variables)
    reference = reference_fields(p, seed, progress)
    ref = {v: reference[v].values.astype(np.float64) for v in variables}
    ref_std = {v: float(ref[v].std()) for v in variables}
    half = len(ref[variables[0]]) // 2
    noise = {v: wasserstein1(ref[v][:half].ravel(), ref[v][half:].ravel()) / ref_std[v] for v in variables}

    n = p["model_fields"]
    plans = [("ode-heun", s, {}) for s in p["model_ode_steps"]]
    plans += [("euler", s, {}) for s in p["model_euler_steps"]]
    plans += [("milstein", p["model_euler_steps"][0], {})]
    plans += [("edm", p["model_churn_steps"], {"s_churn": c}) for c in p["model_churn"]]
    plans += [("ode-heun", p["model_fine_steps"], {}), ("euler", p["model_fine_sde_steps"], {})]

    fields, nfes = {}, {}
    for solver, steps, options in tqdm(plans, disable=not progress, desc="default model", unit="solve"):
        solution = solve(problem, solver=solver, steps=steps, n=n, seed=seed, batch_size=p["model_batch"],
                         denoise=True, device=model.device, **options)
        x = solution.x.to(torch.float64).cpu().numpy()
        fields[solver, steps, tuple(options.items())] = (x, model.normalizer.invert(x))
        nfes[solver, steps, tuple(options.items())] = solution.nfe

    # each solver against the fine solve of the equation it discretizes: the reverse SDE (euler,
    # milstein) or the probability-flow ODE (ode-heun; edm: its S_churn = 0 limit). With a learned,
    # imperfect score the two equations need not have the same limit.
    fine_keys = {"ode": ("ode-heun", p["model_fine_steps"], ()), "sde": ("euler", p["model_fine_sde_steps"], ())}
    rows, distances = [], []
    for key, (normalized, physical) in fields.items():
        solver, steps, options = key
        fine_key = fine_keys["sde" if solver in ("euler", "milstein") else "ode"]
        fine = fields[fine_key][1]
        label = _label(solver, dict(options))
        entry = {"solver": label, "steps": steps, "nfe": nfes[key]}
        for c, v in enumerate(variables):
            entry[f"w1_{v}"] = wasserstein1(ref[v].ravel(), physical[:, c].ravel()) / ref_std[v]
            entry[f"ks_{v}"] = ks_statistic(ref[v].ravel(), physical[:, c].ravel())
            entry[f"w1_self_{v}"] = wasserstein1(fine[:, c].ravel(), physical[:, c].ravel()) / ref_std[v]
        distances.append(entry)
        rows.append({"target": "default-model", "solver": label, "steps": steps, "nfe": nfes[key],
                     "error": entry["w1_supersaturation"]})
        if key not in fine_keys.values():
            rows.append({"target": "default-model-self", "solver": label, "steps": steps, "nfe": nfes[key],
                         "error": entry["w1_self_supersaturation"]})
    milstein_key = ("milstein", p["model_euler_steps"][0], ())
    euler_key = ("euler", p["model_euler_steps"][0], ())
    difference = float(np.abs(fields[milstein_key][0] - fields[euler_key][0]).max())
    rows.append({"target": "default-model", "solver": "milstein-minus-euler", "steps": p["model_euler_steps"][0],
                 "nfe": nfes[euler_key], "error": difference})

    # the generated fields of the default sampler and of Euler-Maruyama at the same NFE, physical units
    keep = p["model_fields_saved"]
    for solver, steps in (("ode-heun", 18), ("euler", 36)):
        key = (solver, steps, ())
        if key not in fields:
            continue
        ds = model.template(variables, keep)
        for c, v in enumerate(variables):
            ds[v].values[:] = fields[key][1][:keep, c].astype(np.float32)
        ds.attrs.update({"sciscore_solver": solver, "sciscore_steps": steps, "sciscore_seed": seed,
                         "sciscore_nfe": nfes[key], "sciscore_denoise": 1})
        write_fields(ds, out / f"default-model-{solver}-{steps}.nc", overwrite=True,
                     title=f"sciscore default model, {solver} {steps} steps (samplers study)")
    info = {"reference_pixel_std": ref_std, "reference_half_split_w1": noise, "variables": variables,
            "reference_fields": len(ref[variables[0]])}
    return rows, distances, info


# ------------------------------------------------------------------------------------------------
def _main_label(solver: str, p: dict) -> str:
    """The label of a solver's error-vs-NFE curve on the oracle (its options as run)."""
    if solver == "edm":
        return _label("edm", {"s_churn": p["oracle_edm_churn"]})
    if solver == "pc":
        return _label("pc", {"snr": p["pc_snr"]})
    return solver


def oracle_figure(rows, info, p, out: Path):
    fig, ax = plt.subplots(figsize=(8, 5.5))
    markers = "os^vD<>ph*X"
    slopes = {}
    for i, solver in enumerate(SOLVERS):
        label = _main_label(solver, p)
        points = sorted((r["nfe"], r["error"]) for r in rows if r["target"] == "gaussian-oracle" and (
            r["solver"] == label or (solver == "ode-adaptive" and r["solver"].startswith("ode-adaptive")))
            and (solver != "edm" or r["steps"] in p["oracle_ode_steps"]))
        if not points:
            continue
        nfe, error = np.array(points).T
        slopes[label] = _slope(nfe, error, info["noise_floor"])
        legend = label + ("" if math.isnan(slopes[label]) else f"  slope {slopes[label]:.2f}")
        ax.loglog(nfe, error, "--" if solver == "milstein" else "-", marker=markers[i % len(markers)], label=legend)
    ax.axhline(info["noise_floor"], color="gray", linestyle=":", label="Monte Carlo noise floor")
    ax.axhline(info["ode_prior_floor"], color="gray", linestyle="-.", label="PF-ODE prior-mean floor")
    ax.set_xlabel("score evaluations per sample (NFE)")
    ax.set_ylabel("W2 to the exact Gaussian / std")
    ax.set_title(f"Gaussian oracle N({p['oracle_mean']}, {p['oracle_variance']}), EDM process, Karras grid")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = out / "oracle_error_vs_nfe.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path, slopes


def model_figure(rows, info, out: Path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, target, title in ((axes[0], "default-model", "vs simulated reference"),
                              (axes[1], "default-model-self", "vs the model's own fine solve (same equation, seed)")):
        for solver, marker in (("ode-heun", "o"), ("euler", "s")):
            points = sorted((r["nfe"], r["error"]) for r in rows if r["target"] == target and r["solver"] == solver)
            if points:
                nfe, error = np.array(points).T
                ax.loglog(nfe, error, "-", marker=marker, label=solver)
        churn = [(r["nfe"], r["error"], r["solver"]) for r in rows if r["target"] == target and r["solver"].startswith("edm")]
        for nfe, error, label in churn:
            ax.loglog([nfe], [error], "^", label=label)
        if target == "default-model":
            ax.axhline(info["reference_half_split_w1"]["supersaturation"], color="gray", linestyle=":",
                       label="reference half vs half")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("score evaluations per sample (NFE)")
        ax.set_ylabel("pixel W1 of supersaturation / reference std")
        ax.set_title(f"default model, {title}", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "model_error_vs_nfe.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def churn_figure(rows, p, info, out: Path):
    panels = [("gaussian-oracle", p["oracle_churn_steps"], "W2 to the exact Gaussian / std")]
    if info is not None:
        panels.append(("default-model", p["model_churn_steps"], "pixel W1 of supersaturation / reference std"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)

    def churn_points(target, steps):
        points = []
        for r in rows:
            if r["target"] == target and r["solver"].startswith("edm(") and r["steps"] == steps:
                points.append((float(r["solver"].split("s_churn=")[1].rstrip(")")), r["error"]))
        return sorted(points)

    for ax, (target, steps, ylabel) in zip(axes[0], panels):
        points = churn_points(target, steps)
        if target == "default-model":
            self_points = churn_points("default-model-self", steps)
            if self_points:
                c, e = np.array(self_points).T
                ax.plot(c, e, "s--", label="vs the model's fine ode-heun solve (S_churn = 0 limit)")
        if points:
            c, e = np.array(points).T
            ax.plot(c, e, "o-", label="vs exact law" if target == "gaussian-oracle" else "vs simulated reference")
        if target == "default-model":
            ax.axhline(info["reference_half_split_w1"]["supersaturation"], color="gray", linestyle="-.",
                       label="reference half vs half")
        saturation = (math.sqrt(2) - 1) * steps
        ax.axvline(saturation, color="gray", linestyle=":", label=f"γ clamp: S_churn ≥ {saturation:.1f}")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(0, 1.3 * max([c for c, _ in points] + [saturation]))
        ax.set_yscale("log")
        ax.set_xlabel("S_churn (EDM Algorithm 2; S_tmin = 0, S_tmax = ∞, S_noise = 1)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{target}, edm, {steps} steps", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "churn_sweep.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------
def _error(rows, target, solver, steps):
    for r in rows:
        if r["target"] == target and r["solver"] == solver and r["steps"] == steps:
            return r["error"]
    return None


def verdicts_and_headline(rows, oracle_info, model_info, p, slopes):
    verdicts, parts = {}, []
    o = "gaussian-oracle"
    # Karras et al. 2022 (Alg. 1, Sec. 3): Heun beats Euler at equal NFE. Matched NFE: K Heun steps
    # (2K evaluations) against 2K Euler-Maruyama steps.
    matched = [(k, 2 * k) for k in p["oracle_ode_steps"] if 2 * k in p["oracle_sde_steps"]]
    pairs = [(2 * k, _error(rows, o, "ode-heun", k), _error(rows, o, "euler", e)) for k, e in matched]
    wins = sum(h < e for _, h, e in pairs)
    verdicts["heun_beats_euler_at_equal_nfe_oracle"] = wins == len(pairs) if pairs else None
    parts.append("oracle, ode-heun vs euler at equal NFE: " +
                 ", ".join(f"{nfe}: {h:.3g} vs {e:.3g}" for nfe, h, e in pairs))
    # Song et al. 2021 (Table 1): predictor-corrector beats the predictor alone at equal NFE
    pc = _label("pc", {"snr": p["pc_snr"]})
    pc_pairs = [(2 * s, _error(rows, o, pc, s), _error(rows, o, "euler", 2 * s))
                for s in p["oracle_sde_steps"] if 2 * s in p["oracle_sde_steps"]]
    pc_wins = sum(a < b for _, a, b in pc_pairs)
    verdicts["pc_beats_predictor_at_equal_nfe_oracle"] = pc_wins == len(pc_pairs) if pc_pairs else None
    parts.append(f"{pc} vs euler at equal NFE wins {pc_wins}/{len(pc_pairs)}")
    # Milstein = Euler-Maruyama for additive noise, sample by sample
    differences = [r["error"] for r in rows if r["solver"] == "milstein-minus-euler"]
    verdicts["milstein_equals_euler"] = bool(differences) and max(differences) == 0.0
    parts.append(f"max |milstein - euler| = {max(differences) if differences else float('nan'):g}")
    # churn on the oracle at fixed steps
    churn_steps = p["oracle_churn_steps"]
    churn = {c: _error(rows, o, _label("edm", {"s_churn": c}), churn_steps) for c in p["oracle_churn"]}
    if 0 in churn and churn[0] is not None:
        best = min(churn, key=lambda c: churn[c])
        verdicts["churn_helps_oracle"] = best != 0 and churn[best] < churn[0] - 3 * oracle_info["noise_floor"]
        parts.append(f"oracle churn sweep at {churn_steps} steps: best S_churn {best:g} "
                     f"({churn[best]:.3g} vs {churn[0]:.3g} at 0)")
    if model_info is not None:
        m = "default-model"
        noise = model_info["reference_half_split_w1"]["supersaturation"]
        heun, euler = _error(rows, m, "ode-heun", 18), _error(rows, m, "euler", 36)
        heun_self, euler_self = _error(rows, "default-model-self", "ode-heun", 18), \
            _error(rows, "default-model-self", "euler", 36)
        if None not in (heun, euler, heun_self, euler_self):
            verdicts["heun_beats_euler_at_equal_nfe_model"] = heun_self < euler_self
            parts.append(f"default model, 37 NFE: ode-heun W1/std {heun:.3g} vs euler {euler:.3g} against data, "
                         f"{heun_self:.3g} vs {euler_self:.3g} against the fine solve")
        steps = p["model_churn_steps"]
        churn = {c: _error(rows, m, _label("edm", {"s_churn": c}), steps) for c in p["model_churn"]}
        if 0 in churn:
            best = min(churn, key=lambda c: churn[c])
            verdicts["churn_helps_model"] = best != 0 and churn[best] < churn[0] - noise
            parts.append(f"model churn sweep at {steps} steps: best S_churn {best:g} ({churn[best]:.3g} vs "
                         f"{churn[0]:.3g} at 0; reference half-split {noise:.3g})")
    return verdicts, "; ".join(parts)


def _write_csv(path: Path, rows: list[dict]):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def run(params: dict, *, seed: int, out: Path, device: str = "cpu", progress: bool = False) -> StudyResult:
    out = Path(out)
    p = dict(params)
    rows, oracle_info = oracle_part(p, seed, progress)
    figures = []
    oracle_path, slopes = oracle_figure(rows, oracle_info, p, out)
    figures.append(oracle_path)
    model_info = None
    if p.get("model_fields", 0) > 0:
        model_rows, distances, model_info = model_part(p, seed, device, progress, out)
        rows += model_rows
        _write_csv(out / "default_model_distances.csv", distances)
        figures.append(model_figure(rows, model_info, out))
    figures.append(churn_figure(rows, p, model_info, out))
    verdicts, headline = verdicts_and_headline(rows, oracle_info, model_info, p, slopes)
    slope_text = ", ".join(f"{k} {v:.2f}" for k, v in slopes.items() if not math.isnan(v))
    headline = (f"Gaussian oracle (noise floor {oracle_info['noise_floor']:.2g}, PF-ODE prior floor "
                f"{oracle_info['ode_prior_floor']:.2g}); slopes of error vs NFE: {slope_text}. {headline}")
    return StudyResult(rows=rows, headline=headline, figures=figures, verdicts=verdicts)
