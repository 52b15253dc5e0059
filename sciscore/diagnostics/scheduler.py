"""Run the streaming diagnostics on a `dask.distributed` cluster (the `hpc` extra).

`dask_scheduler("local")` starts a LocalCluster on this machine (one worker process per core
group, as dask chooses) and `dask_scheduler("tcp://host:8786")` connects to a running scheduler
(e.g. one started by dask-jobqueue's SLURMCluster, see docs/hpc.md). While the context is open,
every `dask.compute` of the diagnostics runs on that cluster; the task graphs are the same as on
the local scheduler, so the results are the same numbers.
"""

from __future__ import annotations

from contextlib import contextmanager

from sciscore.errors import UserError

CONNECT_TIMEOUT = "30s"


@contextmanager
def dask_scheduler(spec: str | None, **cluster_options):
    """A context in which dask computes on the cluster `spec`: None (the local threaded scheduler,
    nothing started), "local" (a LocalCluster, `cluster_options` passed to it) or a scheduler
    address."""
    if spec is None:
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UserError("--scheduler needs dask.distributed; install it with: pip install 'sciscore[hpc]'") from None
    if spec == "local":
        with LocalCluster(**cluster_options) as cluster, Client(cluster) as client:
            yield client
        return
    if "://" not in spec and ":" not in spec:
        raise UserError(f"--scheduler must be 'local' or a scheduler address like tcp://host:8786, got {spec!r}")
    try:
        client = Client(spec, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as error:
        raise UserError(f"cannot reach the dask scheduler at {spec} ({error}); check the address, "
                        f"or use --scheduler local") from None
    with client:
        yield client
