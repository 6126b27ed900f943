"""RL² from scratch: an LSTM actor-critic meta-trained with REINFORCE and a learned baseline.

One file, read top to bottom in the order the algorithm runs:

    model      lstm_step / lstm_step_backward, policy_head, value_head (+ backwards)
    rollout    B episodes of T steps, the LSTM state reset at every episode start
    loss       GAE(λ) advantages, policy-gradient, value and entropy terms (+ gradients)
    update     backprop-through-time, global-norm clipping, Adam
    training   the loop, progress lines, atomic checkpoints, bit-identical resume
    CLI        train / evaluate / bench / curve

Shapes: T steps, B episodes, H hidden units, I = len(x_t) inputs, A actions. Time-major
arrays (T, B, ...) throughout. Step t reads input x_t and state (h_t, c_t), writes
(h_{t+1}, c_{t+1}), and acts from h_{t+1}: a_t ~ π_t = softmax(h_{t+1} W_pi + b_pi).
"""
import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field

if __name__ == "__main__":
    # The command line runs OpenBLAS on one thread unless the user sets OPENBLAS_NUM_THREADS
    # (it must be set before NumPy loads). Measured on 2 cores (README, "Speed"): a second
    # thread gains ~20 % at B = 64 on a quiet machine, and loses 1.5-2.4× as soon as one
    # other process is busy, since it spin-waits for a core.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from numba import njit

import belief
import envs
from boundary import (OneLineErrorParser, atomic_write, check_float, check_int, check_int_array,
                      check_memory, check_real_array, focus_on_plateau, new_figure, one_line,
                      parse_json, prepare_output_file, run_cli, save_png)


# ------------------------------------------------------------------------------------------
# Hyper-parameters: the CLI of `train` and its checks are generated from this dataclass.
# ------------------------------------------------------------------------------------------
def param(default, help, low=None, high=None, low_open=False, high_open=False, choices=None):
    """A Config field: its default, its meaning, and the values it accepts (a closed interval
    [low, high] unless open at an end; `choices` for a string)."""
    accepted = {"low": low, "high": high, "low_open": low_open, "high_open": high_open,
                "choices": choices}
    return field(default=default, metadata={"help": help, "accepted": accepted})


@dataclass(frozen=True)
class Config:
    """Everything a training run depends on. The defaults are the plain learner (REINFORCE with
    a learned baseline, γ = 0.95, float64); RECIPES holds each family's recommended settings."""

    env: str = param("bandit", "task distribution", choices=envs.FAMILIES)  # the live registry
    arms: int = param(2, "bandit arms k", 2, envs.MAX_ARMS)
    horizon: int = param(0, "steps per episode T (0: the env's default)", 0, envs.MAX_HORIZON)
    prior_a: float = param(1.0, "bandits: Beta(a, b) prior of the arms' p", 1e-3, 1e3)
    prior_b: float = param(1.0, "bandits: Beta(a, b) prior of the arms' p", 1e-3, 1e3)
    hidden: int = param(48, "LSTM units H", 1, 4096)
    batch: int = param(64, "episodes (tasks) per update B", 1)
    updates: int = param(20000, "number of updates", 1)
    lr: float = param(2e-3, "Adam learning rate at update 0", 0.0, 1.0, low_open=True)
    anneal_lr: bool = param(True, "decay the rate linearly to 0 by the last update")
    gamma: float = param(0.95, "discount γ; < 1 lowers the variance of G", 0.0, 1.0)
    gae_lambda: float = param(1.0, "GAE λ; 1 is REINFORCE with baseline", 0.0, 1.0)
    value_weight: float = param(0.5, "weight c_V of the value loss", 0.0, 1e3)
    entropy_start: float = param(0.02, "entropy weight β at update 0", 0.0, 1e3)
    entropy_end: float = param(0.001, "β at the end of its schedule", 0.0, 1e3)
    entropy_schedule: str = param("linear", "β from start to end: linear or exp (geometric)",
                                  choices=("linear", "exp"))
    entropy_frac: float = param(1.0, "fraction of the run over which β reaches its end value, "
                                     "then held", 0.0, 1.0, low_open=True)
    loss_reward_scale: float = param(0.0, "rewards enter the loss divided by this (0: the "
                                          "env's input scale)", 0.0, 1e6)
    adv_norm: bool = param(False, "standardise Â over the batch (mean 0, sd 1) in L_π")
    max_grad_norm: float = param(1.0, "global gradient-norm clip", 0.0, 1e6, low_open=True)
    seed: int = param(0, "seed of initialisation and of every update", 0)
    dtype: str = param("float64", "float64 (auditing) or float32 (speed)",
                       choices=("float64", "float32"))
    log_every: int = param(500, "updates between progress lines", 1)
    save_every: int = param(2000, "updates between checkpoints", 1)
    objective: str = param("rl2", "rl2: the policy gradient on the return; distill: cross-entropy "
                                  "to the Bayes-optimal policy plus belief regression (a "
                                  "known belief-state LSTM)", choices=("rl2", "distill"))
    belief_weight: float = param(1.0, "distill: weight w_B of the belief-feature regression", 0.0,
                                 1e3)


# The recommended recipe of each task family: the Config fields where it differs from the
# defaults above (the plain learner, in float64 for auditing). `metarl.py train --env E` and
# experiments.py both train with recipe(E); a family without an entry trains with the
# defaults. Measured on 2 cores with 100,000 evaluation episodes (README, "Recipes"):
#   - γ = 1: the references maximise the undiscounted return, and the bandits' exploration
#     pays off late; with γ = 1, GAE λ < 1 keeps the variance of Â in check, and the rewards
#     enter the loss divided by 10 so that the value loss does not swamp the policy's;
#   - Â normalised over the batch, a larger rate (4e-3) and β decaying geometrically to ~0:
#     a near-deterministic final policy;
#   - float32: as good as float64 here, at about 60 % of the time per update (bench).
BANDIT_RECIPE = dict(gamma=1.0, gae_lambda=0.95, adv_norm=True, loss_reward_scale=10.0, lr=4e-3,
                     entropy_schedule="exp", entropy_end=1e-4, updates=12000, dtype="float32")
RECIPES = {
    # the bandit: twice the updates at half the batch (the same episodes). Which exploration
    # trade-off a run settles into is decided late, by the run; more, smaller steps make it
    # settle nearer Bayes (pseudo-regret / Bayes-optimal's over seeds 0-9, 100,000 episodes:
    # mean 1.11, worst 1.18 with OpenBLAS's own kernels; mean 1.13, worst 1.16 pinned to
    # Haswell; B = 64 × 12,000 gave 1.11-1.27 over seeds 0-4)
    "bandit": {**BANDIT_RECIPE, "batch": 32, "updates": 24000},
    "dependent-bandit": {**BANDIT_RECIPE, "gae_lambda": 0.98, "entropy_start": 0.005,
                         "entropy_end": 1e-5, "updates": 8000},
    "two-step": {**BANDIT_RECIPE, "updates": 6000},
    # Tiger: a near-uniform start (β = 1), or the −100 door drives the policy onto "always
    # listen" within ~1,000 updates; β then decays geometrically, so that it spends most of
    # the run small and the final policy is near-deterministic (measured, 100,000 episodes:
    # 20.1-20.3 ± 0.13 sampled against 18.1 with the linear decay; Bayes-optimal 20.39).
    # β ends at 1e-4, reached by 8,000 more updates at the rate of the decay to 1e-3 in
    # 25,000: the sampled policy nears its most likely action (seeds 0-4 under both BLAS
    # kernel selections: 20.15-20.30 sampled, where ending at 1e-3 gave 19.83-20.25);
    # decaying faster, to 1e-4 within 25,000 updates, trapped one seed in 5 at -10.6
    "tiger": dict(updates=33000, lr=1e-3, entropy_start=1.0, entropy_schedule="exp",
                  entropy_end=1e-4, dtype="float32"),
}


def recipe(env="bandit", **given):
    """The Config of env's recommended recipe (RECIPES), with the `given` fields over it."""
    return Config(**{**RECIPES.get(env, {}), "env": env, **given})


# Distillation (objective "distill"): the agent's inputs, width and heads, trained on its own
# rollouts to act as the exact reference does (belief.reference_q: Bayes-optimal for the
# bandits and Tiger, belief-greedy for two-step) and to carry the exact belief features
# linearly in h. It is the calibration panel's trained *belief* machine, and the ceiling of
# what a 48-unit LSTM can represent. The RL-only fields (γ, λ, β, c_V) are not read.
DISTILL_RECIPE = dict(objective="distill", lr=3e-3, updates=6000, dtype="float32")


def distill_recipe(env="bandit", **given):
    """The Config of env's distillation recipe (DISTILL_RECIPE), `given` fields over it."""
    return Config(**{**DISTILL_RECIPE, "env": env, **given})


ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.999, 1e-8  # Kingma & Ba (2015) defaults


def check_hyperparameters(hp):
    """Raise ValueError in the user's words for a hyper-parameter of the wrong type or out of
    the range its field accepts (NaN and ±inf included), or an env setting that does not fit."""
    for f in dataclasses.fields(Config):
        check_field(f, getattr(hp, f.name))
    if hp.entropy_schedule == "exp" and min(hp.entropy_start, hp.entropy_end) <= 0:
        raise ValueError(f"--entropy-schedule exp needs --entropy-start and --entropy-end > 0, "
                         f"got {hp.entropy_start} and {hp.entropy_end}")
    env_config(hp)


def check_field(f, value):
    """value, checked against Config field f's type and accepted values."""
    name, ok = envs.flag(f.name), f.metadata["accepted"]
    if f.type is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
    elif f.type is str:
        if value not in ok["choices"]:
            raise ValueError(f"{name} must be one of {', '.join(ok['choices'])}, got {value!r}")
    elif f.type is int:
        check_int(name, value, ok["low"], ok["high"])
    else:
        check_float(name, value, ok["low"], ok["high"], ok["low_open"], ok["high_open"])


def env_config(hp):
    """The envs.EnvConfig that hp trains on (checked; settings its family ignores refused)."""
    return envs.make_config(hp.env, horizon=hp.horizon or None, arms=hp.arms,
                            prior_a=hp.prior_a, prior_b=hp.prior_b)


# ------------------------------------------------------------------------------------------
# Model: parameters
# ------------------------------------------------------------------------------------------
def initial_params(hp, cfg, dtype=None):
    """The weights `train` starts hp's run from (init_params on stream(hp.seed)), in hp.dtype
    unless `dtype` is given: the untrained network that the probes compare with."""
    return init_params(envs.n_inputs(cfg), hp.hidden, envs.n_actions(cfg), stream(hp.seed),
                       np.dtype(hp.dtype if dtype is None else dtype))


def init_params(n_in, H, A, rng, dtype=np.float64):
    """Parameters as a dict of arrays; the gates are stacked as [i, f, o, g] along 4H.

    W   (I, 4H)  uniform ±1/√I (the fan-in range of PyTorch's layers): x_t W is O(1) at start.
    U   (H, 4H)  each H×H gate block orthogonal (Saxe et al. 2014): the recurrence neither
                 shrinks nor blows up h at the start, so gradients flow over T = 100 steps.
    b   (4H,)    zero, except the forget gate's 1 (Jozefowicz et al. 2015): start by remembering.
    W_pi (H, A)  small (×0.01), so the first policy is near uniform (as CleanRL's actor).
    b_pi (A,)    zero.
    w_V (H,)     uniform ±1/√H;  b_V (1,) zero.
    """
    U = np.concatenate([orthogonal(H, rng) for _ in range(4)], axis=1)
    b = np.zeros(4 * H)
    b[H:2 * H] = 1.0
    params = {
        "W": rng.uniform(-1, 1, (n_in, 4 * H)) / np.sqrt(n_in),
        "U": U,
        "b": b,
        "W_pi": 0.01 * rng.standard_normal((H, A)),
        "b_pi": np.zeros(A),
        "w_V": rng.uniform(-1, 1, H) / np.sqrt(H),
        "b_V": np.zeros(1),
    }
    return {k: v.astype(dtype) for k, v in params.items()}


def orthogonal(n, rng):
    """A uniformly random n×n orthogonal matrix (QR of a Gaussian, signs fixed by diag R)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


# ------------------------------------------------------------------------------------------
# Model: LSTM cell, forward and backward side by side
# ------------------------------------------------------------------------------------------
def lstm_step(x, h, c, W, U, b, out=None):
    """One LSTM step for B episodes (Hochreiter & Schmidhuber 1997; no peepholes).

        z  = x W + h U + b                  (B, 4H), split as [z_i, z_f, z_o, z_g]
        i  = σ(z_i)      input gate
        f  = σ(z_f)      forget gate
        o  = σ(z_o)      output gate
        g  = tanh(z_g)   candidate cell
        c' = f ⊙ c + i ⊙ g
        h' = o ⊙ tanh(c')

    How it is computed, fastest first: h U in BLAS; x W + b (I ≈ 5 inputs) and the gate
    arithmetic in fused Numba loops; σ(z) = (1 + tanh(z/2)) / 2 (equal, cannot overflow) so
    that one vectorised NumPy tanh serves all four gates (NumPy's tanh is SIMD; a tanh inside
    a Numba loop is a scalar libm call, measured 16× slower in float32). `out` = (h', c',
    gates, tanh(c')) are buffers to write into (the rollout's), so a step makes no temporary
    arrays. Returns h' (B, H), c' (B, H) and the cache (gates = [i, f, o, g] (B, 4H),
    tanh(c') (B, H)) that lstm_step_backward needs. The rollout runs these same calls, with
    the RL² input fused into the input kernel (rl2_input_and_halve) and lstm_output into its
    acting kernel (act).
    """
    if out is None:
        out = (np.empty_like(c), np.empty_like(c), np.empty((c.shape[0], U.shape[1]), c.dtype),
               np.empty_like(c))
    h_new, c_new, gates, tanh_c = out
    lstm_gates(x, h, c, W, U, b, c_new, gates, tanh_c)
    lstm_output(gates, tanh_c, h_new)
    return h_new, c_new, (gates, tanh_c)


def lstm_gates(x, h, c, W, U, b, c_new, gates, tanh_c):
    """Everything of lstm_step but h': gates = [i, f, o, g], c' and tanh(c'), into buffers."""
    np.matmul(h, U, out=gates)
    add_input_and_halve(gates, x, W, b)   # z = x W + h U + b, then z_i, z_f, z_o halved
    gate_activations(gates, c, c_new, tanh_c)


def gate_activations(gates, c, c_new, tanh_c):
    """From the halved pre-activations in `gates` to [i, f, o, g], c' and tanh(c')."""
    np.tanh(gates, out=gates)
    cell_update(gates, c, c_new)          # [i, f, o] = (1 + tanh) / 2;  c' = f ⊙ c + i ⊙ g
    np.tanh(c_new, out=tanh_c)


@njit(cache=True)
def add_input_and_halve(z, x, W, b):
    """z ← z + x W + b; then z_i, z_f, z_o ← z / 2, the argument of tanh in σ(z)."""
    n_sigmoid, half = 3 * (z.shape[1] // 4), z.dtype.type(0.5)  # typed: float32 stays float32
    for e in range(z.shape[0]):
        z_e, x_e = z[e], x[e]   # row views: the loops over j then vectorise
        for k in range(x_e.shape[0]):
            W_k = W[k]
            for j in range(z_e.shape[0]):
                z_e[j] += x_e[k] * W_k[j]
        for j in range(z_e.shape[0]):
            z_e[j] += b[j]
        for j in range(n_sigmoid):
            z_e[j] *= half


@njit(cache=True)
def cell_update(gates, c, c_new):
    """gates[:, :3H] ← (1 + gates) / 2 (turning tanh(z/2) into σ(z)); c' = f ⊙ c + i ⊙ g."""
    H = c.shape[1]
    half, one = gates.dtype.type(0.5), gates.dtype.type(1.0)  # typed: float32 stays float32
    for e in range(c.shape[0]):
        gates_e = gates[e]
        for j in range(3 * H):
            gates_e[j] = half * (one + gates_e[j])
        i, f, g = gates_e[:H], gates_e[H:2 * H], gates_e[3 * H:]
        c_e, c_new_e = c[e], c_new[e]
        for j in range(H):
            c_new_e[j] = f[j] * c_e[j] + i[j] * g[j]


@njit(cache=True)
def lstm_output(gates, tanh_c, h_new):
    """h' = o ⊙ tanh(c'), o = gates[:, 2H:3H]."""
    H = h_new.shape[1]
    for e in range(h_new.shape[0]):
        o, tanh_c_e, h_e = gates[e, 2 * H:3 * H], tanh_c[e], h_new[e]
        for j in range(H):
            h_e[j] = o[j] * tanh_c_e[j]


def lstm_step_backward(dh_new, dc_new, cache, c, U, out=None):
    """Differentiates lstm_step: from dL/dh' and dL/dc' to dL/dz, dL/dh, dL/dc.

    With σ' = σ(1 − σ) and tanh' = 1 − tanh²:
        do  = dh' ⊙ tanh(c')
        dc~ = dc' + dh' ⊙ o ⊙ (1 − tanh²(c'))        total gradient reaching c'
        di  = dc~ ⊙ g,   df = dc~ ⊙ c,   dg = dc~ ⊙ i
        dz  = [di ⊙ i(1−i), df ⊙ f(1−f), do ⊙ o(1−o), dg ⊙ (1 − g²)]
        dh  = dz Uᵀ,     dc = dc~ ⊙ f
    The element-wise lines run in lstm_cell_backward, one fused pass (in NumPy they take
    ~20 passes over small arrays, each dominated by call overhead); dz Uᵀ is BLAS. The
    parameter gradients dW = Σ xᵀ dz, dU = Σ hᵀ dz, db = Σ dz are summed over all steps at
    once by lstm_param_grads (one large matrix product instead of T small ones). `out` =
    (dz, dh, dc) are buffers to write into. BPTT (loss_and_gradients) runs these same two
    calls, with dL/dh' summed from its two sources inside the kernel.
    """
    gates, tanh_c = cache
    if out is None:
        out = (np.empty_like(gates), np.empty_like(c), np.empty_like(c))
    dz, dh, dc = out
    lstm_cell_backward(dh_new, np.zeros_like(dh_new), dc_new, gates, tanh_c, c, dz, dc)
    np.matmul(dz, U.T, out=dh)
    return dz, dh, dc


@njit(cache=True)
def lstm_cell_backward(dh_heads, dh_next, dc_new, gates, tanh_c, c, dz, dc):
    """The element-wise part of lstm_step_backward (see its docstring), written into dz, dc,
    with dh' = dh_heads + dh_next: in BPTT the gradient reaching h' comes from the heads at
    this step and from the next step through h' U (summed here, not in a NumPy pass)."""
    H = c.shape[1]
    one = gates.dtype.type(1.0)  # a float64 literal would promote float32 work to float64
    for e in range(c.shape[0]):
        # gate blocks and rows as views: named as in the equations, and the loop vectorises
        i, f, o, g = gates[e, :H], gates[e, H:2 * H], gates[e, 2 * H:3 * H], gates[e, 3 * H:]
        di, df, do, dg = dz[e, :H], dz[e, H:2 * H], dz[e, 2 * H:3 * H], dz[e, 3 * H:]
        dh_heads_e, dh_next_e, dc_new_e, tanh_c_e, c_e, dc_e = (
            dh_heads[e], dh_next[e], dc_new[e], tanh_c[e], c[e], dc[e])
        for j in range(H):
            dh = dh_heads_e[j] + dh_next_e[j]
            dc_total = dc_new_e[j] + dh * o[j] * (one - tanh_c_e[j] * tanh_c_e[j])
            di[j] = dc_total * g[j] * i[j] * (one - i[j])
            df[j] = dc_total * c_e[j] * f[j] * (one - f[j])
            do[j] = dh * tanh_c_e[j] * o[j] * (one - o[j])
            dg[j] = dc_total * i[j] * (one - g[j] * g[j])
            dc_e[j] = dc_total * f[j]


def lstm_param_grads(x, h_prev, dz):
    """dW = Σ_{t,e} x_tᵀ dz_t, dU = Σ h_tᵀ dz_t, db = Σ dz_t for stacked (T, B, ·) arrays."""
    n = dz.shape[0] * dz.shape[1]
    dz2 = dz.reshape(n, -1)
    # dzᵀ h then transposed: OpenBLAS is several times faster on this operand order
    return (dz2.T @ x.reshape(n, -1)).T, (dz2.T @ h_prev.reshape(n, -1)).T, dz2.sum(axis=0)


# ------------------------------------------------------------------------------------------
# Model: heads, forward and backward side by side
# ------------------------------------------------------------------------------------------
def policy_head(h, W_pi, b_pi, out=None):
    """logits = h W_pi + b_pi;  log π = logits − log Σ_a exp(logits);  π = exp(log π).

    h is (B, H) or (T, B, H). The logits by linear_head, the softmax row by row in
    log_softmax_rows (the log-sum-exp is shifted by the max so exp cannot overflow): the
    rollout's own kernels, so that π here and π in a rollout are the same numbers.
    Returns (logits, π, log π), written into `out` if given."""
    A, H = W_pi.shape[1], h.shape[-1]
    if out is None:
        out = tuple(np.empty(h.shape[:-1] + (A,), h.dtype) for _ in range(3))
    logits, pi, log_pi = (v.reshape(-1, A) for v in out)
    rows = h.reshape(-1, H)
    linear_head(rows, W_pi, b_pi, np.empty((H, len(rows)), h.dtype), logits)
    log_softmax_rows(logits, pi, log_pi)
    return out


@njit(cache=True)
def linear_head(h, W, b, h_T, y):
    """y = h W + b for rows h (N, H), W (H, K): y[n, k] = b_k + Σ_j h[n, j] W[j, k], summed in
    the order j = 0, 1, …. The sums run along rows of h_T = hᵀ (H, N), a scratch buffer, so
    that the innermost loop (over n) vectorises: row by row, each y[n, k] is one chain of H
    dependent additions (measured 4.1 against 2.3 µs at N = 64, H = 48, K = 2)."""
    N, H = h.shape
    for j in range(H):
        for n in range(N):
            h_T[j, n] = h[n, j]
    for k in range(W.shape[1]):
        acc = np.full(N, b[k])
        for j in range(H):
            w, h_j = W[j, k], h_T[j]
            for n in range(N):
                acc[n] += h_j[n] * w
        for n in range(N):
            y[n, k] = acc[n]


@njit(cache=True)
def log_softmax_rows(logits, pi, log_pi):
    """log π = logits − m − log Σ_a exp(logits − m), m = max_a logits, and π = exp(log π),
    for every row of logits (N, A)."""
    for n in range(logits.shape[0]):
        row = logits[n]
        m = row.max()
        total = 0.0
        for a in range(row.shape[0]):
            total += np.exp(row[a] - m)
        log_total = m + np.log(total)
        for a in range(row.shape[0]):
            log_pi[n, a] = row[a] - log_total
            pi[n, a] = np.exp(log_pi[n, a])


def value_head(h, w_V, b_V):
    """V = h w_V + b_V, the learned baseline (state value). (T, B, H) -> (T, B)."""
    return h @ w_V + b_V


def heads_backward(dlogits, dV, h, W_pi, w_V):
    """Differentiates policy_head (logits = h W_pi + b_pi) and value_head (V = h w_V + b_V):

        dh = dlogits W_piᵀ + dV w_Vᵀ,   dW_pi = Σ hᵀ dlogits,  db_pi = Σ dlogits,
        dw_V = Σ dV h,                  db_V = Σ dV.
    Both heads are linear in h, so they are stacked into one (H, A + 1) matrix: two matrix
    products over all T·B rows instead of four."""
    A, H = W_pi.shape[1], h.shape[-1]
    dY = np.concatenate([dlogits, dV[..., None]], axis=-1).reshape(-1, A + 1)   # (T·B, A+1)
    W_heads = np.concatenate([W_pi, w_V[:, None]], axis=1)                      # (H, A+1)
    dh = (dY @ W_heads.T).reshape(h.shape)
    dW_heads, db_heads = h.reshape(-1, H).T @ dY, dY.sum(axis=0)
    return dh, {"W_pi": dW_heads[:, :A], "b_pi": db_heads[:A],
                "w_V": dW_heads[:, A], "b_V": db_heads[A:]}


# ------------------------------------------------------------------------------------------
# Rollout: B episodes, one Python loop over time
# ------------------------------------------------------------------------------------------
@dataclass
class Trajectory:
    """What a rollout saw and computed, time-major. h[t], c[t] are the state *before* step t
    (h[0] = c[0] = 0, the reset); the policy π[t] was computed from h[t+1]."""

    x: np.ndarray        # (T, B, I)    agent inputs
    a: np.ndarray        # (T, B)       actions
    r: np.ndarray        # (T, B)       rewards as the env gave them
    obs: np.ndarray      # (T, B, n_obs) env observation that followed a[t]
    tasks: np.ndarray    # (T, B, d)    hidden task when a[t] was taken
    h: np.ndarray        # (T+1, B, H)
    c: np.ndarray        # (T+1, B, H)
    gates: np.ndarray    # (T, B, 4H)   [i, f, o, g] of step t
    tanh_c: np.ndarray   # (T, B, H)    tanh(c[t+1])
    logits: np.ndarray   # (T, B, A)
    pi: np.ndarray       # (T, B, A)
    log_pi: np.ndarray   # (T, B, A)
    dz: np.ndarray = None  # (T, B, 4H) dL/dz of step t: made by loss_and_gradients on first
                           # use and kept, since training reuses one Trajectory's buffers


def rollout(params, cfg, batch, rng, greedy=False, actions=None, out=None, implant=None):
    """Run `batch` fresh episodes of env cfg with the LSTM policy.

    The env draws its tasks and noise from rng, then the action uniforms are drawn, so a seed
    fixes everything. Actions are sampled from π (inverse CDF), or its most likely action if
    greedy, or replayed from `actions` (T, B) (used by the gradient checks). `implant` =
    (t_s, h, c), (B, H) each, replaces the state carried into step t_s (before it reads x_{t_s})
    by (h, c): the state-splicing test; the steps before t_s are those of the same seed without
    it (an implanted trajectory is for analysis: its h[t_s] is not step t_s − 1's output, so
    it has no loss gradient). `out`, a previous Trajectory of the same shapes, is overwritten
    instead of allocating new arrays: training reuses one set of buffers (fresh
    multi-megabyte arrays each update cost page faults).

    Per step, seven calls: h U in BLAS; rl2_input_and_halve (x_t from step t − 1's outcome,
    then x W + b); gate_activations (two NumPy tanh around the cell kernel); act (h', the
    policy, a_t); the family's step kernel (envs.Family.step). The env kernel is called from
    here rather than from a jitted kernel: a Numba kernel handed another as an argument is
    neither cached nor cheap to call (measured: recompiled in every process, 5.6 µs per call),
    and a dispatch on the family inside the learner would make a new family edit metarl.py.
    Every check (shapes, replayed actions, implant, buffers) is made once, before the loop."""
    check_param_shapes(params, cfg)
    T, H = cfg.horizon, params["U"].shape[0]
    A, dtype = envs.n_actions(cfg), params["U"].dtype
    env = envs.make_env(cfg, batch, dtype)
    mode = REPLAY if actions is not None else GREEDY if greedy else SAMPLE
    if actions is not None:
        actions = check_int_array("actions", actions, (T, batch), 0, A)
    if implant is not None:
        implant = checked_implant(implant, T, batch, H, dtype)
    shapes = trajectory_shapes(T, batch, env.n_in, H, A, envs.n_observations(cfg),
                               envs.task_dim(cfg), dtype)
    if out is not None:
        check_trajectory_buffers(out, shapes)
    x_0 = env.reset(rng)
    u = rng.random((T, batch))
    tr = out if out is not None else new_trajectory(shapes)
    tr.x[0], tr.h[0], tr.c[0] = x_0, 0.0, 0.0   # every episode starts from the zero state
    W, U, b, W_pi, b_pi = (params[k] for k in ("W", "U", "b", "W_pi", "b_pi"))
    replay = actions if actions is not None else tr.a   # read only in REPLAY mode
    h_T = np.empty((H, batch), dtype)                   # linear_head's scratch
    step, tasks, means, par, noise = env.family.step, env.tasks, env.means, env.par, env.noise
    for t in range(T):
        if implant is not None and t == implant[0]:
            tr.h[t], tr.c[t] = implant[1], implant[2]
        np.matmul(tr.h[t], U, out=tr.gates[t])
        rl2_input_and_halve(t, tr.gates, tr.x, W, b, tr.a, tr.r, tr.obs, tasks, tr.tasks, A,
                            env.scale, env.family.clock)
        gate_activations(tr.gates[t], tr.c[t], tr.c[t + 1], tr.tanh_c[t])
        act(t, tr.gates, tr.tanh_c, W_pi, b_pi, h_T, mode, u, replay, tr.h, tr.logits, tr.pi,
            tr.log_pi, tr.a)
        step(tr.a[t], noise[t], tasks, means, tr.obs[t], par, tr.r[t])
    return tr


SAMPLE, GREEDY, REPLAY = 0, 1, 2   # how `act` chooses a_t


@njit(cache=True)
def rl2_input_and_halve(t, gates, x, W, b, a, r, obs, tasks, tr_tasks, n_act, scale, clock):
    """The start of step t for B episodes, written into the rollout's (T, ·) arrays at t:
        x_t = the RL² input of step t − 1's a, r, o        envs.fill_rl2_input (t > 0; x_0
                                                          is the env's reset input)
        tr_tasks[t] = the hidden task a_t is taken in     (Tiger and two-step move it)
        z = x_t W + h_t U + b, z_i, z_f, z_o halved       add_input_and_halve, with h_t U
                                                          already in gates[t]"""
    if t > 0:
        envs.fill_rl2_input(x[t], a[t - 1], r[t - 1], obs[t - 1], t, x.shape[0], n_act, scale,
                            clock)
    tr_tasks[t] = tasks
    add_input_and_halve(gates[t], x[t], W, b)


@njit(cache=True)
def act(t, gates, tanh_c, W_pi, b_pi, h_T, mode, u, replay, h, logits, pi, log_pi, a):
    """Step t's output and action for B episodes, after gate_activations, written into the
    rollout's (T, ·) arrays at t:
        h_{t+1} = o ⊙ tanh(c_{t+1})                        lstm_output
        logits = h_{t+1} W_pi + b_pi, π, log π              linear_head, log_softmax_rows
        a_t ~ π by the inverse CDF at u[t, e] (SAMPLE), the most likely action (GREEDY, the
            first on a tie) or replay[t, e] (REPLAY)"""
    lstm_output(gates[t], tanh_c[t], h[t + 1])
    linear_head(h[t + 1], W_pi, b_pi, h_T, logits[t])
    log_softmax_rows(logits[t], pi[t], log_pi[t])
    a_t, pi_t = a[t], pi[t]
    for e in range(a_t.shape[0]):
        if mode == SAMPLE:
            a_t[e] = inverse_cdf(pi_t[e], u[t, e])
        elif mode == GREEDY:
            a_t[e] = np.argmax(pi_t[e])
        else:
            a_t[e] = replay[t, e]


def checked_implant(implant, T, B, H, dtype):
    """implant = (t_s, h, c) with t_s an integer in [0, T) and h, c finite (B, H) arrays, as
    (t_s, h, c) in the rollout's dtype; else ValueError."""
    if not isinstance(implant, tuple) or len(implant) != 3:
        raise ValueError("implant must be a tuple (t_s, h, c)")
    t_s = check_int("implant time t_s", implant[0], 0, T - 1)
    h, c = (check_real_array(f"implanted {name}", v, (B, H)).astype(dtype)
            for name, v in zip("hc", implant[1:]))
    return t_s, h, c


def trajectory_shapes(T, B, I, H, A, n_obs, d, dtype):
    """{field: (shape, dtype)} of a rollout's buffers (see Trajectory)."""
    return {"x": ((T, B, I), dtype), "a": ((T, B), np.int64), "r": ((T, B), np.float64),
            "obs": ((T, B, n_obs), np.float64), "tasks": ((T, B, d), np.float64),
            "h": ((T + 1, B, H), dtype), "c": ((T + 1, B, H), dtype),
            "gates": ((T, B, 4 * H), dtype), "tanh_c": ((T, B, H), dtype),
            "logits": ((T, B, A), dtype), "pi": ((T, B, A), dtype), "log_pi": ((T, B, A), dtype)}


def new_trajectory(shapes):
    """Empty buffers for a rollout, of trajectory_shapes' shapes."""
    return Trajectory(**{k: np.empty(shape, dtype) for k, (shape, dtype) in shapes.items()})


def check_trajectory_buffers(tr, shapes):
    """ValueError unless every buffer of tr (a Trajectory given as rollout's `out`) has the
    shape and dtype the rollout writes: its kernels index them unchecked."""
    if not isinstance(tr, Trajectory):
        raise ValueError(f"out must be a Trajectory from an earlier rollout, got {type(tr).__name__}")
    wanted = {**shapes, "dz": (shapes["gates"][0], shapes["gates"][1])}
    for k, (shape, dtype) in wanted.items():
        v = getattr(tr, k)
        if k == "dz" and v is None:
            continue
        if not (isinstance(v, np.ndarray) and v.shape == shape and v.dtype == dtype
                and v.flags.c_contiguous):
            got = f"{v.dtype} {v.shape}" if isinstance(v, np.ndarray) else type(v).__name__
            raise ValueError(f"out.{k} is {got}; this rollout needs {np.dtype(dtype)} {shape}")


def rollout_bytes(cfg, B, H, dtype):
    """Bytes of one rollout's buffers (new_trajectory, the env's noise and the action
    uniforms) plus what loss_and_gradients adds (dz, dh, the heads' temporaries)."""
    T, I, A = cfg.horizon, envs.n_inputs(cfg), envs.n_actions(cfg)
    per_step = np.dtype(dtype).itemsize * (I + 2 * H + 4 * H + H + 3 * A + 4 * H + 2 * H + 3 * A)
    per_step += 8 * (2 + envs.n_observations(cfg) + envs.task_dim(cfg) + envs.UNIFORMS_PER_STEP + 1)
    return (T + 1) * B * per_step


def training_bytes(hp, cfg):
    """Bytes a training run holds: one rollout with its gradients, the parameters with their
    gradients and Adam moments, and the history (6 numbers per update); ×1.5 for temporaries."""
    I, A, H = envs.n_inputs(cfg), envs.n_actions(cfg), hp.hidden
    n_params = (I + H + 1) * 4 * H + (H + 1) * (A + 1)
    return int(1.5 * (rollout_bytes(cfg, hp.batch, H, hp.dtype)
                      + 4 * n_params * np.dtype(hp.dtype).itemsize + 6 * 8 * hp.updates))


@njit(cache=True)
def sample_categorical(pi, u, a):
    """a_e = inverse_cdf(π_e, u_e) for every row e, written into a."""
    for e in range(pi.shape[0]):
        a[e] = inverse_cdf(pi[e], u[e])


@njit(cache=True)
def inverse_cdf(p, u):
    """The first k with u < p(0) + ... + p(k); the last action also catches rounding of the
    CDF below 1."""
    cdf = 0.0
    for k in range(p.shape[0] - 1):
        cdf += p[k]
        if u < cdf:
            return k
    return p.shape[0] - 1


# ------------------------------------------------------------------------------------------
# Loss: advantages, and each term with its gradient
# ------------------------------------------------------------------------------------------
def gae_advantages(r, V, gamma, lam):
    """GAE(λ) (Schulman et al. 2016) over whole episodes, V after the last step = 0:

        δ_t = r_t + γ V_{t+1} − V_t,   Â_t = δ_t + γλ Â_{t+1}.
    With λ = 1, Â_t = G_t − V_t where G_t = Σ_k γ^k r_{t+k}: REINFORCE with a baseline.
    Returns (Â, R = Â + V), R being the value target. Both are constants for the gradient."""
    A = np.empty_like(V)
    gae_backward_recursion(r.astype(V.dtype), V, gamma, lam, A)
    return A, A + V


@njit(cache=True)
def gae_backward_recursion(r, V, gamma, lam, A):
    """Â_t = r_t + γ V_{t+1} − V_t + γλ Â_{t+1} for t = T−1 … 0, written into A (T, B)."""
    T, B = r.shape
    for e in range(B):
        next_A, next_V = 0.0, 0.0
        for t in range(T - 1, -1, -1):
            next_A = r[t, e] + gamma * next_V - V[t, e] + gamma * lam * next_A
            A[t, e], next_V = next_A, V[t, e]


def policy_gradient_loss(log_pi, pi, a, adv):
    """L_π = −(1/N) Σ_{t,e} Â_t log π_t(a_t), N = T·B, and dL_π/dlogits.

    With log π = logits − logsumexp(logits): d log π(a)/dlogits = onehot(a) − π."""
    N = a.size
    onehot = np.zeros_like(pi)
    np.put_along_axis(onehot, a[..., None], 1.0, axis=-1)
    log_pi_a = np.take_along_axis(log_pi, a[..., None], axis=-1)[..., 0]
    return -(adv * log_pi_a).sum() / N, -(adv / N)[..., None] * (onehot - pi)


def entropy_bonus(log_pi, pi):
    """𝓗 = −(1/N) Σ_{t,e} Σ_a π log π (mean policy entropy) and d𝓗/dlogits.

    d𝓗_t/dlogit_j = −π_j (log π_j + 𝓗_t), 𝓗_t the entropy of step t."""
    N = pi.shape[0] * pi.shape[1]
    H_t = -(pi * log_pi).sum(axis=-1, keepdims=True)
    return H_t.sum() / N, -pi * (log_pi + H_t) / N


def value_loss(V, R):
    """L_V = (1/N) Σ ½ (V_t − R_t)² and dL_V/dV = (V − R)/N."""
    N = V.size
    diff = V - R
    return 0.5 * (diff * diff).sum() / N, diff / N


def loss_and_gradients(params, tr, adv, R, value_weight, entropy_weight):
    """L = L_π + c_V L_V − β 𝓗 of a trajectory, and dL/dθ for every parameter array θ,
    by backprop-through-time over the whole episode. adv, R are held constant.

    The heads are differentiated for all steps at once; the only loop is the recurrence,
    dL/dh_{t+1} = (from the heads at step t) + (from step t+1 through h_{t+1} U)."""
    V = value_head(tr.h[1:], params["w_V"], params["b_V"])
    L_pi, dlogits = policy_gradient_loss(tr.log_pi, tr.pi, tr.a, adv)
    ent, dent = entropy_bonus(tr.log_pi, tr.pi)
    L_V, dV = value_loss(V, R)
    dlogits -= entropy_weight * dent
    grads = backprop_through_time(params, tr, dlogits, value_weight * dV)
    loss = L_pi + value_weight * L_V - entropy_weight * ent
    return {"loss": loss, "policy": L_pi, "value": L_V, "entropy": ent}, grads


def backprop_through_time(params, tr, dlogits, dV, dh_extra=None):
    """dL/dθ for every parameter array θ, given dL/dlogits and dL/dV at every step (T, B, ·)
    and, if given, a further dL/dh' (T, B, H) from a loss that reads h' directly.

    The heads are differentiated for all steps at once (heads_backward); the only loop is
    the recurrence, dL/dh_{t+1} = (from the heads at step t) + (from step t+1 through
    h_{t+1} U)."""
    dh, grads = heads_backward(dlogits, dV, tr.h[1:], params["W_pi"], params["w_V"])
    if dh_extra is not None:
        dh += dh_extra
    if tr.dz is None:
        tr.dz = np.empty_like(tr.gates)                                   # (T, B, 4H)
    dz = tr.dz
    dh_next, dc_next = np.zeros_like(tr.h[0]), np.zeros_like(tr.c[0])     # from beyond T: 0
    dc_prev, U_T = np.empty_like(dc_next), params["U"].T
    for t in reversed(range(tr.a.shape[0])):   # lstm_step_backward, with dh' = dh[t] + dh_next
        lstm_cell_backward(dh[t], dh_next, dc_next, tr.gates[t], tr.tanh_c[t], tr.c[t], dz[t],
                           dc_prev)
        np.matmul(dz[t], U_T, out=dh_next)
        dc_next, dc_prev = dc_prev, dc_next
    grads["W"], grads["U"], grads["b"] = lstm_param_grads(tr.x, tr.h[:-1], dz)
    return grads


def total_loss(params, tr, adv, R, value_weight, entropy_weight):
    """The scalar L of loss_and_gradients, by the forward pass only (for gradient checks)."""
    V = value_head(tr.h[1:], params["w_V"], params["b_V"])
    L_pi, _ = policy_gradient_loss(tr.log_pi, tr.pi, tr.a, adv)
    ent, _ = entropy_bonus(tr.log_pi, tr.pi)
    L_V, _ = value_loss(V, R)
    return L_pi + value_weight * L_V - entropy_weight * ent


# ------------------------------------------------------------------------------------------
# Distillation loss: act as the reference does, and carry the belief linearly in h
# ------------------------------------------------------------------------------------------
BELIEF_RIDGE = 1e-4   # keeps the belief readout's normal equations well posed (h may be collinear)


def cross_entropy_loss(log_pi, pi, target):
    """L_CE = −(1/N) Σ_{t,e} Σ_a π*_t(a) log π_t(a), N = T·B, and dL_CE/dlogits = (π − π*)/N
    (d log π(a)/dlogits = onehot(a) − π, and Σ_a π*(a) = 1). π* is the tie-split policy of
    the reference's Q (belief.tie_split_policy): uniform over its best actions."""
    N = pi.shape[0] * pi.shape[1]
    return -float((target * log_pi).sum()) / N, (pi - target) / N


def belief_regression_loss(h, F, ridge=BELIEF_RIDGE):
    """L_B = min over M, m of (1/2N) Σ_{t,e} ‖h_{t+1} M + m − F̃_t‖² + (ridge/2) ‖M‖², and dL_B/dh.

    F (T, B, n_f) are the exact belief features before each action, standardised over the
    batch (F̃; a column that does not vary is left at 0); h (T, B, H) the states the policy
    acts from. The minimiser is the ridge regression M* = (h_cᵀh_c/N + ridge I)⁻¹ h_cᵀF̃_c/N
    (centred columns), m* = mean F̃ − (mean h) M*. At the minimum ∂L/∂M = ∂L/∂m = 0, so the
    total derivative through (M*, m*) is the partial one (envelope theorem):
        dL_B/dh = (h M* + m* − F̃) M*ᵀ / N.
    The readout is refitted on every batch, so it adds no parameter: a distilled checkpoint
    is one like any other. Solved in float64 whatever h's dtype."""
    T, B, H = h.shape
    N = T * B
    X, Y = h.reshape(N, H).astype(np.float64), F.reshape(N, -1).astype(np.float64)
    Y = (Y - Y.mean(axis=0)) / np.maximum(Y.std(axis=0), 1e-12)   # F̃ (mean 0 already)
    mean_X = X.mean(axis=0)
    Xc = X - mean_X
    M = np.linalg.solve(Xc.T @ Xc / N + ridge * np.eye(H), Xc.T @ Y / N)   # (H, n_f)
    residual = Xc @ M - Y                   # h M* + m* − F̃, with m* = −(mean h) M*
    loss = 0.5 * float((residual * residual).sum()) / N + 0.5 * ridge * float((M * M).sum())
    return loss, (residual @ M.T / N).reshape(T, B, H).astype(h.dtype)


def distillation_targets(cfg, tr, ref):
    """π* (T, B, A), the tie-split policy of the reference's Q at every step of tr, and the
    exact belief features F (T, B, n_f), in tr's dtype."""
    fam = belief.belief_family(cfg)
    beliefs = belief.belief_trajectory(cfg, tr.a, tr.r, tr.obs)
    q = fam.reference_q(cfg, ref, beliefs)
    target = belief.tie_split_policy(q.reshape(-1, q.shape[-1])).reshape(q.shape)
    F, _ = fam.features(cfg, beliefs)
    return target.astype(tr.pi.dtype), F


def distillation_loss_and_gradients(params, tr, target, F, belief_weight):
    """L = L_CE + w_B L_B of a trajectory (cross_entropy_loss, belief_regression_loss) and
    dL/dθ by backprop-through-time; the value head is not trained (dL/dV = 0). Statistics:
    "policy" is L_CE, "value" is L_B, "entropy" the mean policy entropy."""
    L_CE, dlogits = cross_entropy_loss(tr.log_pi, tr.pi, target)
    L_B, dh = belief_regression_loss(tr.h[1:], F)
    ent, _ = entropy_bonus(tr.log_pi, tr.pi)
    grads = backprop_through_time(params, tr, dlogits, np.zeros(tr.a.shape, tr.pi.dtype),
                                  belief_weight * dh)
    return {"loss": L_CE + belief_weight * L_B, "policy": L_CE, "value": L_B,
            "entropy": ent}, grads


# ------------------------------------------------------------------------------------------
# Update: clipping and Adam, written out
# ------------------------------------------------------------------------------------------
def clip_by_global_norm(grads, max_norm):
    """g ← g · min(1, max_norm / ‖g‖), ‖g‖ the norm of all arrays together. Returns ‖g‖."""
    norm = float(np.sqrt(sum(float((g * g).sum()) for g in grads.values())))
    if norm > max_norm:
        for g in grads.values():
            g *= max_norm / norm
    return norm


def adam_init(params):
    """Adam's state: first and second moment estimates m, v (zeros) and the step count k."""
    return {"m": {k: np.zeros_like(p) for k, p in params.items()},
            "v": {k: np.zeros_like(p) for k, p in params.items()}, "k": 0}


def adam_step(params, grads, opt, lr):
    """One Adam step (Kingma & Ba 2015), in place:

        m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²
        θ ← θ − lr · m̂ / (√v̂ + ε),  m̂ = m / (1 − β₁^k),  v̂ = v / (1 − β₂^k)."""
    opt["k"] += 1
    k = opt["k"]
    step = lr * np.sqrt(1 - ADAM_BETA2 ** k) / (1 - ADAM_BETA1 ** k)  # both bias corrections
    eps_hat = ADAM_EPS * np.sqrt(1 - ADAM_BETA2 ** k)  # ε moved inside: same update, fewer ops
    for name, g in grads.items():
        m, v = opt["m"][name], opt["v"][name]
        m *= ADAM_BETA1
        m += (1 - ADAM_BETA1) * g
        v *= ADAM_BETA2
        v += (1 - ADAM_BETA2) * (g * g)
        params[name] -= float(step) * m / (np.sqrt(v) + float(eps_hat))


def update(params, opt, hp, cfg, rng, entropy_weight, lr, buffers=None):
    """One meta-training update: B fresh tasks → rollout → GAE → BPTT → clip → Adam.

    Returns the trajectory and a dict of statistics (mean return, losses, gradient norm).
    `buffers`: the trajectory the previous update returned, reused for this rollout."""
    tr = rollout(params, cfg, hp.batch, rng, out=buffers)
    r = (tr.r / loss_reward_scale(hp, cfg)).astype(tr.h.dtype)
    V = value_head(tr.h[1:], params["w_V"], params["b_V"])
    adv, R = gae_advantages(r, V, hp.gamma, hp.gae_lambda)
    if hp.adv_norm:
        adv = normalize_advantages(adv)
    stats, grads = loss_and_gradients(params, tr, adv, R, hp.value_weight, entropy_weight)
    stats["grad_norm"] = clip_by_global_norm(grads, hp.max_grad_norm)
    check_finite_statistics(stats)   # a NaN norm is never > max_norm: it would reach Adam
    adam_step(params, grads, opt, lr)
    stats["return"] = float(tr.r.sum(axis=0).mean())
    return tr, stats


def distill_update(params, opt, hp, cfg, rng, lr, targets, buffers=None):
    """One distillation update: B fresh tasks → rollout of the student's own policy →
    targets(tr) = (π* (T, B, A), F (T, B, n_f)) on its histories → BPTT of L_CE + w_B L_B →
    clip → Adam. `metarl.py distill` uses the reference's tie-split policy and the exact
    belief features (distillation_targets, its reference built once per run); the panel's
    trained non-belief LSTM uses other targets."""
    tr = rollout(params, cfg, hp.batch, rng, out=buffers)
    target, F = targets(tr)
    stats, grads = distillation_loss_and_gradients(params, tr, target, F, hp.belief_weight)
    stats["grad_norm"] = clip_by_global_norm(grads, hp.max_grad_norm)
    check_finite_statistics(stats)
    adam_step(params, grads, opt, lr)
    stats["return"] = float(tr.r.sum(axis=0).mean())
    return tr, stats


def agreement_with_reference(params, cfg, episodes, seed):
    """Fraction of steps of `episodes` fresh sampled episodes at which the most likely action
    of π is one of the reference's best actions (belief.agreement_rate: ties agree)."""
    tr = rollout(params, cfg, episodes, stream(seed, EVAL_STREAM))
    q = belief.reference_q(cfg, tr.a, tr.r, tr.obs)
    return belief.agreement_rate(q.reshape(-1, q.shape[-1]), tr.pi.reshape(-1, q.shape[-1]))


class NonFiniteUpdate(ValueError):
    """A loss or gradient norm that is NaN or infinite: the update is refused before Adam."""


STATISTIC_WORDS = {"policy": "policy loss", "value": "value loss", "entropy": "entropy",
                   "loss": "loss", "grad_norm": "grad norm"}


def check_finite_statistics(stats):
    """NonFiniteUpdate naming every quantity of stats that is not finite, with its value, the
    loss's terms first: a loss that is NaN because a term is infinite (0 × inf, inf − inf)
    is then reported with the infinite term, not as NaN alone."""
    bad = [f"the {words} is {float(stats[name])}" for name, words in STATISTIC_WORDS.items()
           if not np.isfinite(stats[name])]
    if bad:
        raise NonFiniteUpdate(", ".join(bad))


def loss_reward_scale(hp, cfg):
    """Rewards enter G, Â and the value target R divided by this: hp.loss_reward_scale, or the
    env's input scale (envs.reward_scale) if 0. With γ = 1 a bandit's G_t is up to T = 100:
    unscaled, the value loss ½(V − R)² then dominates the shared LSTM's gradient and the
    global-norm clip, and the policy term hardly moves."""
    return hp.loss_reward_scale or envs.reward_scale(cfg)


def normalize_advantages(adv):
    """Â ← (Â − mean Â) / (sd Â + ε) over all T·B steps of the batch. The policy gradient's
    direction is unchanged in expectation up to a baseline shift and a positive scale; its
    size no longer follows the batch's reward scale. R = Â + V is computed before, so the
    value target is not affected."""
    return (adv - adv.mean()) / (adv.std() + adv.dtype.type(1e-8))


def entropy_weight_at(hp, u):
    """β from entropy_start (update 0) to entropy_end at update s = entropy_frac·(updates − 1),
    then held at entropy_end. With f = min(u / s, 1):
        linear: β = β_start + f (β_end − β_start);   exp: β = β_start (β_end / β_start)^f."""
    frac = min(u / max(hp.entropy_frac * (hp.updates - 1), 1), 1.0)
    if hp.entropy_schedule == "exp":
        return hp.entropy_start * (hp.entropy_end / hp.entropy_start) ** frac
    return hp.entropy_start + frac * (hp.entropy_end - hp.entropy_start)


def learning_rate_at(hp, u):
    """lr (1 − u / updates) if anneal_lr (as CleanRL's PPO), else lr: large steps early, and
    late updates that average the policy-gradient noise instead of chasing it."""
    return hp.lr * (1.0 - u / hp.updates) if hp.anneal_lr else hp.lr


def stream(seed, *key):
    """The generator numbered `key` under `seed`: the child SeedSequence(seed).spawn()[key].

    Update u of a run uses stream(seed, u), initialisation stream(seed), evaluation chunk j
    stream(eval_seed, EVAL_STREAM, j). A run resumed at update u thus draws exactly what the
    uninterrupted run drew, and no two uses share numbers. (Seeding with [seed, u] instead
    would not do: NumPy gives [0] and [0, 0] the same state.)"""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


EVAL_STREAM = 2 ** 32  # evaluation streams sit above every update number


# ------------------------------------------------------------------------------------------
# Training: the loop, progress, checkpoints
# ------------------------------------------------------------------------------------------
HISTORY = ("return", "loss", "policy", "value", "entropy", "grad_norm")


def print_now(line):
    """Progress goes out at once, also when stdout is a file or a pipe (block-buffered)."""
    print(line, flush=True)


def train(hp, out, resume=False, log=print_now, on_update=None, targets=None):
    """Meta-train an LSTM on hp's task distribution; checkpoint to `out` (.npz; None: don't).

    Each update samples B fresh tasks, runs B whole episodes with the LSTM state reset to
    zero at their start, and takes one Adam step on the loss of all B·T steps: the
    policy-gradient loss (update) for objective rl2, the distillation loss (distill_update)
    for distill. With
    resume=True and an existing `out`, training continues from it bit-identically.
    on_update(u, params, stats), if given, is called after update u (e.g. to keep snapshots).
    targets(tr) → (π*, F), for objective distill only: what to distil instead of the exact
    reference's policy and belief (the calibration panel's trained non-belief LSTM).
    Returns the trained parameters."""
    check_hyperparameters(hp)
    cfg = env_config(hp)
    check_memory(training_bytes(hp, cfg), f"training with --batch {hp.batch}, --hidden "
                 f"{hp.hidden}, T = {cfg.horizon} and --updates {hp.updates}")
    if out is not None:
        prepare_output_file(out, "--out")   # now, not after minutes of training
    if resume and out is not None and os.path.exists(out):
        ckpt = load_checkpoint(out)
        if ckpt["hp"] != hp:
            raise ValueError(f"--resume: the settings differ from those stored in {out}")
        params, opt, start, history = ckpt["params"], ckpt["opt"], ckpt["update"], ckpt["history"]
        log(f"resuming {out} at update {start}")
    else:
        params = initial_params(hp, cfg)
        opt, start, history = adam_init(params), 0, {k: np.zeros(0) for k in HISTORY}
    history = {k: np.concatenate([v, np.full(hp.updates - start, np.nan)]) for k, v in history.items()}
    if targets is not None and hp.objective != "distill":
        raise ValueError("targets are for objective distill")
    if hp.objective == "distill":
        if targets is None:
            ref = belief.reference(cfg)   # once per run: the bandit DP takes seconds
            targets = lambda tr: distillation_targets(cfg, tr, ref)
        step = lambda u, tr: distill_update(params, opt, hp, cfg, stream(hp.seed, u),
                                            learning_rate_at(hp, u), targets, buffers=tr)
        labels = ("CE", "B")
    else:
        step = lambda u, tr: update(params, opt, hp, cfg, stream(hp.seed, u),
                                    entropy_weight_at(hp, u), learning_rate_at(hp, u), buffers=tr)
        labels = ("pi", "V")
    t0, steps, tr, saved = time.perf_counter(), 0, None, start
    for u in range(start, hp.updates):
        try:
            tr, stats = step(u, tr)
        except NonFiniteUpdate as e:
            kept = (f"{out} still holds update {saved}" if out is not None and saved > 0
                    else "nothing was saved")
            raise ValueError(f"update {u + 1}: {e}; training stopped before this update "
                             f"changed the parameters ({kept}); try a smaller --lr or "
                             "--max-grad-norm") from None
        for k in HISTORY:
            history[k][u] = stats[k]
        if on_update is not None:
            on_update(u, params, stats)
        steps += hp.batch * cfg.horizon
        done = u + 1
        if done % hp.log_every == 0 or done == hp.updates:
            elapsed = time.perf_counter() - t0
            recent = history["return"][max(start, done - hp.log_every):done].mean()
            log(f"update {done:6d}/{hp.updates} | return {recent:7.2f} | loss {stats['loss']:+.4f} "
                f"({labels[0]} {stats['policy']:+.4f} {labels[1]} {stats['value']:.4f} "
                f"H {stats['entropy']:.3f}) | "
                f"{steps / elapsed:9.0f} steps/s | {elapsed:6.1f} s")
        if out is not None and (done % hp.save_every == 0 or done == hp.updates):
            save_checkpoint(out, hp, params, opt, done, {k: v[:done] for k, v in history.items()})
            saved = done
    return params


def save_checkpoint(path, hp, params, opt, update_count, history):
    """Write everything a run needs to continue into one .npz, atomically (temp + rename).

    The RNG state is not stored because it is not needed: update u always uses stream(seed, u).
    Parameters or Adam moments that are not finite are refused: a checkpoint never holds poison."""
    arrays = {"config": np.array(json.dumps(dataclasses.asdict(hp))),
              "update": np.array(update_count), "adam_k": np.array(opt["k"])}
    for k in params:
        arrays[f"param/{k}"], arrays[f"adam_m/{k}"], arrays[f"adam_v/{k}"] = (
            params[k], opt["m"][k], opt["v"][k])
    for k, v in history.items():
        arrays[f"history/{k}"] = v
    for key, value in arrays.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ValueError(f"update {update_count}: {key} is not finite; {path} was not written")
    atomic_write(path, lambda f: np.savez(f, **arrays))


PARAM_NAMES = ("W", "U", "b", "W_pi", "b_pi", "w_V", "b_V")


def param_shapes(n_in, H, A):
    """The shape of every parameter array (init_params makes them)."""
    return {"W": (n_in, 4 * H), "U": (H, 4 * H), "b": (4 * H,), "W_pi": (H, A), "b_pi": (A,),
            "w_V": (H,), "b_V": (1,)}


def checkpoint_keys():
    """Every key of a checkpoint, in save_checkpoint's order."""
    return (["config", "update", "adam_k"]
            + [f"{group}/{k}" for k in PARAM_NAMES for group in ("param", "adam_m", "adam_v")]
            + [f"history/{k}" for k in HISTORY])


def load_checkpoint(path):
    """Read a checkpoint written by save_checkpoint and check all of it; never unpickles
    (allow_pickle=False).

    Raises ValueError naming the file and the key for a missing, truncated, foreign or pickled
    file, a config of the wrong types or out of range, parameters or Adam moments of the wrong
    shape or dtype or not finite (second moments also ≥ 0), an update count outside [0,
    updates] or unequal to Adam's step count, and a history not one finite number per update."""
    data = read_npz(path)
    missing = [k for k in checkpoint_keys() if k not in data]
    unexpected = [k for k in data if k not in checkpoint_keys()]
    if missing or unexpected:
        raise ValueError(f"{path} is not a metarl checkpoint: "
                         + "; ".join(f"{what} {', '.join(keys)}" for what, keys in
                                     (("missing", missing), ("unexpected", unexpected)) if keys))
    hp = config_from_json(data["config"], path)
    update = checkpoint_scalar(data, "update", path, hp.updates)
    if checkpoint_scalar(data, "adam_k", path, hp.updates) != update:
        raise ValueError(f"{path}: key 'adam_k' is {int(data['adam_k'])} but 'update' is {update} "
                         "(one Adam step per update)")
    cfg = env_config(hp)
    shapes = param_shapes(envs.n_inputs(cfg), hp.hidden, envs.n_actions(cfg))
    for k in PARAM_NAMES:
        for group in ("param", "adam_m", "adam_v"):
            check_checkpoint_array(data, f"{group}/{k}", path, shapes[k], np.dtype(hp.dtype))
        if (data[f"adam_v/{k}"] < 0).any():
            raise ValueError(f"{path}: key 'adam_v/{k}' has negative entries (a second moment)")
    for k in HISTORY:
        check_checkpoint_array(data, f"history/{k}", path, (update,), np.dtype(np.float64))
    opt = {"m": {k: data[f"adam_m/{k}"] for k in PARAM_NAMES},
           "v": {k: data[f"adam_v/{k}"] for k in PARAM_NAMES}, "k": update}
    return {"hp": hp, "params": {k: data[f"param/{k}"] for k in PARAM_NAMES}, "opt": opt,
            "update": update, "history": {k: data[f"history/{k}"] for k in HISTORY}}


def read_npz(path):
    """Every array of an .npz file, as a dict; ValueError for anything that is not one."""
    if os.path.isdir(path):
        raise ValueError(f"checkpoint {path} is a folder, not a file")
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ValueError("a single .npy array, not an .npz archive")
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ValueError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # zipfile.BadZipFile, EOFError, pickled arrays (ValueError), ...
        raise ValueError(f"{path} is not a readable checkpoint (.npz without pickles): "
                         f"{one_line(e)}") from None


def config_from_json(array, path):
    """The Config stored under key 'config' (a JSON string), every field checked."""
    try:
        stored = parse_json(str(array[()])) if array.ndim == 0 and array.dtype.kind == "U" else None
    except ValueError as e:   # not JSON, or nested so deep that parsing it would recurse
        raise ValueError(f"{path}: key 'config' is not a JSON object of settings: {e}") from None
    if not isinstance(stored, dict):
        raise ValueError(f"{path}: key 'config' is not a JSON object of settings")
    names = [f.name for f in dataclasses.fields(Config)]
    missing = [n for n in names if n not in stored]
    unexpected = [n for n in stored if n not in names]
    if missing or unexpected:
        raise ValueError(f"{path}: key 'config' " + "; ".join(
            f"{what} {', '.join(keys)}" for what, keys in
            (("lacks", missing), ("has unknown settings", unexpected)) if keys))
    try:
        for f in dataclasses.fields(Config):
            check_field(f, stored[f.name])
        hp = Config(**stored)
        env_config(hp)
    except ValueError as e:
        raise ValueError(f"{path}: key 'config': {e}") from None
    return hp


def checkpoint_scalar(data, key, path, high):
    """The integer stored under `key`, in [0, high]."""
    a = data[key]
    if a.ndim != 0 or a.dtype.kind not in "iu" or not 0 <= a <= high:
        raise ValueError(f"{path}: key {key!r} must be one integer in [0, {high}], got "
                         f"{a.dtype} {a.shape} {a if a.size == 1 else ''}".rstrip())
    return int(a)


def check_checkpoint_array(data, key, path, shape, dtype):
    """ValueError unless data[key] has this shape and dtype and is all finite."""
    a = data[key]
    if a.shape != tuple(shape) or a.dtype != dtype:
        raise ValueError(f"{path}: key {key!r} is {a.dtype} {a.shape}, expected {dtype} "
                         f"{tuple(shape)}")
    if not np.isfinite(a).all():
        raise ValueError(f"{path}: key {key!r} has NaN or infinite entries")


# ------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------
EVAL_CHUNK = 1000  # episodes per rollout during evaluation (bounds memory, not results)


def evaluate(params, cfg, episodes, seed, greedy=False):
    """Undiscounted total reward of `episodes` fresh episodes: mean and standard error.

    For bandits also the pseudo-regret Σ_t (max_i p_i − p_{a_t}) against the oracle, whose
    standard error is several times smaller than the reward's (no Bernoulli noise)."""
    check_int("--episodes", episodes, 1)
    check_int("--seed", seed, 0)
    check_finite_params(params)
    H = params["U"].shape[0]
    check_memory(rollout_bytes(cfg, min(EVAL_CHUNK, episodes), H, params["U"].dtype)
                 + 2 * 8 * episodes, f"evaluating {episodes} episodes")
    bandit = envs.family(cfg.name).loadings is not None
    totals, pseudo = [], []
    for j, start in enumerate(range(0, episodes, EVAL_CHUNK)):
        tr = rollout(params, cfg, min(EVAL_CHUNK, episodes - start), stream(seed, EVAL_STREAM, j),
                     greedy=greedy)
        totals.append(tr.r.sum(axis=0))
        if bandit:
            pseudo.append(pseudo_regret(cfg, tr))
    result = {"env": cfg.name, "horizon": cfg.horizon, "episodes": episodes,
              "policy": "greedy" if greedy else "sampled", **belief.mean_and_stderr(np.concatenate(totals))}
    if pseudo:
        p = belief.mean_and_stderr(np.concatenate(pseudo))
        result["pseudo_regret"], result["pseudo_regret_stderr"] = p["mean"], p["stderr"]
    return result


def check_param_shapes(params, cfg):
    """ValueError unless params has every array, of the shape cfg's input and action counts and
    its own H give, all of one float dtype: the Numba kernels index them unchecked."""
    if set(params) != set(PARAM_NAMES) or params["U"].ndim != 2:
        raise ValueError(f"parameters must be the arrays {', '.join(PARAM_NAMES)}")
    shapes = param_shapes(envs.n_inputs(cfg), params["U"].shape[0], envs.n_actions(cfg))
    dtype = params["U"].dtype
    for k, shape in shapes.items():
        if params[k].shape != shape or params[k].dtype != dtype or dtype.kind != "f":
            raise ValueError(f"parameter {k} is {params[k].dtype} {params[k].shape}; {cfg.name} "
                             f"needs {dtype} {shape}")


def check_finite_params(params):
    """ValueError naming the first parameter array with a NaN or infinite entry."""
    for k, v in params.items():
        if not np.isfinite(v).all():
            raise ValueError(f"parameter {k} has NaN or infinite entries")


def pseudo_regret(cfg, tr):
    """Σ_t (max_i m_i − m_{a_t}) per episode, m the arm means of the tasks (bandits)."""
    means = envs.arm_means(cfg, tr.tasks)
    chosen = np.take_along_axis(means, tr.a[..., None], axis=2)[..., 0]
    return (means.max(axis=2) - chosen).sum(axis=0)


# ------------------------------------------------------------------------------------------
# Benchmark: the full update, timed (never in a test)
# ------------------------------------------------------------------------------------------
def update_flops(B, T, I, H, A):
    """Floating-point operations of the matrix products of one update (2 per multiply-add):
    forward x W, h U and the heads; backward dz Uᵀ; and dW, dU, the heads' gradients over
    all T·B rows. Element-wise work is left out, so this is what a GEMM-bound update does."""
    forward = 2 * B * (I + H) * 4 * H + 2 * B * H * (A + 1)
    backward = 2 * B * 4 * H * H + 2 * B * (I + H) * 4 * H + 2 * 2 * B * H * (A + 1)
    return T * (forward + backward)


def gemm_flops_per_second(dtype, n=2048, repeats=5):
    """The machine's large-matmul speed: best of `repeats` n×n products, in FLOP/s."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    a @ b
    best = min(timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best


def floor_seconds(B, T, I, H, A, dtype, repeats):
    """Median seconds per update of what no fusing removes, at the update's shapes on random
    numbers: its matrix products (per step h U and dz Uᵀ as rollout and BPTT make them; over
    all steps lstm_param_grads and the heads' two products) and its two NumPy tanh per step
    (gate_activations). The rest of an update's time is element-wise work and calls."""
    rng = stream(0)

    def draw(*shape):
        return (0.1 * rng.standard_normal(shape)).astype(dtype)

    U, W_heads = draw(H, 4 * H), draw(H, A + 1)
    h, x, dz, dY, c = draw(T + 1, B, H), draw(T, B, I), draw(T, B, 4 * H), draw(T * B, A + 1), \
        draw(T, B, H)
    gates, dh = np.empty((T, B, 4 * H), dtype), np.empty((B, H), dtype)

    def products_and_tanh():
        for t in range(T):
            np.matmul(h[t], U, out=gates[t])
            np.tanh(gates[t], out=gates[t])
            np.tanh(c[t], out=c[t])
            np.matmul(dz[t], U.T, out=dh)
        lstm_param_grads(x, h[:T], dz)
        dY @ W_heads.T, h[:T].reshape(-1, H).T @ dY

    products_and_tanh()
    return float(np.median([timed(products_and_tanh) for _ in range(repeats)]))


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(batches=(16, 64, 256), dtypes=("float64", "float32"), hidden=48, horizon=100,
          repeats=20):
    """Median seconds per full update (rollout + BPTT + Adam) on the 2-arm bandit, per
    (dtype, B), with updates/s, agent-steps/s, the fraction of the GEMM peak reached, and the
    floor (floor_seconds: the same update's matrix products and tanh alone)."""
    rows = []
    for dtype in dtypes:
        peak = gemm_flops_per_second(np.dtype(dtype))
        for B in batches:
            hp = Config(env="bandit", arms=2, horizon=horizon, hidden=hidden, batch=B, dtype=dtype)
            cfg = env_config(hp)
            params = init_params(envs.n_inputs(cfg), hidden, 2, stream(0), np.dtype(dtype))
            opt, tr = adam_init(params), None
            runs = []
            for u in range(repeats + 3):       # the first 3 include JIT loading: not counted
                t0 = time.perf_counter()
                tr, _ = update(params, opt, hp, cfg, stream(0, u), 0.01, hp.lr, buffers=tr)
                runs.append(time.perf_counter() - t0)
            runs = runs[3:]
            sec = float(np.median(runs))
            flops = update_flops(B, horizon, envs.n_inputs(cfg), hidden, 2)
            floor = floor_seconds(B, horizon, envs.n_inputs(cfg), hidden, 2, np.dtype(dtype),
                                  repeats)
            rows.append({"dtype": dtype, "batch": B, "ms_per_update": 1e3 * sec,
                         "floor_ms": 1e3 * floor,
                         "updates_per_s": 1 / sec, "steps_per_s": B * horizon / sec,
                         "gemm_peak_gflops": peak / 1e9, "fraction_of_gemm_peak": flops / sec / peak})
    return {"hidden": hidden, "horizon": horizon, "arms": 2, "repeats": repeats,
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "(unset)"), "rows": rows}


# ------------------------------------------------------------------------------------------
# Learning-curve figure
# ------------------------------------------------------------------------------------------
def plot_curve(returns, cfg, references, path, title, window=200):
    """Learning curve of one or more runs (seeds) of the same recipe: the mean over runs of
    each run's return per update, averaged over `window` updates, with a band of ± one
    standard error over runs (when there are ≥ 2), and horizontal reference lines
    {label: value} (the exact Bayes-optimal value, the best classical baseline). PNG."""
    n = min(len(r) for r in returns)
    w = max(1, min(window, n))
    smooth = np.array([np.convolve(r[:n], np.ones(w) / w, mode="valid") for r in returns])
    u = np.arange(w, n + 1)
    fig, axes = new_figure(width=7, height=4)
    ax = axes[0, 0]
    mean = smooth.mean(axis=0)
    ax.plot(u, mean, color="C0", label=f"agent, mean of {len(returns)} seed(s) "
                                        f"({w}-update moving average)")
    if len(returns) > 1:
        se = smooth.std(axis=0, ddof=1) / np.sqrt(len(returns))
        ax.fill_between(u, mean - se, mean + se, color="C0", alpha=0.3, label="± 1 SE over seeds")
    for k, (label, value) in enumerate(references.items()):
        ax.axhline(value, linestyle=("--", ":", "-.")[k % 3], color=f"C{k + 1}", label=label)
    focus_on_plateau(ax, mean)
    ax.set_xlabel("update")
    ax.set_ylabel(f"total reward per episode (T = {cfg.horizon})")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    save_png(fig, path, dpi=120)


# ------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------
def build_parser():
    parser = OneLineErrorParser(prog="metarl.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train_p = sub.add_parser("train", help="meta-train an LSTM agent, checkpointing to --out")
    distill_p = sub.add_parser("distill", help="train an LSTM of the agent's architecture to act "
                                               "as the exact reference and carry the belief")
    for p, make in ((train_p, recipe), (distill_p, distill_recipe)):
        for f in dataclasses.fields(Config):
            p.add_argument(envs.flag(f.name), default=argparse.SUPPRESS,
                           type=parse_bool if f.type is bool else f.type,
                           help=f"{f.metadata['help']} ({recipe_defaults(f.name, make)})")
        p.add_argument("--out", required=True, help="checkpoint path (.npz)")
        p.add_argument("--resume", action="store_true", help="continue the run stored in --out")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    eval_p = sub.add_parser("evaluate", help="mean total reward of a checkpoint on fresh tasks")
    eval_p.add_argument("checkpoint")
    eval_p.add_argument("--episodes", type=int, default=10000)
    eval_p.add_argument("--seed", type=int, default=1, help="evaluation seed (fresh tasks)")
    eval_p.add_argument("--greedy", action="store_true", help="act by the most likely action")
    eval_p.add_argument("--json", action="store_true")
    bench_p = sub.add_parser("bench", help="time the full update at B = 16, 64, 256")
    bench_p.add_argument("--repeats", type=int, default=20)
    bench_p.add_argument("--json", action="store_true")
    curve_p = sub.add_parser("curve", help="learning-curve PNG of one or more seeds, with the "
                                           "Bayes-optimal value and the best classical baseline")
    curve_p.add_argument("checkpoint", nargs="+", help="checkpoints of one recipe (seeds)")
    curve_p.add_argument("--out", required=True, help="PNG path")
    curve_p.add_argument("--episodes", type=int, default=20000, help="for the baselines")
    curve_p.add_argument("--seed", type=int, default=0)
    return parser


def recipe_defaults(name, make=recipe):
    """The default of a field as --help shows it: one value, or one per family's recipe."""
    values = {env: getattr(make(env), name) for env in envs.FAMILIES}
    if name == "env" or len(set(values.values())) == 1:
        return f"default {getattr(make(), name)}"
    return "default: " + ", ".join(f"{env} {value}" for env, value in values.items())


def parse_bool(text):
    """argparse type for yes/no flags: true/false, yes/no, 1/0."""
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def command_train(args, make=recipe):
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if hasattr(args, f.name)}
    if os.path.isdir(args.out):
        raise ValueError(f"--out {args.out} is a folder; give a checkpoint file path (.npz)")
    if args.resume and os.path.exists(args.out):
        stored = load_checkpoint(args.out)["hp"]
        differ = [k for k, v in given.items() if getattr(stored, k) != v]
        if differ:
            raise ValueError(f"--resume: {', '.join('--' + k.replace('_', '-') for k in differ)} "
                             f"differ from the values stored in {args.out}")
        hp = stored
    elif os.path.exists(args.out) and not args.overwrite:
        raise ValueError(f"{args.out} exists; pass --resume to continue it or --overwrite to replace it")
    else:
        hp = make(**given)
    train(hp, args.out, resume=args.resume)


def command_distill(args):
    """train with the distillation recipe, then the agreement with the reference's actions
    on 2,000 fresh episodes (evaluation seed 1, as `evaluate`'s default)."""
    if getattr(args, "objective", "distill") != "distill":
        raise ValueError("metarl.py distill trains with --objective distill; use train for rl2")
    command_train(args, make=distill_recipe)
    ckpt = load_checkpoint(args.out)
    agreement = agreement_with_reference(ckpt["params"], env_config(ckpt["hp"]), 2000, seed=1)
    print_now(f"agreement with the reference's best actions on 2000 fresh episodes: "
              f"{agreement:.4f}")


def command_evaluate(args):
    check_int("--episodes", args.episodes, 1)
    ckpt = load_checkpoint(args.checkpoint)
    cfg = env_config(ckpt["hp"])
    ref = belief.reference(cfg)   # first: a DP too large is refused before the evaluation
    result = evaluate(ckpt["params"], cfg, args.episodes, args.seed, greedy=args.greedy)
    result.update(belief.exact_values(cfg, ref))
    if args.json:
        print(json.dumps(result))
        return
    for k, v in result.items():
        print(f"{k:22s} {v:.4f}" if isinstance(v, float) else f"{k:22s} {v}")


def command_bench(args):
    result = bench(repeats=check_int("--repeats", args.repeats, 1))
    if args.json:
        print(json.dumps(result))
        return
    print(f"full update (rollout + BPTT + Adam), bandit k=2, H={result['hidden']}, "
          f"T={result['horizon']}, OPENBLAS_CORETYPE={result['OPENBLAS_CORETYPE']}, "
          f"OPENBLAS_NUM_THREADS={result['OPENBLAS_NUM_THREADS']}")
    print(f"{'dtype':8s} {'B':>4s} {'ms/update':>10s} {'updates/s':>10s} {'steps/s':>11s} "
          f"{'GEMM peak':>10s} {'floor ms':>9s}")
    for r in result["rows"]:
        print(f"{r['dtype']:8s} {r['batch']:4d} {r['ms_per_update']:10.2f} {r['updates_per_s']:10.1f} "
              f"{r['steps_per_s']:11.0f} {100 * r['fraction_of_gemm_peak']:9.1f}% "
              f"{r['floor_ms']:9.2f}")
    print("floor: the update's matrix products and NumPy tanh alone (metarl.floor_seconds)")


def command_curve(args):
    runs = [load_checkpoint(path) for path in args.checkpoint]
    cfg = env_config(runs[0]["hp"])
    differ = [path for path, run in zip(args.checkpoint, runs) if env_config(run["hp"]) != cfg]
    if differ:
        raise ValueError(f"{', '.join(differ)} trained on other tasks than {args.checkpoint[0]}")
    untrained = [path for path, run in zip(args.checkpoint, runs) if run["update"] == 0]
    if untrained:
        raise ValueError(f"{', '.join(untrained)} holds no update yet (saved at update 0): "
                         "a learning curve needs at least one")
    check_int("--seed", args.seed, 0)
    prepare_output_file(args.out, "--out")
    report = belief.baselines_report(cfg, args.episodes, args.seed)  # builds the DP once
    refs = {}
    if report["bayes_optimal_exact"] is not None:
        refs["Bayes-optimal (exact)"] = report["bayes_optimal_exact"]
    for name, stats in belief.reference_policies(report["policies"]).items():
        refs[f"{name.replace('_', ' ')} ({args.episodes} episodes)"] = stats["mean"]
    hp = runs[0]["hp"]
    plot_curve([run["history"]["return"] for run in runs], cfg, refs, args.out,
               f"RL² LSTM on {cfg.name} (H = {hp.hidden}, B = {hp.batch})")
    print(f"wrote {args.out}")


def main(argv=None):
    args = build_parser().parse_args(argv)
    commands = {"train": command_train, "distill": command_distill, "evaluate": command_evaluate,
                "bench": command_bench,
                "curve": command_curve}
    return run_cli(f"metarl.py {args.command}", lambda: commands[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
