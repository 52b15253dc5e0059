"""A Zarr store of generated samples that the shards of one run write in parallel.

`sciscore generate -o out.zarr [--shard I/N]` writes the n samples of a run into one Zarr store
(format 2, consolidated metadata) with xarray's template + region pattern:

* The store is made whole before any sample is drawn: the metadata, the coordinates and the CF
  attributes and provenance of the NetCDF output, with the data variables (sample, y, x) left
  unwritten (they read as NaN). The first job builds it under a hidden temporary name and renames
  it into place; a job that finds the name taken joins the store there, after checking that it
  holds the same run (`sciscore_request`).
* Each shard writes its block of global sample indices (`Shard.block`) batch by batch with
  `to_zarr(region=...)`. The chunk length along `sample` divides every boundary between the
  shards, so no chunk is written by two jobs and the shards never race.
* The variable `sample_written` (sample; 0 or 1; `sciscore.fields.sample_shards` owns this
  record) tells which samples are written: a batch's flags are set after its fields, so a killed job leaves its unfinished samples at 0 and `--resume` draws exactly
  those again. The job that writes the last missing sample sets `sciscore_status` to "complete";
  `sciscore merge out.zarr` checks the flags (and marks the store complete) and, with -o, writes
  the one CF NetCDF file of the run.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dask.array
import numpy as np
import xarray as xr

from sciscore.errors import UserError
from sciscore.fields.io import cf_global_attrs, check_writable, temporary_directory_name
from sciscore.fields.sample_file import FIRST, REQUEST, REQUESTED, STATUS, WRITTEN, differing_settings
from sciscore.fields.sample_shards import (SHARD_COUNT, WRITTEN_FLAG, Shard, describe_missing, shard_count,
                                           unwritten_flags, written_flags)

# the attributes that describe the store's progress, not the run (left out of a merged NetCDF file)
STORE_ATTRS = (STATUS, WRITTEN, REQUESTED, REQUEST, FIRST, SHARD_COUNT)


def is_store(path: str | os.PathLike) -> bool:
    """Whether `path` names a Zarr store (by its `.zarr` suffix) rather than a NetCDF file."""
    return Path(path).suffix == ".zarr"


def _zarr_format() -> dict:
    """Zarr format 2, readable by zarr-python 2 and 3 and other implementations (zarr >= 3 writes
    format 3 unless told; format 2 is the default below 3)."""
    import zarr

    return {"zarr_format": 2} if int(zarr.__version__.split(".")[0]) >= 3 else {}


def chunk_length(n: int, count: int, batch_size: int) -> int:
    """The chunk length along `sample` of a store of `n` samples split into `count` shards: the
    largest length <= `batch_size` that divides every boundary between two shards, so that each
    chunk belongs to one shard."""
    boundaries = [Shard(i, count).block(n)[0] for i in range(1, count)]
    common = int(np.gcd.reduce(boundaries)) if boundaries else 0
    if common == 0:  # one shard: any length
        return max(1, min(batch_size, n))
    return max(c for c in range(1, min(batch_size, common) + 1) if common % c == 0)


@dataclass
class SampleStore:
    """A shard's view of the store: it writes the global indices first .. first + requested - 1,
    of which the first `written` are on disk."""

    path: Path
    variables: tuple[str, ...]
    dims: tuple[str, str]           # spatial dimensions (y, x)
    requested: int
    written: int
    first: int
    n: int                          # samples in the whole store

    @property
    def complete(self) -> bool:
        return self.written >= self.requested


@dataclass(frozen=True)
class StoreHeader:
    """What a store written by `sciscore generate` says about itself."""

    path: Path
    attrs: dict
    variables: tuple[str, ...]
    flags: np.ndarray               # (n,) 1 where the sample is written
    chunk_samples: int

    @property
    def n(self) -> int:
        return int(self.flags.size)

    @property
    def request(self) -> dict:
        return json.loads(self.attrs[REQUEST])

    @property
    def shard_count(self) -> int:
        return shard_count(self.attrs)


@contextmanager
def _ignoring_other_writers():
    """While another job consolidates the metadata, its half-written `*.partial` files show in the
    store's listing and zarr warns about each; they are that job's business, not this one's."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Object at .*\.partial is not recognized")
        yield


def read_store(path: str | os.PathLike) -> StoreHeader:
    """The header and the completeness flags of a store written by `sciscore generate`."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist")
    try:
        with _ignoring_other_writers(), xr.open_zarr(path) as ds:
            attrs = dict(ds.attrs)
            generated = WRITTEN_FLAG in ds and STATUS in attrs and REQUEST in attrs
            flags = written_flags(ds) if generated else np.zeros(0, dtype=bool)
            variables = tuple(name for name in ds.data_vars if name != WRITTEN_FLAG)
            chunks = ds[variables[0]].encoding.get("chunks") if variables else None
    except Exception as error:  # zarr and its codecs raise many types for a store they cannot read
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{path} is not a readable zarr store ({detail}); give the store 'sciscore generate' wrote") from None
    if not generated:
        raise UserError(f"{path} was not written by 'sciscore generate'")
    return StoreHeader(path, attrs, variables, flags, int(chunks[0]) if chunks else 1)


def check_store(path: str | os.PathLike) -> StoreHeader:
    """Check that every sample of the store is written (else a `UserError` naming the missing
    samples and shards) and mark it complete where the last job could not (it was killed)."""
    header = read_store(path)
    problem = describe_missing(header.flags, header.shard_count, str(path))
    if problem:
        raise UserError(problem)
    if header.attrs[STATUS] != "complete":
        _mark_complete(header.path, {})
    return header


def _keep_for_completion(path: Path, attrs: dict) -> None:
    """Keep a job's run attributes (the score evaluations per sample) on the flags array, where
    whichever job marks the store complete finds them, even after the job that drew the last
    samples was killed before it could. Every job writes the same values, so writers never race
    on content; the array's own metadata is read, not the consolidated copy."""
    import zarr

    with _ignoring_other_writers():
        flags = zarr.open_array(str(path / WRITTEN_FLAG), mode="r+")
        if any(flags.attrs.get(key) != value for key, value in attrs.items()):
            flags.attrs.update(attrs)


def _mark_complete(path: Path, attrs: dict) -> None:
    """Set the store's status to complete, with `attrs` and those the jobs kept for completion."""
    import zarr

    with _ignoring_other_writers():
        kept = dict(zarr.open_array(str(path / WRITTEN_FLAG), mode="r").attrs)
        kept = {key: value for key, value in kept.items() if key.startswith("sciscore_")}
        group = zarr.open_group(str(path), mode="r+")
        group.attrs.update({**kept, **attrs, STATUS: "complete", WRITTEN: int(group[WRITTEN_FLAG].shape[0])})
        zarr.consolidate_metadata(str(path))


def _template_store(template: xr.Dataset, n: int, chunk: int) -> tuple[xr.Dataset, dict]:
    """The whole store as lazy (never computed) dask arrays, and its encoding."""
    data = {}
    for name, variable in template.data_vars.items():
        shape = (n, *variable.shape[1:])
        lazy = dask.array.full(shape, np.nan, dtype=np.float32, chunks=(chunk, *shape[1:]))
        data[name] = (variable.dims, lazy, variable.attrs)
    coords = {name: coord.variable for name, coord in template.coords.items() if name != "sample"}
    ds = xr.Dataset(data, coords={**coords, "sample": ("sample", np.arange(n), template["sample"].attrs)})
    # the flags are written with the template (n bytes), so they read 0 whatever the zarr version's fill
    ds[WRITTEN_FLAG] = unwritten_flags(n)
    encoding = {name: {"chunks": (chunk, *ds[name].shape[1:]), "_FillValue": np.nan} for name in template.data_vars}
    encoding[WRITTEN_FLAG] = {"chunks": (chunk,), "_FillValue": None}
    return ds, encoding


def _create(path: Path, ds: xr.Dataset, encoding: dict) -> bool:
    """Write the template under a hidden name and rename it to `path`; False where another job
    got there first (the rename of a directory onto an existing store fails, atomically)."""
    tmp = temporary_directory_name(path)
    try:
        tmp.mkdir()  # honours the umask, unlike mkdtemp
        ds.to_zarr(tmp, mode="w", compute=False, encoding=encoding, consolidated=True, **_zarr_format())
        try:
            os.rename(tmp, path)
        except OSError:
            if path.exists():
                return False
            raise
        return True
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}; choose another output path") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def open_sample_store(path: str | os.PathLike, template: xr.Dataset, *, n: int, shard: Shard, request: dict,
                      global_attrs: dict, batch_size: int, overwrite: bool = False, resume: bool = False,
                      history: str | None = None) -> SampleStore:
    """Create (or join) the store of a run of `n` samples and return the view of `shard`.

    `template`: the data variables (sample, y, x) with 0 samples, the spatial coordinates and the
    variable attributes; `request`: the run's settings (without the shard), which every job that
    joins the store must share. Without `resume`, the shard's block must be unwritten; with it,
    writing continues at the first unwritten sample of the block."""
    path = Path(path)
    if path.exists() and overwrite:
        if shard.count > 1:
            raise UserError(f"--overwrite would delete {path} while other shards write it; delete the store "
                            f"before starting the shards, and run them without --overwrite")
        remove_store(path)
    if not path.exists():
        if resume:
            raise UserError(f"cannot resume: {path} does not exist; run without --resume to start it")
        check_writable(path)
        ds, encoding = _template_store(template, n, chunk_length(n, shard.count, batch_size))
        ds.attrs = cf_global_attrs(ds, attrs=global_attrs, history=history)
        ds.attrs.update({STATUS: "incomplete", WRITTEN: 0, REQUESTED: int(n), FIRST: 0, SHARD_COUNT: shard.count,
                         REQUEST: json.dumps(request, sort_keys=True)})
        created = _create(path, ds, encoding)  # else another job made it first: a shard joins that one
        if not created and shard.count == 1:
            raise UserError(f"{path} was created by another job meanwhile; give this run another -o")
    elif shard.count == 1 and not resume:
        raise UserError(f"{path} already exists; pass --resume to finish it or --overwrite to replace it")
    return _join(path, shard, n, request, resume)


def remove_store(path: Path) -> None:
    """Delete the store (or file) `path` for --overwrite; refuse a directory that is not a store."""
    if not path.exists():
        return
    if path.is_dir() and not any((path / marker).exists() for marker in (".zgroup", "zarr.json")):
        raise UserError(f"{path} is a directory but not a zarr store; choose another output path")
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def shard_complete(path: Path, shard: Shard) -> bool:
    """Whether every sample of `shard`'s block of the store is written."""
    header = read_store(path)
    start, stop = shard.block(header.n)
    return bool(header.flags[start:stop].all())


def _join(path: Path, shard: Shard, n: int, request: dict, resume: bool) -> SampleStore:
    header = read_store(path)
    changed = differing_settings(header.request, request)
    if changed:
        raise UserError(f"{path} holds another run (different {', '.join(changed)}); repeat that run's command, "
                        f"or write to another -o")
    if shard.count != header.shard_count:  # another split would write samples twice and share chunks
        raise UserError(f"{path} is laid out for {header.shard_count} shard(s), not {shard.count}; "
                        + (f"use --shard I/{header.shard_count}" if header.shard_count > 1 else "run without --shard"))
    start, stop = shard.block(n)
    flags = header.flags[start:stop]
    written = int(np.argmin(flags)) if not flags.all() else flags.size
    if resume and written == flags.size:
        if not header.flags.all() or header.attrs[STATUS] == "complete":
            raise UserError(f"shard {shard} of {path} is already complete ({flags.size} samples); nothing to resume")
        # every sample is written, but the job that wrote the last was killed before it marked the
        # store complete: finishing the run is marking it (with the attributes the jobs kept)
        _mark_complete(path, {})
    if not resume and flags.any():
        raise UserError(f"shard {shard} of {path} already holds {int(flags.sum())} of its {flags.size} samples; "
                        f"pass --resume to finish it")
    variables = header.variables
    with _ignoring_other_writers(), xr.open_zarr(path) as ds:
        dims = tuple(ds[variables[0]].dims[1:])
    return SampleStore(path, variables, dims, stop - start, written, start, n)


def append_store_samples(store: SampleStore, fields: dict[str, np.ndarray], attrs: dict | None = None) -> None:
    """Write a batch (each value (b, H, W)) after the samples of the shard already written; then
    flag them written; the job that completes the store marks it complete (with `attrs`)."""
    b = next(iter(fields.values())).shape[0]
    start, stop = store.first + store.written, store.first + store.written + b
    if store.written + b > store.requested:
        raise ValueError(f"batch ends at sample {stop} beyond the shard's last sample {store.first + store.requested - 1}")
    region = {"sample": slice(start, stop)}
    data = xr.Dataset({name: (("sample", *store.dims), np.asarray(fields[name], dtype=np.float32))
                       for name in store.variables})
    # fields first, flags after: a job killed in between leaves the samples unflagged, to be redrawn
    data.to_zarr(store.path, region=region, consolidated=False)
    xr.Dataset({WRITTEN_FLAG: ("sample", np.ones(b, np.uint8))}).to_zarr(store.path, region=region, consolidated=False)
    store.written += b
    if attrs:
        _keep_for_completion(store.path, attrs)
    if store.complete:
        header = read_store(store.path)
        if header.flags.all():
            _mark_complete(store.path, attrs or {})


def merge_store(path: str | os.PathLike, output: str | os.PathLike | None = None, *, overwrite: bool = False,
                block_samples: int | None = None) -> Path:
    """Check that every sample of the store `path` is written (see `check_store`) and, given
    `output`, write the run to that CF NetCDF file block by block (equal to a one-job run's file)."""
    from sciscore.fields.sample_file import append_samples, create_sample_file

    if output is not None and is_store(output):
        raise UserError(f"-o {output}: merge writes one NetCDF file; give a name ending in .nc")
    header = check_store(path)
    if output is None:
        return header.path
    output = Path(output)
    with xr.open_zarr(header.path) as ds:
        template = ds[list(header.variables)].isel(sample=slice(0, 0)).load()
        attrs = {k: v for k, v in ds.attrs.items() if k not in STORE_ATTRS and k != "Conventions"}
        template.attrs = {}
        for variable in template.variables.values():
            variable.encoding = {}
        merged = create_sample_file(output, template, requested=header.n, request=header.request, global_attrs=attrs,
                                    chunk_samples=header.chunk_samples, overwrite=overwrite)
        block = int(block_samples or header.chunk_samples)
        for start in range(0, header.n, block):
            stop = min(header.n, start + block)
            append_samples(merged, {v: ds[v][start:stop].values for v in header.variables})
    return merged.path
