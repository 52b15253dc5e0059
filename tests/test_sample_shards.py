"""The shards of a run and a store's completeness flags (sciscore.fields.sample_shards): exact
messages and the blocks that hold given samples, against a brute-force reference."""

import numpy as np
import pytest

from sciscore.fields.sample_shards import Shard, describe_missing, shards_holding


@pytest.mark.parametrize("n, count", [(7, 3), (10, 4), (3, 5), (1, 1), (100, 8)])
def test_shards_holding_matches_the_owner_of_each_sample(n, count):
    owner = {i: shard for shard in (Shard(k, count) for k in range(count)) for i in range(*shard.block(n))}
    for start in range(n):
        for stop in range(start + 1, n + 1):
            expected = sorted({owner[i] for i in range(start, stop)}, key=lambda shard: shard.index)
            assert shards_holding(start, stop, n, count) == expected


def test_describe_missing_names_runs_and_shards():
    flags = np.ones(10, dtype=bool)
    assert describe_missing(flags, 4, "out.zarr") is None
    flags[[1, 2, 7]] = False  # shards of 10 over 4: [0,2) [2,5) [5,7) [7,10)
    assert describe_missing(flags, 4, "out.zarr") == (
        "out.zarr is incomplete: 3 of 10 samples are missing (samples 1..2, 7; shards 0/4, 1/4, 3/4); "
        "run those shards again with --resume")
    flags[:] = True
    flags[[0, 2, 4, 6]] = False  # four runs: the first three are named
    assert describe_missing(flags, 1, "s.zarr") == (
        "s.zarr is incomplete: 4 of 10 samples are missing (samples 0, 2, 4, ...; shard 0/1); "
        "run that shard again with --resume")


def test_describe_missing_names_no_empty_shard():
    """5 shards of 3 samples: shards 0 and 2 hold none ([0, 0) and [1, 1)); sample 1 is shard 3's."""
    flags = np.array([True, False, True])
    assert [Shard(k, 5).block(3) for k in range(5)] == [(0, 0), (0, 1), (1, 1), (1, 2), (2, 3)]
    assert describe_missing(flags, 5, "s.zarr") == (
        "s.zarr is incomplete: 1 of 3 samples are missing (samples 1; shard 3/5); run that shard again with --resume")
