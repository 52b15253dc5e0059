"""A NetCDF file of samples written batch by batch and resumable (`sciscore generate`, `sciscore simulate`).

The file exists at its final path from the first batch on, always valid NetCDF, with the global
attribute `sciscore_status` = "incomplete" and `sciscore_samples_written` = k until the last batch
is written; then the status becomes "complete". A run interrupted by Ctrl-C or SIGTERM leaves a
file holding its finished samples; `resume_sample_file` reopens it, checks that it was written by
the same command (`sciscore_writer`; files without it are `generate`'s) with the same request
(`sciscore_request`, a JSON string), and writing continues at sample k.

A shard of a run (`sciscore generate --shard I/N`) is such a file whose samples are the global
indices `sciscore_first_sample` .. `sciscore_first_sample + sciscore_samples_requested - 1`; the
`sample` coordinate holds the global index.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

from sciscore.errors import UserError
from sciscore.fields.io import (  # noqa: F401  (STATUS, WRITTEN, REQUESTED, WRITER re-exported)
    REQUESTED, STATUS, WRITTEN, cf_encoding, cf_global_attrs, check_writable, temporary_file, WRITER, written_by)

REQUEST = "sciscore_request"
FIRST = "sciscore_first_sample"


@dataclass
class SampleFile:
    """An open-for-append sample file: `written` of `requested` samples are on disk; the first
    has global sample index `first`."""

    path: Path
    variables: tuple[str, ...]
    requested: int
    written: int
    first: int = 0

    @property
    def complete(self) -> bool:
        return self.written >= self.requested


def create_sample_file(
    path: str | os.PathLike,
    template: xr.Dataset,
    *,
    requested: int,
    request: dict,
    global_attrs: dict,
    chunk_samples: int,
    overwrite: bool = False,
    first: int = 0,
    history: str | None = None,
    command: str = "generate",
) -> SampleFile:
    """Create an empty sample file from `template` (data variables (sample, y, x) with 0 samples,
    the spatial coordinates, any further coordinates along `sample`, and the variable attributes),
    marked incomplete and written by `sciscore <command>`; its samples will be the global indices
    first .. first + requested - 1. `history`: the new CF history line (default:
    `sciscore.provenance.history_line()`)."""
    path = check_writable(path, overwrite)
    _check_free_space(path, template, requested)
    ds = template.copy()
    ds.attrs = cf_global_attrs(ds, attrs=global_attrs, history=history)
    ds.attrs.update({STATUS: "incomplete", WRITTEN: 0, REQUESTED: int(requested), REQUEST: json.dumps(request, sort_keys=True),
                     FIRST: int(first), WRITER: command})
    encoding = cf_encoding(ds, None)
    for name in ds.data_vars:
        encoding[name]["chunksizes"] = (max(1, chunk_samples), *ds[name].shape[1:])
    # The empty file is made under a temporary name, so the target never holds a half-made header.
    tmp = temporary_file(path)
    try:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", unlimited_dims=["sample"], encoding=encoding)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return SampleFile(path, tuple(ds.data_vars), int(requested), 0, int(first))


def _check_free_space(path: Path, template: xr.Dataset, requested: int) -> None:
    """Refuse a run whose output cannot fit on its file system even if zlib halved it (turbulent
    float32 fields compress far less), before any work: otherwise it fails hours later."""
    per_sample = sum(4 * int(np.prod(template[name].shape[1:])) for name in template.data_vars)
    needed = int(requested) * per_sample
    free = shutil.disk_usage(path.parent if str(path.parent) else ".").free
    if needed / 2 > free:
        raise UserError(f"cannot write {path}: {requested} samples need about {needed / 1e9:.3g} GB "
                        f"(float32, before compression) and its file system has {free / 1e9:.3g} GB free; "
                        f"ask for fewer samples or choose another output path")


@dataclass(frozen=True)
class SampleHeader:
    """What a sample file (of `sciscore generate` or `simulate`) says about itself: its global attributes, its
    sample variables (sample, y, x) and their chunk length along samples."""

    path: Path
    attrs: dict
    variables: tuple[str, ...]
    chunk_samples: int

    @property
    def generated(self) -> bool:
        """Whether the file carries the progress attributes of a sample file."""
        return STATUS in self.attrs and REQUEST in self.attrs

    @property
    def request(self) -> dict:
        return json.loads(self.attrs[REQUEST])

    @property
    def requested(self) -> int:
        return int(self.attrs[REQUESTED])

    @property
    def written(self) -> int:
        return int(self.attrs[WRITTEN])

    @property
    def first(self) -> int:
        return int(self.attrs.get(FIRST, 0))


def read_header(path: str | os.PathLike) -> SampleHeader:
    """Read the header of a sample file. Raises FileNotFoundError where `path` does not exist and
    OSError where it is not NetCDF; the callers phrase these for their command."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(path)
    with netCDF4.Dataset(path) as nc:
        attrs = {name: nc.getncattr(name) for name in nc.ncattrs()}
        variables = [v for v in nc.variables.values() if v.dimensions[:1] == ("sample",) and v.ndim == 3]
        chunking = variables[0].chunking() if variables else None
        names = tuple(v.name for v in variables)
    chunk = int(chunking[0]) if isinstance(chunking, list) else 64
    return SampleHeader(path, attrs, names, chunk)


def differing_settings(original: dict, request: dict) -> list[str]:
    """The keys (sorted) whose values differ between a recorded request and `request`, compared
    as recorded (through JSON, so a tuple equals the list it was saved as); empty where they match."""
    request = json.loads(json.dumps(request, sort_keys=True))
    return sorted(k for k in set(original) | set(request) if original.get(k) != request.get(k))


def resume_sample_file(path: str | os.PathLike, request: dict, command: str = "generate") -> SampleFile:
    """Reopen an incomplete sample file of `sciscore <command>` for `--resume`; the request must
    match the original."""
    try:
        header = read_header(path)
    except FileNotFoundError:
        raise UserError(f"cannot resume: {path} does not exist; run without --resume to start it") from None
    except OSError as error:
        raise UserError(f"cannot resume: {path} is not a readable NetCDF file ({error}); start again without --resume") from None
    if not header.generated or written_by(header.attrs) != command:
        raise UserError(f"cannot resume: {path} was not written by 'sciscore {command}'")
    if header.attrs[STATUS] == "complete":
        raise UserError(f"{path} is already complete ({header.attrs[REQUESTED]} samples); nothing to resume")
    changed = differing_settings(header.request, request)
    if changed:
        raise UserError(
            f"cannot resume {path}: it was started with different settings ({', '.join(changed)}); "
            f"repeat the original command with --resume, or start a new file"
        )
    return SampleFile(Path(path), header.variables, header.requested, header.written, header.first)


def append_samples(sample_file: SampleFile, fields: dict[str, np.ndarray], attrs: dict | None = None,
                   coords: dict[str, np.ndarray] | None = None) -> None:
    """Write a batch (each value of `fields` (b, H, W), of `coords` (b,): coordinates along
    `sample` other than `sample` itself) after the samples already written, update the progress
    attributes (and `attrs`), and close the file so that it is valid on disk."""
    b = next(iter(fields.values())).shape[0]
    start, stop = sample_file.written, sample_file.written + b
    if stop > sample_file.requested:
        raise ValueError(f"batch ends at sample {stop} beyond the {sample_file.requested} requested")
    with netCDF4.Dataset(sample_file.path, "a") as nc:
        for name in sample_file.variables:
            nc[name][start:stop] = np.asarray(fields[name], dtype=np.float32)
        nc["sample"][start:stop] = np.arange(sample_file.first + start, sample_file.first + stop)
        for name, values in (coords or {}).items():
            nc[name][start:stop] = np.asarray(values)
        for name, value in (attrs or {}).items():
            nc.setncattr(name, value)
        nc.setncattr(WRITTEN, np.int64(stop))
        if stop == sample_file.requested:
            nc.setncattr(STATUS, "complete")
    sample_file.written = stop
