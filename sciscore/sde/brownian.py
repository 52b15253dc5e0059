"""One random stream per sample, and a fixed-grid Brownian motion for torchsde built on them.

A sample's randomness depends only on (seed, global sample index): its prior draw, its Brownian
increments, its churn / Langevin noise. So sample i is the same for any batch size or batch split.

The streams are counter-based (Salmon, Moraes, Dror & Shaw 2011, "Parallel random numbers: as easy
as 1, 2, 3"): value j of draw k of sample i is a fixed function of (seed, i, k, j), computed for all
samples of a batch at once with integer torch ops on the batch's device, so no per-sample generator
is ever stepped. The function:

- sample key (64 bit): SplitMix64 (Steele, Lea & Flood 2014) of the seed's key + (i + 1) γ, with
  γ = 0x9E3779B97F4A7C15; its halves (a1, a2). Draw key: SplitMix64 of (k + 1) γ', halves (d1, d2).
- element hash h_j: Wellons' `lowbias32` integer hash (hash-prospector, 2018) applied twice to j.
- value: x = h_j ⊕ (a1 ⊕ d1); x ← x·M1; x ← x ⊕ (x >> 15); x ← x ⊕ (a2 ⊕ d2); x ← x·M2;
  x ← x ⊕ (x >> 13); x ← x·M3 (32-bit wrapping arithmetic, logical shifts): for a fixed
  (sample, draw) a bijection of h_j. Its top 23 bits give v ∈ (−1, 1) on a uniform grid of step
  2^-22 (no endpoint), and z = √2 erfinv(v) is standard normal (|z| < 5.3).

Every step is elementwise and exact in integers; the float steps (conversion, erfinv, scaling) act
on each element alone, so a sample's values are bitwise the same in any batch (same device, dtype
and torch version). Statistical tests: tests/test_sde_brownian.py.

``GridBrownian`` is a ``torchsde.BaseBrownian`` answering only queries on its own fixed grid
(each step's increment W(u_k+1) - W(u_k), and for SRK the space-time Levy area U). It replaces
torchsde's ``BrownianInterval``, which was measured 2-10x slower than plain ``randn`` per step
when no dt hint is given.
"""

from __future__ import annotations

import math

import torch
from torchsde import BaseBrownian

_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15          # 2^64 / golden ratio, odd (SplitMix64's increment)
_DRAW_GAMMA = 0xD1B54A32D192ED03     # another odd Weyl increment, for the draw index
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB  # SplitMix64 finalizer
_M1, _M2, _M3 = 0x7FEB352D, 0x846CA68B, 0x9E3779B1     # lowbias32 multipliers, then 2^32 / golden ratio
_BLOCK_VALUES = 1 << 18  # the most values computed in one call when drawing several steps ahead


def _signed(value: int, bits: int) -> int:
    """The two's-complement signed integer with the same low `bits` bits as `value`."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _splitmix64(value: int) -> int:
    """SplitMix64's output function on a Python int (mod 2^64)."""
    value &= _MASK64
    value = ((value ^ (value >> 30)) * _MIX1) & _MASK64
    value = ((value ^ (value >> 27)) * _MIX2) & _MASK64
    return value ^ (value >> 31)


def _splitmix64_tensor(x: torch.Tensor) -> torch.Tensor:
    """`_splitmix64` on an int64 tensor (wrapping products; shifts made logical by masks)."""
    x = x ^ ((x >> 30) & ((1 << 34) - 1))
    x = x * _signed(_MIX1, 64)
    x = x ^ ((x >> 27) & ((1 << 37) - 1))
    x = x * _signed(_MIX2, 64)
    return x ^ ((x >> 31) & ((1 << 33) - 1))


def _lowbias32(x: torch.Tensor) -> torch.Tensor:
    """Wellons' lowbias32 on int64 tensors holding values in [0, 2^32)."""
    mask = 0xFFFFFFFF
    x = x ^ (x >> 16)
    x = (x * _M1) & mask
    x = x ^ (x >> 15)
    x = (x * _M2) & mask
    return x ^ (x >> 16)


def _seed_key(seed: int) -> int:
    return _splitmix64(int(seed) * _GAMMA + 0x632BE59BD9B4E019)


def sample_seed(seed: int, index: int) -> int:
    """The 64-bit key of sample ``index`` under the user ``seed`` (what its stream is built on)."""
    return _splitmix64(_seed_key(seed) + (int(index) + 1) * _GAMMA)


def sample_keys(seed: int, indices: torch.Tensor) -> torch.Tensor:
    """`sample_seed` for a tensor of indices, as int64 (two's complement), vectorized."""
    indices = torch.as_tensor(indices, dtype=torch.int64)
    weyl = (indices + 1) * _signed(_GAMMA, 64) + _signed(_seed_key(seed), 64)
    return _splitmix64_tensor(weyl)


class SampleStreams:
    """The counter-based streams of the samples ``indices`` under ``seed``, on ``device``.

    ``normal(shape)`` returns the next draw, (B, *shape); ``normal(shape, draw=k, count=L)``
    returns draws k..k+L-1 as (B, L, *shape) without moving the counter. Draw k of sample i is the
    same whatever the batch, the draws asked before it, or `count`; its value j depends only on
    (seed, i, k, j) — a draw of another shape shares the prefix of the flattened values."""

    def __init__(self, seed: int, indices, device=None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.seed = int(seed)
        self.indices = [int(i) for i in indices]
        keys = sample_keys(self.seed, torch.tensor(self.indices, dtype=torch.int64)).to(self.device)
        halves = torch.stack([keys & 0xFFFFFFFF, (keys >> 32) & 0xFFFFFFFF])
        # (2, 1, B): the sample key's low and high 32 bits as int32 (two's complement)
        self._sample_key_halves = torch.where(halves >= 2**31, halves - 2**32, halves).to(torch.int32)[:, None, :]
        self.next_draw = 0
        self._element_hashes = {}
        self._work = {}

    def __len__(self):
        return len(self.indices)

    def take(self, count: int = 1) -> int:
        """Reserve the next ``count`` draws; returns the first one's number."""
        first = self.next_draw
        self.next_draw += int(count)
        return first

    def _hashes(self, size: int) -> torch.Tensor:
        """h_j for j < size, int32 (1, size) on the device; the largest asked so far is kept."""
        cached = self._element_hashes.get("h")
        if cached is None or cached.shape[-1] < size:
            j = torch.arange(max(size, 1), dtype=torch.int64)
            hashed = _lowbias32(_lowbias32(j) ^ 0x2545F491)
            cached = torch.where(hashed >= 2**31, hashed - 2**32, hashed).to(torch.int32).to(self.device)[None]
            self._element_hashes["h"] = cached
        return cached[:, :size]

    def _draw_keys(self, first: int, count: int) -> torch.Tensor:
        """(2, count, B, 1) int32: the row keys (key1, key2) of draws first..first+count-1."""
        keys = [_splitmix64((first + k + 1) * _DRAW_GAMMA) for k in range(count)]
        halves = torch.tensor([[_signed(key, 32) for key in keys], [_signed(key >> 32, 32) for key in keys]],
                              dtype=torch.int32, device=self.device)
        return (halves[:, :, None] ^ self._sample_key_halves).unsqueeze(-1)

    def _scratch(self, shape: tuple, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Work arrays of `shape` kept between calls (fresh large arrays cost page faults): two
        int32 and one of `dtype`."""
        key = (shape, dtype)
        if key not in self._work:
            self._work.clear()
            self._work[key] = (torch.empty(shape, dtype=torch.int32, device=self.device),
                               torch.empty(shape, dtype=torch.int32, device=self.device),
                               torch.empty(shape, dtype=dtype, device=self.device))
        return self._work[key]

    def _mix(self, size: int, draw: int, count: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The 32-bit words x of the module docstring, int32 (count, B, size), in a work array,
        and the float work array of the same shape. Draw-major, so that one draw of all samples is
        contiguous and the per-row keys broadcast along the long axes."""
        keys = self._draw_keys(int(draw), int(count))
        x, shifted, floats = self._scratch((int(count), len(self), size), dtype)
        torch.bitwise_xor(self._hashes(size), keys[0], out=x)
        x.mul_(_signed(_M1, 32))
        x.bitwise_xor_(torch.bitwise_right_shift(x, 15, out=shifted).bitwise_and_((1 << 17) - 1))
        x.bitwise_xor_(keys[1])
        x.mul_(_signed(_M2, 32))
        x.bitwise_xor_(torch.bitwise_right_shift(x, 13, out=shifted).bitwise_and_((1 << 19) - 1))
        return x.mul_(_signed(_M3, 32)), floats

    def normal(self, shape, dtype=torch.float32, draw: int | None = None, count: int | None = None,
               scale: float = 1.0) -> torch.Tensor:
        """Standard normal draws (times `scale`): the next one, (B, *shape); or draws
        draw..draw+count-1, (B, count, *shape)."""
        shape = tuple(shape)
        size = math.prod(shape)
        first = self.take(1) if draw is None else int(draw)
        work = dtype if dtype in (torch.float32, torch.float64) else torch.float32
        x, v = self._mix(size, first, 1 if count is None else count, work)
        # top 23 bits, signed: s in [-2^22, 2^22); v = (s + 1/2) 2^-22 in (-1, 1), exact. The
        # conversion is its own pass into the float work array: add(int, 0.5, out=) would first
        # cast into a fresh temporary
        v.copy_(x.bitwise_right_shift_(9)).add_(0.5).mul_(2.0**-22)
        z = torch.mul(v.erfinv_(), math.sqrt(2.0) * scale).to(dtype)
        return z.view(len(self), *shape) if count is None else z.view(count, len(self), *shape).transpose(0, 1)


class StreamNoise:
    """Successive (B, *shape) standard normal draws from the per-sample streams (one draw number
    each), computed ``block`` draws at a time to save per-call work."""

    def __init__(self, streams: SampleStreams, shape, dtype=torch.float32, block: int = 16):
        self.streams, self.shape, self.dtype = streams, tuple(shape), dtype
        self.block = max(1, min(int(block), _BLOCK_VALUES // max(1, len(streams) * math.prod(self.shape))))
        self._buffer, self._position = None, 0

    def __call__(self) -> torch.Tensor:
        if self._buffer is None or self._position == self.block:
            first = self.streams.take(self.block)
            self._buffer = self.streams.normal(self.shape, self.dtype, draw=first, count=self.block)
            self._position = 0
        draw = self._buffer[:, self._position]
        self._position += 1
        return draw


class GridBrownian(BaseBrownian):
    """Brownian motion of size (B, D) on the uniform grid u_k = u_0 + k h, k = 0..steps.

    Answers bm(ta, tb[, return_U]) only for ta, tb = u_k, u_k+1 (to 1e-6 of a step), which is what
    torchsde's fixed-step solvers ask. W = sqrt(h) Z1; with levy_area_approximation
    'space-time' also U = int_ta^tb (W(r) - W(ta)) dr = (tb - ta) (W/2 + H), H ~ N(0, (tb - ta)/12)
    independent of W (torchsde's ``_H_to_U``). Step k's normals are draw ``first_draw + k`` of the
    streams (any order of queries gives the same path); they are computed ``block`` steps at a time."""

    def __init__(self, streams: SampleStreams, u0: float, u1: float, steps: int, dim: int,
                 dtype=torch.float32, levy_area_approximation: str = "none", block: int = 16):
        if levy_area_approximation not in ("none", "space-time"):
            raise ValueError("GridBrownian supports levy_area_approximation 'none' or 'space-time', "
                             f"got {levy_area_approximation!r}")
        self.streams, self.steps, self.dim = streams, int(steps), int(dim)
        self.u0, self.h = float(u0), (float(u1) - float(u0)) / steps
        self._dtype, self._levy = dtype, levy_area_approximation
        # draws are computed `block` steps at a time, but never more than ~2^18 values at once: the
        # work arrays then stay in cache (16-step blocks of 64 x 64² were 2x slower per value)
        normals = 2 if levy_area_approximation == "space-time" else 1
        self.block = max(1, min(int(block), _BLOCK_VALUES // max(1, len(streams) * normals * self.dim)))
        self.first_draw = streams.take(self.steps)  # step k is draw first_draw + k of every stream
        self._block_start, self._block_steps = None, ()
        self.queries = 0

    def _load_block(self, k: int):
        start = (k // self.block) * self.block
        length = min(self.block, self.steps - start)
        normals = 2 if self._levy == "space-time" else 1
        # sqrt(h) z: the increments W themselves (one multiplication fewer per step)
        block = self.streams.normal((normals, self.dim), dtype=self._dtype, draw=self.first_draw + start,
                                    count=length, scale=math.sqrt(self.h))
        # each step's (B, dim) views made once, not at every query: W, and for the Levy area sqrt(h) z2
        self._block_steps = block[:, :, 0].unbind(1)
        self._block_second = block[:, :, 1].unbind(1) if normals == 2 else ()
        self._block_start = start

    def __call__(self, ta, tb=None, return_U=False, return_A=False):
        if tb is None or return_A:
            raise RuntimeError("GridBrownian answers interval queries bm(ta, tb) on its grid only")
        ta, tb = float(ta), float(tb)
        position = (ta - self.u0) / self.h
        k = round(position)
        if abs(position - k) > 1e-6 or abs((tb - ta) / self.h - 1) > 1e-6 or not 0 <= k < self.steps:
            raise RuntimeError(f"GridBrownian got the query [{ta}, {tb}], which is not a step of its grid "
                               f"u0={self.u0}, h={self.h}, steps={self.steps}")
        if self._block_start is None or not self._block_start <= k < self._block_start + len(self._block_steps):
            self._load_block(k)
        self.queries += 1
        W = self._block_steps[k - self._block_start]  # sqrt(h) z
        if not return_U:
            return W
        if self._levy != "space-time":
            raise RuntimeError("this solver needs the space-time Levy area: build GridBrownian with "
                               "levy_area_approximation='space-time'")
        dt = tb - ta
        H = self._block_second[k - self._block_start] / math.sqrt(12)
        return W, dt * (0.5 * W + H)

    def __repr__(self):
        return (f"GridBrownian(batch={len(self.streams)}, dim={self.dim}, u0={self.u0}, h={self.h}, "
                f"steps={self.steps}, levy_area_approximation={self._levy!r})")

    @property
    def dtype(self):
        return self._dtype

    @property
    def device(self):
        return self.streams.device

    @property
    def shape(self):
        return torch.Size((len(self.streams), self.dim))

    @property
    def levy_area_approximation(self):
        return self._levy
