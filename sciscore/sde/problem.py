"""problem -> solve -> solution: ``SamplingProblem``, ``solve`` and ``Solution``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from sciscore.errors import UserError
from sciscore.sde.brownian import SampleStreams
from sciscore.sde.guidance import ScoreModel
from sciscore.sde.processes import ForwardProcess
from sciscore.sde.solvers import GRIDS, SOLVERS, TORCHSDE_SOLVERS, get_solver
from sciscore.sde.time_grids import TimeMap, time_grid
from sciscore.validation import check_guidance_interval


@dataclass
class SamplingProblem:
    """What to sample.

    score_or_model : callable(x (B, C, H, W), t (B,)[, context=]) -> (B, C, H, W)
        An ``nn.Module`` is read with the project network convention (marginal_std * score)
        unless ``parametrization`` says otherwise; any other callable is read as the score.
    process : ForwardProcess
    shape : (C, H, W) of one sample
    tspan : (t_start, t_end), default (process.t_max, process.t_min)
    context : None, (K, H, W) shared by all samples, or (n, K, H, W) one per sample
    parametrization : 'score', 'sigma_score', 'eps', 'x0' or 'v' (default as above)
    guidance_scale, guidance_rescale : guidance weight w (1: none) and Lin et al.'s phi; w != 1 guides
        with the unconditional prediction (classifier-free guidance, needs a context) or the guide
    guide : None, or the weaker model of autoguidance (Karras et al. 2024): same process, data,
        normalization and parametrization as score_or_model, called like it
    guidance_interval : None (every noise level), or (sigma_lo, sigma_hi): guide only where
        sigma_lo < sigma(t) <= sigma_hi (Kynkäänniemi et al. 2024)
    start : None (samples start from the prior), or clean fields x0, (C, H, W) shared by all samples
        or (n, C, H, W) one per sample: sample i starts at x = s(t_start) (x0_i + sigma(t_start) z_i)
        with z_i the first draw of its own stream (SDEdit, Meng et al. 2022, sec. 3.2), so with
        the data's fields as x0 it starts from the true marginal at t_start
    """

    score_or_model: Callable
    process: ForwardProcess
    shape: tuple
    tspan: tuple | None = None
    context: torch.Tensor | None = None
    parametrization: str | None = None
    guidance_scale: float = 1.0
    guidance_rescale: float = 0.0
    start: torch.Tensor | None = None
    guide: Callable | None = None
    guidance_interval: tuple | None = None

    def __post_init__(self):
        self.shape = tuple(int(v) for v in self.shape)
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise UserError(f"shape must be one sample's (channel, y, x), got {self.shape}")
        if not callable(self.score_or_model):
            raise UserError("score_or_model must be callable as f(x, t)")
        if self.parametrization is None:
            self.parametrization = "sigma_score" if isinstance(self.score_or_model, torch.nn.Module) else "score"
        if self.tspan is None:
            self.tspan = (self.process.t_max, self.process.t_min)
        t_start, t_end = (float(v) for v in self.tspan)
        if not t_start > t_end > 0:
            raise UserError(f"tspan must be (t_start, t_end) with t_start > t_end > 0, got {self.tspan}")
        self.tspan = (t_start, t_end)
        if self.guide is not None and not callable(self.guide):
            raise UserError("guide must be callable like the model, guide(x, t)")
        self.guidance_interval = check_guidance_interval(self.guidance_interval)
        if self.context is not None:
            self.context = torch.as_tensor(self.context)
            if self.context.ndim not in (3, 4) or self.context.shape[-2:] != self.shape[-2:]:
                raise UserError(f"context must be (K, {self.shape[1]}, {self.shape[2]}) or "
                                f"(n, K, {self.shape[1]}, {self.shape[2]}), got {tuple(self.context.shape)}")
        if self.start is not None:
            self.start = torch.as_tensor(self.start)
            if self.start.ndim not in (3, 4) or tuple(self.start.shape[-3:]) != self.shape:
                raise UserError(f"start must be clean fields of shape {self.shape} or (n, *{self.shape}), "
                                f"got {tuple(self.start.shape)}")
            sigma = float(self.process.sigma(torch.tensor(t_start, dtype=torch.float64)))
            if not math.isfinite(sigma) or not torch.isfinite(self.start).all():
                raise UserError("start needs finite fields and a finite sigma at t_start "
                                f"(sigma = {sigma}); choose tspan with t_start below the process's t_max")


@dataclass
class Solution:
    """Samples and how they were made. x (n, C, H, W); trajectory (n, len(times), C, H, W) at the
    grid times ``times`` nearest the requested save_at, or None; nfe: score evaluations per sample
    path (network calls: nfe * calls_per_evaluation, 2 with guidance, fewer where the guidance
    interval leaves some steps unguided: info["weak_calls"] counts the guided ones)."""

    x: torch.Tensor
    trajectory: torch.Tensor | None
    times: torch.Tensor | None
    nfe: int
    calls_per_evaluation: int
    solver: str
    steps: int
    seed: int
    process: ForwardProcess
    grid: str
    info: dict = field(default_factory=dict)

    def to_xarray(self, variables=None, sample_dim="sample", spatial_dims=("y", "x")):
        """xr.Dataset with one variable per channel, dims (sample, y, x), and with a trajectory also
        ``<name>_trajectory`` (sample, time, y, x); attrs record the solver and process."""
        import json

        import xarray as xr

        channels = self.x.shape[1]
        names = list(variables) if variables is not None else [f"channel_{c}" for c in range(channels)]
        if len(names) != channels:
            raise UserError(f"{len(names)} variable names for {channels} channels")
        y_dim, x_dim = spatial_dims
        data = {name: ((sample_dim, y_dim, x_dim), self.x[:, c].numpy()) for c, name in enumerate(names)}
        coords = {sample_dim: range(self.x.shape[0])}
        if self.trajectory is not None:
            for c, name in enumerate(names):
                data[f"{name}_trajectory"] = ((sample_dim, "time", y_dim, x_dim), self.trajectory[:, :, c].numpy())
            coords["time"] = self.times.numpy()
        attrs = {"solver": self.solver, "steps": self.steps, "seed": self.seed, "nfe": self.nfe,
                 "grid": self.grid, "process": json.dumps(self.process.to_dict())}
        return xr.Dataset(data, coords=coords, attrs=attrs)


def _batch_rows(tensor: torch.Tensor, indices: range, device, dtype) -> torch.Tensor:
    """The rows of a per-sample tensor (n, ...) for the samples `indices`, or a shared one (...)
    repeated for each of them, on `device` in `dtype`."""
    tensor = tensor.to(device=device, dtype=dtype)
    return tensor[list(indices)] if tensor.ndim == 4 else tensor.expand(len(indices), *tensor.shape)


def _default_device(model) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for parameter in model.parameters():
            return parameter.device
    return torch.device("cpu")


def solve(problem: SamplingProblem, solver: str = "srk", steps: int | None = None, n: int = 1,
          seed: int = 0, batch_size: int | None = None, save_at=None, progress: bool = False, *,
          start_index: int = 0, grid: str | None = None, rho: float | None = None, denoise: bool = False,
          device=None, dtype=torch.float32, **solver_options) -> Solution:
    """Draw ``n`` samples of ``problem`` with ``solver`` (a name in ``sciscore.sde.solvers.TABLE``).

    steps: solver steps (default: the table's for the solver and grid; ignored by 'ode-adaptive').
    seed: sample i uses the stream (seed, start_index + i) for its prior draw and all its noise, so
    it depends on neither batch_size nor how the n samples are split (start_index lets several
    processes or devices draw disjoint parts of one sample set). save_at: process times to keep (snapped to the nearest grid time).
    grid: one of the solver's grids: 'uniform' or 'karras' (default: 'karras' for EDM, else
    'uniform'); discrete grids 'leading' / 'linspace' / 'trailing' for DiscreteVP.
    denoise: finish with Tweedie's x0 = E[x0 | x_tend] (one more score evaluation).
    solver_options: the options the solver's table entry lists, e.g. s_churn, s_tmin, s_tmax,
    s_noise (EDM Algorithm 2, 'edm'); snr, corrector_steps ('pc'); rtol, atol, method
    ('ode-adaptive'); callback(step, t, x) after each step ('ode-heun', 'edm', 'pc', called once
    per batch). Any other option is refused."""
    entry = get_solver(solver)
    options = entry.check_options(solver_options)
    process = problem.process
    if n < 1:
        raise UserError(f"n must be >= 1, got {n}")
    batch_size = n if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    grid = grid or ("karras" if process.name == "edm" else "uniform")
    if grid not in GRIDS:
        raise UserError(f"unknown grid {grid!r}; expected one of {list(GRIDS)}")
    if grid not in entry.grids:
        raise UserError(f"solver {solver!r} needs grid {' or '.join(map(repr, entry.grids))}, got {grid!r}")
    steps = entry.steps_for(grid) if steps is None else int(steps)
    if steps < 1:
        raise UserError(f"steps must be >= 1, got {steps}")
    rho = getattr(process, "rho", 7.0) if rho is None else float(rho)
    t_start, t_end = problem.tspan
    for name, fields, shared in (("start", problem.start, "(C, H, W)"), ("context", problem.context, "(K, H, W)")):
        if fields is not None and fields.ndim == 4 and fields.shape[0] != n:
            raise UserError(f"{name} has {fields.shape[0]} fields for n = {n} samples; pass one per sample "
                            f"(n, ...) or one shared by all {shared}")
    if not entry.starts_at_zero_snr and not math.isfinite(float(process.sigma(torch.tensor(t_start, dtype=torch.float64)))):
        raise UserError(f"solver {solver!r} cannot start at t = {t_start}: the process has zero terminal SNR "
                        "there (infinite drift); use solver 'ode-heun' or 'edm' (their first step is a "
                        "DDIM step), or start at a smaller t")
    device = torch.device(device) if device is not None else _default_device(problem.score_or_model)
    t_grid = time_grid(process, steps, grid, (t_start, t_end), rho)
    steps = len(t_grid) - 1

    save_index, times = [], None
    if save_at is not None:
        requested = torch.as_tensor(save_at, dtype=torch.float64).reshape(-1)
        save_index = sorted({int((t_grid - t).abs().argmin()) for t in requested.tolist()})
        times = t_grid[save_index]
    time_map = TimeMap(process, t_start, t_end, grid, rho) if solver in TORCHSDE_SOLVERS else None
    save_u = [float(time_map.grid(steps)[k]) for k in save_index] if time_map else []

    sample = entry.bind()
    samples, trajectories, nfe, info = [], [], 0, {}
    bar = tqdm(total=n, disable=not progress, desc=f"sampling ({solver})", unit="sample")
    if problem.start is not None:
        t0 = torch.tensor(t_start, dtype=torch.float64)
        start_scale, start_sigma = float(process.scale(t0)), float(process.sigma(t0))
    for start in range(0, n, batch_size):
        indices = range(start, min(n, start + batch_size))
        streams = SampleStreams(seed, [start_index + i for i in indices], device)
        x = streams.normal(problem.shape, dtype=dtype)   # first draw of each stream
        if problem.start is None:
            x = process.prior_std() * x
        else:  # SDEdit: the clean fields noised to t_start with the same draw
            x = start_scale * (_batch_rows(problem.start, indices, device, dtype) + start_sigma * x)
        context = problem.context
        if context is not None:
            context = _batch_rows(context, indices, device, dtype)
        model = ScoreModel(problem.score_or_model, process, problem.parametrization, context,
                           problem.guidance_scale, problem.guidance_rescale, problem.guide, problem.guidance_interval)
        with torch.no_grad():
            if solver in TORCHSDE_SOLVERS:
                x, saved, sde = sample(model, process, x, time_map, streams, steps, solver, save_u)
                info = {"drift_calls": sde.drift_calls}
            else:
                x, saved = sample(model, process, x, t_grid, streams, save_index, **options)
            if denoise:
                x = model.x0(x, torch.full((x.shape[0],), t_end, dtype=x.dtype, device=device))
        nfe = model.calls
        if model.guided:
            info["weak_calls"] = model.weak_calls
        samples.append(x.cpu())
        if save_index:
            trajectories.append(torch.stack(saved, 1).cpu())
        bar.update(len(indices))
    bar.close()
    return Solution(x=torch.cat(samples), trajectory=torch.cat(trajectories) if save_index else None,
                    times=times, nfe=nfe, calls_per_evaluation=model.calls_per_evaluation, solver=solver,
                    steps=steps, seed=seed, process=process, grid=grid, info=info)


__all__ = ["SamplingProblem", "Solution", "solve", "SOLVERS"]
