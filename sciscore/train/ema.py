"""Exponential moving average of the network weights (Song & Ermon 2020, technique 5;
Deck & Bischoff 2023 use 0.999).

    theta_ema <- d theta_ema + (1 - d) theta,     d = min(decay, (1 + k) / (10 + k)) with warm-up

k is the optimizer step. The warm-up (TensorFlow's num_updates rule) keeps short runs from being
dominated by the initial weights: after 300 steps a plain 0.999 average still holds 74 % of them.
CliMAgen used the plain rule (warmup=False). Buffers are copied, not averaged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def decay_at(step: int, decay: float, warmup: bool = True) -> float:
    """The decay d used by the update after optimizer step `step` (0-based)."""
    return min(decay, (1 + step) / (10 + step)) if warmup else decay


class ExponentialMovingAverage:
    """Keeps `self.network`, an averaged copy of `network` (eval mode, no gradients)."""

    def __init__(self, network: nn.Module, decay: float = 0.999, warmup: bool = True):
        if not 0 <= decay < 1:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        self.decay, self.warmup = decay, warmup
        self.network = copy.deepcopy(network).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        return decay_at(step, self.decay, self.warmup)

    @torch.no_grad()
    def update(self, network: nn.Module, step: int) -> None:
        weight = 1 - self.decay_at(step)
        averaged = list(self.network.parameters())
        current = [p.detach() for p in network.parameters()]
        torch._foreach_lerp_(averaged, current, weight)
        for mine, theirs in zip(self.network.buffers(), network.buffers()):
            mine.copy_(theirs)
