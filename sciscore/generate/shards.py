"""Shards of one generation run: which global sample indices a job draws, and which job it is.

A run of `n` samples split into `count` shards gives shard `index` (0-based) the contiguous block
`[index * n // count, (index + 1) * n // count)` of global sample indices. Sample i depends only on
(seed, i) (one random stream per sample), so the shards together hold exactly the samples of the
one-job run; `sciscore.generate.merge.merge_shards` joins their files into one.

This module imports nothing heavy: `sciscore generate --help` reads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from sciscore.errors import UserError

SHARD = "sciscore_shard"            # global attribute of a shard file: "I/N"
TOTAL = "sciscore_samples_total"    # global attribute of a shard file: n of the whole run


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


def parse_shard(text: str, environ: Mapping[str, str] | None = None) -> Shard:
    """`"I/N"` or `"auto"`: the SLURM array task (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of
    SLURM_ARRAY_TASK_COUNT) or else the torchrun process (RANK of WORLD_SIZE)."""
    environ = os.environ if environ is None else environ
    if text == "auto":
        return shard_from_environment(environ)
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"--shard must be I/N (e.g. 0/4) or 'auto', got {text!r}") from None
    return Shard(index, count)


def shard_from_environment(environ: Mapping[str, str]) -> Shard:
    def integer(name: str) -> int:
        try:
            return int(environ[name])
        except ValueError:
            raise UserError(f"--shard auto: {name}={environ[name]!r} is not an integer") from None

    if "SLURM_ARRAY_TASK_ID" in environ and "SLURM_ARRAY_TASK_COUNT" in environ:
        # Arrays may start at 1 (--array=1-8): the shard is the offset from the first task.
        first = integer("SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in environ else 0
        return Shard(integer("SLURM_ARRAY_TASK_ID") - first, integer("SLURM_ARRAY_TASK_COUNT"))
    if "RANK" in environ and "WORLD_SIZE" in environ:
        return Shard(integer("RANK"), integer("WORLD_SIZE"))
    raise UserError("--shard auto found neither a SLURM array (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT) "
                    "nor torchrun (RANK, WORLD_SIZE) in the environment; pass --shard I/N")


def shard_output(output: str, shard: Shard) -> str:
    """`output` with `{shard}` replaced by the zero-padded shard index (one name per array task)."""
    width = len(str(shard.count - 1))
    return output.replace("{shard}", f"{shard.index:0{width}d}")
