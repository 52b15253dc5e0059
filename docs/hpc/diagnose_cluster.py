"""Diagnostics of a large generated set on a SLURM cluster with dask-jobqueue.

    python docs/hpc/diagnose_cluster.py --reference data/*.nc --samples generated.nc -o report/ --jobs 4

starts `--jobs` SLURM jobs of dask workers (dask_jobqueue.SLURMCluster), runs `sciscore diagnose`'s
streaming statistics on them, and writes the report. Where there is no SLURM (no `sbatch` on the
PATH) or dask-jobqueue is not installed, it uses a LocalCluster on this machine instead. The same
is available as `sciscore diagnose ... --scheduler ADDRESS` for a cluster started otherwise.
"""

import argparse
import shutil


def make_cluster(jobs: int, cores: int, memory: str, walltime: str, dry_run: bool = False):
    """A SLURMCluster of `jobs` worker jobs, or a LocalCluster where there is no SLURM."""
    slurm = shutil.which("sbatch") is not None
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        slurm = False
    if dry_run:
        return "SLURMCluster" if slurm else "LocalCluster"
    if slurm:
        from dask_jobqueue import SLURMCluster

        cluster = SLURMCluster(cores=cores, processes=1, memory=memory, walltime=walltime)
        cluster.scale(jobs=jobs)
        return cluster
    from distributed import LocalCluster

    return LocalCluster()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", nargs="+", required=True)
    parser.add_argument("--samples", nargs="+", required=True)
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--jobs", type=int, default=4, help="SLURM jobs of dask workers")
    parser.add_argument("--cores", type=int, default=8, help="cores per job")
    parser.add_argument("--memory", default="32GB", help="memory per job")
    parser.add_argument("--walltime", default="01:00:00")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="say which cluster would be used and stop")
    args = parser.parse_args(argv)
    if args.dry_run:
        print(f"cluster: {make_cluster(args.jobs, args.cores, args.memory, args.walltime, dry_run=True)}")
        return 0
    from distributed import Client

    from sciscore.diagnostics.report import diagnose

    with make_cluster(args.jobs, args.cores, args.memory, args.walltime) as cluster, Client(cluster) as client:
        print(f"dask dashboard: {client.dashboard_link}")
        comparison = diagnose(args.reference, args.samples, args.output, overwrite=args.overwrite, progress=False)
    print(f"report written to {args.output} ({comparison.attrs['variables']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
