"""RL² from scratch: an LSTM actor-critic meta-trained by REINFORCE with a learned baseline.

The textbook: read top to bottom, in the order the algorithm runs, one equation per line.

    hyper-parameters   Config, the recipes
    model              lstm_step / lstm_step_backward, policy_head / value_head / heads_backward,
                       and with predict_weight > 0 the predictive head (prediction_head, ...)
    rollout            B episodes of T steps, the LSTM state reset at every episode start
    loss               GAE(λ) advantages; policy-gradient, value and entropy terms (+ gradients);
                       the predictive loss on the outcomes of the actions (prediction_loss)
    update             backprop-through-time, global-norm clipping, Adam, one `update`
    training           the loop, with a progress line

Shapes: T steps, B episodes, H hidden units, I = len(x_t) inputs, A actions. Time-major
arrays (T, B, ...) throughout. Step t reads input x_t and state (h_t, c_t), writes
(h_{t+1}, c_{t+1}), and acts from h_{t+1}: a_t ~ π_t = softmax(h_{t+1} W_pi + b_pi). The
README's "Notation" table maps every symbol to its variable, and its "Audit map" each
equation to the function here and the test that checks it.

The rollout, GAE and BPTT each have a fused Numba twin in kernels.py that computes the same
numbers faster; training uses it by default (`fused=True`), and `fused=False` runs the
NumPy below. Checkpoints, evaluation, the benchmark, curves and the command line are in
runs.py; distillation to the exact reference in distill.py.
"""
import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field

if __name__ == "__main__":
    # The command line runs OpenBLAS on one thread unless the user sets OPENBLAS_NUM_THREADS
    # (it must be set before NumPy loads): on 2 cores a second thread spin-waits for a core
    # as soon as another process is busy (README, "Speed").
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

import envs
import kernels
from boundary import check_float, check_int, check_int_array


# ------------------------------------------------------------------------------------------
# Hyper-parameters: the CLI of `train` and its checks are generated from this dataclass.
# ------------------------------------------------------------------------------------------
OBJECTIVES = ("rl2", "distill")
RL2 = ("rl2",)   # a field that only the policy gradient reads


def param(default, help, low=None, high=None, low_open=False, high_open=False, choices=None,
          objectives=OBJECTIVES):
    """A Config field: its default, its meaning, the values it accepts (a closed interval
    [low, high] unless open at an end; `choices` for a string) and the objectives that read it
    (the command line refuses a flag its run's objective does not read)."""
    accepted = {"low": low, "high": high, "low_open": low_open, "high_open": high_open,
                "choices": choices}
    return field(default=default, metadata={"help": help, "accepted": accepted,
                                            "objectives": objectives})


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
    gamma: float = param(0.95, "discount γ; < 1 lowers the variance of G", 0.0, 1.0,
                         objectives=RL2)
    gae_lambda: float = param(1.0, "GAE λ; 1 is REINFORCE with baseline", 0.0, 1.0,
                              objectives=RL2)
    value_weight: float = param(0.5, "weight c_V of the value loss", 0.0, 1e3, objectives=RL2)
    predict_weight: float = param(0.0, "weight c_P of the predictive loss: the outcome of a_t "
                                       "predicted from the state that chose it (0: plain RL²)",
                                  0.0, 1e3, objectives=RL2)
    entropy_start: float = param(0.02, "entropy weight β at update 0", 0.0, 1e3, objectives=RL2)
    entropy_end: float = param(0.001, "β at the end of its schedule", 0.0, 1e3, objectives=RL2)
    entropy_schedule: str = param("linear", "β from start to end: linear or exp (geometric)",
                                  choices=("linear", "exp"), objectives=RL2)
    entropy_frac: float = param(1.0, "fraction of the run over which β reaches its end value, "
                                     "then held", 0.0, 1.0, low_open=True, objectives=RL2)
    loss_reward_scale: float = param(0.0, "rewards enter the loss divided by this (0: the "
                                          "env's input scale)", 0.0, 1e6, objectives=RL2)
    adv_norm: bool = param(False, "standardise Â over the batch (mean 0, sd 1) in L_π",
                           objectives=RL2)
    max_grad_norm: float = param(1.0, "global gradient-norm clip", 0.0, 1e6, low_open=True)
    seed: int = param(0, "seed of initialisation and of every update", 0)
    dtype: str = param("float64", "float64 (auditing) or float32 (speed)",
                       choices=("float64", "float32"))
    log_every: int = param(500, "updates between progress lines", 1)
    save_every: int = param(2000, "updates between checkpoints", 1)
    objective: str = param("rl2", "rl2: the policy gradient on the return; distill: cross-entropy "
                                  "to the Bayes-optimal policy plus belief regression (a "
                                  "known belief-state LSTM)", choices=OBJECTIVES)
    belief_weight: float = param(1.0, "distill: weight w_B of the belief-feature regression", 0.0,
                                 1e3, objectives=("distill",))


# Each family's recommended recipe: the Config fields where it differs from the defaults
# above. `metarl.py train --env E` and experiments.py both train with recipe(E). The reasons
# (how they were chosen: the README's "Training recipes"; what they give: docs/REPORT.md §1):
#   - γ = 1: the references maximise the undiscounted return, and the bandits' exploration
#     pays off late; GAE λ < 1 then keeps the variance of Â in check, and the rewards enter
#     the loss divided by 10 so that the value loss does not swamp the policy's;
#   - Â normalised over the batch, a larger rate and β decaying geometrically to ~0: a
#     near-deterministic final policy; float32: as good as float64, and faster;
#   - the bandit: more, smaller updates make a run settle nearer Bayes;
#   - Tiger: a near-uniform start (β = 1), or the −100 door drives the policy onto "always
#     listen" early; β then decays geometrically at a rate that does not trap a seed.
BANDIT_RECIPE = dict(gamma=1.0, gae_lambda=0.95, adv_norm=True, loss_reward_scale=10.0, lr=4e-3,
                     entropy_schedule="exp", entropy_end=1e-4, updates=12000, dtype="float32")
RECIPES = {
    "bandit": {**BANDIT_RECIPE, "batch": 32, "updates": 24000},
    "dependent-bandit": {**BANDIT_RECIPE, "gae_lambda": 0.98, "entropy_start": 0.005,
                         "entropy_end": 1e-5, "updates": 8000},
    "two-step": {**BANDIT_RECIPE, "updates": 6000},
    "tiger": dict(updates=33000, lr=1e-3, entropy_start=1.0, entropy_schedule="exp",
                  entropy_end=1e-4, dtype="float32"),
}


def recipe(env="bandit", **given):
    """The Config of env's recommended recipe (RECIPES), with the `given` fields over it."""
    return Config(**{**RECIPES.get(env, {}), "env": env, **given})


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


def stream(seed, *key):
    """The generator numbered `key` under `seed`: the child SeedSequence(seed).spawn()[key].

    Update u of a run uses stream(seed, u), initialisation stream(seed), evaluation chunk j
    stream(eval_seed, EVAL_STREAM, j). A run resumed at update u thus draws exactly what the
    uninterrupted run drew, and no two uses share numbers. (Seeding with [seed, u] instead
    would not do: NumPy gives [0] and [0, 0] the same state.)"""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


EVAL_STREAM = 2 ** 32  # evaluation streams sit above every update number


# ------------------------------------------------------------------------------------------
# Model: parameters
# ------------------------------------------------------------------------------------------
PARAM_NAMES = ("W", "U", "b", "W_pi", "b_pi", "w_V", "b_V")
PREDICT_NAMES = ("W_P", "b_P")   # the predictive head: only in a run with predict_weight > 0


def param_names(hp):
    """The parameter arrays hp's run trains: the LSTM and its two heads, and the predictive
    head if hp.predict_weight > 0."""
    return PARAM_NAMES + (PREDICT_NAMES if hp.predict_weight > 0 else ())


def param_shapes(n_in, H, A, G=0):
    """The shape of every parameter array (init_params makes them); G > 0 adds the predictive
    head for G outcomes per action."""
    shapes = {"W": (n_in, 4 * H), "U": (H, 4 * H), "b": (4 * H,), "W_pi": (H, A), "b_pi": (A,),
              "w_V": (H,), "b_V": (1,)}
    if G:
        shapes.update(W_P=(H, A * G), b_P=(A * G,))
    return shapes


def init_params(n_in, H, A, rng, dtype=np.float64, G=0):
    """Parameters as a dict of arrays; the gates are stacked as [i, f, o, g] along 4H.

    W   (I, 4H)  uniform ±1/√I (the fan-in range of PyTorch's layers): x_t W is O(1) at start.
    U   (H, 4H)  each H×H gate block orthogonal (Saxe et al. 2014): the recurrence neither
                 shrinks nor blows up h at the start, so gradients flow over T = 100 steps.
    b   (4H,)    zero, except the forget gate's 1 (Jozefowicz et al. 2015): start by remembering.
    W_pi (H, A)  small (×0.01), so the first policy is near uniform (as CleanRL's actor).
    b_pi (A,)    zero.
    w_V (H,)     uniform ±1/√H;  b_V (1,) zero.
    W_P (H, A·G), b_P (A·G,)  zero, only if G > 0: the predictive head starts at P(y = 1) = 1/2
                 and draws nothing, so the LSTM starts where the plain run of its seed does.
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
    if G:
        params.update(W_P=np.zeros((H, A * G)), b_P=np.zeros(A * G))
    return {k: v.astype(dtype) for k, v in params.items()}


def orthogonal(n, rng):
    """A uniformly random n×n orthogonal matrix (QR of a Gaussian, signs fixed by diag R)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def initial_params(hp, cfg, dtype=None):
    """The weights `train` starts hp's run from (init_params on stream(hp.seed)), in hp.dtype
    unless `dtype` is given: the untrained network that the probes compare with."""
    return init_params(envs.n_inputs(cfg), hp.hidden, envs.n_actions(cfg), stream(hp.seed),
                       np.dtype(hp.dtype if dtype is None else dtype), n_outcomes(hp, cfg))


def n_outcomes(hp, cfg):
    """G of hp's predictive head: the outcomes each action reveals, 0 without the head."""
    return envs.n_outcomes(cfg) if hp.predict_weight > 0 else 0


# ------------------------------------------------------------------------------------------
# Model: the LSTM cell, forward and backward side by side
# ------------------------------------------------------------------------------------------
def sigmoid(z):
    """σ(z) = 1 / (1 + e^{−z}), computed as (1 + tanh(z/2)) / 2: equal, and e^{−z} cannot
    overflow for very negative z. Fused twin: kernels.cell_update (z halved beforehand by
    kernels.add_input_and_halve, so that one tanh serves all four gates)."""
    return 0.5 * (1 + np.tanh(z / 2))


def lstm_step(x, h, c, W, U, b):
    """One LSTM step for B episodes (Hochreiter & Schmidhuber 1997; no peepholes).

        z  = x W + h U + b                  (B, 4H), split as [z_i, z_f, z_o, z_g]
        i  = σ(z_i)      input gate
        f  = σ(z_f)      forget gate
        o  = σ(z_o)      output gate
        g  = tanh(z_g)   candidate cell
        c' = f ⊙ c + i ⊙ g
        h' = o ⊙ tanh(c')

    Returns h' (B, H), c' (B, H) and the cache lstm_step_backward needs: (gates = [i, f, o, g]
    (B, 4H), tanh(c') (B, H)). Fused twin: kernels.lstm_step."""
    H = h.shape[1]
    z = x @ W + h @ U + b
    i, f, o = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), sigmoid(z[:, 2 * H:3 * H])
    g = np.tanh(z[:, 3 * H:])
    c_new = f * c + i * g
    tanh_c = np.tanh(c_new)
    h_new = o * tanh_c
    return h_new, c_new, (np.concatenate([i, f, o, g], axis=1), tanh_c)


def lstm_step_backward(dh_new, dc_new, cache, c, U):
    """Differentiates lstm_step: from dL/dh' and dL/dc' to dL/dz, dL/dh, dL/dc.

    With σ' = σ(1 − σ) and tanh' = 1 − tanh²:
        do  = dh' ⊙ tanh(c')
        dc~ = dc' + dh' ⊙ o ⊙ (1 − tanh²(c'))        the total gradient reaching c'
        di  = dc~ ⊙ g,   df = dc~ ⊙ c,   dg = dc~ ⊙ i
        dz  = [di ⊙ i(1−i), df ⊙ f(1−f), do ⊙ o(1−o), dg ⊙ (1 − g²)]
        dh  = dz Uᵀ,     dc = dc~ ⊙ f
    The parameter gradients dW = Σ xᵀ dz, dU = Σ hᵀ dz, db = Σ dz are summed over all steps
    at once by lstm_param_grads. Fused twin of the element-wise lines:
    kernels.lstm_cell_backward."""
    gates, tanh_c = cache
    H = c.shape[1]
    i, f, o, g = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    do = dh_new * tanh_c
    dc_total = dc_new + dh_new * o * (1 - tanh_c * tanh_c)
    di, df, dg = dc_total * g, dc_total * c, dc_total * i
    dz = np.concatenate([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g * g)],
                        axis=1)
    return dz, dz @ U.T, dc_total * f


def lstm_param_grads(x, h_prev, dz):
    """dW = Σ_{t,e} x_tᵀ dz_t, dU = Σ h_tᵀ dz_t, db = Σ dz_t for stacked (T, B, ·) arrays."""
    n = dz.shape[0] * dz.shape[1]
    dz2 = dz.reshape(n, -1)
    # dzᵀ h then transposed: OpenBLAS is several times faster on this operand order
    return (dz2.T @ x.reshape(n, -1)).T, (dz2.T @ h_prev.reshape(n, -1)).T, dz2.sum(axis=0)


# ------------------------------------------------------------------------------------------
# Model: the heads, forward and backward side by side
# ------------------------------------------------------------------------------------------
def policy_head(h, W_pi, b_pi):
    """logits = h W_pi + b_pi;  log π = logits − m − log Σ_a exp(logits − m), m = max_a logits
    (shifted so that exp cannot overflow);  π = exp(log π). h is (B, H) or (T, B, H).
    Returns (logits, π, log π). Fused twin: kernels.policy_head."""
    logits = h @ W_pi + b_pi
    m = logits.max(axis=-1, keepdims=True)
    log_pi = logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))
    return logits, np.exp(log_pi), log_pi


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


def prediction_head(h, a, W_P, b_P, G):
    """The predictive head (Kuo et al. 2025's self-supervised objective, inside the agent's own
    LSTM): from the state h_{t+1} that chose a_t, the logits of the outcomes of a_t,

        ℓ_t = (h_{t+1} W_P + b_P)[a_t]        (T, B, G): P̂(y_{t,g} = 1) = σ(ℓ_{t,g}),
    where W_P (H, A·G) holds one column per (action, outcome), a·G + g: the head predicts every
    action's outcomes, and the loss reads the chosen action's (envs.outcomes: the reward for
    the bandits, the tiger's side for Tiger, the second-stage state and the reward for
    two-step). h is (T, B, H), a (T, B). Returns ℓ (T, B, G)."""
    T, B = a.shape
    logits = (h @ W_P + b_P).reshape(T, B, -1, G)                    # (T, B, A, G)
    return np.take_along_axis(logits, a[..., None, None], axis=2)[:, :, 0]


def prediction_loss(logit, y):
    """L_P = (1/N) Σ_{t,e} Σ_g [log(1 + e^{ℓ}) − y ℓ], N = T·B, the cross-entropy of the
    outcomes y_t given σ(ℓ_t), and dL_P/dℓ = (σ(ℓ) − y)/N.

    Why it carries the belief: for a fixed history and action, E[−y log q − (1−y) log(1−q)]
    is minimised by q = P(y = 1 | history, a_t), the posterior predictive, e.g. for a bandit
    arm P(r_t = 1 | history, a_t) = E[p_{a_t} | history] = (α + s)/(α + β + n) under the
    Beta posterior. The loss reads the chosen action's prediction only, so a state at its
    minimum carries the posterior predictive of every action the agent takes: on the bandits
    the posterior mean of each arm it pulls (a function of the belief, not the whole belief:
    the counts behind a mean are not asked for)."""
    N = logit.shape[0] * logit.shape[1]
    loss = float((np.logaddexp(0, logit) - y * logit).sum()) / N   # log(1 + e^ℓ), no overflow
    return loss, (sigmoid(logit) - y) / N


def prediction_head_backward(dlogit, h, a, W_P):
    """Differentiates prediction_head: dL/dℓ (T, B, G) enters the chosen action's columns only,

        dY[t, e, a_t·G + g] = dℓ_{t,e,g} (0 for the other actions),
        dh = dY W_Pᵀ,   dW_P = Σ hᵀ dY,   db_P = Σ dY."""
    T, B, G = dlogit.shape
    H, AG = W_P.shape
    dY = np.zeros((T, B, AG // G, G), dlogit.dtype)
    np.put_along_axis(dY, a[..., None, None], dlogit[:, :, None, :], axis=2)
    dY = dY.reshape(T * B, AG)
    return ((dY @ W_P.T).reshape(T, B, H),
            {"W_P": h.reshape(-1, H).T @ dY, "b_P": dY.sum(axis=0)})


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
    dz: np.ndarray = None  # (T, B, 4H) dL/dz of step t: made by backprop_through_time on
                           # first use and kept, since training reuses one Trajectory's buffers


def rollout(params, cfg, batch, rng, greedy=False, actions=None, out=None, implant=None,
            fused=True):
    """Run `batch` fresh episodes of env cfg with the LSTM policy. For every step t:

        h_{t+1}, c_{t+1} = lstm_step(x_t, h_t, c_t)     h_0 = c_0 = 0 at every episode start
        π_t = softmax(h_{t+1} W_pi + b_pi)              policy_head
        a_t ~ π_t                                       the first a with u_t < Σ_{k≤a} π_t(k)
        r_t, o_t = the env's outcome of a_t             x_{t+1} = [one_hot(a_t), r_t/scale,
                                                        o_t, (t+1)/T, clock] (envs.py)

    The env draws its tasks and noise from rng, then the action uniforms u (T, B) are drawn,
    so a seed fixes everything. Actions are sampled, or the most likely (greedy), or replayed
    from `actions` (T, B) (the gradient checks). `implant` = (t_s, h, c), (B, H) each,
    replaces the state carried into step t_s by (h, c): the state-splicing test (its h[t_s]
    is not step t_s − 1's output, so it has no loss gradient). `out`, a previous Trajectory
    of the same shapes, is overwritten instead of allocating new arrays (training reuses one
    set of buffers). fused=True runs the loop as kernels.rollout_steps, the same numbers
    faster. Every argument is checked once, before the loop: the kernels index unchecked."""
    check_param_shapes(params, cfg)
    T, H, A, dtype = cfg.horizon, params["U"].shape[0], envs.n_actions(cfg), params["U"].dtype
    if actions is not None:
        actions = check_int_array("actions", actions, (T, batch), 0, A)
    if implant is not None:
        implant = kernels.checked_implant(implant, T, batch, H, dtype)
    shapes = kernels.trajectory_shapes(T, batch, envs.n_inputs(cfg), H, A,
                                       envs.n_observations(cfg), envs.task_dim(cfg), dtype)
    if out is not None:
        kernels.check_trajectory_buffers(out, shapes)
    env = envs.make_env(cfg, batch, dtype)
    tr = out if out is not None else new_trajectory(shapes)
    tr.x[0], tr.h[0], tr.c[0] = env.reset(rng), 0.0, 0.0
    u = rng.random((T, batch))
    if fused:
        mode = (kernels.REPLAY if actions is not None else kernels.GREEDY if greedy
                else kernels.SAMPLE)
        kernels.rollout_steps(tr, params, env, mode, u, actions if actions is not None else tr.a,
                              implant)
        return tr
    W, U, b, W_pi, b_pi = (params[k] for k in ("W", "U", "b", "W_pi", "b_pi"))
    for t in range(T):
        if implant is not None and t == implant[0]:
            tr.h[t], tr.c[t] = implant[1], implant[2]
        tr.tasks[t] = env.tasks                      # the hidden task a_t is taken in
        h, c, (gates, tanh_c) = lstm_step(tr.x[t], tr.h[t], tr.c[t], W, U, b)
        logits, pi, log_pi = policy_head(h, W_pi, b_pi)
        if actions is not None:
            a = actions[t]
        elif greedy:
            a = pi.argmax(axis=1)
        else:   # inverse CDF: the number of partial sums Σ_{k≤j} π(k), j < A − 1, at most u
            a = (u[t][:, None] >= np.cumsum(pi, axis=1)[:, :-1]).sum(axis=1)
        x_next, r, _ = env.step(a)
        tr.h[t + 1], tr.c[t + 1], tr.gates[t], tr.tanh_c[t] = h, c, gates, tanh_c
        tr.logits[t], tr.pi[t], tr.log_pi[t] = logits, pi, log_pi
        tr.a[t], tr.r[t], tr.obs[t] = a, r, env.obs
        if t + 1 < T:
            tr.x[t + 1] = x_next
    return tr


def new_trajectory(shapes):
    """Empty buffers for a rollout, of kernels.trajectory_shapes' shapes."""
    return Trajectory(**{k: np.empty(shape, dtype) for k, (shape, dtype) in shapes.items()})


def check_param_shapes(params, cfg):
    """ValueError unless params has every array, of the shape cfg's input and action counts and
    its own H give (and the predictive head's, if it has one: cfg's outcomes per action), all
    of one float dtype: the Numba kernels index them unchecked."""
    if (set(params) not in (set(PARAM_NAMES), set(PARAM_NAMES + PREDICT_NAMES))
            or params["U"].ndim != 2):
        raise ValueError(f"parameters must be the arrays {', '.join(PARAM_NAMES)} (and "
                         f"{', '.join(PREDICT_NAMES)} with a predictive head)")
    shapes = param_shapes(envs.n_inputs(cfg), params["U"].shape[0], envs.n_actions(cfg),
                          envs.n_outcomes(cfg) if "W_P" in params else 0)
    dtype = params["U"].dtype
    for k, shape in shapes.items():
        if params[k].shape != shape or params[k].dtype != dtype or dtype.kind != "f":
            raise ValueError(f"parameter {k} is {params[k].dtype} {params[k].shape}; {cfg.name} "
                             f"needs {dtype} {shape}")


# ------------------------------------------------------------------------------------------
# Loss: advantages, and each term with its gradient
# ------------------------------------------------------------------------------------------
def gae_advantages(r, V, gamma, lam, fused=True):
    """GAE(λ) (Schulman et al. 2016) over whole episodes, V after the last step = 0:

        δ_t = r_t + γ V_{t+1} − V_t,   Â_t = δ_t + γλ Â_{t+1}.
    With λ = 1, Â_t = G_t − V_t where G_t = Σ_k γ^k r_{t+k}: REINFORCE with a baseline.
    Returns (Â, R = Â + V), R being the value target. Both are constants for the gradient.
    Fused twin: kernels.gae_advantages."""
    if fused:
        return kernels.gae_advantages(r, V, gamma, lam)
    A, next_A, next_V = np.empty_like(V), 0.0, 0.0
    for t in reversed(range(r.shape[0])):
        next_A = r[t] + gamma * next_V - V[t] + gamma * lam * next_A
        A[t], next_V = next_A, V[t]
    return A, A + V


def normalize_advantages(adv):
    """Â ← (Â − mean Â) / (sd Â + ε) over all T·B steps of the batch. The policy gradient's
    direction is unchanged in expectation up to a baseline shift and a positive scale; its
    size no longer follows the batch's reward scale. R = Â + V is computed before, so the
    value target is not affected."""
    return (adv - adv.mean()) / (adv.std() + adv.dtype.type(1e-8))


def loss_reward_scale(hp, cfg):
    """Rewards enter G, Â and the value target R divided by this: hp.loss_reward_scale, or the
    env's input scale (envs.reward_scale) if 0. With γ = 1 a bandit's G_t is up to T = 100:
    unscaled, the value loss ½(V − R)² then dominates the shared LSTM's gradient and the
    global-norm clip, and the policy term hardly moves."""
    return hp.loss_reward_scale or envs.reward_scale(cfg)


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


def loss_and_gradients(params, tr, adv, R, value_weight, entropy_weight, predict_weight=0.0,
                       y=None, fused=True):
    """L = L_π + c_V L_V − β 𝓗 (+ c_P L_P if c_P > 0, y (T, B, G) the outcomes) of a
    trajectory, and dL/dθ for every parameter array θ, by backprop-through-time over the whole
    episode. adv, R and y are held constant."""
    V = value_head(tr.h[1:], params["w_V"], params["b_V"])
    L_pi, dlogits = policy_gradient_loss(tr.log_pi, tr.pi, tr.a, adv)
    ent, dent = entropy_bonus(tr.log_pi, tr.pi)
    L_V, dV = value_loss(V, R)
    dlogits -= entropy_weight * dent
    stats = {"loss": L_pi + value_weight * L_V - entropy_weight * ent, "policy": L_pi,
             "value": L_V, "entropy": ent}
    if predict_weight == 0:
        return stats, backprop_through_time(params, tr, dlogits, value_weight * dV, fused=fused)
    logit = prediction_head(tr.h[1:], tr.a, params["W_P"], params["b_P"], y.shape[-1])
    L_P, dlogit = prediction_loss(logit, y)
    dh, head_grads = prediction_head_backward(predict_weight * dlogit, tr.h[1:], tr.a,
                                              params["W_P"])
    grads = backprop_through_time(params, tr, dlogits, value_weight * dV, dh_extra=dh, fused=fused)
    stats["loss"] += predict_weight * L_P
    stats["predict"] = L_P
    return stats, {**grads, **head_grads}


def backprop_through_time(params, tr, dlogits, dV, dh_extra=None, fused=True):
    """dL/dθ for every parameter array θ, given dL/dlogits and dL/dV at every step (T, B, ·)
    and, if given, a further dL/dh' (T, B, H) from a loss that reads h' directly.

    The heads are differentiated for all steps at once (heads_backward); the only loop is the
    recurrence, lstm_step_backward at t = T−1 … 0 with
        dL/dh_{t+1} = (from the heads at step t) + (from step t+1 through h_{t+1} U),
    dL/dc_{t+1} from step t+1 alone, both 0 beyond T. Fused twin of the loop:
    kernels.recurrence_backward."""
    dh, grads = heads_backward(dlogits, dV, tr.h[1:], params["W_pi"], params["w_V"])
    if dh_extra is not None:
        dh += dh_extra
    if tr.dz is None:
        tr.dz = np.empty_like(tr.gates)                                   # (T, B, 4H)
    if fused:
        kernels.recurrence_backward(dh, tr, params["U"], tr.dz)
    else:
        dh_next, dc_next = np.zeros_like(tr.h[0]), np.zeros_like(tr.c[0])
        for t in reversed(range(tr.a.shape[0])):
            tr.dz[t], dh_next, dc_next = lstm_step_backward(
                dh[t] + dh_next, dc_next, (tr.gates[t], tr.tanh_c[t]), tr.c[t], params["U"])
    grads["W"], grads["U"], grads["b"] = lstm_param_grads(tr.x, tr.h[:-1], tr.dz)
    return grads


def total_loss(params, tr, adv, R, value_weight, entropy_weight, predict_weight=0.0, y=None):
    """The scalar L of loss_and_gradients, by the forward pass only (for gradient checks)."""
    V = value_head(tr.h[1:], params["w_V"], params["b_V"])
    L_pi, _ = policy_gradient_loss(tr.log_pi, tr.pi, tr.a, adv)
    ent, _ = entropy_bonus(tr.log_pi, tr.pi)
    L_V, _ = value_loss(V, R)
    loss = L_pi + value_weight * L_V - entropy_weight * ent
    if predict_weight == 0:
        return loss
    logit = prediction_head(tr.h[1:], tr.a, params["W_P"], params["b_P"], y.shape[-1])
    return loss + predict_weight * prediction_loss(logit, y)[0]


# ------------------------------------------------------------------------------------------
# Update: clipping and Adam, written out
# ------------------------------------------------------------------------------------------
ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.999, 1e-8  # Kingma & Ba (2015) defaults


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


def update(params, opt, hp, cfg, rng, entropy_weight, lr, buffers=None, fused=True):
    """One meta-training update: B fresh tasks → rollout → GAE (and the outcomes y of the
    actions, with a predictive head) → BPTT → clip → Adam.

    Returns the trajectory and a dict of statistics (mean return, losses, gradient norm).
    `buffers`: the trajectory the previous update returned, reused for this rollout."""
    tr = rollout(params, cfg, hp.batch, rng, out=buffers, fused=fused)
    r = (tr.r / loss_reward_scale(hp, cfg)).astype(tr.h.dtype)
    V = value_head(tr.h[1:], params["w_V"], params["b_V"])
    adv, R = gae_advantages(r, V, hp.gamma, hp.gae_lambda, fused=fused)
    if hp.adv_norm:
        adv = normalize_advantages(adv)
    y = envs.outcomes(cfg, tr.a, tr.r, tr.obs).astype(tr.h.dtype) if hp.predict_weight else None
    stats, grads = loss_and_gradients(params, tr, adv, R, hp.value_weight, entropy_weight,
                                      hp.predict_weight, y, fused=fused)
    stats["grad_norm"] = clip_by_global_norm(grads, hp.max_grad_norm)
    check_finite_statistics(stats)   # a NaN norm is never > max_norm: it would reach Adam
    adam_step(params, grads, opt, lr)
    stats["return"] = float(tr.r.sum(axis=0).mean())
    return tr, stats


class NonFiniteUpdate(ValueError):
    """A loss or gradient norm that is NaN or infinite: the update is refused before Adam."""


STATISTIC_WORDS = {"policy": "policy loss", "value": "value loss", "entropy": "entropy",
                   "predict": "predictive loss", "loss": "loss", "grad_norm": "grad norm"}


def check_finite_statistics(stats):
    """NonFiniteUpdate naming every quantity of stats that is not finite, with its value, the
    loss's terms first: a loss that is NaN because a term is infinite (0 × inf, inf − inf)
    is then reported with the infinite term, not as NaN alone."""
    bad = [f"the {words} is {float(stats[name])}" for name, words in STATISTIC_WORDS.items()
           if name in stats and not np.isfinite(stats[name])]
    if bad:
        raise NonFiniteUpdate(", ".join(bad))


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


# ------------------------------------------------------------------------------------------
# Training: the loop
# ------------------------------------------------------------------------------------------
HISTORY = ("return", "loss", "policy", "value", "entropy", "grad_norm")


def print_now(line):
    """Progress goes out at once, also when stdout is a file or a pipe (block-buffered)."""
    print(line, flush=True)


def train(hp, start=None, step=None, labels=("pi", "V"), save=None, log=print_now,
          on_update=None, fused=True):
    """Meta-train an LSTM on hp's task distribution; returns the trained parameters.

    Update u samples B fresh tasks, runs B whole episodes with the LSTM state reset to zero
    at their start, and takes one Adam step on the loss of all B·T steps, drawing only from
    stream(hp.seed, u). `start` = (params, opt, u_0, history) continues a run at update u_0
    (runs.train resumes checkpoints so, bit for bit); by default the run starts from
    initial_params. step(u, buffers, params, opt) → (tr, stats) is one update (default: the
    RL² `update`; distill.py passes its own, with `labels` for its two loss terms in the
    progress line). save(done, params, opt, history), if given, is called every
    hp.save_every updates and at the end; on_update(u, params, stats) after every update.
    A NonFiniteUpdate stops the run before that update touches the parameters."""
    cfg = env_config(hp)
    if start is None:
        params = initial_params(hp, cfg)
        start = (params, adam_init(params), 0, {k: np.zeros(0) for k in HISTORY})
    params, opt, first, history = start
    if step is None:
        def step(u, buffers, params, opt):
            return update(params, opt, hp, cfg, stream(hp.seed, u), entropy_weight_at(hp, u),
                          learning_rate_at(hp, u), buffers=buffers, fused=fused)
    history = {k: np.concatenate([v, np.full(hp.updates - first, np.nan)])
               for k, v in history.items()}
    t0, steps, tr = time.perf_counter(), 0, None
    for u in range(first, hp.updates):
        try:
            tr, stats = step(u, tr, params, opt)
        except NonFiniteUpdate as e:
            raise NonFiniteUpdate(f"update {u + 1}: {e}") from None
        for k in HISTORY:
            history[k][u] = stats[k]
        if on_update is not None:
            on_update(u, params, stats)
        steps += hp.batch * cfg.horizon
        done = u + 1
        if done % hp.log_every == 0 or done == hp.updates:
            elapsed = time.perf_counter() - t0
            recent = history["return"][max(first, done - hp.log_every):done].mean()
            log(f"update {done:6d}/{hp.updates} | return {recent:7.2f} | loss {stats['loss']:+.4f} "
                f"({labels[0]} {stats['policy']:+.4f} {labels[1]} {stats['value']:.4f} "
                f"H {stats['entropy']:.3f}"
                + (f" P {stats['predict']:.4f}" if "predict" in stats else "") + ") | "
                f"{steps / elapsed:9.0f} steps/s | {elapsed:6.1f} s")
        if save is not None and (done % hp.save_every == 0 or done == hp.updates):
            save(done, params, opt, {k: v[:done] for k, v in history.items()})
    return params


if __name__ == "__main__":
    import runs   # the command line lives in runs.py; run as itself, not as __main__
    sys.exit(runs.main())
