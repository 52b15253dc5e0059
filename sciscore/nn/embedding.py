"""Time (noise-level) embedding: Gaussian Fourier features (Tancik et al. 2020; Song et al. 2021).

    gamma(t) = [sin(2 pi W t), cos(2 pi W t)],   W ~ N(0, scale^2) of size dim/2, fixed.

W is a buffer, not a parameter: it is saved with the weights but never trained (CliMAgen meant
it to be frozen but Flux trained it).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class GaussianFourierEmbedding(nn.Module):
    """(B,) noise label -> (B, dim) Fourier features with fixed random frequencies."""

    def __init__(self, dim: int = 256, scale: float = 30.0, seed: int = 0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("frequencies", torch.randn(dim // 2, generator=generator) * scale)

    def forward(self, label: torch.Tensor) -> torch.Tensor:
        angle = 2 * math.pi * label.to(self.frequencies.dtype)[:, None] * self.frequencies[None, :]
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)
