"""The predictive head (metarl.prediction_head, prediction_loss, prediction_head_backward):
its outcomes per family by hand, its gradients by finite differences in float64 (the head, the
loss and the whole update with c_P > 0), its minimiser, and that c_P = 0 is plain RL² bit for
bit."""
import numpy as np
import pytest

import envs
import metarl
import runs
from test_metarl import assert_gradients_close, numeric_gradient


def test_outcomes_are_what_each_action_revealed():
    """By hand: a bandit's reward; Tiger's side heard after a listen and the tiger's side after
    an opening (its door pays −100); two-step's second-stage state and reward."""
    bandit = envs.make_config("bandit")
    np.testing.assert_array_equal(
        envs.outcomes(bandit, np.array([0, 1]), np.array([1.0, 0.0]), np.zeros((2, 0)))[:, 0],
        [1, 0])
    tiger = envs.make_config("tiger")
    a = np.array([0, 0, 1, 1, 2, 2])                 # listen ×2, open left ×2, open right ×2
    r = np.array([-1, -1, -100, 10, -100, 10.0])
    obs = np.array([[1, 0], [0, 1], [0, 0], [0, 0], [0, 0], [0, 0.0]])
    #     heard left, heard right, tiger left, tiger right, tiger right, tiger left
    np.testing.assert_array_equal(envs.outcomes(tiger, a, r, obs)[:, 0], [0, 1, 0, 1, 1, 0])
    two = envs.make_config("two-step")
    y = envs.outcomes(two, np.array([0, 1]), np.array([1.0, 0.0]), np.array([[1, 0], [0, 1.0]]))
    np.testing.assert_array_equal(y, [[0, 1], [1, 0]])
    assert envs.n_outcomes(two) == 2 and envs.n_outcomes(tiger) == envs.n_outcomes(bandit) == 1


def test_outcomes_of_a_rollout_follow_the_env():
    """Along a real Tiger rollout: every listen's outcome is the side in obs, every opening's
    the tiger's recorded side (tasks before the step)."""
    cfg = envs.make_config("tiger", horizon=20)
    params = metarl.init_params(envs.n_inputs(cfg), 4, 3, metarl.stream(0))
    tr = metarl.rollout(params, cfg, 50, metarl.stream(1))
    y = envs.outcomes(cfg, tr.a, tr.r, tr.obs)[..., 0]
    listen = tr.a == 0
    np.testing.assert_array_equal(y[listen], tr.obs[listen][:, 1])
    np.testing.assert_array_equal(y[~listen], 1 - tr.tasks[~listen][:, 0])   # tasks: tiger left
    assert listen.any() and (~listen).any()


def head_case(rng, T=4, B=3, H=5, A=3, G=2):
    h = rng.standard_normal((T, B, H))
    a = rng.integers(0, A, (T, B))
    W_P, b_P = rng.standard_normal((H, A * G)), rng.standard_normal(A * G)
    y = (rng.random((T, B, G)) < 0.5).astype(float)
    return h, a, W_P, b_P, y


def test_prediction_head_reads_the_chosen_actions_columns():
    rng = np.random.default_rng(0)
    h, a, W_P, b_P, _ = head_case(rng)
    logit = metarl.prediction_head(h, a, W_P, b_P, 2)
    t, e = 2, 1
    cols = [a[t, e] * 2, a[t, e] * 2 + 1]
    np.testing.assert_allclose(logit[t, e], h[t, e] @ W_P[:, cols] + b_P[cols], rtol=1e-12)


def test_prediction_loss_and_head_match_finite_differences():
    """dL_P/dℓ, then through the head: dL/dh, dL/dW_P, dL/db_P (float64, relative < 1e-6)."""
    rng = np.random.default_rng(1)
    h, a, W_P, b_P, y = head_case(rng)
    logit = 2 * rng.standard_normal(y.shape)
    _, dlogit = metarl.prediction_loss(logit, y)
    assert_gradients_close(dlogit, numeric_gradient(lambda: metarl.prediction_loss(logit, y)[0],
                                                    logit))

    def loss():
        return metarl.prediction_loss(metarl.prediction_head(h, a, W_P, b_P, 2), y)[0]

    _, d = metarl.prediction_loss(metarl.prediction_head(h, a, W_P, b_P, 2), y)
    dh, grads = metarl.prediction_head_backward(d, h, a, W_P)
    assert_gradients_close(dh, numeric_gradient(loss, h))
    assert_gradients_close(grads["W_P"], numeric_gradient(loss, W_P))
    assert_gradients_close(grads["b_P"], numeric_gradient(loss, b_P))


def test_prediction_loss_is_stable_and_is_the_cross_entropy():
    """Equal to −y log σ(ℓ) − (1 − y) log(1 − σ(ℓ)) where that is computable; finite at
    |ℓ| = 800, where σ rounds to 0 or 1."""
    logit = np.array([[[-3.0, 0.5]], [[2.0, -0.1]]])
    y = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    q = 1 / (1 + np.exp(-logit))
    direct = -(y * np.log(q) + (1 - y) * np.log(1 - q)).sum() / 2
    assert metarl.prediction_loss(logit, y)[0] == pytest.approx(direct, rel=1e-12)
    big = metarl.prediction_loss(np.array([[[800.0, -800.0]]]), np.array([[[0.0, 1.0]]]))
    assert big[0] == pytest.approx(1600.0, rel=1e-12) and np.isfinite(big[1]).all()


def test_the_minimiser_of_the_expected_loss_is_the_outcome_probability():
    """The docstring's claim, numerically: over many outcomes of one history class with
    P(y = 1) = q, the gradient of the mean loss vanishes at ℓ = logit(q) (σ(ℓ) = the
    empirical frequency), and gradient descent on ℓ reaches it."""
    rng = np.random.default_rng(2)
    y = (rng.random((5000, 1, 1)) < 0.3).astype(float)
    ell = 0.0
    for _ in range(2000):
        ell -= 4.0 * metarl.prediction_loss(np.full(y.shape, ell), y)[1].sum()
    assert 1 / (1 + np.exp(-ell)) == pytest.approx(y.mean(), abs=1e-9)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "textbook"])
@pytest.mark.parametrize("env_name", list(envs.FAMILIES))
def test_whole_update_gradient_with_a_predictive_head_matches_finite_differences(env_name,
                                                                                 fused):
    """L_π + c_V L_V − β𝓗 + c_P L_P: every parameter, the predictive head's and the LSTM's
    (its gradient flows through BPTT), against finite differences (float64, relative < 1e-6);
    actions replayed and Â, R, y held fixed as the update holds them."""
    rng = np.random.default_rng(4)
    cfg = envs.make_config(env_name, horizon=5)
    params = metarl.init_params(envs.n_inputs(cfg), 4, envs.n_actions(cfg), rng,
                                G=envs.n_outcomes(cfg))
    for p in params.values():
        p += 0.3 * rng.standard_normal(p.shape)
    tr = metarl.rollout(params, cfg, 3, np.random.default_rng(5))
    V = metarl.value_head(tr.h[1:], params["w_V"], params["b_V"])
    # rewards enter the loss divided by 10× the input scale (a loss_reward_scale like any
    # other): Tiger's L is then ≈ 3, not 28, whose rounding (1e-16·L/ε) is 1e-6 of its
    # smallest gradient element (|dL/dU| ≈ 4e-6)
    adv, R = metarl.gae_advantages(tr.r / (10 * envs.reward_scale(cfg)), V, 0.9, 0.8,
                                   fused=fused)
    y = envs.outcomes(cfg, tr.a, tr.r, tr.obs)
    coefs = dict(value_weight=0.5, entropy_weight=0.05, predict_weight=0.7, y=y)
    stats, grads = metarl.loss_and_gradients(params, tr, adv, R, fused=fused, **coefs)
    assert stats["predict"] > 0

    def loss():
        replay = metarl.rollout(params, cfg, 3, np.random.default_rng(5), actions=tr.a)
        return metarl.total_loss(params, replay, adv, R, **coefs)

    assert stats["loss"] == pytest.approx(loss(), rel=1e-12)
    for name in metarl.PARAM_NAMES + metarl.PREDICT_NAMES:
        assert_gradients_close(grads[name], numeric_gradient(loss, params[name]))


def small(**changes):
    return metarl.recipe("bandit", **{**dict(horizon=10, hidden=6, batch=8, updates=20,
                                             log_every=10), **changes})


def test_zero_weight_is_plain_rl2_and_a_weight_changes_the_lstm():
    """c_P = 0: no head, the same parameters as before the head existed (the plain run).
    c_P > 0: the LSTM starts from the same weights (the head draws nothing) and ends elsewhere."""
    plain, with_head = small(), small(predict_weight=1.0)
    cfg = metarl.env_config(plain)
    start = metarl.initial_params(with_head, cfg)
    assert set(metarl.initial_params(plain, cfg)) == set(metarl.PARAM_NAMES)
    for k in metarl.PARAM_NAMES:
        np.testing.assert_array_equal(start[k], metarl.initial_params(plain, cfg)[k])
    assert not start["W_P"].any() and start["W_P"].shape == (6, 2)
    a, b = metarl.train(plain, log=lambda line: None), metarl.train(with_head, log=lambda l: None)
    assert set(b) == set(metarl.PARAM_NAMES + metarl.PREDICT_NAMES)
    assert not np.array_equal(a["U"], b["U"]) and b["W_P"].any()


def test_predictive_training_lowers_the_prediction_loss():
    """A short bandit run with c_P = 1: the predictive loss of its last updates is below
    log 2 (the untrained head's 1/2), by more than its noise (tolerance: 0.02 nats)."""
    hp = metarl.recipe("bandit", horizon=20, hidden=8, batch=16, updates=300, predict_weight=1.0,
                       log_every=300)
    losses = []
    metarl.train(hp, log=lambda line: None, on_update=lambda u, p, s: losses.append(s["predict"]))
    assert losses[0] == pytest.approx(np.log(2), abs=1e-6)   # float32
    assert np.mean(losses[-50:]) < np.log(2) - 0.02


def test_checkpoint_with_a_predictive_head_round_trips(tmp_path):
    """The head and its Adam moments are saved and loaded; the field is recorded; a head
    missing from the file is refused by name."""
    hp = small(predict_weight=0.5, updates=5)
    path = tmp_path / "run.npz"
    runs.train(hp, str(path), log=lambda line: None)
    ck = runs.load_checkpoint(str(path))
    assert ck["hp"].predict_weight == 0.5 and set(ck["params"]) >= set(metarl.PREDICT_NAMES)
    metarl.check_param_shapes(ck["params"], metarl.env_config(hp))
    with np.load(path) as z:
        kept = {k: z[k] for k in z.files if not k.endswith("/W_P")}
    np.savez(tmp_path / "cut.npz", **kept)
    with pytest.raises(ValueError, match="missing param/W_P, adam_m/W_P, adam_v/W_P"):
        runs.load_checkpoint(str(tmp_path / "cut.npz"))


def test_a_head_of_the_wrong_shape_is_refused():
    cfg = envs.make_config("two-step", horizon=5)
    params = metarl.init_params(envs.n_inputs(cfg), 4, 2, metarl.stream(0), G=1)   # needs G = 2
    with pytest.raises(ValueError, match="parameter W_P"):
        metarl.rollout(params, cfg, 2, metarl.stream(1))
