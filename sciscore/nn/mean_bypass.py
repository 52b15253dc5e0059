"""The mean bypass (Deck & Bischoff 2023, "Easing Color Shifts in Score-Based
Diffusion Models", section 3.2, eq. 15; CliMAgen's mean_skip layers with gnorm=true).

A small dense network maps the per-channel spatial means of the input (and of the context
channels) plus the time embedding to sqrt(H W) * mean(sigma * score); the caller divides by
sqrt(H W), so the network predicts an O(1) quantity (the target's spatial mean is -mean(z),
whose std is 1/sqrt(H W)).

"independent" (the paper's): the bypass sees only the means and the embedding, and the U-Net
sees only the de-meaned field; correlations between a field's mean and its fluctuations cannot
be represented (the paper's section 5.1 limitation).
"coupled": the bypass also sees pooled U-Net features (`UNet.forward(pooled=True)`), and the
U-Net sees the (noise-preconditioned) means through `MeanEmbedding`, added to its time embedding.
The outputs keep their roles: the U-Net sets the fluctuation, the bypass the mean.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from sciscore.nn.layers import group_count

BYPASS_MODES = ("none", "independent", "coupled")


class MeanBypass(nn.Module):
    """(B, in_features) means, (B, embed_dim) embedding [, (B, pooled_dim) features] -> (B, out_features)."""

    def __init__(self, in_features: int, out_features: int, embed_dim: int = 256, width: int = 256,
                 pooled_dim: int = 0):
        super().__init__()
        self.lift = nn.Linear(in_features, width)            # CliMAgen mean_skip_1 (1x1 conv)
        self.dense1 = nn.Linear(embed_dim, width)            # mean_dense_1
        self.norm1 = nn.GroupNorm(group_count(width), width)
        self.hidden = nn.Linear(width, width)                # mean_skip_2
        self.dense2 = nn.Linear(embed_dim, width)            # mean_dense_2
        self.norm2 = nn.GroupNorm(group_count(width), width)
        self.project = nn.Linear(width, out_features)        # mean_skip_3
        self.features = nn.Linear(pooled_dim, width) if pooled_dim else None

    def forward(self, means: torch.Tensor, emb: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        h = self.lift(means) + self.dense1(emb)
        if self.features is not None:
            h = h + self.features(pooled.to(h.dtype))
        h = F.silu(self.norm1(h))
        h = F.silu(self.norm2(self.hidden(h) + self.dense2(emb)))
        return self.project(h)


class MeanEmbedding(nn.Module):
    """Coupled bypass: (B, C) preconditioned means -> (B, embed_dim), added to the time embedding."""

    def __init__(self, in_features: int, embed_dim: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))

    def forward(self, means: torch.Tensor) -> torch.Tensor:
        return self.net(means)
