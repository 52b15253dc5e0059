"""The solver table (sciscore.sde.solvers): one entry per solver, in agreement with the sampling
functions, the command line and `solve`; option checking and the per-step callback."""

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from sde_oracles import gaussian_oracle  # noqa: E402

from sciscore.errors import UserError  # noqa: E402
from sciscore.sde import EDM, VE, SamplingProblem, solve, time_grid  # noqa: E402
from sciscore.sde.solvers import GRIDS, SOLVERS, TABLE, TORCHSDE_SOLVERS, default_steps, get_solver  # noqa: E402

SHAPE = (1, 4, 4)
COMMON = ("model", "process", "x", "t_grid", "streams", "save_index")


def test_table_entries_agree_with_their_functions():
    from sciscore.sde.samplers import TORCHSDE_METHODS

    assert set(TORCHSDE_METHODS) == set(TORCHSDE_SOLVERS)
    for name, entry in TABLE.items():
        assert entry.name == name and entry.kind in ("sde", "ode") and set(entry.grids) <= set(GRIDS)
        parameters = inspect.signature(entry.bind()).parameters
        assert not any(p.kind is p.VAR_KEYWORD for p in parameters.values()), name  # nothing swallowed
        if name in TORCHSDE_SOLVERS:
            assert entry.options == {}
            continue
        assert tuple(parameters)[:len(COMMON)] == COMMON, name
        options = {k: p.default for k, p in tuple(parameters.items())[len(COMMON):]}
        assert options == entry.options, name


def test_command_line_choices_come_from_the_table():
    from sciscore.cli import build_parser

    parser = build_parser()
    generate = parser._subparsers._group_actions[0].choices["generate"]
    actions = {a.dest: a for a in generate._actions}
    assert tuple(actions["solver"].choices) == SOLVERS
    assert set(actions["grid"].choices) <= set(GRIDS)
    assert actions["steps"].default is None and f": {default_steps('ode-heun', 'karras')})" in actions["steps"].help


def test_the_table_imports_no_torch():
    code = "import sys, sciscore.sde.solvers; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1]).returncode == 0


def test_unknown_option_is_refused_in_one_line():
    process = VE(sigma_max=20.0)
    problem = SamplingProblem(gaussian_oracle(process, SHAPE), process, SHAPE)
    with pytest.raises(UserError) as error:
        solve(problem, solver="ode-heun", steps=2, s_churn=1.0)
    assert str(error.value) == "solver 'ode-heun' does not take option(s) 's_churn'; it takes: callback"
    with pytest.raises(UserError, match="solver 'euler' does not take option.*it takes: no options"):
        solve(problem, solver="euler", steps=2, snr=0.1)
    with pytest.raises(UserError, match="unknown solver 'rk4'"):
        get_solver("rk4")
    with pytest.raises(UserError, match="solver 'srk' needs grid 'uniform' or 'karras', got 'trailing'"):
        solve(problem, solver="srk", steps=2, grid="trailing")


def test_default_steps_come_from_the_table():
    process = EDM(sigma_max=40.0)
    problem = SamplingProblem(gaussian_oracle(process, SHAPE), process, SHAPE)
    assert solve(problem, solver="ode-heun", n=1).steps == 18 == default_steps("ode-heun", "karras")
    assert solve(problem, solver="ode-heun", n=1, grid="uniform").steps == 50 == default_steps("ode-heun", "uniform")
    from sciscore.generate import SamplerOptions

    assert SamplerOptions().steps == 18 and SamplerOptions(solver="srk").steps == TABLE["srk"].steps_for("karras")


@pytest.mark.parametrize("solver", [name for name, entry in TABLE.items() if "callback" in entry.options])
def test_callback_sees_every_step(solver):
    process = EDM(sigma_max=40.0)
    problem = SamplingProblem(gaussian_oracle(process, SHAPE), process, SHAPE)
    seen = []

    def callback(step, t, x):
        seen.append((step, t, x.clone()))

    options = {"s_churn": 5.0} if solver == "edm" else {}
    solution = solve(problem, solver=solver, steps=6, n=3, seed=4, callback=callback, **options)
    plain = solve(problem, solver=solver, steps=6, n=3, seed=4, **options)
    assert torch.equal(solution.x, plain.x)  # watching changes nothing
    grid = time_grid(process, 6, "karras", problem.tspan, process.rho)
    assert [s for s, _, _ in seen] == list(range(1, 7))
    assert [t for _, t, _ in seen] == pytest.approx(grid[1:].tolist(), rel=0, abs=0)
    assert torch.equal(seen[-1][2], solution.x)
