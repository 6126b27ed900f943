"""The fused Numba twins of the textbook learner's hot loops (metarl.py).

metarl.py states the algorithm one equation per line in NumPy; this module computes the same
numbers faster, and training uses it by default (`fused=True` in metarl.rollout, update and
train). Each public function here names the textbook function it replaces; tests/test_fused.py
asserts that they agree (to float64 rounding: the same sums are taken in other orders).

How the speed is bought (`python3 metarl.py bench` measures it):
    - σ(z) = (1 + tanh(z/2)) / 2 (equal, cannot overflow): one vectorised NumPy tanh serves
      all four gates (NumPy's tanh is SIMD; a tanh inside a Numba loop is a scalar libm call,
      measured 16× slower in float32);
    - x W + b (I ≈ 5 inputs), the gate arithmetic, the heads and the sampling in fused Numba
      loops that write into the rollout's buffers (no temporary arrays per step);
    - in BPTT, dL/dh' summed from its two sources inside the cell-backward kernel, and the
      parameter gradients summed over all steps in one matrix product (metarl.lstm_param_grads).
"""
import numpy as np
from numba import njit

import envs
from boundary import check_int, check_real_array


# ------------------------------------------------------------------------------------------
# LSTM and heads
# ------------------------------------------------------------------------------------------
def lstm_step(x, h, c, W, U, b, out=None):
    """Replaces metarl.lstm_step (its equations are there), computed fastest first: h U in
    BLAS; x W + b (I ≈ 5 inputs) and the gate arithmetic in fused Numba loops; σ(z) =
    (1 + tanh(z/2)) / 2 (equal, cannot overflow) so that one vectorised NumPy tanh serves all
    four gates (NumPy's tanh is SIMD; a tanh inside a Numba loop is a scalar libm call,
    measured 16× slower in float32). `out` = (h', c',
    gates, tanh(c')) are buffers to write into (the rollout's), so a step makes no temporary
    arrays. Returns h' (B, H), c' (B, H) and the cache (gates = [i, f, o, g] (B, 4H),
    tanh(c') (B, H)) that metarl.lstm_step_backward needs. The rollout runs these same calls,
    with the RL² input fused into the input kernel (rl2_input_and_halve) and lstm_output into
    its acting kernel (act).
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


@njit(cache=True)
def lstm_cell_backward(dh_heads, dh_next, dc_new, gates, tanh_c, c, dz, dc):
    """Replaces the element-wise lines of metarl.lstm_step_backward (its equations are
    there), in one fused pass written into dz, dc (in NumPy they take ~20 passes over small
    arrays, each dominated by call overhead), with dh' = dh_heads + dh_next: in BPTT the
    gradient reaching h' comes from the heads at this step and from the next step through
    h' U (summed here, not in a NumPy pass)."""
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


def policy_head(h, W_pi, b_pi, out=None):
    """Replaces metarl.policy_head (logits = h W_pi + b_pi, log π, π); h is (B, H) or (T, B, H).
    The logits by linear_head, the softmax row by row in
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


# ------------------------------------------------------------------------------------------
# Rollout
# ------------------------------------------------------------------------------------------
def rollout_steps(tr, params, env, mode, u, replay, implant):
    """Replaces the loop over time of metarl.rollout (its equations are there), writing every
    step into the buffers of tr (a metarl.Trajectory whose x[0] holds the env's reset input).

    Per step, five calls: h U in BLAS; rl2_input_and_halve (x_t from step t − 1's outcome,
    then x W + b); gate_activations (two NumPy tanh around the cell kernel); act (h', the
    policy, a_t); the family's step kernel (envs.Family.step). The env kernel is called from
    here rather than from a jitted kernel: a Numba kernel handed another as an argument is
    neither cached nor cheap to call (measured: recompiled in every process, 5.6 µs per call),
    and a dispatch on the family inside the learner would make a new family edit this file.
    metarl.rollout has checked every argument: the kernels index the buffers unchecked."""
    W, U, b, W_pi, b_pi = (params[k] for k in ("W", "U", "b", "W_pi", "b_pi"))
    A = W_pi.shape[1]
    h_T = np.empty((U.shape[0], tr.a.shape[1]), U.dtype)   # linear_head's scratch
    step, tasks, means, par, noise = env.family.step, env.tasks, env.means, env.par, env.noise
    for t in range(tr.a.shape[0]):
        if implant is not None and t == implant[0]:
            tr.h[t], tr.c[t] = implant[1], implant[2]
        np.matmul(tr.h[t], U, out=tr.gates[t])
        rl2_input_and_halve(t, tr.gates, tr.x, W, b, tr.a, tr.r, tr.obs, tasks, tr.tasks, A,
                            env.scale, env.family.clock)
        gate_activations(tr.gates[t], tr.c[t], tr.c[t + 1], tr.tanh_c[t])
        act(t, tr.gates, tr.tanh_c, W_pi, b_pi, h_T, mode, u, replay, tr.h, tr.logits, tr.pi,
            tr.log_pi, tr.a)
        step(tr.a[t], noise[t], tasks, means, tr.obs[t], par, tr.r[t])


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


# ------------------------------------------------------------------------------------------
# Buffers, and the checks made before the kernels index them
# ------------------------------------------------------------------------------------------
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


def check_trajectory_buffers(tr, shapes):
    """ValueError unless every buffer of tr (a Trajectory given as rollout's `out`) has the
    shape and dtype the rollout writes: its kernels index them unchecked."""
    wanted = {**shapes, "dz": (shapes["gates"][0], shapes["gates"][1])}
    if not all(hasattr(tr, k) for k in wanted):
        raise ValueError(f"out must be a Trajectory from an earlier rollout, got {type(tr).__name__}")
    for k, (shape, dtype) in wanted.items():
        v = getattr(tr, k)
        if k == "dz" and v is None:
            continue
        if not (isinstance(v, np.ndarray) and v.shape == shape and v.dtype == dtype
                and v.flags.c_contiguous):
            got = f"{v.dtype} {v.shape}" if isinstance(v, np.ndarray) else type(v).__name__
            raise ValueError(f"out.{k} is {got}; this rollout needs {np.dtype(dtype)} {shape}")


def rollout_bytes(cfg, B, H, dtype):
    """Bytes of one rollout's buffers (metarl.new_trajectory, the env's noise and the action
    uniforms) plus what metarl.loss_and_gradients adds (dz, dh, the heads' temporaries)."""
    T, I, A = cfg.horizon, envs.n_inputs(cfg), envs.n_actions(cfg)
    per_step = np.dtype(dtype).itemsize * (I + 2 * H + 4 * H + H + 3 * A + 4 * H + 2 * H + 3 * A)
    per_step += 8 * (2 + envs.n_observations(cfg) + envs.task_dim(cfg) + envs.UNIFORMS_PER_STEP + 1)
    return (T + 1) * B * per_step


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


# ------------------------------------------------------------------------------------------
# Loss: advantages and the backward recurrence
# ------------------------------------------------------------------------------------------
def gae_advantages(r, V, gamma, lam):
    """Replaces metarl.gae_advantages (its equations are there): the backward recursion over
    t in one kernel. Returns (Â, R = Â + V)."""
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


def recurrence_backward(dh, tr, U, dz):
    """Replaces metarl.backprop_through_time's loop over time (lstm_step_backward at every
    step, with dL/dh' = dh[t] + dL/dh' from step t + 1): dL/dz of every step written into dz
    (T, B, 4H), given dh (T, B, H), the gradient reaching each h' from the heads."""
    dh_next, dc_next = np.zeros_like(tr.h[0]), np.zeros_like(tr.c[0])     # from beyond T: 0
    dc_prev, U_T = np.empty_like(dc_next), U.T
    for t in reversed(range(tr.a.shape[0])):
        lstm_cell_backward(dh[t], dh_next, dc_next, tr.gates[t], tr.tanh_c[t], tr.c[t], dz[t],
                           dc_prev)
        np.matmul(dz[t], U_T, out=dh_next)
        dc_next, dc_prev = dc_prev, dc_next
