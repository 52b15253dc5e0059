"""The NCSN U-Net of the mean-bypass study (Deck & Bischoff 2023, "Easing Color Shifts in Score-Based Diffusion Models",
section 3.1; CliMAgen's NoiseConditionalScoreNetwork, github.com/CliMA/CliMAgen).

Encoder: a 3x3 lifting conv, then len(channels) - 1 stride-2 convs; every stage adds a dense
projection of the embedding and (except the last) GroupNorm + SiLU. Bottleneck: `num_residual`
residual blocks. Decoder: nearest x2 upsampling + 3x3 conv per stage with skip concatenation,
then a 3x3 projection to the output channels. H and W must be divisible by 2^(len(channels)-1).

With `level_blocks` = B > 0, B residual blocks also run at every level above the bottleneck, in
the encoder (before its skip is taken) and in the decoder (after its upsampling conv), as in the
DDPM/NCSN++ U-Nets (Ho et al. 2020, appendix B; Song et al. 2021, appendix H). Without them
(B = 0, the NCSN U-Net above) the finest level has only the lifting conv and the last decoder
conv, and the scales near its Nyquist wavenumber come from the coarser level's nearest upsampling.

With `attention_blocks` = A > 0, a self-attention block (`AttentionBlock`) follows each of the first
A bottleneck residual blocks (DDPM's middle: residual, attention, residual). With
`attention_levels`, a self-attention block also follows every level block at each listed level
(0: the full resolution, 1: half of it, ...; DDPM's attention at the 16 x 16 resolution, Ho et
al. 2020, appendix B), in the encoder and the decoder.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from sciscore.nn.layers import AttentionBlock, ResidualBlock, conv3x3, group_norm


class UNet(nn.Module):
    """(B, in_channels, H, W) input and (B, embed_dim) embedding -> (B, out_channels, H, W).

    `forward(..., pooled=True)` also returns pooled features (B, pooled_dim) for the coupled
    mean bypass: the log spatial variance of each lifting-conv feature (how strong the
    fluctuations are, per learned filter) and the spatial mean of each bottleneck feature."""

    def __init__(self, in_channels: int, out_channels: int, channels: Sequence[int] = (32, 64, 128, 256),
                 num_residual: int = 8, embed_dim: int = 256, dropout: float = 0.0, padding: str = "zero",
                 level_blocks: int = 0, attention_blocks: int = 0, attention_levels: Sequence[int] = ()):
        super().__init__()
        channels = list(channels)
        if len(channels) < 2:
            raise ValueError(f"the U-Net needs at least two channel widths, got {channels}")
        if attention_blocks > num_residual:
            raise ValueError(f"attention_blocks ({attention_blocks}) must be <= num_residual ({num_residual})")
        self.channels = channels
        self.levels = len(channels) - 1
        attention_levels = sorted(set(attention_levels))
        if attention_levels and (not level_blocks or attention_levels[0] < 0 or attention_levels[-1] >= self.levels):
            raise ValueError(f"attention_levels {attention_levels} need level_blocks >= 1 and levels in "
                             f"[0, {self.levels - 1}]")
        # Encoder
        self.lift = conv3x3(in_channels, channels[0], padding=padding)
        self.down = nn.ModuleList(conv3x3(channels[i - 1], channels[i], stride=2, padding=padding)
                                  for i in range(1, len(channels)))
        self.enc_dense = nn.ModuleList(nn.Linear(embed_dim, c) for c in channels)
        self.enc_norm = nn.ModuleList(group_norm(c) for c in channels[:-1])  # last stage: no norm
        self.enc_blocks = nn.ModuleList(
            nn.ModuleList(ResidualBlock(c, embed_dim, dropout, padding) for _ in range(level_blocks))
            for c in channels[:-1]) if level_blocks else None
        # Bottleneck
        self.blocks = nn.ModuleList(ResidualBlock(channels[-1], embed_dim, dropout, padding)
                                    for _ in range(num_residual))
        self.attention = nn.ModuleList(AttentionBlock(channels[-1]) for _ in range(attention_blocks)) \
            if attention_blocks else None
        # Decoder: stage i maps level i to level i-1 (i = L-1 ... 1)
        self.mid_norm = group_norm(channels[-1])
        self.up = nn.ModuleList()
        self.dec_dense = nn.ModuleList()
        self.dec_norm = nn.ModuleList()
        for i in range(self.levels, 0, -1):
            fan_in = channels[i] if i == self.levels else 2 * channels[i]
            self.up.append(conv3x3(fan_in, channels[i - 1], padding=padding))
            self.dec_dense.append(nn.Linear(embed_dim, channels[i - 1]))
            self.dec_norm.append(group_norm(channels[i - 1]))
        self.dec_blocks = nn.ModuleList(
            nn.ModuleList(ResidualBlock(channels[i - 1], embed_dim, dropout, padding) for _ in range(level_blocks))
            for i in range(self.levels, 0, -1)) if level_blocks else None
        # level attention, keyed by level (encoder) and decoder stage; one block after each level block
        self.enc_attention = nn.ModuleDict({str(level): nn.ModuleList(AttentionBlock(channels[level])
                                                                      for _ in range(level_blocks))
                                            for level in attention_levels})
        self.dec_attention = nn.ModuleDict({str(self.levels - 1 - level): nn.ModuleList(AttentionBlock(channels[level])
                                                                                        for _ in range(level_blocks))
                                            for level in attention_levels})
        self.project = conv3x3(2 * channels[0], out_channels, padding=padding)

    @staticmethod
    def _blocks(blocks, attention, index: int, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        attend = attention[str(index)] if str(index) in attention else None
        for j, block in enumerate(blocks[index] if blocks is not None else ()):
            h = block(h, emb)
            if attend is not None:
                h = attend[j](h)
        return h

    @property
    def pooled_dim(self) -> int:
        return self.channels[0] + self.channels[-1]

    def forward(self, x: torch.Tensor, emb: torch.Tensor, pooled: bool = False):
        factor = 2 ** self.levels
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(f"H and W must be divisible by {factor}, got {tuple(x.shape[-2:])}")
        lifted = self.lift(x)
        h = self._blocks(self.enc_blocks, self.enc_attention, 0, F.silu(self.enc_norm[0](lifted + self.enc_dense[0](emb)[:, :, None, None])), emb)
        skips = [h]
        for i, conv in enumerate(self.down, start=1):
            h = conv(h) + self.enc_dense[i](emb)[:, :, None, None]
            if i < self.levels:
                h = self._blocks(self.enc_blocks, self.enc_attention, i, F.silu(self.enc_norm[i](h)), emb)
                skips.append(h)
        for index, block in enumerate(self.blocks):
            h = block(h, emb)
            if self.attention is not None and index < len(self.attention):
                h = self.attention[index](h)
        bottleneck = h
        h = F.silu(self.mid_norm(h))
        for stage, i in enumerate(range(self.levels, 0, -1)):
            if i < self.levels:
                h = torch.cat([h, skips[i]], dim=1)
            h = self.up[stage](F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = F.silu(self.dec_norm[stage](h + self.dec_dense[stage](emb)[:, :, None, None]))
            h = self._blocks(self.dec_blocks, self.dec_attention, stage, h, emb)
        out = self.project(torch.cat([h, skips[0]], dim=1))
        if not pooled:
            return out, None
        lifted_variance = lifted.float().var(dim=(-2, -1), unbiased=False)
        features = torch.cat([torch.log(lifted_variance + 1e-4), bottleneck.float().mean(dim=(-2, -1))], dim=1)
        return out, features
