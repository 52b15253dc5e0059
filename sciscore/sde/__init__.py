"""Forward processes, parametrizations, the reverse SDE and ``solve``.

Network convention (project-wide): ``net(x, t)`` with x (B, C, H, W) and t (B,) the process time
returns ``marginal_std(t) * score(x, t)`` (= minus the eps prediction);
``score_from_network(net, process)`` turns it into a score function.
"""

from sciscore.sde.parametrizations import (
    PARAMETRIZATIONS,
    check_parametrization,
    edm_denoiser,
    edm_preconditioning,
    edm_training_target,
    from_score,
    score_from_network,
    to_score,
)
from sciscore.sde.processes import (
    EDM,
    PROCESSES,
    VE,
    VP,
    DiscreteVP,
    ForwardProcess,
    SubVP,
    estimate_sigma_max,
    process_from_dict,
    rescale_zero_terminal_snr,
)

__all__ = [
    "EDM", "PROCESSES", "VE", "VP", "DiscreteVP", "ForwardProcess", "SubVP", "estimate_sigma_max",
    "process_from_dict", "rescale_zero_terminal_snr",
    "PARAMETRIZATIONS", "check_parametrization", "edm_denoiser", "edm_preconditioning",
    "edm_training_target", "from_score", "score_from_network", "to_score",
]

from sciscore.sde.brownian import GridBrownian, SampleStreams, sample_seed  # noqa: E402
from sciscore.sde.guidance import ScoreModel, guided_prediction  # noqa: E402
from sciscore.sde.problem import DEFAULT_STEPS, SamplingProblem, Solution, solve  # noqa: E402
from sciscore.sde.reverse_sde import DiagonalReverseSDE, ReverseSDE  # noqa: E402
from sciscore.sde.samplers import SOLVERS  # noqa: E402
from sciscore.sde.time_grids import GRIDS, TimeMap, time_grid  # noqa: E402

__all__ += ["GridBrownian", "SampleStreams", "sample_seed", "ScoreModel", "guided_prediction",
            "DEFAULT_STEPS", "SamplingProblem", "Solution", "solve", "DiagonalReverseSDE", "ReverseSDE",
            "SOLVERS", "GRIDS", "TimeMap", "time_grid"]
