"""kernels.py, the fused Numba twins, against the textbook learner in metarl.py.

The product trains with the fused kernels (σ through one vectorised tanh, x W + b and the
gate arithmetic in Numba loops, the env step inside the rollout loop, dL/dh' summed inside the
cell-backward kernel); metarl.py writes each equation once in NumPy. Where both do the same
arithmetic in another order (x W + h U + b; the cumulative sum of π) they agree to float64
rounding, amplified over T steps: relative 1e-12, for every family, sampled, greedy, replayed
and implanted (the gradient of an implanted rollout is not defined: its h[t_s] is not the
output of step t_s − 1). The textbook path is also tested to learn what the fused path learns.
"""
import numpy as np
import pytest

import envs
import kernels
import metarl

REL = 1e-12   # float64 rounding, amplified over T steps, stays orders of magnitude below this


def relative_error(a, b):
    """max |a − b| / max |b|; 0 for empty arrays (a bandit observes nothing)."""
    if np.size(b) == 0:
        return 0.0
    return np.abs(np.asarray(a, float) - b).max() / max(np.abs(b).max(), 1e-300)


def generic_params(cfg, H, seed=2):
    """Parameters away from the init's symmetries, with a policy far from uniform (so that
    sampling is exercised)."""
    params = metarl.init_params(envs.n_inputs(cfg), H, envs.n_actions(cfg), metarl.stream(seed))
    params["b"] += 0.5 * np.random.default_rng(0).standard_normal(params["b"].shape)
    params["W_pi"] *= 100
    return params


@pytest.mark.parametrize("env_name", list(envs.FAMILIES))
@pytest.mark.parametrize("how", ["sampled", "greedy", "replayed", "implanted"])
def test_fused_rollout_and_bptt_equal_the_textbook(env_name, how):
    hp = metarl.recipe(env_name, hidden=7, batch=6, dtype="float64", seed=2)
    cfg = envs.make_config(env_name, horizon=min(12, envs.family(env_name).default_horizon))
    params = generic_params(cfg, 7)
    rng = np.random.default_rng(3)
    kwargs = {"greedy": how == "greedy"}
    if how == "replayed":
        kwargs["actions"] = rng.integers(0, envs.n_actions(cfg), (cfg.horizon, 6))
    if how == "implanted":
        kwargs["implant"] = (5, rng.standard_normal((6, 7)), 2 * rng.standard_normal((6, 7)))
    tr = metarl.rollout(params, cfg, 6, metarl.stream(9), **kwargs)
    book = metarl.rollout(params, cfg, 6, metarl.stream(9), fused=False, **kwargs)
    np.testing.assert_array_equal(tr.a, book.a)
    for k in ("x", "r", "obs", "tasks", "h", "c", "gates", "tanh_c", "logits", "pi", "log_pi"):
        assert relative_error(getattr(tr, k), getattr(book, k)) < REL, k
    if how == "implanted":
        return   # h[t_s] is then the implant, not step t_s − 1's output: no gradient to compare
    r = tr.r / metarl.loss_reward_scale(hp, cfg)
    V = metarl.value_head(tr.h[1:], params["w_V"], params["b_V"])
    adv, R = metarl.gae_advantages(r, V, hp.gamma, hp.gae_lambda)
    adv_book, R_book = metarl.gae_advantages(r, V, hp.gamma, hp.gae_lambda, fused=False)
    assert relative_error(adv, adv_book) < REL and relative_error(R, R_book) < REL
    _, grads = metarl.loss_and_gradients(params, tr, adv, R, 0.5, 0.05)
    _, expected = metarl.loss_and_gradients(params, book, adv, R, 0.5, 0.05, fused=False)
    for k in metarl.PARAM_NAMES:
        assert relative_error(grads[k], expected[k]) < REL, k


def test_each_kernel_equals_the_textbook_function_it_replaces():
    rng = np.random.default_rng(1)
    B, I, H, A = 5, 4, 6, 3
    params = metarl.init_params(I, H, A, rng)
    W, U, b = params["W"], params["U"], params["b"] + rng.standard_normal(4 * H)
    x, h, c = rng.standard_normal((B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    fused_step, book_step = kernels.lstm_step(x, h, c, W, U, b), metarl.lstm_step(x, h, c, W, U, b)
    for got, want in zip(fused_step[:2] + fused_step[2], book_step[:2] + book_step[2]):
        assert relative_error(got, want) < REL
    W_pi, b_pi = 10 * rng.standard_normal((H, A)), rng.standard_normal(A)
    for got, want in zip(kernels.policy_head(h, W_pi, b_pi), metarl.policy_head(h, W_pi, b_pi)):
        assert relative_error(got, want) < REL
    dh_new, dc_new = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    dz, dc = np.empty((B, 4 * H)), np.empty((B, H))
    gates, tanh_c = book_step[2]
    kernels.lstm_cell_backward(dh_new, np.zeros((B, H)), dc_new, gates, tanh_c, c, dz, dc)
    book_dz, _, book_dc = metarl.lstm_step_backward(dh_new, dc_new, book_step[2], c, U)
    assert relative_error(dz, book_dz) < REL and relative_error(dc, book_dc) < REL
    r, V = rng.standard_normal((9, B)), rng.standard_normal((9, B))
    for got, want in zip(kernels.gae_advantages(r, V, 0.9, 0.7),
                         metarl.gae_advantages(r, V, 0.9, 0.7, fused=False)):
        assert relative_error(got, want) < REL


def test_the_textbook_path_learns_what_the_fused_path_learns():
    """30 updates of a small float64 bandit run each way: the same sampled actions, hence the
    same returns, and the same parameters up to rounding amplified by Adam (relative 1e-8)."""
    hp = metarl.recipe("bandit", horizon=10, hidden=6, batch=8, updates=30, dtype="float64",
                       log_every=30)
    runs_ = {}
    for fused in (True, False):
        returns = []
        params = metarl.train(hp, log=lambda line: None, fused=fused,
                              on_update=lambda u, p, stats: returns.append(stats["return"]))
        runs_[fused] = params, returns
    assert runs_[True][1] == runs_[False][1]
    for k in metarl.PARAM_NAMES:
        assert relative_error(runs_[False][0][k], runs_[True][0][k]) < 1e-8, k


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
