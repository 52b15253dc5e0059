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
