"""Open, validate and write NetCDF/zarr field datasets.

`open_fields` is lazy: it reads metadata only, so the data stay on disk as dask chunks along the
sample dimension. `check_finite` reads chunk by chunk. `write_fields` writes CF-1.10 NetCDF
atomically (temporary file, then rename).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Sequence

import dask
import numpy as np
import xarray as xr

from sciscore import __version__
from sciscore.errors import UserError
from sciscore.fields.dims import FieldDims, field_dims
from sciscore.fields.sample_shards import WRITTEN_FLAG, describe_missing, shard_count, written_flags
from sciscore.provenance import history_line, software_attrs

DEFAULT_CHUNK_SAMPLES = 64
CF_CONVENTIONS = "CF-1.10"


def _expand_paths(paths) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    expanded: list[Path] = []
    for item in paths:
        text = os.fspath(item)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise UserError(f"no file matches {text!r}; check the pattern")
            expanded.extend(Path(m) for m in matches)
        else:
            expanded.append(Path(text))
    if not expanded:
        raise UserError("no input files were given")
    for path in expanded:
        if not path.exists():
            raise UserError(f"{path}: no such file or directory")
    return expanded


def _is_zarr(path: Path) -> bool:
    return path.is_dir() or path.suffix == ".zarr"


def _open_one(path: Path, engine: str | None) -> xr.Dataset:
    try:
        if _is_zarr(path):
            return xr.open_zarr(path, chunks={})
        return xr.open_dataset(path, engine=engine, chunks={})
    except Exception as error:  # the backends raise many types for a file they cannot read
        kind = "zarr store" if _is_zarr(path) else "NetCDF file"
        raise UserError(
            f"{path}: cannot be read as a {kind} ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no detail'}); "
            f"give a NetCDF (.nc) file or a zarr store"
        ) from None


def _select(ds: xr.Dataset, variables: Sequence[str] | None, where: str) -> xr.Dataset:
    if variables is None:
        variables = [name for name in ds.data_vars if len(ds[name].dims) >= 2]
        if not variables:
            raise UserError(f"{where} holds no data variable with two or more dimensions")
    else:
        variables = [variables] if isinstance(variables, str) else list(variables)
        missing = [v for v in variables if v not in ds.data_vars]
        if missing:
            raise UserError(
                f"variable {', '.join(map(repr, missing))} not found in {where}; "
                f"available: {', '.join(map(str, ds.data_vars)) or 'none'}"
            )
    return ds[list(variables)]


def _check_layout(ds: xr.Dataset, dims: FieldDims, where: str) -> None:
    for name, da in ds.data_vars.items():
        # text (e.g. a zarr variable stored with an object codec such as VLenUTF8) would fail deep
        # in the first computation, with a traceback from zarr's reader threads
        if da.dtype.kind not in "fiu":
            raise UserError(
                f"variable {name!r} in {where} holds {_kind(da.dtype)}, not real numbers; a field must be "
                f"float or integer: convert it (e.g. ds[{str(name)!r}].astype('float32')) or choose other variables with --variable"
            )
        if set(da.dims) != set(dims.all) or da.ndim != 3:
            raise UserError(
                f"variable {name!r} in {where} has dimensions {da.dims}; expected "
                f"({dims.sample}, {dims.y}, {dims.x}): one 2D field ({dims.y}, {dims.x}) per sample"
            )
    if ds.sizes[dims.sample] == 0:
        raise UserError(f"{where} is empty: the sample dimension {dims.sample!r} has length 0")
    if ds.sizes[dims.y] < 2 or ds.sizes[dims.x] < 2:
        raise UserError(
            f"{where} is not 2D in space: {dims.y}={ds.sizes[dims.y]}, {dims.x}={ds.sizes[dims.x]}"
        )


def _kind(dtype) -> str:
    kinds = {"O": "Python objects", "U": "text", "S": "bytes", "T": "text", "b": "booleans", "c": "complex numbers",
             "M": "dates", "m": "time spans", "V": "raw records"}
    return f"{kinds.get(dtype.kind, 'values')} (dtype {dtype})"


# Global attributes of a file written batch by batch (`sciscore generate`, `sciscore simulate`; see
# `sciscore.fields.sample_file`): "incomplete" until done, and the command that writes it.
STATUS = "sciscore_status"
WRITTEN = "sciscore_samples_written"
REQUESTED = "sciscore_samples_requested"
WRITER = "sciscore_writer"


def written_by(attrs: dict) -> str:
    """The sciscore command that wrote a batch-by-batch file with global attributes `attrs`
    (files from before the attribute existed are `generate`'s)."""
    return str(attrs.get(WRITER, "generate"))


def check_complete(ds: xr.Dataset, where: str) -> None:
    """Refuse a file that `sciscore generate` or `sciscore simulate` marked incomplete (it was
    interrupted): analysing or training on part of a run without knowing it would mislead."""
    if ds.attrs.get(STATUS) == "incomplete":
        if WRITTEN_FLAG in ds:  # a zarr store that shards write in parallel: its flags tell what is missing
            problem = describe_missing(written_flags(ds), shard_count(ds.attrs), where)
            if problem:
                raise UserError(problem)
            return
        written, requested = ds.attrs.get(WRITTEN, "?"), ds.attrs.get(REQUESTED, "?")
        command = written_by(ds.attrs)
        raise UserError(f"{where} is incomplete: its {command} run was interrupted after {written} of {requested} "
                        f"samples; finish it with 'sciscore {command} --resume -o {where}' and the same options")


def open_fields(
    paths,
    variables: Sequence[str] | str | None = None,
    *,
    sample_dim: str | None = None,
    spatial_dims: Sequence[str] | None = None,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
    engine: str | None = None,
    check_finite_values: bool = False,
    allow_incomplete: bool = False,
) -> xr.Dataset:
    """Open one file, a glob or a list of NetCDF files (or zarr stores) as a lazy `xr.Dataset`.

    The data are dask arrays chunked `chunk_samples` along the sample dimension and whole in space;
    only metadata are read. Several files are concatenated along the sample dimension and must
    agree in variables and spatial shape. Every selected variable must be (sample, y, x) with the
    dimension names recognised by `field_dims` (or given). Set `check_finite_values=True` to also
    scan the data for NaN/inf (chunk by chunk; see `check_finite`). A file marked incomplete by an
    interrupted `sciscore generate` raises `UserError` unless `allow_incomplete`.
    """
    files = _expand_paths(paths)
    parts = []
    for path in files:
        ds = _open_one(path, engine)
        if not allow_incomplete:
            check_complete(ds, str(path))
        ds = _select(ds, variables, str(path))
        dims = field_dims(ds, sample_dim, spatial_dims)
        _check_layout(ds, dims, str(path))
        parts.append((path, ds, dims))
    first_path, first, dims = parts[0]
    for path, ds, other in parts[1:]:
        if other != dims or list(ds.data_vars) != list(first.data_vars):
            raise UserError(
                f"{path} does not match {first_path}: variables {list(ds.data_vars)} with dims {other.all} "
                f"vs {list(first.data_vars)} with dims {dims.all}"
            )
        shape, expected = (ds.sizes[dims.y], ds.sizes[dims.x]), (first.sizes[dims.y], first.sizes[dims.x])
        if shape != expected:
            raise UserError(
                f"{path} has spatial shape {shape} but {first_path} has {expected}; all files must share one grid"
            )
    if len(parts) == 1:
        ds = first
    else:
        ds = xr.concat([p[1] for p in parts], dim=dims.sample, data_vars="all", coords="minimal",
                       compat="override", join="override", combine_attrs="override")
    ds = ds.chunk({dims.sample: chunk_samples, dims.y: -1, dims.x: -1})
    if check_finite_values:
        check_finite(ds, dims)
    return ds


def check_finite(ds: xr.Dataset, dims: FieldDims | None = None) -> None:
    """Raise `UserError` naming the count and the first location of non-finite values.

    Reads one chunk along the sample dimension at a time, so memory stays bounded.
    """
    dims = dims or field_dims(ds)
    n = ds.sizes[dims.sample]
    for name, da in ds.data_vars.items():
        da = da.transpose(*dims.all)
        chunks = da.chunks[0] if da.chunks else (n,)
        count, first = 0, None
        start = 0
        for size in chunks:
            block = np.asarray(da.isel({dims.sample: slice(start, start + size)}).values)
            bad = ~np.isfinite(block)
            nbad = int(bad.sum())
            if nbad and first is None:
                i, j, k = np.argwhere(bad)[0]
                first = (start + int(i), int(j), int(k))
            count += nbad
            start += size
        if count:
            i, j, k = first
            raise UserError(
                f"variable {name!r} has {count} non-finite value(s) (NaN or inf); the first at "
                f"{dims.sample}={i}, {dims.y}={j}, {dims.x}={k}; remove or fill those samples"
            )


def check_writable(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Check that `path` can be written (parent exists and is writable; no silent overwrite)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a directory; give a file name for the output")
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists; pass --overwrite to replace it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: the directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {path}: the directory {parent} is not writable; choose another output path")
    _probe(parent, path)
    return path


def _probe(directory: Path, target: Path) -> None:
    """Create and remove a file in `directory`: file systems such as /proc or a read-only mount
    pass the permission check but refuse files, and that must show before hours of work."""
    try:
        fd, name = tempfile.mkstemp(prefix=".sciscore-probe-", dir=directory)
    except OSError as error:
        raise UserError(f"cannot write {target}: {directory} does not accept new files ({error.strerror}); "
                        f"choose another output path") from None
    os.close(fd)
    os.unlink(name)


def _umask() -> int:
    """The process umask, read without changing it where Linux reports it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: the only portable way is to set it and put it back
    os.umask(mask)
    return mask


def _temporary_prefix(path: Path) -> str:
    """The name prefix of this process's temporaries for `path`: hidden, with the host and the PID
    so that a later run can tell the leftovers of a killed process from a live writer's files."""
    return f".{path.name}.{socket.gethostname()}.{os.getpid()}."


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists under another user
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporaries for `path` (``.NAME.HOST.PID.*.part``, files or directories) left by
    processes of this host that no longer run (a SIGKILL or a node failure skips every clean-up).
    Another host's temporaries, and a live process's, are left alone. Returns what was removed."""
    path = Path(path)
    removed = []
    host = socket.gethostname()
    prefix = f".{path.name}."
    for candidate in path.parent.glob(f"{glob.escape(prefix)}*.part"):
        parts = candidate.name[len(prefix):].rsplit(".", 3)  # host (may hold dots), pid, random, "part"
        if len(parts) != 4 or parts[0] != host or not parts[1].isdigit() or _process_alive(int(parts[1])):
            continue
        if candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate, ignore_errors=True)
        else:
            candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return removed


def temporary_file(path: Path) -> str:
    """A new empty file next to `path` (hidden, ``.part``) to be renamed onto `path` when complete,
    with the permissions of an ordinary new file (0666 less the umask, e.g. 0644), not mkstemp's 0600,
    so that the group can read the result on a shared cluster. Leftovers of killed writers of `path`
    are removed first (`remove_stale_temporaries`)."""
    remove_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".part", dir=path.parent)
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror}; choose another output path") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    return tmp


def temporary_directory_name(path: Path) -> Path:
    """A fresh name next to `path` (hidden, ``.part``) for a directory to be renamed onto `path` when
    complete (a zarr store); leftovers of killed writers of `path` are removed first."""
    remove_stale_temporaries(path)
    return path.with_name(f"{_temporary_prefix(path)}{uuid.uuid4().hex}.part")


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Check that the directory `path` exists and is writable, or can be created (its nearest
    existing ancestor is a writable directory)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} is a file; give a directory for the output")
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"cannot create {path}: {ancestor} is a file, not a directory; choose another output path")
    if not os.access(ancestor, os.W_OK):
        raise UserError(f"cannot write {path}: {ancestor} is not writable; choose another output path")
    _probe(ancestor, path)
    return path


def cf_encoding(ds: xr.Dataset, dims: FieldDims | None, chunk_samples: int = DEFAULT_CHUNK_SAMPLES) -> dict:
    """NetCDF encoding: float32 + zlib data variables chunked along samples; no fill on coordinates."""
    encoding: dict = {}
    for name, da in ds.data_vars.items():
        enc = {"dtype": "float32", "zlib": True, "complevel": 4, "_FillValue": None}
        if dims is not None and set(dims.all) <= set(da.dims):
            sizes = [min(chunk_samples, da.sizes[d]) if d == dims.sample else da.sizes[d] for d in da.dims]
            enc["chunksizes"] = tuple(max(1, s) for s in sizes)
        encoding[name] = enc
    for name in ds.coords:
        encoding[name] = {"_FillValue": None}
    return encoding


def cf_global_attrs(ds: xr.Dataset, *, title=None, source=None, history=None, attrs=None) -> dict:
    """Global attributes: CF-1.10 `Conventions`, `title`, `source`, `history` (new line first; the
    invocation, see `sciscore.provenance`), and the software versions and git commit."""
    out = dict(ds.attrs)
    out.update(attrs or {})
    out.update(software_attrs())
    out["Conventions"] = CF_CONVENTIONS
    out["title"] = title or out.get("title") or "sciscore fields"
    out["source"] = source or out.get("source") or f"sciscore {__version__}"
    previous = out.get("history")
    line = history or history_line()
    out["history"] = f"{line}\n{previous}" if previous else line
    return out


def write_fields(
    ds: xr.Dataset,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    title: str | None = None,
    source: str | None = None,
    history: str | None = None,
    attrs: dict | None = None,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
) -> Path:
    """Write `ds` to NetCDF-4 with CF-1.10 metadata, float32, zlib, chunked along samples.

    Variable attributes (`units`, `long_name`, ...) are carried from `ds`. The file is written to a
    temporary name in the target directory and renamed at the end, so an interrupted or failed
    write never leaves a file at `path`. Dask-backed data are streamed chunk by chunk.
    """
    path = check_writable(path, overwrite)
    try:
        dims = field_dims(ds)
    except UserError:
        dims = None
    out = ds.copy()
    out.attrs = cf_global_attrs(ds, title=title, source=source, history=history, attrs=attrs)
    for name in out.data_vars:
        out[name].attrs.setdefault("long_name", str(name).replace("_", " "))
        out[name].attrs.setdefault("units", "1")
    tmp = temporary_file(path)
    try:
        # synchronous: with dask's thread pool, tasks still running after one fails can reopen the
        # file by name (xarray's file manager) and re-create it after the clean-up below
        with dask.config.set(scheduler="synchronous"):
            out.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=cf_encoding(out, dims, chunk_samples))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
