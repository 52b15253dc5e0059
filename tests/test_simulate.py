"""Physics and numerics of sciscore.simulate (the issue's "Must show" items 1-5, 7 and more).

Tolerances are named constants; everything runs in float64 on small grids unless stated.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from sciscore.errors import UserError
from sciscore.simulate import (
    Grid,
    Params,
    Problem,
    advance,
    condense,
    energy,
    energy_dissipation,
    energy_drag,
    energy_spectrum,
    energy_work,
    enstrophy,
    enstrophy_dissipation,
    enstrophy_drag,
    enstrophy_work,
    forcing_spectrum,
    set_tracer,
    set_vorticity,
    stepforward,
    to_xarray,
    tracer_mean,
    tracer_variance,
    updatevars,
)

RTOL_ROUNDOFF = 1e-12
RTOL_BUDGET = 1e-3
RTOL_INJECTION = 0.05





# inviscid, unforced, no tracer sources: only advection remains
INVISCID = dict(nu=0.0, mu=0.0, kappa=0.0, epsilon=0.0, gamma0=0.0, e=0.0, tau_c=math.inf)


def random_problem(n=32, members=3, seed=1, **params):
    grid = Grid(n, dtype=torch.float64)
    problem = Problem(grid, Params(**{**INVISCID, **params}), members=members, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    set_vorticity(problem, torch.randn(members, n, n, generator=generator, dtype=torch.float64))
    set_tracer(problem, torch.randn(members, n, n, generator=generator, dtype=torch.float64))
    return problem


def inner(grid, a_hat, b_hat):
    """⟨a b⟩ via Parseval, and the Cauchy–Schwarz scale sqrt(⟨a²⟩⟨b²⟩)."""
    value = grid.domain_mean((a_hat.conj() * b_hat).real)
    scale = torch.sqrt(grid.domain_mean(a_hat.abs() ** 2) * grid.domain_mean(b_hat.abs() ** 2))
    return value, scale


# 1. conservation of the nonlinear terms -----------------------------------------------------------


@pytest.mark.parametrize("n", [16, 32, 48])
def test_nonlinear_terms_conserve_energy_enstrophy_and_tracer_variance(n):
    problem = random_problem(n)
    grid = problem.grid
    tendency = problem.eqn.nonlinear(problem.sol, split_condensation=True)
    zeta_hat, s_hat = problem.sol[:, 0], problem.sol[:, 1]
    psi_hat = -zeta_hat * grid.inv_k2
    for a_hat, b_hat in [(psi_hat, tendency[:, 0]), (zeta_hat, tendency[:, 0]), (s_hat, tendency[:, 1])]:
        value, scale = inner(grid, a_hat, b_hat)
        assert (value.abs() < RTOL_ROUNDOFF * scale).all(), (value, scale)
    assert tendency[:, 1, 0, 0].abs().max() < 1e-12 * n**2  # advection does not change ⟨s⟩
    assert (tendency * (1 - grid.dealias)).abs().max() == 0  # tendencies stay dealiased


def test_without_dealiasing_the_discrete_energy_is_not_conserved():
    """The conservation above is a property of the 2/3 rule, not of the test: full-band fields fail it."""
    problem = random_problem(32)
    grid = problem.grid
    generator = torch.Generator().manual_seed(5)
    full_band = grid.rfft(torch.randn(3, 32, 32, generator=generator, dtype=torch.float64))
    full_band[:, 0, 0] = 0
    q = torch.stack([full_band, full_band], dim=1)
    grid.dealias.fill_(1.0)  # this grid is discarded afterwards
    tendency = type(problem.eqn)(grid, problem.params).nonlinear(q, split_condensation=True)
    value, scale = inner(grid, full_band, tendency[:, 0])
    assert (value.abs() > 1e-6 * scale).all()


def test_gradient_source_has_zero_mean_with_a_context_pattern():
    """⟨u·G⟩ = 0 for divergence-free u and G = ∇q_s: the mean of s changes only by e − ⟨s⁺⟩/τc."""
    problem = random_problem(32, gamma0=1.0, context_wavenumber=2)
    tendency = problem.eqn.nonlinear(problem.sol, split_condensation=True)
    assert tendency[:, 1, 0, 0].abs().max() < 1e-11 * 32**2


# 2. steady Euler states and their exact viscous decay ------------------------------------------


def shell_vorticity(grid, members=2):
    """ζ = Σ of modes with |k|² = 25 ((3,4), (4,3), (5,0), (0,5)), random amplitudes and phases."""
    generator = torch.Generator().manual_seed(3)
    x, y = grid.x[None, :], grid.y[:, None]
    zeta = torch.zeros(members, grid.n, grid.n, dtype=torch.float64)
    for kx, ky in [(3, 4), (4, 3), (5, 0), (0, 5), (3, -4), (4, -3)]:
        amplitude, phase = torch.rand(2, members, 1, 1, generator=generator, dtype=torch.float64)
        zeta += amplitude * torch.cos(kx * x + ky * y + 2 * math.pi * phase)
    return zeta


@pytest.mark.parametrize("stepper", ["IFRK4", "ETDRK4"])
def test_single_shell_states_are_steady_and_decay_exactly(stepper):
    grid = Grid(32, dtype=torch.float64)
    params = Params(nu=1e-6, p=4, mu=0.05, kappa=0.0, epsilon=0.0, gamma0=0.0, e=0.0, tau_c=math.inf)
    problem = Problem(grid, params, members=2, stepper=stepper, dt=0.02)
    zeta0 = shell_vorticity(grid)
    set_vorticity(problem, zeta0)
    assert problem.eqn.nonlinear(problem.sol, True)[:, 0].abs().max() < 1e-12 * problem.sol.abs().max()
    stepforward(problem, 50)
    rate = params.nu * 25.0**params.p + params.mu  # ν|k|^{2p} + μ = 0.441
    expected = zeta0 * math.exp(-rate * problem.clock.t)
    zeta = updatevars(problem).zeta
    assert math.exp(-rate * problem.clock.t) < 0.7  # the decay is visible
    assert torch.allclose(zeta, expected, rtol=0, atol=RTOL_ROUNDOFF * zeta0.abs().max())


def test_taylor_green_vortex_is_steady_and_decays_exactly():
    grid = Grid(16, dtype=torch.float64)
    params = Params(nu=0.01, p=1, mu=0.0, kappa=0.0, epsilon=0.0, gamma0=0.0, e=0.0, tau_c=math.inf)
    problem = Problem(grid, params, stepper="IFRK4", dt=0.1)
    x, y = grid.x[None, :], grid.y[:, None]
    zeta0 = -2 * torch.sin(x) * torch.sin(y)  # ψ = sin x sin y, ζ = ∇²ψ
    set_vorticity(problem, zeta0)
    stepforward(problem, 30)
    expected = zeta0 * math.exp(-params.nu * 2.0 * problem.clock.t)
    assert torch.allclose(updatevars(problem).zeta[0], expected, rtol=0, atol=1e-13)


# 3. tracer translated by a uniform flow --------------------------------------------------------


def translation_error(stepper, dt, U=(1.0, 0.5), duration=1.0):
    grid = Grid(32, dtype=torch.float64)
    params = Params(**{**INVISCID, "background_velocity": U})
    problem = Problem(grid, params, stepper=stepper, dt=dt)

    def s_exact(t):
        x, y = grid.x[None, :] - U[0] * t, grid.y[:, None] - U[1] * t
        return torch.sin(3 * x + y) + 0.5 * torch.cos(2 * x - 5 * y) + 0.3 * torch.sin(4 * y)

    set_tracer(problem, s_exact(0.0))
    stepforward(problem, round(duration / dt))
    return float((updatevars(problem).s[0] - s_exact(problem.clock.t)).abs().max())


@pytest.mark.parametrize("stepper", ["IFRK4", "ETDRK4"])
def test_uniform_flow_translates_the_tracer_with_fourth_order_error(stepper):
    errors = [translation_error(stepper, dt) for dt in (0.1, 0.05, 0.025)]
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    assert errors[0] < 1e-2
    for ratio in ratios:
        assert 13 < ratio < 19, (errors, ratios)  # 2^4 = 16


def test_mean_gradient_source_gives_exact_mean_drift():
    """With v ≡ V and no sources: d⟨s⟩/dt = −γ0 V, so ⟨s⟩(t) = −γ0 V t exactly."""
    grid = Grid(16, dtype=torch.float64)
    params = Params(**{**INVISCID, "gamma0": 2.0, "background_velocity": (0.0, 0.3)})
    problem = Problem(grid, params, stepper="ETDRK4", dt=0.05)
    stepforward(problem, 40)
    assert torch.allclose(tracer_mean(problem), torch.tensor(-2.0 * 0.3 * 2.0, dtype=torch.float64), atol=1e-13)


# 4. forcing injects energy at rate ε, independently of dt ---------------------------------------


@pytest.mark.parametrize("dt", [1e-2, 1e-4])
def test_forcing_injects_energy_at_rate_epsilon(dt):
    grid = Grid(32, dtype=torch.float64)
    params = Params.reference(32, epsilon=0.1)
    problem = Problem(grid, params, members=400, seed=11, dt=dt)
    stepforward(problem, 1)  # from rest
    injected = float(energy(problem).mean()) / dt
    assert abs(injected / params.epsilon - 1) < RTOL_INJECTION


def test_forcing_spectrum_is_a_ring_at_k_f_with_zero_mean():
    grid = Grid(64, dtype=torch.float64)
    spectrum = forcing_spectrum(grid, Params.reference(64, k_f=4.0, delta_f=1.0))
    shells = grid.wavenumber_shells()
    per_shell = torch.zeros(int(shells.max()) + 1, dtype=torch.float64).index_add_(
        0, shells.flatten(), (grid.parseval * spectrum).flatten())
    mean_per_mode = per_shell / torch.bincount(shells.flatten(), weights=grid.parseval.flatten())
    assert spectrum[0, 0] == 0
    assert int(torch.argmax(mean_per_mode)) == 4
    assert (spectrum * (1 - grid.dealias)).abs().max() == 0


# 5. energy and enstrophy budgets close step by step --------------------------------------------


@pytest.mark.parametrize("stepper", ["IFRK4", "ETDRK4"])
def test_energy_and_enstrophy_budgets_close_step_by_step(stepper):
    """ΔE = dt·(W − 2μE − D_E) with W from the midpoint of the forcing increment and the
    deterministic terms by the trapezoid rule between the step's start and its unforced end."""
    n, dt = 32, 2e-3
    grid = Grid(n, dtype=torch.float64)
    params = Params.reference(n, mu=0.1, epsilon=0.5)
    problem = Problem(grid, params, members=2, seed=4, stepper=stepper, dt=dt)
    generator = torch.Generator().manual_seed(8)
    zeta0 = grid.irfft(grid.rfft(torch.randn(2, n, n, generator=generator, dtype=torch.float64)) * (grid.k2 < 100))
    set_vorticity(problem, 3 * zeta0)
    for _ in range(10):
        before = problem.sol[:, 0].clone()
        stepforward(problem, 1)
        unforced = problem.sol[:, 0] - problem.vars.forcing_hat
        for quantity, drag, dissipation, work in [(energy, energy_drag, energy_dissipation, energy_work),
                                                   (enstrophy, enstrophy_drag, enstrophy_dissipation, enstrophy_work)]:
            change = quantity(problem) - quantity(problem, before)
            losses = 0.5 * (drag(problem, before) + dissipation(problem, before)
                            + drag(problem, unforced) + dissipation(problem, unforced))
            predicted = dt * (work(problem) - losses)
            assert torch.allclose(change, predicted, rtol=0, atol=RTOL_BUDGET * dt * losses.max()), (
                quantity.__name__, change, predicted)


def test_tracer_variance_budget_without_condensation():
    """½ d⟨s'²⟩/dt = −⟨s' u·G⟩ − D_s, with G = (0, γ0) and no condensation or sources."""
    from sciscore.simulate import tracer_dissipation

    n, dt = 32, 1e-3
    problem = random_problem(n, members=2, nu=1e-8, kappa=1e-8, gamma0=1.0)
    problem.dt = dt
    problem.clock.dt = dt
    grid = problem.grid

    def rate(q_hat):
        s_hat = q_hat[:, 1].clone()
        s_hat[:, 0, 0] = 0
        v_hat = -1j * grid.kx * grid.inv_k2 * q_hat[:, 0]
        production = -problem.params.gamma0 * grid.domain_mean((s_hat.conj() * v_hat).real)
        return production - tracer_dissipation(problem, q_hat[:, 1])

    for _ in range(5):
        before = problem.sol.clone()
        stepforward(problem, 1)
        change = 0.5 * (tracer_variance(problem) - tracer_variance(problem, before[:, 1]))
        predicted = 0.5 * dt * (rate(before) + rate(problem.sol))
        assert torch.allclose(change, predicted, rtol=RTOL_BUDGET, atol=0), (change, predicted)


# condensation: the exact pointwise step ---------------------------------------------------------


def test_condense_is_the_exact_solution_of_the_pointwise_ode():
    params = Params(e=1.0, tau_c=0.01)
    s0 = torch.tensor([-0.05, -0.02, -0.005, 0.0, 0.004, 0.01, 0.3], dtype=torch.float64)
    h = 0.03
    exact = condense(s0, h, params)
    # reference: RK4 with 30000 substeps of ds/dt = e − s⁺/τc
    s, substeps = s0.clone(), 3000
    k = h / substeps
    f = lambda s: params.e - torch.relu(s) / params.tau_c  # noqa: E731
    for _ in range(substeps):
        k1 = f(s); k2 = f(s + k / 2 * k1); k3 = f(s + k / 2 * k2); k4 = f(s + k * k3)  # noqa: E702
        s = s + k / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    assert torch.allclose(exact, s, rtol=0, atol=1e-8)
    # composition: two half steps equal one full step (a flow map)
    assert torch.allclose(condense(condense(s0, h / 2, params), h / 2, params), exact, atol=1e-14)


def test_split_and_explicit_condensation_converge_to_each_other():
    """At dt ≪ τc both treatments of −s⁺/τc approach the same solution; their gap shrinks with dt."""

    def tracer(mode, dt):
        grid = Grid(16, dtype=torch.float64)
        problem = Problem(grid, Params.reference(16, epsilon=0.0), stepper="ETDRK4", dt=dt, condensation=mode)
        x, y = grid.x[None, :], grid.y[:, None]
        set_vorticity(problem, torch.sin(x) * torch.cos(2 * y) + torch.cos(3 * x))
        set_tracer(problem, 0.05 * torch.sin(x + y))
        stepforward(problem, round(0.05 / dt))
        return updatevars(problem).s

    gaps = [float((tracer("split", dt) - tracer("explicit", dt)).abs().max()) for dt in (1e-3, 5e-4, 2.5e-4)]
    scale = float(tracer("explicit", 2.5e-4).abs().max())
    assert gaps[1] < 0.6 * gaps[0] and gaps[2] < 0.6 * gaps[1]
    assert gaps[2] < 1e-3 * scale


# practicalities ---------------------------------------------------------------------------------


def test_same_seed_is_bit_identical_and_other_seeds_differ():
    def run(seed):
        grid = Grid(16, dtype=torch.float32)
        problem = Problem(grid, Params.reference(16), members=3, seed=seed)
        advance(problem, 0.5)
        return problem.sol.clone(), problem.clock.step

    a, b, c = run(5), run(5), run(6)
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0][0], a[0][1])  # members get different noise


def test_advance_ends_exactly_at_the_requested_time_with_cfl_steps():
    grid = Grid(32, dtype=torch.float64)
    problem = Problem(grid, Params.reference(32), members=2, seed=0, cfl=0.5)
    advance(problem, 3.3)
    assert problem.clock.t == pytest.approx(3.3, abs=1e-12)
    speed = float(torch.sqrt(updatevars(problem).u ** 2 + problem.vars.v**2).max())
    assert problem.clock.dt <= problem.dt_max + 1e-15
    assert problem.clock.dt * speed / grid.dx < 0.8  # close to the requested CFL number


def test_progress_bar_never_passes_its_total():
    """The summed chunk lengths differ from the duration by rounding; the bar stops at its total
    (tqdm warns on stderr when n > total, an extra line after a clean run)."""
    import warnings

    from tqdm import tqdm

    problem = Problem(Grid(16, dtype=torch.float32), Params.reference(16), members=1, seed=0)
    assert 0.1 + 0.2 > 0.3  # two phases on one bar, as spin-up and sampling share one in a recipe
    with warnings.catch_warnings(), open(os.devnull, "w") as sink:
        warnings.simplefilter("error")
        with tqdm(total=0.3, disable=False, file=sink, mininterval=0) as bar:
            advance(problem, 0.1, progress=bar)
            advance(problem, 0.2, progress=bar)
            assert bar.n <= bar.total and bar.n == pytest.approx(0.3, abs=1e-12)


def test_float32_tracks_float64():
    sols = {}
    for dtype in (torch.float32, torch.float64):
        grid = Grid(32, dtype=dtype)
        problem = Problem(grid, Params.reference(32, epsilon=0.0), dt=5e-3)
        x, y = grid.x[None, :], grid.y[:, None]
        set_vorticity(problem, 2 * torch.sin(x) * torch.cos(2 * y) + torch.cos(3 * x + y) + torch.sin(5 * y))
        set_tracer(problem, 0.1 * torch.sin(x - y))
        stepforward(problem, 40)
        sols[dtype] = updatevars(problem).zeta.double()
    scale = sols[torch.float64].abs().max()
    assert (sols[torch.float32] - sols[torch.float64]).abs().max() < 1e-4 * scale


def test_energy_spectrum_sums_to_energy():
    problem = random_problem(32)
    k, spectrum = energy_spectrum(problem)
    assert torch.allclose(spectrum.sum(-1), energy(problem), rtol=1e-12)
    assert k[0] == 0 and spectrum[:, 0].abs().max() == 0


def test_to_xarray_snapshot_layout_and_attrs():
    grid = Grid(16, dtype=torch.float64)
    params = Params.reference(16, context_wavenumber=2)
    problem = Problem(grid, params, members=3, seed=0, dt=1e-2)
    stepforward(problem, 2)
    ds = to_xarray(problem)
    assert set(ds.data_vars) == {"supersaturation", "vorticity", "context"}
    assert ds["vorticity"].dims == ("sample", "y", "x") and ds["vorticity"].shape == (3, 16, 16)
    np.testing.assert_allclose(ds.x.values, 2 * np.pi * np.arange(16) / 16)
    assert ds.x.values.max() < 2 * np.pi
    for name in ds.data_vars:
        assert ds[name].attrs["units"] and ds[name].attrs["long_name"]
    for name, value in params.to_attrs().items():
        assert ds.attrs[f"param_{name}"] == value
    assert ds.attrs["param_context_amplitude"] == 0.5
    np.testing.assert_allclose(ds.attrs["time"], 0.02)
    np.testing.assert_allclose(ds["vorticity"].mean(("y", "x")).values, 0, atol=1e-12)
    np.testing.assert_allclose(ds["context"].values[1], np.sin(2 * ds.y.values)[:, None] * np.sin(2 * ds.x.values))


def test_bad_inputs_raise_user_errors():
    with pytest.raises(UserError, match="stepper"):
        Problem(Grid(16), Params(), stepper="AB3")
    with pytest.raises(UserError, match="evaporation"):
        Params(e=-1.0)
    with pytest.raises(UserError, match="even integer"):
        Grid(15)
    problem = Problem(Grid(16), Params())
    with pytest.raises(UserError, match="shape"):
        set_vorticity(problem, torch.zeros(8, 8))


# 7. CPU and CUDA agree ----------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_cuda_agree_in_float64():
    sols = {}
    for device in ("cpu", "cuda"):
        grid = Grid(64, device=device, dtype=torch.float64)
        # the noise of both runs comes from the same CPU generator stream
        problem = Problem(grid, Params.reference(64), members=2, seed=3, dt=5e-3, generator_device="cpu")
        x, y = grid.x[None, :], grid.y[:, None]
        set_vorticity(problem, torch.sin(x) * torch.cos(2 * y) + torch.cos(3 * x + y))
        set_tracer(problem, 0.1 * torch.sin(x - y))
        stepforward(problem, 100)
        sols[device] = problem.sol.cpu()
    scale = sols["cpu"].abs().max()
    assert (sols["cuda"] - sols["cpu"]).abs().max() < 1e-10 * scale
