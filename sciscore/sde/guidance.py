"""A model's prediction turned into score and x0, with classifier-free guidance or autoguidance.

Guidance extrapolates from a weaker prediction towards the model's (Ho & Salimans 2022, in the
form of Lin et al. 2024, eq. 14):
    pred = pred_weak + w (pred_model - pred_weak),
w = 1 is the plain model (one call). The weaker prediction is either
* classifier-free guidance: the same conditional model without its context, model(x, t, context=None)
  (the context dropped in training); w > 1 strengthens the context; or
* autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself",
  sec. 3): a `guide`, a smaller or shorter-trained model of the same data, process and
  parametrization, called like the model; w > 1 moves the samples away from the guide's errors,
  which the model shares in weakened form, and needs no context.
Both may be limited to noise levels sigma in (sigma_lo, sigma_hi] (Kynkäänniemi et al. 2024,
"Applying guidance in a limited interval ...", eq. 5): w applies there and 1 elsewhere, per sample,
and a batch outside the interval costs one call.
Guidance rescale (Lin et al. 2024, eq. 15-16), per sample over all pixels and channels:
    pred_rescaled = pred * std(pred_model) / std(pred),   pred <- phi pred_rescaled + (1 - phi) pred.
All act on the model's native prediction; every parametrization is affine in it with the same
coefficients for both predictions, so guiding the score, eps, x0 or EDM's D(x; sigma) is the same.

A conditional model is called as model(x, t, context=c) with c (B, K, H, W), and as
model(x, t, context=None) for the unconditional prediction.
"""

from __future__ import annotations

from typing import Callable

import torch

from sciscore.errors import UserError
from sciscore.sde.parametrizations import _coefficients, check_parametrization, to_score
from sciscore.sde.processes import ForwardProcess, _as_tensor
from sciscore.validation import check_guidance_interval

Tensor = torch.Tensor


def guided_prediction(pred_cond: Tensor, pred_uncond: Tensor, guidance_scale: float,
                      guidance_rescale: float = 0.0) -> Tensor:
    """Guidance with the rescale of Lin et al. (2024, eq. 14-16); tensors (B, ...); pred_uncond is
    the weaker prediction (the unconditional model's, or the guide's)."""
    pred = pred_uncond + guidance_scale * (pred_cond - pred_uncond)
    if guidance_rescale:
        dims = tuple(range(1, pred.ndim))
        rescaled = pred * pred_cond.std(dim=dims, keepdim=True) / pred.std(dim=dims, keepdim=True)
        pred = guidance_rescale * rescaled + (1 - guidance_rescale) * pred
    return pred


class ScoreModel:
    """Wraps ``fn(x, t[, context=])`` predicting ``parametrization`` into score(x, t) and x0(x, t).
    ``calls`` counts evaluations of score/x0 (each costs 1 call of fn, 2 with guidance w != 1 inside
    the guidance interval); ``weak_calls`` counts the calls of the weaker prediction among them.
    ``guide``: the weaker model of autoguidance, called like fn (with the context, if any)."""

    def __init__(self, fn: Callable, process: ForwardProcess, parametrization: str,
                 context: Tensor | None = None, guidance_scale: float = 1.0, guidance_rescale: float = 0.0,
                 guide: Callable | None = None, guidance_interval: tuple | None = None):
        check_parametrization(parametrization, process)
        if context is None and guide is None and guidance_scale != 1.0:
            raise UserError(f"guidance scale {guidance_scale} needs a context (classifier-free guidance) or a "
                            "guide model (autoguidance); pass one, or use 1.0")
        if not 0.0 <= guidance_rescale <= 1.0:
            raise UserError(f"guidance rescale phi must be in [0, 1], got {guidance_rescale}")
        if guide is not None and not callable(guide):
            raise UserError("guide must be callable like the model, guide(x, t)")
        self.fn, self.process, self.parametrization = fn, process, parametrization
        self.context, self.guidance_scale, self.guidance_rescale = context, guidance_scale, guidance_rescale
        self.guide, self.guidance_interval = guide, check_guidance_interval(guidance_interval)
        self.calls = self.weak_calls = 0

    @property
    def guided(self) -> bool:
        return self.guidance_scale != 1.0 and (self.guide is not None or self.context is not None)

    @property
    def calls_per_evaluation(self) -> int:
        """Network calls per evaluation inside the guidance interval."""
        return 2 if self.guided else 1

    def _call(self, model: Callable, x: Tensor, t: Tensor) -> Tensor:
        return model(x, t) if self.context is None else model(x, t, context=self.context)

    def _inside(self, t: Tensor, like: Tensor) -> bool | Tensor:
        """Which samples the guidance interval holds: True (all), False (none), or a per-sample
        mask (B, 1, ..., 1)."""
        if self.guidance_interval is None:
            return True
        low, high = self.guidance_interval
        sigma = _as_tensor(self.process.sigma(_as_tensor(t))).reshape(-1).to(like.device)
        inside = (sigma > low) & (sigma <= high)
        if bool(inside.all()):
            return True
        if not bool(inside.any()):
            return False
        return inside.expand(like.shape[0]).reshape(-1, *[1] * (like.ndim - 1))

    def prediction(self, x: Tensor, t: Tensor) -> Tensor:
        """The native (guided) prediction at x (B, C, H, W), t (B,)."""
        self.calls += 1
        pred = self._call(self.fn, x, t)
        if not self.guided:
            return pred
        inside = self._inside(t, x)
        if inside is False:
            return pred
        self.weak_calls += 1
        pred_weak = self._call(self.guide, x, t) if self.guide is not None else self.fn(x, t, context=None)
        guided = guided_prediction(pred, pred_weak, self.guidance_scale, self.guidance_rescale)
        # outside the interval the model's own prediction, bit for bit (w = 1 would round)
        return guided if inside is True else torch.where(inside, guided, pred)

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
