"""Training-time quality monitor: sample a few fields with the EMA network and judge them.

Every `monitor_every` steps the trainer draws `monitor_samples` fields with a cheap sampler
(`ode-heun` on the Karras grid, `monitor_steps` steps (18, as `sciscore generate`), Tweedie denoising; the same seed each time,
so successive values differ by the network alone), converts them to physical units and compares
them with the held-out validation fields using `sciscore.diagnostics.compare` and the quality
bars of `sciscore.diagnostics.quality_checks` — the figures `sciscore diagnose` and the
default-model evaluation report. The validation split is small, so the figures are noisier than
a full evaluation; they say when a model is getting good, and which check holds it back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from sciscore.diagnostics import compare, count_passed, quality_checks, quality_rank
from sciscore.errors import UserError
from sciscore.fields import field_dims

MONITOR_SOLVER = "ode-heun"
MONITOR_GRID = "karras"
AUTO_EVERY = 500          # default interval (steps) for runs of at least AUTO_MIN_STEPS
AUTO_MIN_STEPS = 2000


@dataclass(frozen=True)
class MonitorSettings:
    every: int          # steps between evaluations (0: off)
    samples: int        # fields drawn per evaluation
    steps: int          # sampler steps
    seed: int


def monitor_interval(every: int | None, total_steps: int) -> int:
    """The interval in steps: `every` when given (0 turns the monitor off), else AUTO_EVERY for
    runs of at least AUTO_MIN_STEPS steps and off for shorter ones."""
    if every is None:
        return AUTO_EVERY if total_steps >= AUTO_MIN_STEPS else 0
    return every


class QualityMonitor:
    """Judges a network's samples against fixed reference fields (physical units).

    reference: (M, C, H, W) normalized fields (the validation split); normalizer inverts them."""

    def __init__(self, reference: torch.Tensor, normalizer, variables, process, settings: MonitorSettings,
                 spatial_dims=("y", "x"), attrs: dict | None = None, device="cpu"):
        if len(reference) < 2:
            raise UserError(f"the quality monitor needs at least 2 validation fields, got {len(reference)}; "
                            "raise data.validation_fraction or set training.monitor_every = 0")
        self.normalizer, self.variables, self.process = normalizer, list(variables), process
        self.settings, self.spatial_dims, self.device = settings, tuple(spatial_dims), torch.device(device)
        self.attrs = dict(attrs or {})
        self.shape = tuple(reference.shape[1:])
        self.reference = self._dataset(reference.cpu().numpy())

    @classmethod
    def for_training(cls, data, process, settings: MonitorSettings, device) -> "QualityMonitor":
        dims = field_dims(data.dataset)
        tau_c = data.dataset.attrs.get("param_tau_c")
        return cls(data.validation, data.normalizer, data.variables, process, settings, (dims.y, dims.x),
                   {"param_tau_c": tau_c} if tau_c is not None else None, device)

    def _dataset(self, normalized: np.ndarray) -> xr.Dataset:
        physical = self.normalizer.invert(normalized.astype(np.float64)).astype(np.float32)
        dims = ("sample", *self.spatial_dims)
        return xr.Dataset({v: (dims, physical[:, i]) for i, v in enumerate(self.variables)}, attrs=self.attrs)

    @torch.no_grad()
    def sample(self, network) -> xr.Dataset:
        """The monitor's fields from `network` (eval mode), in physical units."""
        from sciscore.sde import SamplingProblem, solve

        problem = SamplingProblem(network.score, self.process, self.shape)
        solution = solve(problem, solver=MONITOR_SOLVER, steps=self.settings.steps, n=self.settings.samples,
                         seed=self.settings.seed, grid=MONITOR_GRID, denoise=True, device=self.device)
        return self._dataset(solution.x.to(torch.float32).cpu().numpy())

    def judge(self, samples: xr.Dataset) -> dict:
        """{variable: quality_checks(...)} of `samples` against the reference fields."""
        comparison = compare(self.reference, samples, self.variables, progress=False)
        return {v: quality_checks(comparison, self.reference[v], samples[v], v) for v in self.variables}

    def evaluate(self, network) -> dict:
        """A metrics record: per-variable figures, checks passed, rank key and the cost in seconds."""
        start = time.perf_counter()
        results = self.judge(self.sample(network))
        passed, total = count_passed(results)
        return {"monitor": results, "monitor_passed": passed, "monitor_checks": total,
                "monitor_rank": list(quality_rank(results)), "monitor_seconds": time.perf_counter() - start}
