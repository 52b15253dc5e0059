"""A model's prediction turned into score and x0, with classifier-free guidance.

Classifier-free guidance (Ho & Salimans 2022, in the form of Lin et al. 2024, eq. 14):
    pred = pred_uncond + w (pred_cond - pred_uncond),
w = 1 is the plain conditional model (one call), w > 1 strengthens the context.
Guidance rescale (Lin et al. 2024, eq. 15-16), per sample over all pixels and channels:
    pred_rescaled = pred * std(pred_cond) / std(pred),   pred <- phi pred_rescaled + (1 - phi) pred.
Both act on the model's native prediction (its parametrization).

A conditional model is called as model(x, t, context=c) with c (B, K, H, W), and as
model(x, t, context=None) for the unconditional prediction (the context dropped in training).
"""

from __future__ import annotations

from typing import Callable

import torch

from sciscore.errors import UserError
from sciscore.sde.parametrizations import _coefficients, check_parametrization, to_score
from sciscore.sde.processes import ForwardProcess

Tensor = torch.Tensor


def guided_prediction(pred_cond: Tensor, pred_uncond: Tensor, guidance_scale: float,
                      guidance_rescale: float = 0.0) -> Tensor:
    """CFG with the rescale of Lin et al. (2024, eq. 14-16); tensors (B, ...)."""
    pred = pred_uncond + guidance_scale * (pred_cond - pred_uncond)
    if guidance_rescale:
        dims = tuple(range(1, pred.ndim))
        rescaled = pred * pred_cond.std(dim=dims, keepdim=True) / pred.std(dim=dims, keepdim=True)
        pred = guidance_rescale * rescaled + (1 - guidance_rescale) * pred
    return pred


class ScoreModel:
    """Wraps ``fn(x, t[, context=])`` predicting ``parametrization`` into score(x, t) and x0(x, t).
    ``calls`` counts evaluations of score/x0 (each costs 1 call of fn, 2 with guidance w != 1)."""

    def __init__(self, fn: Callable, process: ForwardProcess, parametrization: str,
                 context: Tensor | None = None, guidance_scale: float = 1.0, guidance_rescale: float = 0.0):
        check_parametrization(parametrization, process)
        if context is None and guidance_scale != 1.0:
            raise UserError(f"guidance scale {guidance_scale} needs a context; pass context=... or use 1.0")
        if not 0.0 <= guidance_rescale <= 1.0:
            raise UserError(f"guidance rescale phi must be in [0, 1], got {guidance_rescale}")
        self.fn, self.process, self.parametrization = fn, process, parametrization
        self.context, self.guidance_scale, self.guidance_rescale = context, guidance_scale, guidance_rescale
        self.calls = 0

    @property
    def calls_per_evaluation(self) -> int:
        return 2 if self.context is not None and self.guidance_scale != 1.0 else 1

    def prediction(self, x: Tensor, t: Tensor) -> Tensor:
        """The native (guided) prediction at x (B, C, H, W), t (B,)."""
        self.calls += 1
        if self.context is None:
            return self.fn(x, t)
        pred_cond = self.fn(x, t, context=self.context)
        if self.guidance_scale == 1.0:
            return pred_cond
        pred_uncond = self.fn(x, t, context=None)
        return guided_prediction(pred_cond, pred_uncond, self.guidance_scale, self.guidance_rescale)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        return to_score(self.prediction(x, t), self.parametrization, x, t, self.process)

    __call__ = score

    def x0(self, x: Tensor, t: Tensor) -> Tensor:
        """E[x0 | x_t = x]: read off x0/v predictions directly (finite at zero terminal SNR),
        Tweedie's formula otherwise."""
        pred = self.prediction(x, t)
        if self.parametrization == "x0":
            return pred
        s, m = _coefficients(self.process, t, x)
        if self.parametrization == "v":
            r = torch.sqrt(s**2 + m**2)
            return (s / r) * x / r - (m / r) * pred
        score = to_score(pred, self.parametrization, x, t, self.process)
        return (x + m**2 * score) / s
