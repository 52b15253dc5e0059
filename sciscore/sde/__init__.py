"""Forward processes, parametrizations, the reverse SDE, the solver table and ``solve``.

Network convention (project-wide): ``net(x, t)`` with x (B, C, H, W) and t (B,) the process time
returns ``marginal_std(t) * score(x, t)`` (= minus the eps prediction);
``score_from_network(net, process)`` turns it into a score function.

The names below are imported on first use (PEP 562), so that ``sciscore.sde.solvers`` (the solver
table, no torch) can be read without importing torch.
"""

import importlib

_EXPORTS = {
    "processes": ("EDM", "PROCESSES", "VE", "VP", "DiscreteVP", "ForwardProcess", "SubVP", "estimate_sigma_max",
                  "process_from_dict", "rescale_zero_terminal_snr"),
    "parametrizations": ("PARAMETRIZATIONS", "check_parametrization", "edm_preconditioning", "from_score",
                         "score_from_network", "to_score"),
    "brownian": ("GridBrownian", "SampleStreams", "sample_seed"),
    "guidance": ("ScoreModel", "guided_prediction"),
    "oracles": ("GaussianMixtureScore", "gaussian_w2"),
    "problem": ("SamplingProblem", "Solution", "solve"),
    "reverse_sde": ("DiagonalReverseSDE", "ReverseSDE"),
    "solvers": ("SOLVERS", "TABLE", "Solver", "get_solver", "default_steps"),
    "time_grids": ("GRIDS", "TimeMap", "time_grid"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = list(_MODULE_OF)


def __getattr__(name):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'sciscore.sde' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"sciscore.sde.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
