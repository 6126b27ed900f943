"""The fused rollout and BPTT of metarl.py against a plain-NumPy transcription of the equations.

The product computes the LSTM with fused Numba kernels, σ through tanh, the env step inside
the rollout loop and dL/dh' summed inside the cell-backward kernel. The twin below writes
each equation once in NumPy, steps the env through its public BatchEnv.step and runs BPTT
step by step, as a reader would from the docstrings. In float64 both must agree to rounding
(relative 1e-12) for every family, sampled, greedy, replayed and implanted (the gradient of
an implanted rollout is not defined: its h[t_s] is not the output of step t_s − 1).
"""
import numpy as np
import pytest

import envs
import metarl

REL = 1e-12   # float64 rounding, amplified over T steps, stays orders of magnitude below this


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def twin_rollout(params, cfg, B, rng, greedy=False, actions=None, implant=None):
    """rollout in plain NumPy: the same draws from rng in the same order."""
    W, U, b, W_pi, b_pi = (params[k] for k in ("W", "U", "b", "W_pi", "b_pi"))
    T, H = cfg.horizon, U.shape[0]
    env = envs.make_env(cfg, B)
    x = env.reset(rng)
    u = rng.random((T, B))
    h, c = np.zeros((B, H)), np.zeros((B, H))
    out = {k: [] for k in ("x", "h", "c", "a", "r", "obs", "tasks", "pi", "log_pi", "gates")}
    out["h"].append(h), out["c"].append(c)
    for t in range(T):
        if implant is not None and t == implant[0]:
            h, c = implant[1], implant[2]
            out["h"][-1], out["c"][-1] = h, c
        out["x"].append(x), out["tasks"].append(env.tasks.copy())
        z = x @ W + h @ U + b
        i, f, o, g = (sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), sigmoid(z[:, 2 * H:3 * H]),
                      np.tanh(z[:, 3 * H:]))
        c = f * c + i * g
        h = o * np.tanh(c)
        logits = h @ W_pi + b_pi
        log_pi = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
            - logits.max(1, keepdims=True)
        pi = np.exp(log_pi)
        if actions is not None:
            a = actions[t]
        elif greedy:
            a = pi.argmax(1)
        else:
            a = np.minimum((u[t][:, None] >= np.cumsum(pi, 1)[:, :-1]).sum(1), pi.shape[1] - 1)
        x, r, _ = env.step(a)
        for k, v in (("h", h), ("c", c), ("a", a), ("r", r), ("obs", env.obs.copy()),
                     ("pi", pi), ("log_pi", log_pi), ("gates", np.hstack([i, f, o, g]))):
            out[k].append(v)
    return {k: np.array(v) for k, v in out.items()}


def twin_gradients(params, tr, adv, R, value_weight, entropy_weight):
    """dL/dθ of L = L_π + c_V L_V − β 𝓗 by BPTT written step by step from the equations."""
    W_pi, w_V, U = params["W_pi"], params["w_V"], params["U"]
    T, B = tr["a"].shape
    H, N = U.shape[0], T * B
    onehot = np.eye(W_pi.shape[1])[tr["a"]]
    V = tr["h"][1:] @ w_V + params["b_V"]
    ent_t = -(tr["pi"] * tr["log_pi"]).sum(-1, keepdims=True)
    dlogits = (-(adv / N)[..., None] * (onehot - tr["pi"])
               + entropy_weight * tr["pi"] * (tr["log_pi"] + ent_t) / N)
    dV = value_weight * (V - R) / N
    grads = {k: np.zeros_like(p) for k, p in params.items()}
    dh_next, dc_next = np.zeros((B, H)), np.zeros((B, H))
    for t in reversed(range(T)):
        h_new = tr["h"][t + 1]
        grads["W_pi"] += h_new.T @ dlogits[t]
        grads["b_pi"] += dlogits[t].sum(0)
        grads["w_V"] += h_new.T @ dV[t]
        grads["b_V"] += dV[t].sum()
        dh = dlogits[t] @ W_pi.T + np.outer(dV[t], w_V) + dh_next
        i, f, o, g = np.split(tr["gates"][t], 4, axis=1)
        tanh_c = np.tanh(tr["c"][t + 1])
        dc = dc_next + dh * o * (1 - tanh_c ** 2)
        dz = np.hstack([dc * g * i * (1 - i), dc * tr["c"][t] * f * (1 - f),
                        dh * tanh_c * o * (1 - o), dc * i * (1 - g ** 2)])
        grads["W"] += tr["x"][t].T @ dz
        grads["U"] += tr["h"][t].T @ dz
        grads["b"] += dz.sum(0)
        dh_next, dc_next = dz @ U.T, dc * f
    return grads


def relative_error(a, b):
    """max |a − b| / max |b|; 0 for empty arrays (a bandit observes nothing)."""
    if np.size(b) == 0:
        return 0.0
    return np.abs(np.asarray(a, float) - b).max() / max(np.abs(b).max(), 1e-300)


@pytest.mark.parametrize("env_name", list(envs.FAMILIES))
@pytest.mark.parametrize("how", ["sampled", "greedy", "replayed", "implanted"])
def test_fused_rollout_and_bptt_equal_the_plain_numpy_equations(env_name, how):
    hp = metarl.recipe(env_name, hidden=7, batch=6, dtype="float64", seed=2)
    cfg = envs.make_config(env_name, horizon=min(12, envs.family(env_name).default_horizon))
    params = metarl.init_params(envs.n_inputs(cfg), 7, envs.n_actions(cfg), metarl.stream(2))
    params["b"] += 0.5 * np.random.default_rng(0).standard_normal(params["b"].shape)
    params["W_pi"] *= 100   # a policy far from uniform, so that sampling is exercised
    rng = np.random.default_rng(3)
    kwargs = {"greedy": how == "greedy"}
    if how == "replayed":
        kwargs["actions"] = rng.integers(0, envs.n_actions(cfg), (cfg.horizon, 6))
    if how == "implanted":
        kwargs["implant"] = (5, rng.standard_normal((6, 7)), 2 * rng.standard_normal((6, 7)))
    tr = metarl.rollout(params, cfg, 6, metarl.stream(9), **kwargs)
    twin = twin_rollout(params, cfg, 6, metarl.stream(9), **kwargs)
    np.testing.assert_array_equal(tr.a, twin["a"])
    for k in ("x", "r", "obs", "tasks", "h", "c", "pi", "log_pi", "gates"):
        assert relative_error(getattr(tr, k), twin[k]) < REL, k
    if how == "implanted":
        return   # h[t_s] is then the implant, not step t_s − 1's output: no gradient to compare
    r = tr.r / metarl.loss_reward_scale(hp, cfg)
    V = metarl.value_head(tr.h[1:], params["w_V"], params["b_V"])
    adv, R = metarl.gae_advantages(r, V, hp.gamma, hp.gae_lambda)
    _, grads = metarl.loss_and_gradients(params, tr, adv, R, 0.5, 0.05)
    expected = twin_gradients(params, twin, adv, R, 0.5, 0.05)
    for k in metarl.PARAM_NAMES:
        assert relative_error(grads[k], expected[k]) < REL, k


def test_rollout_refuses_buffers_of_another_shape_and_bad_implants():
    cfg = envs.make_config("two-step", horizon=8)
    params = metarl.init_params(envs.n_inputs(cfg), 5, 2, metarl.stream(0))
    tr = metarl.rollout(params, cfg, 4, metarl.stream(1))
    with pytest.raises(ValueError, match=r"out\.x is float64 \(8, 4, 6\); this rollout needs "
                                         r"float64 \(8, 6, 6\)"):
        metarl.rollout(params, cfg, 6, metarl.stream(1), out=tr)
    tr.gates = tr.gates.astype(np.float32)
    with pytest.raises(ValueError, match="out.gates is float32"):
        metarl.rollout(params, cfg, 4, metarl.stream(1), out=tr)
    good = np.zeros((4, 5))
    for implant, message in [((8, good, good), "t_s must be an integer in \\[0, 7\\]"),
                             ((-1, good, good), "t_s must be"),
                             ((2.0, good, good), "t_s must be"),
                             ((2, np.full((4, 5), np.nan), good), "implanted h has 20 NaN"),
                             ((2, good, np.zeros((3, 5))), "implanted c must have shape"),
                             ((2, good), "a tuple")]:
        with pytest.raises(ValueError, match=message):
            metarl.rollout(params, cfg, 4, metarl.stream(1), implant=implant)
    for actions, message in [(np.full((8, 4), 2), "actions must lie in \\[0, 2\\)"),
                             (np.full((8, 4), -1), "actions must lie"),
                             (np.zeros((7, 4), np.int64), "actions must have shape"),
                             (np.zeros((8, 4)), "actions must be an array of integers")]:
        with pytest.raises(ValueError, match=message):
            metarl.rollout(params, cfg, 4, metarl.stream(1), actions=actions)
