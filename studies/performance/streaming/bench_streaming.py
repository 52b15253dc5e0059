"""Stream a NetCDF file several times larger than the memory used through `FieldDataset`.

Writes (once) a file of `--gigabytes` of float32 fields with `write_fields` (zlib, chunked along
samples), then in a fresh process iterates one epoch through `FieldDataset` + `ChunkShuffleSampler`
+ a torch `DataLoader` and reports samples/s and peak resident memory. The baseline, in the same
run, is a plain netCDF4 read of the same chunks in storage order (the decompression/disk bound):
ratio = sciscore samples/s ÷ raw samples/s.

    python studies/performance/streaming/bench_streaming.py --gigabytes 4 --path /tmp/stream.nc
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def make_file(path: Path, gigabytes: float, resolution: int, chunk: int) -> None:
    import dask.array as da
    import xarray as xr

    from sciscore.fields import write_fields

    per_sample = 2 * resolution * resolution * 4
    n = int(gigabytes * 2**30 // per_sample)
    shape, chunks = (n, resolution, resolution), (chunk, resolution, resolution)
    # White noise is the worst case for zlib (incompressible), so this bounds the decompression cost.
    a = da.random.default_rng(0).standard_normal(shape, chunks=chunks, dtype=np.float32)
    b = da.random.default_rng(1).standard_normal(shape, chunks=chunks, dtype=np.float32)
    ds = xr.Dataset({"supersaturation": (("sample", "y", "x"), a), "vorticity": (("sample", "y", "x"), b)})
    write_fields(ds, path, overwrite=True, chunk_samples=chunk)


def stream(path: str, batch_size: int, chunk: int, mode: str) -> dict:
    import torch

    from sciscore.fields import ChunkShuffleSampler, FieldDataset, fit_normalizer, open_fields

    torch.set_num_threads(2)
    start = time.perf_counter()
    n = 0
    if mode == "raw":
        import netCDF4

        with netCDF4.Dataset(path) as nc:
            total = nc.dimensions["sample"].size
            for i in range(0, total, chunk):
                block = np.stack([nc["supersaturation"][i:i + chunk], nc["vorticity"][i:i + chunk]], axis=1)
                n += block.shape[0]
    else:
        ds = open_fields(path, chunk_samples=chunk)
        variables = ["supersaturation", "vorticity"]
        normalizer = fit_normalizer(ds.isel(sample=slice(0, 4 * chunk)), variables, "standard")
        dataset = FieldDataset(ds, variables, normalizer, max_cached_chunks=2)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=ChunkShuffleSampler(dataset, 0))
        for batch in loader:
            n += batch.shape[0]
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "samples": n, "seconds": seconds, "samples_per_s": n / seconds, "peak_rss_mib": peak_mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gigabytes", type=float, default=4.0)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=64, help="samples per storage chunk")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--path", default="/tmp/sciscore-stream.nc")
    parser.add_argument("--worker", choices=["raw", "dataset"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(stream(args.path, args.batch_size, args.chunk, args.worker)))
        return
    path = Path(args.path)
    if not path.exists():
        t0 = time.perf_counter()
        make_file(path, args.gigabytes, args.resolution, args.chunk)
        print(f"wrote {path} in {time.perf_counter() - t0:.0f} s")
    size_mib = path.stat().st_size / 2**20
    results = {}
    for mode in ("raw", "dataset"):
        out = subprocess.run([sys.executable, __file__, "--worker", mode, "--path", str(path), "--chunk",
                              str(args.chunk), "--batch-size", str(args.batch_size)],
                             capture_output=True, text=True, check=True)
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    raw, ds = results["raw"], results["dataset"]
    print(f"file: {size_mib:.0f} MiB on disk, {raw['samples']} samples of 2x{args.resolution}^2 float32")
    for r in (raw, ds):
        print(f"{r['mode']:8s} {r['samples_per_s']:8.1f} samples/s  peak RSS {r['peak_rss_mib']:7.0f} MiB  ({r['seconds']:.1f} s)")
    print(f"throughput ratio dataset/raw = {ds['samples_per_s'] / raw['samples_per_s']:.2f}; "
          f"file size / dataset peak RSS = {size_mib / ds['peak_rss_mib']:.1f}")


if __name__ == "__main__":
    main()
