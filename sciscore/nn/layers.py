"""Small building blocks of the U-Net: padded convolutions, group norms, the residual and the self-attention block."""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

PADDINGS = ("zero", "circular")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, padding: str = "zero") -> nn.Conv2d:
    """3x3 convolution keeping H, W (stride 1) or halving them (stride 2).

    padding "circular" makes every convolution periodic (doubly periodic fields); "zero" is
    CliMAgen's SamePad, used in the turbulence study."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1,
                     padding_mode="zeros" if padding == "zero" else "circular")


def group_count(channels: int, max_groups: int = 32, min_group_size: int = 4) -> int:
    """Groups for GroupNorm: 32 where the width allows at least 4 channels per group, else fewer
    (the largest divisor of `channels` that keeps groups of >= `min_group_size`)."""
    for groups in range(min(max_groups, max(1, channels // min_group_size)), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(group_count(channels), channels)


class ResidualBlock(nn.Module):
    """CliMAgen's ResnetBlockNCSN: h = conv2(dropout(act(GN(conv1(act(GN(x))) + dense(emb))))) + x."""

    def __init__(self, channels: int, embed_dim: int, dropout: float = 0.0, padding: str = "zero"):
        super().__init__()
        self.norm1 = group_norm(channels)
        self.conv1 = conv3x3(channels, channels, padding=padding)
        self.dense = nn.Linear(embed_dim, channels)
        self.norm2 = group_norm(channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv3x3(channels, channels, padding=padding)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + F.silu(self.dense(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + x


class AttentionBlock(nn.Module):
    """Self-attention over all H x W positions (the DDPM U-Net's middle block; Ho et al. 2020,
    appendix B): h = x + proj(softmax(q k^T / sqrt(d)) v), with q, k, v 1x1 convolutions of GN(x),
    `heads` heads of channels / heads features, and the output projection zero-initialized (the block
    starts as the identity). Without positional encodings it commutes with every permutation of the
    positions, so with any padding it commutes with periodic shifts: it gives each position the
    whole field's state, which 3x3 convolutions reach only through the U-Net's coarsest level."""

    def __init__(self, channels: int, heads: int = 1):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention heads ({heads}) must divide the channels ({channels})")
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        attended = F.scaled_dot_product_attention(q, k, v)  # (b, heads, hw, c / heads)
        return x + self.proj(attended.transpose(-1, -2).reshape(b, c, h, w))
