"""Sampling benchmark: torchsde path overhead, and error vs score evaluations per solver.

Part 1 (overhead). Wall time per score evaluation of ``solve(..., solver="euler")`` (torchsde
``sdeint`` on ``ReverseSDE`` with the per-sample ``GridBrownian``) divided by that of a
hand-written Euler-Maruyama loop with the same network, process, grid and steps (one global
``torch.randn_like`` a step), medians of interleaved repeats in one run:
  - the project score network (sciscore.nn.ScoreNetwork, default U-Net config) at 1 x 64 x 64;
  - a trivial score (score = -x / marginal_std^2).
Part 1b (noise, `--part noise`). CPU time (this thread; `--clock wall` for elapsed time) of
``solve(..., solver="euler")`` divided by that of a *lean* hand loop: Python-float coefficients
computed before the loop, time tensors built once, one global generator, two in-place updates a
step; trivial score, VE, 100 steps; at 4096 samples x 16 values and 64 samples x 64 x 64. Medians of
interleaved repeats. Run it with another checkout first on PYTHONPATH to measure an older sciscore
with the same hand loop.
Part 2 (accuracy). Gaussian oracle N(1, 0.5) on 64 x 64 iid pixels (32 samples = 131072
realisations, Monte Carlo floor of the variance 0.4%), error = max(|mean - mu| / std,
|var / var_exact - 1|) at t_min, for every solver and several step counts; reports the fewest
score evaluations reaching 1%.

Usage: python studies/performance/sampling/benchmark.py [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch

from sciscore.sde import EDM, VE, SOLVERS, SamplingProblem, score_from_network, solve, time_grid


def hand_euler(score, process, shape, n, steps, seed):
    """Reverse-SDE Euler-Maruyama written out: x <- x + dt (f x - g^2 score) + g sqrt(|dt|) z."""
    g = torch.Generator().manual_seed(seed)
    t_grid = time_grid(process, steps, "karras" if process.name == "edm" else "uniform")
    x = process.prior_std() * torch.randn((n, *shape), generator=g)
    with torch.no_grad():
        for i in range(steps):
            t, t_next = t_grid[i], t_grid[i + 1]
            f, diffusion = float(process.log_scale_derivative(t)), float(process.diffusion(t))
            dt = float(t_next - t)
            t_batch = torch.full((n,), float(t))
            x = x + dt * (f * x - diffusion**2 * score(x, t_batch)) \
                + diffusion * math.sqrt(-dt) * torch.randn(x.shape, generator=g)
    return x


def lean_hand_euler(score, process, shape, n, steps, seed):
    """The leanest honest Euler-Maruyama loop of the reverse VE SDE: everything that does not depend
    on x is prepared before the loop; x <- x - dt g^2 score + g sqrt(-dt) z with z from one generator."""
    generator = torch.Generator().manual_seed(seed)
    t_grid = time_grid(process, steps, "uniform")
    plan = []
    for i in range(steps):
        t, t_next = t_grid[i], t_grid[i + 1]
        assert float(process.log_scale_derivative(t)) == 0.0  # VE: no f x term
        g = float(process.diffusion(t))
        dt = float(t_next - t)
        plan.append((torch.full((n,), float(t)), -dt * g * g, g * math.sqrt(-dt)))
    x = torch.randn((n, *shape), generator=generator).mul_(process.prior_std())
    with torch.no_grad():
        for t_batch, score_weight, noise_scale in plan:
            x = x.add(score(x, t_batch), alpha=score_weight)
            x.add_(torch.randn(x.shape, generator=generator), alpha=noise_scale)
    return x


def noise_overhead(label, score, process, shape, n, steps, repeats, clock):
    times = {"hand": [], "torchsde": []}
    for _ in range(repeats):  # interleaved, so machine load hits both alike
        start = clock()
        lean_hand_euler(score, process, shape, n, steps, 0)
        times["hand"].append(clock() - start)
        start = clock()
        solution = solve(SamplingProblem(score, process, shape), solver="euler", steps=steps, n=n, seed=0)
        times["torchsde"].append(clock() - start)
    assert solution.nfe == steps
    hand, sde = statistics.median(times["hand"]), statistics.median(times["torchsde"])
    row = {"case": label, "batch": n, "shape": list(shape), "steps": steps, "hand_ms_per_step": 1e3 * hand / steps,
           "torchsde_ms_per_step": 1e3 * sde / steps, "ratio": sde / hand}
    print(json.dumps(row), flush=True)
    return row


def generator_alone(n, shape, repeats, clock):
    """Time of one draw of the per-sample streams (B, *shape) / one torch.randn of the same size."""
    from sciscore.sde.brownian import SampleStreams

    streams, generator = SampleStreams(0, range(n)), torch.Generator().manual_seed(0)
    times = {"streams": [], "randn": []}
    for _ in range(repeats):
        start = clock()
        for _ in range(20):
            streams.normal(shape)
        times["streams"].append(clock() - start)
        start = clock()
        for _ in range(20):
            torch.randn((n, *shape), generator=generator)
        times["randn"].append(clock() - start)
    ours, randn = statistics.median(times["streams"]) / 20, statistics.median(times["randn"]) / 20
    row = {"case": f"one draw, {n} x {'x'.join(map(str, shape))}", "streams_us": 1e6 * ours,
           "randn_us": 1e6 * randn, "ratio": ours / randn}
    print(json.dumps(row), flush=True)
    return row


def overhead(label, score, process, shape, n, steps, repeats):
    times = {"hand": [], "torchsde": []}
    for _ in range(repeats):  # interleaved, so machine load hits both alike
        start = time.perf_counter()
        hand_euler(score, process, shape, n, steps, 0)
        times["hand"].append(time.perf_counter() - start)
        start = time.perf_counter()
        solution = solve(SamplingProblem(score, process, shape), solver="euler", steps=steps, n=n, seed=0)
        times["torchsde"].append(time.perf_counter() - start)
    assert solution.nfe == steps
    hand, sde = statistics.median(times["hand"]), statistics.median(times["torchsde"])
    row = {"case": label, "batch": n, "steps": steps, "hand_ms_per_eval": 1e3 * hand / steps,
           "torchsde_ms_per_eval": 1e3 * sde / steps, "ratio": sde / hand}
    print(json.dumps(row), flush=True)
    return row


def accuracy(process, quick):
    shape, n, mu, v = (1, 64, 64), 32, 1.0, 0.5

    def score(x, t):
        s = process.scale(t).to(x).view(-1, 1, 1, 1)
        sigma = process.sigma(t).to(x).view(-1, 1, 1, 1)
        return -(x - s * mu) / (s**2 * (v + sigma**2))

    t_end = torch.tensor(process.t_min, dtype=torch.float64)
    mean = float(process.scale(t_end)) * mu
    variance = float(process.scale(t_end)) ** 2 * (v + float(process.sigma(t_end)) ** 2)
    plans = {"sde": [16, 32, 64, 128, 256], "ode": [4, 8, 16, 32, 64], "adaptive": [1e-2, 1e-3, 1e-4, 1e-5]}
    if quick:
        plans = {"sde": [16, 64], "ode": [4, 16], "adaptive": [1e-3]}
    rows = []
    for solver in SOLVERS:
        if solver == "ode-adaptive":
            settings = [dict(steps=1, rtol=tol, atol=tol) for tol in plans["adaptive"]]
        else:
            settings = [dict(steps=s) for s in plans["ode" if solver in ("ode-heun", "edm") else "sde"]]
        for options in settings:
            knobs = {"s_churn": 10.0} if solver == "edm" else {"snr": 0.02} if solver == "pc" else {}
            solution = solve(SamplingProblem(score, process, shape), solver=solver, n=n, seed=1, **options, **knobs)
            x = solution.x.double()
            error = max(abs(x.mean().item() - mean) / math.sqrt(variance), abs(x.var().item() / variance - 1))
            row = {"process": process.name, "solver": solver, **options, "nfe": solution.nfe, "error": error}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few repeats and step counts (a smoke run)")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    parser.add_argument("--part", choices=["overhead", "noise", "accuracy", "all"], default="all")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                        help="--part noise: CPU time of this thread, or elapsed time")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 5, 2 with --quick)")
    parser.add_argument("--malloc", choices=["cli", "default"], default="cli",
                        help="the C allocator's thresholds as the sciscore command line sets them "
                             "(sciscore.allocator), or glibc's defaults")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.malloc == "cli":
        from sciscore.allocator import keep_freed_memory
        keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"threads": torch.get_num_threads(), "malloc": args.malloc, "overhead": [], "accuracy": []}
    repeats = args.repeats or (2 if args.quick else 5)
    results["noise"] = []
    if args.part in ("noise", "all"):
        process = VE(sigma_min=0.01, sigma_max=100.0)

        def trivial(x, t):  # the exact score of N(0, 0) data: -x / m(t)^2
            return -x / (process.marginal_std(t).to(x) ** 2).view(-1, *[1] * (x.ndim - 1))

        clock = time.thread_time if args.clock == "cpu" else time.perf_counter
        for n, shape in ((4096, (1, 4, 4)), (64, (1, 64, 64))):
            results["noise"].append(generator_alone(n, shape, 3 * repeats, clock))
            results["noise"].append(noise_overhead(f"trivial score, {n} x {'x'.join(map(str, shape))}", trivial,
                                                   process, shape, n, 100, repeats, clock))
    if args.part in ("overhead", "all"):
        process = VE(sigma_min=0.01, sigma_max=100.0)
        trivial = lambda x, t: -x / process.marginal_std(t).to(x).view(-1, 1, 1, 1) ** 2
        results["overhead"].append(overhead("trivial score, 64 x 1x64x64", trivial, process, (1, 64, 64), 64,
                                            100, repeats))
        try:
            from sciscore.nn import NetworkConfig, ScoreNetwork
            net = ScoreNetwork(NetworkConfig(), process).eval()
            label = "sciscore.nn.ScoreNetwork (default U-Net), 4 x 1x64x64"
        except Exception as error:  # the project network not importable: a conv stack of similar cost
            print(f"# ScoreNetwork unavailable ({error}); using a conv stack")
            net = torch.nn.Sequential(*[torch.nn.Conv2d(1 if i == 0 else 64, 64 if i < 9 else 1, 3, padding=1)
                                        for i in range(10)])
            net = lambda x, t, net=net: net(x)
            label = "10-layer conv stack (64 ch), 4 x 1x64x64"
        score = score_from_network(net, process)
        results["overhead"].append(overhead(label, score, process, (1, 64, 64), 4, 10 if args.quick else 20,
                                            repeats))
    if args.part in ("accuracy", "all"):
        for process in (EDM(), VE(sigma_min=0.01, sigma_max=100.0)):
            results["accuracy"] += accuracy(process, args.quick)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
