"""Merge the shard files of one sharded generation run into one CF NetCDF file (or check the
Zarr store its shards wrote together).

The shards must belong to one run (same request: model checksum, weights, solver, steps, grid,
denoise, seed, n, variables), each be complete, and together hold every global sample index
0 .. n-1 exactly once. The merged file is written block by block (memory flat in n) and is the
file a one-job run of the same request writes, sample for sample.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import netCDF4
import numpy as np
import xarray as xr

from sciscore.errors import UserError
from sciscore.fields.io import written_by
from sciscore.fields.sample_file import (FIRST, REQUEST, REQUESTED, STATUS, WRITTEN, append_samples,
                                         create_sample_file, differing_settings, read_header)
from sciscore.generate.shards import SHARD, TOTAL

# attributes that describe one shard, not the merged run
_SHARD_ATTRS = (STATUS, WRITTEN, REQUESTED, REQUEST, FIRST, SHARD, TOTAL, "Conventions")


@dataclass(frozen=True)
class ShardFile:
    """What the header of one shard file says."""

    path: Path
    request: dict            # the run's request, without the shard
    shard: str               # "I/N", or "" for a file written without --shard
    first: int               # global index of its first sample
    requested: int
    written: int
    complete: bool
    chunk_samples: int

    @property
    def stop(self) -> int:
        return self.first + self.requested

    def describe(self) -> str:
        which = f"shard {self.shard}, " if self.shard else ""
        return f"{self.path} ({which}samples {self.first}..{self.stop - 1})"


def read_shard(path: str | os.PathLike) -> ShardFile:
    """The header of a file written by `sciscore generate` (with or without --shard)."""
    try:
        header = read_header(path)
    except FileNotFoundError:
        raise UserError(f"shard {path} does not exist") from None
    except OSError as error:
        raise UserError(f"shard {path} is not a readable NetCDF file ({error})") from None
    if not header.generated or written_by(header.attrs) != "generate":
        raise UserError(f"{path} was not written by 'sciscore generate'; only its output files can be merged")
    request = header.request
    shard = request.pop("shard", "")
    requested, written = header.requested, header.written
    return ShardFile(header.path, request, shard, header.first, requested, written,
                     header.attrs[STATUS] == "complete" and written == requested, header.chunk_samples)


def check_shards(shards: Sequence[ShardFile]) -> int:
    """Check that `shards` are one run's complete shards holding each index once; return n."""
    if not shards:
        raise UserError("no shard files given")
    reference = shards[0]
    for shard in shards[1:]:
        changed = differing_settings(reference.request, shard.request)
        if changed:
            raise UserError(f"{shard.path} belongs to another run than {reference.path} "
                            f"(different {', '.join(changed)}); merge only the shards of one run")
    for shard in shards:
        if not shard.complete:
            raise UserError(f"{shard.describe()} is incomplete ({shard.written} of {shard.requested} samples "
                            f"written); finish it with its 'sciscore generate' command and --resume")
    n = int(reference.request["n"])
    ordered = sorted(shards, key=lambda s: (s.first, s.stop))
    expected = 0
    for shard in ordered:
        if shard.first < expected:
            raise UserError(f"{shard.describe()} overlaps the samples of another shard given; "
                            f"give each shard once")
        if shard.first > expected:
            raise UserError(f"samples {expected}..{shard.first - 1} of {n} are missing"
                            f"{_missing_shard(shards, expected)}; generate that shard and merge again")
        expected = shard.stop
    if expected != n:
        raise UserError(f"samples {expected}..{n - 1} of {n} are missing{_missing_shard(shards, expected)}; "
                        f"generate that shard and merge again")
    return n


def _missing_shard(shards: Sequence[ShardFile], index: int) -> str:
    """' (shard I/N)' for the shard of the given count that holds global sample `index`."""
    from sciscore.fields.sample_shards import shards_holding

    counts = {int(s.shard.split("/")[1]) for s in shards if s.shard}
    n = int(shards[0].request["n"])
    for count in counts:
        holding = shards_holding(index, index + 1, n, count)
        if holding:
            return f" (shard {holding[0]})"
    return ""


def _template(path: Path) -> tuple[xr.Dataset, dict]:
    """An empty dataset with the shard's variables, coordinates and attributes, and its global
    attributes less the per-shard ones."""
    with xr.open_dataset(path, engine="netcdf4") as ds:
        template = ds.isel(sample=slice(0, 0)).load()
    attrs = {k: v for k, v in template.attrs.items() if k not in _SHARD_ATTRS}
    template.attrs = {}
    for variable in template.variables.values():
        variable.encoding = {}
    return template, attrs


def merge_shards(paths: Sequence[str | os.PathLike], output: str | os.PathLike | None, *, overwrite: bool = False,
                 block_samples: int | None = None) -> Path:
    """Check the shard files `paths` (see `check_shards`) and write their samples, in global
    index order, to the NetCDF file `output`, `block_samples` at a time (default: the shards'
    chunk along samples). A single Zarr store (`generate -o out.zarr`) is checked with
    `sciscore.generate.sample_store.merge_store` instead and, given `output`, written to it."""
    from sciscore.generate.sample_store import is_store, merge_store

    if any(is_store(p) for p in paths):
        if len(paths) != 1:
            raise UserError("the shards of a zarr run wrote one store: give that store alone to check it "
                            "(and convert it to NetCDF with -o)")
        return merge_store(paths[0], output, overwrite=overwrite, block_samples=block_samples)
    if output is None:
        raise UserError("name the merged file with -o")
    shards = [read_shard(p) for p in paths]
    n = check_shards(shards)
    output = Path(output)
    if any(output.resolve() == s.path.resolve() for s in shards):
        raise UserError(f"the output {output} is one of the shards; choose another -o")
    ordered = sorted(shards, key=lambda s: s.first)
    template, attrs = _template(ordered[0].path)
    block = int(block_samples or ordered[0].chunk_samples)
    merged = create_sample_file(output, template, requested=n, request=ordered[0].request, global_attrs=attrs,
                                chunk_samples=ordered[0].chunk_samples, overwrite=overwrite)
    for shard in ordered:
        with netCDF4.Dataset(shard.path) as nc:
            nc.set_auto_mask(False)
            index = np.asarray(nc["sample"][:])
            if not np.array_equal(index, np.arange(shard.first, shard.stop)):
                raise UserError(f"{shard.describe()} has sample coordinates that are not its global indices; "
                                f"it is corrupt, generate it again")
            for start in range(0, shard.requested, block):
                stop = min(shard.requested, start + block)
                fields = {v: np.asarray(nc[v][start:stop]) for v in merged.variables}
                append_samples(merged, fields)
    return merged.path
