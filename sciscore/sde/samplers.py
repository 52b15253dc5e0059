"""Samplers: torchsde solvers on the reverse SDE, and the probability-flow ODE, EDM and
predictor-corrector samplers (their names, options, orders and grids: the table in
``sciscore.sde.solvers``). The samplers on a time grid share one signature:

    sample_<name>(model, process, x, t_grid, streams, save_index, **options) -> (x, saved)

with exactly the options their table entry lists; ``callback(step, t, x)``, where a sampler
takes it, is called after each step with the steps done, the process time reached and the
state (B, C, H, W).

model: ``ScoreModel`` (score(x, t), x0(x, t)); x (B, C, H, W) the prior draw at t_grid[0];
t_grid: float64 (N + 1,) decreasing process times; streams: ``SampleStreams`` for the noise;
save_index: grid indices whose states are returned in ``saved`` (a list of (B, C, H, W)).

Reverse-SDE drift in process time (Song et al. 2021, eq. 6 and 13):
    F_sde(x, t) = f(t) x - g(t)^2 score(x, t),   F_ode(x, t) = f(t) x - g(t)^2 score(x, t) / 2.
"""

from __future__ import annotations

import math

import torch
import torchdiffeq
import torchsde

from sciscore.errors import UserError
from sciscore.sde.brownian import GridBrownian, SampleStreams, StreamNoise
from sciscore.sde.processes import ForwardProcess
from sciscore.sde.reverse_sde import DiagonalReverseSDE, ReverseSDE
from sciscore.sde.time_grids import TimeMap

# solver -> (torchsde method, ReverseSDE class, sde_type, Levy area); the solvers.TORCHSDE_SOLVERS
TORCHSDE_METHODS = {
    "euler": ("euler", DiagonalReverseSDE, "ito", "none"),
    "milstein": ("milstein", DiagonalReverseSDE, "ito", "none"),
    "srk": ("srk", ReverseSDE, "ito", "space-time"),          # additive: SRA1, 3 f calls a step
    "heun": ("heun", DiagonalReverseSDE, "stratonovich", "none"),
    "midpoint": ("midpoint", DiagonalReverseSDE, "stratonovich", "none"),
    "reversible_heun": ("reversible_heun", DiagonalReverseSDE, "stratonovich", "none"),
}


def _t_batch(t, x):
    return torch.as_tensor(t, dtype=torch.float64).to(device=x.device, dtype=x.dtype).expand(x.shape[0])


def ode_drift(model, process: ForwardProcess, x, t) -> torch.Tensor:
    """dx/dt of the probability-flow ODE, f(t) x - g(t)^2 score / 2 (Song et al. 2021, eq. 13)."""
    t64 = torch.as_tensor(t, dtype=torch.float64)
    f = float(process.log_scale_derivative(t64))
    g2 = float(process.diffusion(t64)) ** 2
    return f * x - 0.5 * g2 * model.score(x, _t_batch(t, x))


def ddim_step(model, process: ForwardProcess, x, t, t_next) -> torch.Tensor:
    """Deterministic DDIM step x' = s' x0 + m' (x - s x0)/m (Song, Meng & Ermon 2021, eq. 12);
    finite at zero terminal SNR (s = 0, m = 1), where the ODE drift is not."""
    t64, n64 = torch.as_tensor(t, dtype=torch.float64), torch.as_tensor(t_next, dtype=torch.float64)
    x0 = model.x0(x, _t_batch(t, x))
    s, m = float(process.scale(t64)), float(process.marginal_std(t64))
    s_next, m_next = float(process.scale(n64)), float(process.marginal_std(n64))
    return s_next * x0 + m_next * (x - s * x0) / m


def _starts_singular(process, t0) -> bool:
    return not math.isfinite(float(process.sigma(torch.as_tensor(t0, dtype=torch.float64))))


# ---------------------------------------------------------------------------------------------
def _step_starts(u0: float, u1: float, dt: float) -> list[float]:
    """The times at which torchsde's fixed-step loop starts its steps, in its own float64
    arithmetic (``next_t = min(curr_t + dt, ts[-1])``), so that they match its queries exactly."""
    starts, u = [], float(u0)
    while u < u1:
        starts.append(u)
        u = min(u + dt, float(u1))
    return starts


def sample_torchsde(model, process, x, time_map: TimeMap, streams: SampleStreams, steps: int,
                    solver: str, save_u=()):
    """Integrate the reverse SDE with ``torchsde.sdeint`` (method by ``solver``) on the fixed grid
    of ``time_map``; noise from a ``GridBrownian`` on the per-sample streams."""
    method, sde_class, sde_type, levy = TORCHSDE_METHODS[solver]
    batch, shape = x.shape[0], x.shape[1:]
    sde = sde_class(model.score, process, shape, time_map, sde_type=sde_type)
    u0, u1 = time_map.u_span
    dim = math.prod(shape)
    bm = GridBrownian(streams, u0, u1, steps, dim, dtype=x.dtype, levy_area_approximation=levy)
    ts = torch.tensor(sorted({u0, *save_u, u1}), dtype=torch.float64)  # float64: exactly `steps` steps
    dt = (u1 - u0) / steps * (1 + 1e-10)  # never a spurious tiny extra step from round-off
    y0 = x.reshape(batch, dim)
    sde.precompute([*_step_starts(u0, u1, dt), u1], y0)  # heun also asks at the end
    with torch.no_grad():
        ys = torchsde.sdeint(sde, y0, ts, bm=bm, method=method, dt=dt)
    states = ys.view(len(ts), batch, *shape)
    saved = {float(u): states[i] for i, u in enumerate(ts.tolist())}
    return states[-1], [saved[u] for u in save_u], sde


def heun_step(model, process, x, t_cur: float, t_next: float):
    """One Heun step of the probability-flow ODE from t_cur to t_next (Karras et al. 2022,
    Algorithm 1 lines 4-8, Algorithm 2 lines 7-11); Euler only when t_next = 0."""
    d_cur = ode_drift(model, process, x, t_cur)
    x_next = x + (t_next - t_cur) * d_cur
    if t_next > 0:
        d_prime = ode_drift(model, process, x_next, t_next)
        x_next = x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next


def sample_ode_heun(model, process, x, t_grid, streams=None, save_index=(), callback=None):
    """Heun's 2nd-order method on the probability-flow ODE (Karras et al. 2022, Algorithm 1),
    written for any s(t), sigma(t); 2 score evaluations a step (1 on a final step to t = 0)."""
    saved = {0: x} if 0 in save_index else {}
    for i in range(len(t_grid) - 1):
        t_cur, t_next = float(t_grid[i]), float(t_grid[i + 1])
        if i == 0 and _starts_singular(process, t_cur):
            x = ddim_step(model, process, x, t_cur, t_next)
        else:
            x = heun_step(model, process, x, t_cur, t_next)                   # Alg. 1 lines 4-8
        if callback is not None:
            callback(i + 1, t_next, x)
        if i + 1 in save_index:
            saved[i + 1] = x
    return x, [saved[k] for k in save_index]


def sample_ode_adaptive(model, process, x, t_grid, streams=None, save_index=(), rtol=1e-5, atol=1e-5,
                        method="dopri5"):
    """Probability-flow ODE with torchdiffeq's adaptive ``method`` (Dormand-Prince by default)
    from t_grid[0] to t_grid[-1]; saves at the grid points in ``save_index``."""
    shape, dtype = x.shape, x.dtype

    # the solver state is float64 (as in EDM's samplers); the model sees its own dtype. A float32
    # state made dopri5 underflow its step near t_min at rtol = atol = 1e-5 (measured, VP mixture).
    def rhs(t, x_flat):
        return ode_drift(model, process, x_flat.view(shape).to(dtype), t).reshape(shape[0], -1).to(torch.float64)

    times = sorted({0, *save_index, len(t_grid) - 1})
    t_eval = torch.tensor([float(t_grid[k]) for k in times], dtype=torch.float64)
    with torch.no_grad():
        # step_t: land exactly on the output times; dopri5 otherwise steps past t_end and evaluates
        # the score at t < t_min (negative t, NaN for VP) before interpolating back
        states = torchdiffeq.odeint(rhs, x.reshape(shape[0], -1).to(torch.float64), t_eval, options={"step_t": t_eval},
                                    rtol=rtol, atol=atol, method=method)
    states = states.to(x.dtype).view(len(times), *shape)
    lookup = dict(zip(times, states))
    return lookup[len(t_grid) - 1], [lookup[k] for k in save_index]


def sample_edm(model, process, x, t_grid, streams: SampleStreams, save_index=(), s_churn=0.0,
               s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0, callback=None):
    """EDM stochastic sampler (Karras et al. 2022, Algorithm 2): churn noise up to
    sigma_hat = sigma_i (1 + gamma_i), then a Heun step of the PF-ODE. For s(t) != 1 the churn acts
    on x/s: x_hat = s(t_hat)/s(t_i) x_i + s(t_hat) sqrt(sigma_hat^2 - sigma_i^2) S_noise eps."""
    steps = len(t_grid) - 1
    saved = {0: x} if 0 in save_index else {}
    noise = StreamNoise(streams, x.shape[1:], x.dtype)
    for i in range(steps):
        t_cur, t_next = float(t_grid[i]), float(t_grid[i + 1])
        t64 = torch.tensor(t_cur, dtype=torch.float64)
        sigma_cur = float(process.sigma(t64))
        eps = noise()  # one draw a step, used or not, so the stream stays aligned
        if i == 0 and _starts_singular(process, t_cur):
            x = ddim_step(model, process, x, t_cur, t_next)
        else:
            gamma = min(s_churn / steps, math.sqrt(2) - 1) if s_tmin <= sigma_cur <= s_tmax else 0.0  # line 5
            t_hat, x_hat = t_cur, x
            if gamma > 0:
                sigma_hat = sigma_cur * (1 + gamma)
                t_hat = float(process.t_of_sigma(torch.tensor(sigma_hat, dtype=torch.float64)))
                s_cur, s_hat = float(process.scale(t64)), float(process.scale(torch.tensor(t_hat, dtype=torch.float64)))
                x_hat = s_hat / s_cur * x + s_hat * math.sqrt(sigma_hat**2 - sigma_cur**2) * s_noise * eps  # line 6
            x = heun_step(model, process, x_hat, t_hat, t_next)                     # lines 7-11
        if callback is not None:
            callback(i + 1, t_next, x)
        if i + 1 in save_index:
            saved[i + 1] = x
    return x, [saved[k] for k in save_index]


def ancestral_step(model, process: ForwardProcess, x, t, t_next, noise, variance: str = "posterior"):
    """One ancestral step: a draw from q(x_next | x_t, x0 = x0_hat(x_t)) (Ho, Jain & Abbeel 2020,
    eq. 6-7 and Algorithm 2 line 4), written for any x_t = s x0 + m eps (processes.py).

    With a = s_t / s_next and b^2 = m_t^2 - a^2 m_next^2 (the forward kernel x_t | x_next is
    N(a x_next, b^2)), the posterior is
        mean = s_next b^2 / m_t^2 x0_hat + a m_next^2 / m_t^2 x_t,   var = b^2 m_next^2 / m_t^2.
    For the DDPM table a^2 = alpha_t, b^2 = beta_t and var = beta_tilde_t (Ho et al. eq. 7); with
    x0_hat from the eps prediction the mean is Ho et al.'s eq. 11. variance="forward" draws with
    b^2 (Ho et al.'s sigma_t^2 = beta_t) instead. x0_hat = E[x0 | x_t] is finite at zero terminal
    SNR (s_t = 0) for x0/v prediction, so the step may start there. noise: (B, C, H, W) N(0, I)."""
    t64, n64 = torch.as_tensor(t, dtype=torch.float64), torch.as_tensor(t_next, dtype=torch.float64)
    x0 = model.x0(x, _t_batch(t, x))
    s, m = float(process.scale(t64)), float(process.marginal_std(t64))
    s_next, m_next = float(process.scale(n64)), float(process.marginal_std(n64))
    a = s / s_next
    b2 = max(m**2 - a**2 * m_next**2, 0.0)  # >= 0 in exact arithmetic: m/s grows with t
    mean = (s_next * b2 / m**2) * x0 + (a * m_next**2 / m**2) * x
    var = b2 * m_next**2 / m**2 if variance == "posterior" else b2
    return mean + math.sqrt(var) * noise


def sample_ddpm(model, process, x, t_grid, streams: SampleStreams, save_index=(), variance="posterior",
                callback=None):
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) on any grid: ``ancestral_step`` from
    each t_i to t_i+1, one noise draw a step. On a DiscreteVP with the full discrete grid
    (steps = num_timesteps - 1, grid 'leading') and ``denoise=True`` (Algorithm 2's last step,
    z = 0, is Tweedie's x0 at t = 1/N) it is Algorithm 2 exactly; on a coarser grid it is the
    ancestral sampler of the skipped-step chain (DDIM with eta = 1, Song, Meng & Ermon 2021).
    variance: "posterior" (beta_tilde, Ho et al.'s sigma_t^2 = beta_tilde_t) or "forward" (beta_t)."""
    if variance not in ("posterior", "forward"):
        raise UserError(f"ddpm variance must be 'posterior' or 'forward', got {variance!r}")
    saved = {0: x} if 0 in save_index else {}
    noise = StreamNoise(streams, x.shape[1:], x.dtype)
    for i in range(len(t_grid) - 1):
        t_cur, t_next = float(t_grid[i]), float(t_grid[i + 1])
        x = ancestral_step(model, process, x, t_cur, t_next, noise(), variance)
        if callback is not None:
            callback(i + 1, t_next, x)
        if i + 1 in save_index:
            saved[i + 1] = x
    return x, [saved[k] for k in save_index]


def sample_pc(model, process, x, t_grid, streams: SampleStreams, save_index=(), snr=0.16,
              corrector_steps=1, callback=None):
    """Predictor-corrector (Song et al. 2021, Algorithms 2-3): at each t_i, ``corrector_steps``
    Langevin steps x <- x + e score + sqrt(2 e) z, then one Euler-Maruyama step of the reverse SDE.

    Step size: Song et al.'s rule e = 2 alpha (snr |z| / |score|)^2 (alpha = (s(t_i)/s(t_i+1))^2,
    1 for VE) with the two norms taken for pure noise at t_i, |z| = sqrt(d) and
    |score| = sqrt(d) / (s sigma), i.e. e = 2 alpha (snr s(t_i) sigma(t_i))^2. Their code averages
    the norms over the batch (a sample then depends on its batch); taken per sample the rule ties
    the step to the noise just drawn and inflates the variance (+26-30 % on 16-value Gaussian
    fields at snr 0.16, where this rule gives -1 to +2 %: docs/sde.md)."""
    saved = {0: x} if 0 in save_index else {}
    noise = StreamNoise(streams, x.shape[1:], x.dtype)
    for i in range(len(t_grid) - 1):
        t_cur, t_next = float(t_grid[i]), float(t_grid[i + 1])
        t64, n64 = torch.tensor(t_cur, dtype=torch.float64), torch.tensor(t_next, dtype=torch.float64)
        alpha = float(process.scale(t64) / process.scale(n64)) ** 2
        noise_std = float(process.scale(t64) * process.sigma(t64))
        step = 2 * alpha * (snr * noise_std) ** 2
        t_batch = _t_batch(t_cur, x)
        for _ in range(corrector_steps):
            x = x + step * model.score(x, t_batch) + math.sqrt(2 * step) * noise()
        # predictor: Euler-Maruyama on dx = [f x - g^2 score] dt + g dW_bar, dt = t_next - t_cur < 0
        g = float(process.diffusion(t64))
        f = float(process.log_scale_derivative(t64))
        z = noise()
        x = x + (t_next - t_cur) * (f * x - g**2 * model.score(x, t_batch)) + g * math.sqrt(t_cur - t_next) * z
        if callback is not None:
            callback(i + 1, t_next, x)
        if i + 1 in save_index:
            saved[i + 1] = x
    return x, [saved[k] for k in save_index]

