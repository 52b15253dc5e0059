"""The reverse-time SDE as a torchsde SDE object.

Reverse SDE (Anderson 1982; Song et al. 2021, eq. 6), run from t_start down to t_end:

    dx = [f(t) x - g(t)^2 score(x, t)] dt + g(t) dW_bar.

torchsde needs increasing times, so it is written in the solver time u of a ``TimeMap``
(u = -t for the uniform grid), with t = t(u) decreasing and c(u) = |dt/du|:

    dy = [-f(t) y + g(t)^2 score(y, t)] c(u) du + g(t) sqrt(c(u)) dW_u.

The state is flattened to (batch, C*H*W); the score sees (B, C, H, W) and a (B,) time.
g depends on t only, so the noise is additive: Milstein's correction g dg/dx and the
Ito-Stratonovich correction 1/2 g dg/dx both vanish. Hence Milstein equals Euler-Maruyama path by
path, and the same object may be declared Stratonovich (heun, midpoint, reversible_heun).

``noise_type='additive'`` defines only f and g_prod (never the (B, d, d) matrix g), so torchsde's
``srk`` uses its 2-stage SRA1 tableau. ``noise_type='diagonal'`` also defines g as a stride-0 view.
"""

from __future__ import annotations

from typing import Callable

import torch

from sciscore.sde.processes import ForwardProcess
from sciscore.sde.time_grids import TimeMap


class ReverseSDE:
    """Reverse SDE for torchsde with f and g_prod (additive noise). ``score(x, t)`` takes
    x (B, C, H, W), t (B,) and returns (B, C, H, W). ``score_calls`` counts score evaluations,
    ``drift_calls`` counts torchsde's calls of f (SRA1 asks f twice at the step's start point; the
    one-entry memo answers the repeat without a second score evaluation).

    A plain object, not an ``nn.Module`` (torchsde needs only the methods and the two type
    attributes): it holds no parameters, and a module's attribute assignment cost a few µs per
    step in the counters and the memo."""

    sde_type = "ito"
    noise_type = "additive"

    def __init__(self, score: Callable, process: ForwardProcess, shape, time_map: TimeMap,
                 sde_type: str = "ito"):
        self.score, self.process, self.shape, self.time_map = score, process, tuple(shape), time_map
        self.sde_type = sde_type
        self.score_calls = 0
        self.drift_calls = 0
        self._memo = None
        self._coefficient_cache = {}

    @staticmethod
    def _cache_key(u, y) -> tuple:
        return float(u), y.shape[0], y.device, y.dtype

    def _coefficients(self, u, y):
        """At solver time u: the (B,) process time for the score, and the floats
        c g^2 (score weight), c f (state weight) and g sqrt(c) (noise scale), c = |dt/du|.
        Cached by u: a fixed-step solve asks the same few times for every batch, and
        ``precompute`` fills the cache for a whole grid at once."""
        key = self._cache_key(u, y)
        cached = self._coefficient_cache.get(key)
        if cached is None:
            self.precompute([u], y)
            cached = self._coefficient_cache[key]
        return cached

    def precompute(self, us, y):
        """Fill the coefficient cache for the solver times ``us`` (as torchsde will ask them) in
        one vectorized evaluation of the process, for states like ``y``: per step this replaces a
        dozen scalar torch calls with a dictionary lookup."""
        u = torch.tensor([float(v) for v in us], dtype=torch.float64)
        t = self.time_map.t(u).expand(u.shape)
        speed = self.time_map.speed(u).expand(u.shape).tolist()
        f = self.process.log_scale_derivative(t).expand(u.shape).tolist()
        g = self.process.diffusion(t).expand(u.shape).tolist()
        t_all = t.to(device=y.device, dtype=y.dtype)
        if len(self._coefficient_cache) + len(us) > 4096:
            self._coefficient_cache.clear()
        for k, value in enumerate(us):
            self._coefficient_cache[self._cache_key(value, y)] = (
                t_all[k].expand(y.shape[0]), speed[k] * g[k] ** 2, speed[k] * f[k], g[k] * speed[k] ** 0.5)

    def f(self, u, y):
        return self._drift(float(u), y)

    def f_and_g_prod(self, u, y, v):
        """f and g v together, as torchsde's Euler step asks them: one coefficient lookup, and no
        memo (no solver asks this point again; the memo would keep two state-sized arrays alive)."""
        key = float(u)
        coefficients = self._coefficients(key, y)
        return self._drift(key, y, coefficients, remember=False), coefficients[3] * v

    def _drift(self, key: float, y, coefficients=None, remember: bool = True):
        self.drift_calls += 1
        memo = self._memo
        if memo is not None and memo[0] == key and memo[1] is y and memo[2] == y._version:
            return memo[3]
        t_batch, score_weight, state_weight, _ = coefficients or self._coefficients(key, y)
        batch = y.shape[0]
        self.score_calls += 1
        score = self.score(y.view(batch, *self.shape), t_batch).reshape(batch, -1)
        # drift = c g^2 score - c f y (reverse drift in solver time)
        drift = score * score_weight if state_weight == 0 else torch.add(score * score_weight, y, alpha=-state_weight)
        self._memo = (key, y, y._version, drift) if remember else None
        return drift

    def diffusion_scale(self, u, y) -> float:
        """g(t(u)) sqrt(|dt/du|)."""
        return self._coefficients(u, y)[3]

    def g_prod(self, u, y, v):
        return self.diffusion_scale(u, y) * v


class DiagonalReverseSDE(ReverseSDE):
    """The same SDE with diagonal noise: g is a stride-0 (B, d) view (no memory)."""

    noise_type = "diagonal"

    def g(self, u, y):
        return torch.full((), self.diffusion_scale(u, y), dtype=y.dtype, device=y.device).expand_as(y)
