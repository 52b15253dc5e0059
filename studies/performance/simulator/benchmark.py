"""Benchmark: time of one simulator step divided by the time of the FFTs that step must do.

For each resolution N the step of a `Problem` (ETDRK4, split condensation, forcing on, `members`
ensemble members) is timed, and so are the torch.fft calls of the same shapes that the step makes:
per RHS evaluation one irfft2 of (B, 4, N, N//2+1) and one rfft2 of (B, 4, N, N) (×4 evaluations), one
condensation step (irfft2 + rfft2 of (B, 1, ...); consecutive Strang halves are merged) and the
forcing rfft2 of (B, N, N). This is the FFT bound of a plain pseudo-spectral step ("ratio").

The step does its inverse transforms as two 1D passes and skips the ky-transforms of the columns
kx > K that the 2/3 rule zeroes (`Grid.irfft_columns`), which is cheaper than irfft2. The second
baseline times exactly the 1D transforms the step makes ("ratio to own FFTs"): that ratio is what
everything but the transforms costs.

Both are measured interleaved in the same process (repeats alternate), and the medians are compared,
so the ratio is meaningful even on a loaded machine. `--clock cpu` (the default on the CPU) counts
the CPU time of the calling thread (`time.thread_time`), which excludes the time the process waits
while other jobs hold the cores; with one torch thread it is all the work the step does. `--clock
wall` counts wall time (always used on CUDA).

    python studies/performance/simulator/benchmark.py --resolutions 64 128 256 --members 8 --device cpu
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from sciscore.simulate import Grid, Params, Problem, stepforward


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(function, repeats: int, device, clock=time.perf_counter) -> float:
    _sync(device)
    start = clock()
    for _ in range(repeats):
        function()
    _sync(device)
    return (clock() - start) / repeats


def measure(n: int, members: int, device: torch.device, dtype: torch.dtype, stepper: str, rounds: int,
            steps: int, clock=time.perf_counter) -> dict:
    grid = Grid(n, device=device, dtype=dtype)
    problem = Problem(grid, Params.reference(n), members=members, seed=0, stepper=stepper, dt=2e-3,
                      condensation="split")
    stepforward(problem, 3)  # warm up (plans, coefficient cache)
    m = n // 2 + 1
    cdtype = grid.complex_dtype
    spectral4 = torch.randn(members, 4, n, m, dtype=cdtype, device=device)
    physical4 = torch.randn(members, 4, n, n, dtype=dtype, device=device)
    spectral1 = torch.randn(members, n, m, dtype=cdtype, device=device)
    physical1 = torch.randn(members, n, n, dtype=dtype, device=device)

    def ffts_of_one_step():
        for _ in range(4):  # four nonlinear evaluations per step
            torch.fft.irfft2(spectral4, s=(n, n))
            torch.fft.rfft2(physical4)
        torch.fft.irfft2(spectral1, s=(n, n))  # the pointwise condensation step
        torch.fft.rfft2(physical1)
        torch.fft.rfft2(physical1)  # forcing noise

    columns = grid.kept_wavenumber + 1
    columns4 = torch.randn(members, 4, columns, n, dtype=cdtype, device=device)
    columns1 = torch.randn(members, columns, n, dtype=cdtype, device=device)

    def ffts_the_step_makes():
        for _ in range(4):  # the inverse transform in two passes, the ky-pass on the kept columns only
            torch.fft.ifft(columns4, dim=-1)
            torch.fft.irfft(spectral4, n=n, dim=-1)
            torch.fft.rfft2(physical4)
        torch.fft.ifft(columns1, dim=-1)
        torch.fft.irfft(spectral1, n=n, dim=-1)
        torch.fft.rfft2(physical1)
        torch.fft.rfft2(physical1)

    ffts_of_one_step()
    ffts_the_step_makes()
    step_times, fft_times, own_times = [], [], []
    for _ in range(rounds):
        step_times.append(_time(lambda: stepforward(problem, steps), 1, device, clock) / steps)
        fft_times.append(_time(ffts_of_one_step, steps, device, clock))
        own_times.append(_time(ffts_the_step_makes, steps, device, clock))
    step, fft, own = (statistics.median(times) for times in (step_times, fft_times, own_times))
    return {"n": n, "members": members, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
            "stepper": stepper, "ms_per_step": 1e3 * step, "ms_ffts_per_step": 1e3 * fft, "ratio": step / fft,
            "ms_own_ffts_per_step": 1e3 * own, "ratio_to_own_ffts": step / own,
            "ms_per_member_step": 1e3 * step / members}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--stepper", default="ETDRK4")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                        help="cpu: CPU time of this thread (CPU device only); wall: elapsed time")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--reuse-memory", action="store_true",
                        help="keep freed tensors in the heap (what `sciscore simulate` does)")
    args = parser.parse_args(argv)
    if args.reuse_memory:
        from sciscore.simulate.allocator import reuse_freed_memory

        reuse_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    clock = time.thread_time if args.clock == "cpu" and device.type == "cpu" else time.perf_counter
    results = []
    print(f"{'N':>5} {'B':>3} {'ms/step':>9} {'ms FFTs':>9} {'ratio':>6} {'ms own FFTs':>12} {'ratio to own':>13} "
          f"{'ms/member-step':>15}")
    for n in args.resolutions:
        row = measure(n, args.members, device, dtype, args.stepper, args.rounds, args.steps, clock)
        row["threads"] = torch.get_num_threads()
        row["clock"] = "cpu" if clock is time.thread_time else "wall"
        results.append(row)
        print(f"{n:>5} {args.members:>3} {row['ms_per_step']:>9.2f} {row['ms_ffts_per_step']:>9.2f} "
              f"{row['ratio']:>6.2f} {row['ms_own_ffts_per_step']:>12.2f} {row['ratio_to_own_ffts']:>13.2f} "
              f"{row['ms_per_member_step']:>15.3f}", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
