"""Which shard of a generation run a job draws: `--shard I/N|auto`, the per-job output name, and
the global attributes of a shard file.

The shards themselves (`Shard`: shard I of N holds the contiguous block of global sample indices
`[I * n // N, (I + 1) * n // N)`) belong to the data layer, `sciscore.fields.sample_shards`, which
also reads the completeness record of a store that the shards write together;
`sciscore.generate.merge.merge_shards` joins shard files into one.
"""

from __future__ import annotations

import os
from typing import Mapping

from sciscore.errors import UserError
from sciscore.fields.sample_shards import Shard

SHARD = "sciscore_shard"            # global attribute of a shard file: "I/N"
TOTAL = "sciscore_samples_total"    # global attribute of a shard file: n of the whole run


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
