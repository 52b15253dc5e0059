"""What a network predicts, and the exact conversions between the choices.

Project-wide network convention: a score network is called as ``net(x, t)`` (conditional
networks: ``net(x, t, context=c)``) with x (B, C, H, W) and t (B,) the process time, and returns

    sigma_score = marginal_std(t) * score(x, t) = -eps_hat,

the "sigma * score" of Deck & Bischoff 2023 (eq. 10). ``score_from_network`` divides it back.

With m = s(t) sigma(t) (``marginal_std``) and x = s x0 + m eps (processes.py):

    score = -eps / m                             (Gaussian perturbation kernel)
    x0    = (x + m^2 score) / s                  (Tweedie's formula)
    v     = a eps - b x0,  a = s/r, b = m/r, r = sqrt(s^2 + m^2)
            (Salimans & Ho 2022; r = 1 for VP, so this is their v; x/r = a x0 + b eps)

and back: eps = b x/r + a v, x0 = a x/r - b v. At zero terminal SNR (s = 0) only x0 and v
determine the score; eps does not (x0 = (x - m eps)/s is 0/0), so it is refused there.

EDM preconditioning (Karras et al. 2022, Table 1, eq. 7):
D(x; sigma) = c_skip x + c_out F(c_in x; c_noise), applied to x / s.
"""

from __future__ import annotations

from typing import Callable

import torch

from sciscore.errors import UserError
from sciscore.sde.processes import ForwardProcess, _as_tensor, _per_sample

Tensor = torch.Tensor
PARAMETRIZATIONS = ("score", "sigma_score", "eps", "x0", "v")


def _coefficients(process: ForwardProcess, t, like: Tensor):
    t = _as_tensor(t)
    s = _per_sample(process.scale(t), like)
    m = _per_sample(process.marginal_std(t), like)
    return s, m


def _check(kind: str):
    if kind not in PARAMETRIZATIONS:
        raise UserError(f"unknown parametrization {kind!r}; expected one of {list(PARAMETRIZATIONS)}")


def to_score(output: Tensor, kind: str, x: Tensor, t, process: ForwardProcess) -> Tensor:
    """The score grad_x log p_t(x) from a prediction ``output`` of type ``kind``
    ('score', 'sigma_score', 'eps', 'x0', 'v'); x, output (B, C, H, W), t (B,)."""
    _check(kind)
    if kind == "score":
        return output
    s, m = _coefficients(process, t, x)
    if kind == "sigma_score":
        return output / m
    if kind == "eps":
        return -output / m
    if kind == "x0":
        return (s * output - x) / m**2
    # v: eps = b x/r + a v; score = -eps/m
    r = torch.sqrt(s**2 + m**2)
    a, b = s / r, m / r
    return -(b * x / r + a * output) / m


def from_score(score: Tensor, kind: str, x: Tensor, t, process: ForwardProcess) -> Tensor:
    """Inverse of ``to_score``: the prediction of type ``kind`` that has this score."""
    _check(kind)
    if kind == "score":
        return score
    s, m = _coefficients(process, t, x)
    if kind == "sigma_score":
        return m * score
    if kind == "eps":
        return -m * score
    if kind == "x0":
        return (x + m**2 * score) / s
    r = torch.sqrt(s**2 + m**2)
    a, b = s / r, m / r
    eps = -m * score
    x0 = (x - m * eps) / s
    return a * eps - b * x0


def check_parametrization(kind: str, process: ForwardProcess) -> None:
    """Refuse eps-type prediction on a zero-terminal-SNR process (singular at t = T)."""
    _check(kind)
    if kind in ("eps", "sigma_score") and getattr(process, "zero_terminal_snr", False):
        raise UserError(f"a zero-terminal-SNR process cannot be used with {kind!r} prediction: at "
                        "t = T the signal scale is 0 and x0 = (x - m eps)/s is 0/0; train with "
                        "parametrization 'v' or 'x0' (Lin et al. 2024, section 3.2)")


def edm_preconditioning(sigma: Tensor, sigma_data: float):
    """(c_skip, c_out, c_in, c_noise) of Karras et al. 2022, Table 1 ("Ours"):
    c_skip = sd^2/(sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2),
    c_in = 1/sqrt(sigma^2 + sd^2), c_noise = ln(sigma)/4."""
    sigma = _as_tensor(sigma)
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out = sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()
    c_in = 1 / (sigma**2 + sigma_data**2).sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def score_from_network(net: Callable, process: ForwardProcess, parametrization: str = "sigma_score") -> Callable:
    """Wrap a network ``net(x, t, **kwargs)`` that predicts ``parametrization`` (default: the
    project convention marginal_std * score) into a score function score(x, t, **kwargs)."""
    check_parametrization(parametrization, process)

    def score(x: Tensor, t: Tensor, **kwargs) -> Tensor:
        return to_score(net(x, t, **kwargs), parametrization, x, t, process)

    score.network = net
    score.parametrization = parametrization
    return score


__all__ = ["PARAMETRIZATIONS", "to_score", "from_score", "check_parametrization", "edm_preconditioning",
           "score_from_network"]
