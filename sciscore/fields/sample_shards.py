"""The samples of one run split over shards, and the record of which of them are written.

A run of `n` samples split into `count` shards gives shard `index` (0-based) the contiguous block
`[index * n // count, (index + 1) * n // count)` of global sample indices (`Shard.block`). Sample i
depends only on (seed, i) (one random stream per sample), so the shards together hold exactly the
samples of the one-job run.

A Zarr store that the shards of a run write together (`sciscore.generate.sample_store`) records
its completeness per sample: the variable `sample_written` (sample; uint8 0 or 1) is 1 where the
sample's fields are on disk, and the global attribute `sciscore_shards` says how many shards the
store is laid out for. `describe_missing` turns the flags into the one line that names the missing
samples and the shards to run again; `sciscore.fields.io.check_complete` (opening data) and
`sciscore merge` (checking a store) both report it.

The data layer owns this record because it reads it (an incomplete store is refused wherever data
are opened); choosing a job's shard (`--shard I/N|auto`) stays with `sciscore.generate.shards`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from sciscore.errors import UserError

WRITTEN_FLAG = "sample_written"     # variable (sample): 1 where the sample's fields are on disk
SHARD_COUNT = "sciscore_shards"     # global attribute: the number of shards the store was laid out for


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based)."""

    index: int
    count: int

    def __post_init__(self):
        if not (isinstance(self.index, int) and isinstance(self.count, int)) or self.count < 1 \
                or not 0 <= self.index < self.count:
            raise UserError(f"--shard needs I/N with 0 <= I < N, got {self.index}/{self.count}")

    def block(self, n: int) -> tuple[int, int]:
        """The global sample indices [start, stop) of this shard in a run of `n` samples."""
        return self.index * n // self.count, (self.index + 1) * n // self.count

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shards_holding(start: int, stop: int, n: int, count: int) -> list[Shard]:
    """The shards (of `count`, in a run of `n` samples) whose blocks hold some of the samples
    [start, stop) (a shard of more shards than samples may hold none)."""
    shards = (Shard(i, count) for i in range(count))
    return [shard for shard in shards if max(start, shard.block(n)[0]) < min(stop, shard.block(n)[1])]


def unwritten_flags(n: int) -> xr.Variable:
    """The flags of a store of `n` samples before any is written (all 0), with their CF flag
    attributes."""
    return xr.Variable("sample", np.zeros(n, dtype=np.uint8),
                       {"long_name": "sample written", "flag_values": np.array([0, 1], np.uint8),
                        "flag_meanings": "missing written"})


def written_flags(ds: xr.Dataset) -> np.ndarray:
    """(n,) bool: which samples of the store `ds` are written (reads the flags, not the fields)."""
    return np.asarray(ds[WRITTEN_FLAG].values) == 1


def shard_count(attrs: dict) -> int:
    """The number of shards a store with global attributes `attrs` is laid out for."""
    return int(attrs.get(SHARD_COUNT, 1))


def describe_missing(flags: np.ndarray, count: int, where: str) -> str | None:
    """None where every flag is set; else one line naming the missing samples and the shards (of
    `count`) that hold them."""
    flags = np.asarray(flags, dtype=bool)
    n = flags.size
    missing = np.flatnonzero(~flags)
    if missing.size == 0:
        return None
    # runs of consecutive missing indices
    breaks = np.flatnonzero(np.diff(missing) > 1)
    starts = np.concatenate([[missing[0]], missing[breaks + 1]])
    stops = np.concatenate([missing[breaks], [missing[-1]]]) + 1
    runs = [f"{a}..{b - 1}" if b - a > 1 else f"{a}" for a, b in zip(starts[:3], stops[:3])]
    more = ", ..." if starts.size > 3 else ""
    shards = sorted({shard for a, b in zip(starts, stops) for shard in shards_holding(int(a), int(b), n, count)},
                    key=lambda shard: shard.index)
    which = "shard" if len(shards) == 1 else "shards"
    return (f"{where} is incomplete: {missing.size} of {n} samples are missing (samples {', '.join(runs)}{more}; "
            f"{which} {', '.join(map(str, shards))}); run {'that shard' if len(shards) == 1 else 'those shards'} "
            f"again with --resume")
