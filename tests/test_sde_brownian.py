"""The counter-based per-sample streams of sciscore.sde.brownian: exact reference values, moments,
a Kolmogorov-Smirnov test against the normal law, independence across samples, draws, elements and
seeds, and bitwise batch invariance. All draws are seeded, so every number here is reproducible."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from sciscore.sde.brownian import GridBrownian, SampleStreams, StreamNoise, _signed, _splitmix64, sample_seed


def _lowbias32(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def reference_value(seed: int, index: int, draw: int, element: int) -> float:
    """Value `element` of draw `draw` of sample `index`, in plain Python integers (the module docstring)."""
    key = sample_seed(seed, index)
    draw_key = _splitmix64((draw + 1) * 0xD1B54A32D192ED03)
    key1, key2 = (key ^ draw_key) & 0xFFFFFFFF, ((key >> 32) ^ (draw_key >> 32)) & 0xFFFFFFFF
    x = _lowbias32(_lowbias32(element) ^ 0x2545F491) ^ key1
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x ^= key2
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 13
    x = (x * 0x9E3779B1) & 0xFFFFFFFF
    v = torch.tensor(((_signed(x, 32) >> 9) + 0.5) * 2.0**-22, dtype=torch.float64)
    return math.sqrt(2) * torch.erfinv(v).item()


def test_values_equal_the_integer_reference():
    streams = SampleStreams(11, [0, 3, 1000, 2**40])
    streams.normal((7,), dtype=torch.float64)  # draw 0
    z = streams.normal((3, 50), dtype=torch.float64)  # draw 1
    for row, index in enumerate(streams.indices):
        for element in (0, 1, 49, 149):
            assert z[row].flatten()[element].item() == reference_value(11, index, 1, element)


def test_moments_and_kolmogorov_smirnov():
    z = SampleStreams(0, range(256)).normal((4096,), dtype=torch.float64).flatten().numpy()  # 2^20 values
    n = z.size
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(stats.skew(z)) < 5 * math.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24 / n)
    tail = np.mean(np.abs(z) > 3)  # 0.27 % of a normal; a bad quantile map misses it
    assert abs(tail - 0.0026998) < 5 * math.sqrt(0.0027 / n)
    statistic = stats.kstest(z, "norm").statistic
    assert statistic < 1.95 / math.sqrt(n)  # the 0.1 % critical value


def test_independence_across_samples_draws_elements_and_seeds():
    size = 4096
    bound = 5 / math.sqrt(size)  # |correlation| of independent normals: sd 1/sqrt(size)
    streams = SampleStreams(7, range(64))
    draws = streams.normal((size,), dtype=torch.float64, draw=0, count=3)  # (64, 3, size)
    across_samples = torch.corrcoef(draws[:, 0])
    off_diagonal = across_samples[~torch.eye(64, dtype=torch.bool)]
    assert off_diagonal.abs().max() < bound
    # about N(0, 1/size): the spread of the 2016 sample-pair correlations matches
    assert abs(off_diagonal.std().item() * math.sqrt(size) - 1) < 0.1
    for a, b in ((0, 1), (1, 2), (0, 2)):
        across_draws = (draws[:, a] * draws[:, b]).mean(dim=1)
        assert across_draws.abs().max() < bound
    lag_one = (draws[..., 1:] * draws[..., :-1]).mean(dim=-1)
    assert lag_one.abs().max() < bound
    other_seed = SampleStreams(8, range(64)).normal((size,), dtype=torch.float64)
    assert (other_seed * draws[:, 0]).mean(dim=1).abs().max() < bound
    # quadrant counts of consecutive pairs: a chi-square test of their joint law
    pairs = draws.flatten()
    quadrant = (pairs[:-1:2] > 0).long() * 2 + (pairs[1::2] > 0).long()
    counts = torch.bincount(quadrant, minlength=4).double().numpy()
    assert stats.chisquare(counts).pvalue > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_sample_is_bitwise_the_same_in_any_batch(dtype):
    everyone = SampleStreams(5, range(37))
    prior = everyone.normal((2, 9, 7), dtype)
    later = everyone.normal((2, 9, 7), dtype, draw=4, count=3)
    for batch in ([12], [36, 0], list(range(10, 37))):
        some = SampleStreams(5, batch)
        assert torch.equal(some.normal((2, 9, 7), dtype), prior[batch])
        assert torch.equal(some.normal((2, 9, 7), dtype, draw=5), later[batch, 1])
    # draws asked in blocks, one by one, or out of order agree
    one_by_one = SampleStreams(5, range(37))
    steps = [one_by_one.normal((2, 9, 7), dtype) for _ in range(7)]
    assert torch.equal(torch.stack(steps[4:7], 1), later)
    noise = StreamNoise(SampleStreams(5, range(37)), (2, 9, 7), dtype, block=4)
    assert torch.equal(torch.stack([noise() for _ in range(7)], 1), torch.stack(steps, 1))
    assert not torch.equal(prior, SampleStreams(6, range(37)).normal((2, 9, 7), dtype))


def test_grid_brownian_increments_are_the_draws_after_the_prior():
    streams = SampleStreams(2, range(5))
    streams.normal((6,))  # the prior draw
    bm = GridBrownian(streams, 0.0, 1.0, steps=20, dim=6, block=8)
    h = 1.0 / 20
    backwards = [bm(k * h, (k + 1) * h) for k in reversed(range(20))]  # any order of queries
    expected = SampleStreams(2, range(5)).normal((1, 6), draw=1, count=20, scale=math.sqrt(h))[:, :, 0]
    assert torch.equal(torch.stack(backwards[::-1], 1), expected)
    assert streams.next_draw == 21
