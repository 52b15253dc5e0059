"""Post-hoc exponential moving averages: choose the EMA profile after training, from weight
snapshots (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion
Models", sec. 3).

Any EMA of the weights is a weighted sum of the raw weights theta_0 ... theta_K after each
optimizer step,

    theta_ema(K) = sum_j w_j theta_j,     sum_j w_j = 1.

The trainer's rule theta_ema <- d_k theta_ema + (1 - d_k) theta_{k+1} (`train/ema.py`) gives

    w_0 = prod_{k<K} d_k,     w_j = (1 - d_{j-1}) prod_{k=j}^{K-1} d_k   (j >= 1).

Its warm-up d_k = min(decay, (1 + k)/(10 + k)) caps the decay below 0.999 until k ~ 9000, so in
runs shorter than that w_j ~ j^8: a power-function profile. The power-function EMA of Karras et
al. 2024 (eq. 2) weights step j by j^gamma; its width relative to the training length (their
eq. 3) is

    sigma_rel = sqrt((gamma + 1) / ((gamma + 2)^2 (gamma + 3))),

so gamma is the largest real root of gamma^3 + 7 gamma^2 + (16 - t) gamma + (12 - t) = 0 with
t = sigma_rel^-2 (their Algorithm 2). With raw-weight snapshots every S steps
(`sciscore train --snapshot-every S`), each step's weight is shared between its two neighbouring
snapshots by linear interpolation in j, exact where the weights change linearly between
snapshots; any profile can then be formed without retraining.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sciscore import checkpoint as ckpt
from sciscore.errors import UserError
from sciscore.train.ema import decay_at

MAX_SIGMA_REL = 0.28  # sigma_rel(gamma) peaks at ~0.30 near gamma = -0.3; above 0.28 the root leaves gamma >= 0


@dataclass(frozen=True)
class TrainerProfile:
    """The trainer's EMA: decay `decay`, with or without the (1 + k)/(10 + k) warm-up."""

    decay: float = 0.999
    warmup: bool = True

    def weights(self, steps: int) -> np.ndarray:
        """w_0 ... w_K (K = `steps`) of the trainer's recursion, float64, summing to 1."""
        decays = np.array([decay_at(k, self.decay, self.warmup) for k in range(steps)], dtype=np.float64)
        tail = np.append(np.cumprod(decays[::-1])[::-1], 1.0)   # prod_{k=j}^{K-1} d_k for j = 0..K
        weights = tail.copy()
        weights[1:] *= 1 - decays
        return weights

    def describe(self) -> dict:
        return {"profile": "trainer", "decay": self.decay, "warmup": self.warmup}


@dataclass(frozen=True)
class PowerProfile:
    """Karras et al. 2024's power-function EMA, w_j ~ j^gamma, of relative width `sigma_rel`."""

    sigma_rel: float

    def __post_init__(self):
        if not (isinstance(self.sigma_rel, (int, float)) and 0 < self.sigma_rel <= MAX_SIGMA_REL):
            raise UserError(f"sigma_rel must be in (0, {MAX_SIGMA_REL}], got {self.sigma_rel!r} "
                            "(Karras et al. 2024 use 0.05-0.15)")

    @property
    def exponent(self) -> float:
        return power_exponent(self.sigma_rel)

    def weights(self, steps: int) -> np.ndarray:
        j = np.arange(steps + 1, dtype=np.float64)
        log_w = np.where(j > 0, self.exponent * np.log(np.maximum(j, 1.0) / max(steps, 1)), -np.inf)
        weights = np.exp(log_w) if steps > 0 else np.ones(1)
        return weights / weights.sum()

    def describe(self) -> dict:
        return {"profile": "power", "sigma_rel": self.sigma_rel, "exponent": self.exponent}


def power_exponent(sigma_rel: float) -> float:
    """gamma of the power-function EMA of relative width sigma_rel (Karras et al. 2024, Algorithm 2)."""
    t = sigma_rel ** -2
    roots = np.roots([1.0, 7.0, 16.0 - t, 12.0 - t])
    return float(roots[np.abs(roots.imag) < 1e-9].real.max())


def relative_width(weights: np.ndarray) -> float:
    """The std of the step index under `weights`, over the number of steps: sigma_rel of a profile."""
    j = np.arange(len(weights), dtype=np.float64) / max(len(weights) - 1, 1)
    mean = float(np.sum(weights * j))
    return math.sqrt(max(float(np.sum(weights * (j - mean) ** 2)), 0.0))


def snapshot_coefficients(step_weights: np.ndarray, snapshot_steps) -> np.ndarray:
    """Coefficients c_i with sum_i c_i theta(s_i) = sum_j w_j theta_j when theta is linear in j between
    snapshots s_0 < s_1 < ... (steps before the first or after the last go to that snapshot)."""
    steps = np.asarray(snapshot_steps, dtype=np.float64)
    j = np.arange(len(step_weights), dtype=np.float64)
    right = np.clip(np.searchsorted(steps, j, side="left"), 1, max(len(steps) - 1, 1))
    if len(steps) == 1:
        return np.array([step_weights.sum()])
    left = right - 1
    fraction = np.clip((j - steps[left]) / (steps[right] - steps[left]), 0.0, 1.0)
    coefficients = np.zeros(len(steps))
    np.add.at(coefficients, left, step_weights * (1 - fraction))
    np.add.at(coefficients, right, step_weights * fraction)
    return coefficients


def posthoc_ema(run_dir, profile, step: int | None = None) -> dict[str, torch.Tensor]:
    """The EMA weights of `profile` (`TrainerProfile` or `PowerProfile`) after `step` optimizer steps
    (default: the last snapshot), formed from the run's snapshots up to that step."""
    return _average(run_dir, profile, step)[0]


def _average(run_dir, profile, step: int | None):
    """(averaged state dict, the step it is at, snapshots used, the raw weights at that step),
    each snapshot read once."""
    run_dir = Path(run_dir)
    snapshots = ckpt.list_snapshots(run_dir)
    if not snapshots:
        raise UserError(f"{run_dir} has no weight snapshots ({ckpt.SNAPSHOTS}/); train with "
                        "'sciscore train --snapshot-every N' to choose the EMA after training")
    available = [s for s, _ in snapshots]
    end = available[-1] if step is None else step
    if end not in available:
        raise UserError(f"{run_dir} has no weight snapshot at optimizer step {end}; snapshots exist at steps "
                        f"{available[0]}..{available[-1]} every {available[1] - available[0] if len(available) > 1 else 0}")
    used = [(s, path) for s, path in snapshots if s <= end]
    coefficients = snapshot_coefficients(profile.weights(end), [s for s, _ in used])
    total: dict[str, torch.Tensor] = {}
    last: dict[str, torch.Tensor] = {}
    for index, (c, (_, path)) in enumerate(zip(coefficients, used)):
        if c == 0 and index < len(used) - 1:
            continue
        tensors = ckpt.read_snapshot(path)
        for name, tensor in tensors.items():
            if not tensor.is_floating_point():
                total[name] = tensor  # integer buffers are copied, as the trainer's EMA does
            elif c != 0:
                total[name] = total.get(name, 0) + float(c) * tensor.to(torch.float64)
        last = tensors
    averaged = {name: total[name].to(last[name].dtype) if name in total else last[name] for name in last}
    return averaged, end, len(used), last


def write_posthoc_checkpoint(run_dir, output, profile, step: int | None = None) -> Path:
    """A checkpoint directory at `output` whose EMA weights are `posthoc_ema(run_dir, profile, step)`
    and whose raw weights are the snapshot at that step; the record is the run's, with the step and
    the profile (`ema` field)."""
    from dataclasses import replace

    from sciscore.nn.network import ScoreNetwork

    record = ckpt.read_checkpoint(run_dir)
    averaged, end, count, last = _average(run_dir, profile, step)
    raw, ema = ScoreNetwork(record.network, record.process), ScoreNetwork(record.network, record.process)
    raw.load_state_dict(last)
    ema.load_state_dict(averaged)
    record = replace(record, step=end, optimizer_steps=end, monitor=None,
                     ema={**profile.describe(), "optimizer_steps": end, "snapshots": count, "source": str(run_dir)})
    return ckpt.save_checkpoint(output, raw, ema, record)
