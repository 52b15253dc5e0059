"""A tqdm progress bar over the tasks of a dask computation."""

from __future__ import annotations

import dask
import xarray as xr
from dask.callbacks import Callback
from tqdm.auto import tqdm


# seconds before the bar appears: a computation shorter than that shows no bar at all
BAR_DELAY_SECONDS = 1.0


class _TqdmCallback(Callback):
    def __init__(self, description: str):
        super().__init__()
        self._description = description
        self._bar = None

    def _start_state(self, dsk, state):
        total = sum(len(state[key]) for key in ("ready", "waiting", "running", "finished"))
        # A transient bar, erased when the computation ends or fails. The data are validated as
        # they stream through the pass (a NaN found in the last chunk raises at the end of it; a
        # separate pass before would read everything twice), so a bad file's error line comes after
        # the bar: it must leave nothing behind. tqdm's disable=None draws it only where it can be
        # erased, on a terminal (and as a notebook widget); in a log file or a pipe the bar's text
        # could not be taken back, and none is written.
        self._bar = tqdm(total=total, desc=self._description, unit="task", leave=False, delay=BAR_DELAY_SECONDS,
                         disable=None)

    def _posttask(self, key, result, dsk, state, worker_id):
        self._bar.update(1)

    def _finish(self, dsk, state, errored):
        if self._bar is not None:
            self._bar.close()


def _flatten(objects) -> tuple[list, list]:
    """Datasets become their DataArrays: `dask.compute` of a Dataset whose variables share
    intermediate results fails with "Missing dependency" (dask 2026.8 with xarray 2026.9; the
    graph optimisation loses shared dependencies, as in pydata/xarray#11329 and dask/dask#11901)."""
    flat, layout = [], []
    for obj in objects:
        if isinstance(obj, xr.Dataset):
            names = list(obj.data_vars)
            layout.append((obj, names, len(flat)))
            flat.extend(obj[name] for name in names)
        else:
            layout.append((None, None, len(flat)))
            flat.append(obj)
    return flat, layout


def _unflatten(results, layout) -> tuple:
    out = []
    for template, names, start in layout:
        if template is None:
            out.append(results[start])
        else:
            data = {name: results[start + i] for i, name in enumerate(names)}
            out.append(xr.Dataset(data, attrs=template.attrs))
    return tuple(out)


def compute(*objects, description: str = "diagnostics", progress: bool = True):
    """`dask.compute(*objects)` on the local scheduler, with a transient tqdm bar on a terminal
    unless `progress` is False."""
    flat, layout = _flatten(objects)
    if progress:
        with _TqdmCallback(description):
            results = dask.compute(*flat)
    else:
        results = dask.compute(*flat)
    return _unflatten(results, layout)
