"""metarl.py: every gradient against central finite differences in float64, and the learner."""
import numpy as np
import pytest

import envs
import metarl
import runs

RTOL = 1e-6  # max over elements of |analytic − numeric| / max(|analytic| + |numeric|, 1e-8)
# Fourth-order central differences, f' ≈ [8(f(x+ε) − f(x−ε)) − (f(x+2ε) − f(x−2ε))] / 12ε:
# truncation O(ε⁴) ≈ 1e-12 and rounding O(1e-16·|L|/ε) ≈ 1e-12, so even gradient elements
# 1e-5 times smaller than the loss are checked to 1e-6 (plain central differences are not).
STEP = 1e-3


def numeric_gradient(f, x):
    """dF/dx by fourth-order central differences, element by element (x is perturbed in
    place and restored)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        f_at = {}
        for k in (-2, -1, 1, 2):
            x[i] = old + k * STEP
            f_at[k] = f()
        x[i] = old
        g[i] = (8 * (f_at[1] - f_at[-1]) - (f_at[2] - f_at[-2])) / (12 * STEP)
    return g


def assert_gradients_close(analytic, numeric):
    scale = np.maximum(np.abs(analytic) + np.abs(numeric), 1e-8)
    err = np.max(np.abs(analytic - numeric) / scale)
    assert err < RTOL, f"max relative error {err:.2e}"


def random_state(rng, B=3, I=4, H=5):
    params = metarl.init_params(I, H, 3, rng)
    params["b"] += 0.3 * rng.standard_normal(4 * H)  # away from the symmetric init
    x = rng.standard_normal((B, I))
    h, c = rng.standard_normal((B, H)) * 0.5, rng.standard_normal((B, H))
    return params, x, h, c


def test_lstm_step_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    params, x, h, c = random_state(rng)
    W, U, b = params["W"], params["U"], params["b"]
    # a generic scalar loss of both outputs: L = Σ Ph ⊙ h' + Σ Pc ⊙ c'
    Ph, Pc = rng.standard_normal(h.shape), rng.standard_normal(c.shape)

    def loss():
        h_new, c_new, _ = metarl.lstm_step(x, h, c, W, U, b)
        return (Ph * h_new).sum() + (Pc * c_new).sum()

    _, _, cache = metarl.lstm_step(x, h, c, W, U, b)
    dz, dh, dc = metarl.lstm_step_backward(Ph, Pc, cache, c, U)
    dW, dU, db = metarl.lstm_param_grads(x[None], h[None], dz[None])
    for analytic, wrt in ((dh, h), (dc, c), (dW, W), (dU, U), (db, b)):
        assert_gradients_close(analytic, numeric_gradient(loss, wrt))
    # dx is not needed by the learner, but dz is checked through it: dx = dz Wᵀ
    assert_gradients_close(dz @ W.T, numeric_gradient(loss, x))


def test_heads_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    params, _, h, _ = random_state(rng)
    h = h[None].repeat(2, axis=0) + 0.1 * rng.standard_normal((2, 3, 5))  # (T=2, B, H)
    P_logits, P_V = rng.standard_normal((2, 3, 3)), rng.standard_normal((2, 3))

    def loss():  # a generic scalar of both heads' outputs
        logits = metarl.policy_head(h, params["W_pi"], params["b_pi"])[0]
        V = metarl.value_head(h, params["w_V"], params["b_V"])
        return (P_logits * logits).sum() + (P_V * V).sum()

    dh, grads = metarl.heads_backward(P_logits, P_V, h, params["W_pi"], params["w_V"])
    assert_gradients_close(dh, numeric_gradient(loss, h))
    for name in ("W_pi", "b_pi", "w_V", "b_V"):
        assert_gradients_close(grads[name], numeric_gradient(loss, params[name]))


def test_policy_head_is_a_softmax_of_the_logits():
    rng = np.random.default_rng(2)
    h = rng.standard_normal((4, 3, 5))
    W_pi, b_pi = 50 * rng.standard_normal((5, 3)), rng.standard_normal(3)  # large: no overflow
    logits, pi, log_pi = metarl.policy_head(h, W_pi, b_pi)
    np.testing.assert_allclose(logits, h @ W_pi + b_pi, rtol=1e-12)
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(pi, expected / expected.sum(-1, keepdims=True), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(np.exp(log_pi), pi, rtol=1e-12)
    assert np.isfinite(log_pi).all()


def test_loss_terms_match_finite_differences_in_logits_and_values():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((4, 3, 3))
    a = rng.integers(0, 3, (4, 3))
    adv, V, R = (rng.standard_normal((4, 3)) for _ in range(3))

    def log_softmax():
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_pi = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        return log_pi, np.exp(log_pi)

    _, dpg = metarl.policy_gradient_loss(*log_softmax(), a, adv)
    assert_gradients_close(dpg, numeric_gradient(
        lambda: metarl.policy_gradient_loss(*log_softmax(), a, adv)[0], logits))
    _, dent = metarl.entropy_bonus(*log_softmax())
    assert_gradients_close(dent, numeric_gradient(
        lambda: metarl.entropy_bonus(*log_softmax())[0], logits))
    _, dV = metarl.value_loss(V, R)
    assert_gradients_close(dV, numeric_gradient(lambda: metarl.value_loss(V, R)[0], V))


def generic_rollout(env_name):
    """cfg (T = 5), parameters (H = 4) at a generic point (not the init's symmetries) and a
    rollout of B = 3 episodes with them (generator 5): the whole-update gradient checks."""
    rng = np.random.default_rng(4)
    cfg = envs.make_config(env_name, horizon=5)
    params = metarl.init_params(envs.n_inputs(cfg), 4, envs.n_actions(cfg), rng)
    for p in params.values():
        p += 0.3 * rng.standard_normal(p.shape)
    return cfg, params, metarl.rollout(params, cfg, 3, np.random.default_rng(5))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "textbook"])
@pytest.mark.parametrize("env_name", list(envs.FAMILIES))
def test_whole_loss_gradient_matches_finite_differences(env_name, fused):
    """The full update's gradient (heads + BPTT over T=5 steps, B=3) for every parameter, by
    the fused kernels and by the textbook NumPy.

    Actions are replayed and the advantages held fixed, exactly as the update treats them.
    The finite differences use one forward pass for both (the fused one, proven equal to the
    textbook's to 1e-12 in test_fused.py): the textbook forward sums x W + h U + b in another
    order, which moves the smallest element here (|dL/dW| ≈ 1.5e-6 on Tiger, L ≈ 5) by
    4e-12 of rounding, 2.5e-6 of itself, above the check's 1e-6."""
    cfg, params, tr = generic_rollout(env_name)
    V = metarl.value_head(tr.h[1:], params["w_V"], params["b_V"])
    adv, R = metarl.gae_advantages(tr.r / envs.reward_scale(cfg), V, 0.9, 0.8, fused=fused)
    coefs = dict(value_weight=0.5, entropy_weight=0.05)
    _, grads = metarl.loss_and_gradients(params, tr, adv, R, fused=fused, **coefs)

    def loss():
        replay = metarl.rollout(params, cfg, 3, np.random.default_rng(5), actions=tr.a)
        return metarl.total_loss(params, replay, adv, R, **coefs)

    for name in metarl.PARAM_NAMES:
        assert_gradients_close(grads[name], numeric_gradient(loss, params[name]))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "textbook"])
def test_gae_with_lambda_one_is_discounted_return_minus_baseline(fused):
    rng = np.random.default_rng(6)
    r, V = rng.standard_normal((7, 2)), rng.standard_normal((7, 2))
    gamma = 0.9
    G = np.array([[sum(gamma ** k * r[t + k, e] for k in range(7 - t)) for e in range(2)]
                  for t in range(7)])
    adv, R = metarl.gae_advantages(r, V, gamma, 1.0, fused=fused)
    np.testing.assert_allclose(adv, G - V, rtol=1e-12)
    np.testing.assert_allclose(R, G, rtol=1e-12)
    # λ = 0: the one-step TD error
    adv0, _ = metarl.gae_advantages(r, V, gamma, 0.0, fused=fused)
    V_next = np.vstack([V[1:], np.zeros((1, 2))])
    np.testing.assert_allclose(adv0, r + gamma * V_next - V, rtol=1e-12)


def test_orthogonal_is_orthogonal_and_seeded():
    Q = metarl.orthogonal(6, np.random.default_rng(0))
    np.testing.assert_allclose(Q @ Q.T, np.eye(6), atol=1e-12)
    np.testing.assert_array_equal(Q, metarl.orthogonal(6, np.random.default_rng(0)))
    assert not np.allclose(Q, metarl.orthogonal(6, np.random.default_rng(1)))
    # signs fixed by diag R: the QR of Q's own Gaussian gives an R with a positive diagonal,
    # so over many draws the entries are symmetric about 0 (Haar), not biased by QR's signs
    diag = np.array([metarl.orthogonal(3, np.random.default_rng(s))[0, 0] for s in range(2000)])
    assert abs(diag.mean()) < 4 * diag.std() / np.sqrt(2000)   # 4 SE


@pytest.mark.parametrize("anneal", [True, False])
def test_learning_rate_decays_linearly_to_zero_when_annealed(anneal):
    hp = metarl.Config(updates=200, lr=3e-3, anneal_lr=anneal)
    rates = np.array([metarl.learning_rate_at(hp, u) for u in range(200)])
    assert rates[0] == 3e-3
    if anneal:
        np.testing.assert_allclose(rates, 3e-3 * (1 - np.arange(200) / 200), rtol=1e-12)
        assert rates[-1] == pytest.approx(3e-3 / 200)   # the last update still moves
    else:
        assert (rates == 3e-3).all()


def test_adam_step_matches_the_textbook_update():
    rng = np.random.default_rng(7)
    params = {"w": rng.standard_normal(5)}
    opt = metarl.adam_init(params)
    theta, m, v = params["w"].copy(), np.zeros(5), np.zeros(5)
    for k in range(1, 4):
        g = rng.standard_normal(5)
        metarl.adam_step(params, {"w": g.copy()}, opt, 1e-2)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        theta = theta - 1e-2 * (m / (1 - 0.9 ** k)) / (np.sqrt(v / (1 - 0.999 ** k)) + 1e-8)
    np.testing.assert_allclose(params["w"], theta, rtol=1e-12)


def test_clip_by_global_norm_scales_all_arrays_together():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    norm = metarl.clip_by_global_norm(grads, 1.0)
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(grads["a"], [0.6, 0.0])
    np.testing.assert_allclose(grads["b"], [[0.8]])
    untouched = {"a": np.array([0.3])}
    metarl.clip_by_global_norm(untouched, 1.0)
    np.testing.assert_array_equal(untouched["a"], [0.3])


@pytest.mark.parametrize("schedule, frac", [("linear", 1.0), ("exp", 1.0), ("exp", 0.25),
                                             ("linear", 0.5)])
def test_entropy_weight_runs_from_start_to_end_then_holds(schedule, frac):
    hp = metarl.Config(updates=101, entropy_start=0.5, entropy_end=0.005,
                       entropy_schedule=schedule, entropy_frac=frac)
    s = frac * 100                                       # the update where β reaches its end
    beta = np.array([metarl.entropy_weight_at(hp, u) for u in range(101)])
    assert beta[0] == pytest.approx(0.5) and beta[-1] == pytest.approx(0.005)
    assert np.all(np.diff(beta) <= 1e-15)                # never rises
    assert np.allclose(beta[int(np.ceil(s)):], 0.005)    # held once reached
    middle = metarl.entropy_weight_at(hp, s / 2)
    assert middle == pytest.approx(0.05 if schedule == "exp" else 0.2525)   # geometric / arithmetic


def test_advantage_normalisation_standardises_over_the_batch_and_keeps_the_order():
    adv = np.random.default_rng(0).normal(3.0, 40.0, size=(20, 64))
    z = metarl.normalize_advantages(adv)
    assert abs(z.mean()) < 1e-12 and z.std() == pytest.approx(1.0, abs=1e-9)
    assert np.array_equal(np.argsort(z, axis=None), np.argsort(adv, axis=None))


def test_exp_entropy_schedule_needs_positive_ends():
    with pytest.raises(ValueError, match="--entropy-schedule exp needs"):
        metarl.check_hyperparameters(metarl.Config(entropy_schedule="exp", entropy_end=0.0))


def small_config(**changes):
    fields = dict(env="bandit", arms=2, horizon=10, hidden=16, batch=32, updates=6,
                  log_every=3, save_every=3, seed=3)
    fields.update(changes)
    return metarl.Config(**fields)


def test_short_training_beats_the_random_policy_clearly():
    """Dependent bandit, T=10: after 300 updates (seconds) the agent exploits what it learned.

    Random play earns exactly T/2 = 5 per episode in expectation; the margin is checked
    against 4 standard errors of the agent's mean over 4000 fresh episodes."""
    hp = small_config(env="dependent-bandit", updates=300, batch=64, hidden=24, lr=3e-3)
    params = runs.train(hp, None, log=lambda line: None)
    result = runs.evaluate(params, metarl.env_config(hp), 4000, seed=11)
    assert result["mean"] - 5.0 > 4 * result["stderr"], result


@pytest.mark.parametrize("env", list(metarl.RECIPES))
def test_each_recipe_is_a_valid_config(env):
    hp = metarl.recipe(env)
    metarl.check_hyperparameters(hp)
    assert hp.env == env and all(getattr(hp, k) == v for k, v in metarl.RECIPES[env].items())
    assert metarl.recipe(env, seed=3, updates=5).updates == 5   # given fields win


def random_policy_value(cfg):
    """E[total reward] of the uniformly random policy, exactly: every action equally often."""
    if cfg.name == "tiger":
        return cfg.horizon * (cfg.listen_reward + cfg.tiger_reward + cfg.treasure_reward) / 3
    if cfg.name == "two-step":
        return cfg.horizon * (cfg.reward_good + cfg.reward_bad) / 2
    return cfg.horizon * cfg.prior_a / (cfg.prior_a + cfg.prior_b)   # bandits: E[arm mean]


@pytest.mark.slow
@pytest.mark.parametrize("env", list(metarl.RECIPES))
def test_a_short_run_of_each_recipe_beats_the_random_policy(env):
    """The recipe scaled down as --quick scales it (T = 20, Tiger 10) and its schedules
    compressed into 800 updates (seconds, not minutes), then 5000 fresh episodes: the mean
    return beats the random policy's exact value by more than 4 standard errors."""
    hp = metarl.recipe(env, updates=800, horizon=10 if env == "tiger" else 20, log_every=800)
    cfg = metarl.env_config(hp)
    result = runs.evaluate(runs.train(hp, None, log=lambda line: None), cfg, 5000, seed=11)
    assert result["mean"] - random_policy_value(cfg) > 4 * result["stderr"], result


def test_rollout_is_reproducible_and_float32_stays_float32():
    cfg = envs.make_config("tiger", horizon=6)
    for dtype in (np.float64, np.float32):
        params = metarl.init_params(envs.n_inputs(cfg), 8, 3, metarl.stream(0), dtype)
        a = metarl.rollout(params, cfg, 5, metarl.stream(1, 2))
        b = metarl.rollout(params, cfg, 5, metarl.stream(1, 2))
        for name in ("x", "a", "r", "h", "c", "pi"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert a.h.dtype == a.pi.dtype == a.x.dtype == dtype
        hp = small_config(dtype=np.dtype(dtype).name)
        opt = metarl.adam_init(params := metarl.init_params(4, 16, 2, metarl.stream(0), dtype))
        metarl.update(params, opt, hp, metarl.env_config(hp), metarl.stream(0, 0), 0.01, 1e-3)
        assert all(p.dtype == dtype for p in params.values())
        assert all(m.dtype == dtype for m in opt["m"].values())


def test_checkpoint_round_trip(tmp_path):
    hp = small_config()
    path = str(tmp_path / "run.npz")
    params = runs.train(hp, path, log=lambda line: None)
    ckpt = runs.load_checkpoint(path)
    assert ckpt["hp"] == hp and ckpt["update"] == hp.updates
    for k in metarl.PARAM_NAMES:
        np.testing.assert_array_equal(ckpt["params"][k], params[k])
    assert ckpt["history"]["return"].shape == (hp.updates,)
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".tmp")], "temp file left"


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    hp = small_config(updates=8, save_every=3, log_every=1)
    straight = runs.train(hp, str(tmp_path / "straight.npz"), log=lambda line: None)

    def interrupt_at_update_5(line):  # Ctrl-C during the run, after update 5's progress line
        if line.startswith("update      5/"):
            raise KeyboardInterrupt

    stopped = str(tmp_path / "stopped.npz")
    with pytest.raises(KeyboardInterrupt):
        runs.train(hp, stopped, log=interrupt_at_update_5)
    assert runs.load_checkpoint(stopped)["update"] == 3  # the last save (save_every = 3)
    resumed = runs.train(hp, stopped, resume=True, log=lambda line: None)
    for k in metarl.PARAM_NAMES:
        np.testing.assert_array_equal(resumed[k], straight[k])
    a, b = (runs.load_checkpoint(p)["history"]["return"] for p in
            (str(tmp_path / "straight.npz"), stopped))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("damage", ["truncated", "missing_key", "pickled", "not_npz"])
def test_bad_checkpoint_gives_a_clear_error_and_never_unpickles(tmp_path, damage):
    hp = small_config()
    good = str(tmp_path / "good.npz")
    runs.train(hp, good, log=lambda line: None)
    bad = tmp_path / "bad.npz"
    marker = tmp_path / "unpickled"
    if damage == "truncated":
        bad.write_bytes(open(good, "rb").read()[:500])
    elif damage == "missing_key":
        with np.load(good) as z:
            kept = {k: z[k] for k in z.files if k != "param/U"}
        np.savez(bad, **kept)
    elif damage == "pickled":
        with np.load(good) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["config"] = np.array([Exploit(str(marker))], dtype=object)
        np.savez(bad, **arrays)
    else:
        bad.write_text("hello")
    with pytest.raises(ValueError, match="bad.npz"):
        runs.load_checkpoint(str(bad))
    assert not marker.exists(), "loading executed code from the checkpoint"


class Exploit:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("args, message", [
    (["train", "--env", "nope", "--out", "x.npz"], "--env must be one of bandit, dependent-bandit"),
    (["train", "--arms", "1", "--out", "x.npz"], "--arms must be an integer in [2, 100], got 1"),
    (["train", "--horizon", "-3", "--out", "x.npz"], "--horizon must be an integer in [0, 10000]"),
    (["train", "--batch", "0", "--out", "x.npz"], "--batch must be an integer >= 1, got 0"),
    (["train", "--dtype", "float16", "--out", "x.npz"], "--dtype must be"),
    (["evaluate", "does/not/exist.npz"], "does not exist"),
])
def test_cli_bad_arguments_give_a_clear_error_without_traceback(cli, args, message, tmp_path):
    args = [str(tmp_path / a) if a.endswith(".npz") else a for a in args]
    done = cli("metarl.py", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_train_refuses_to_overwrite_an_existing_run(cli, tmp_path):
    out = tmp_path / "run.npz"
    out.write_bytes(b"precious")
    done = cli("metarl.py", "train", "--updates", "2", "--horizon", "5", "--out", str(out))
    assert done.returncode == 2 and "--resume" in done.stderr and "Traceback" not in done.stderr
    assert out.read_bytes() == b"precious"


def test_float32_gradient_agrees_with_float64_and_long_rollouts_stay_valid():
    """float32 is the speed option: its gradient must be the float64 one up to float32
    rounding, and long, large rollouts must never produce an invalid action or a NaN (the
    CDF of a float32 π can fall short of 1: the last action catches that rounding)."""
    cfg = envs.make_config("bandit", arms=3, horizon=40)
    p64 = metarl.init_params(envs.n_inputs(cfg), 16, 3, metarl.stream(8))
    for p in p64.values():
        p += 0.5 * np.random.default_rng(9).standard_normal(p.shape)
    grads = {}
    for dtype in (np.float64, np.float32):
        params = {k: v.astype(dtype) for k, v in p64.items()}
        tr = metarl.rollout(params, cfg, 64, metarl.stream(1, 1), actions=None)
        if dtype is np.float64:
            actions = tr.a
        else:  # same trajectory: replay the float64 run's actions
            tr = metarl.rollout(params, cfg, 64, metarl.stream(1, 1), actions=actions)
        V = metarl.value_head(tr.h[1:], params["w_V"], params["b_V"])
        adv, R = metarl.gae_advantages(tr.r.astype(dtype), V, 0.95, 1.0)
        _, grads[dtype] = metarl.loss_and_gradients(params, tr, adv, R, 0.5, 0.01)
    for k in metarl.PARAM_NAMES:
        g64, g32 = grads[np.float64][k], grads[np.float32][k]
        assert g32.dtype == np.float32
        assert np.abs(g32 - g64).max() <= 1e-3 * np.abs(g64).max() + 1e-6, k

    params = {k: v.astype(np.float32) for k, v in p64.items()}
    long_cfg = envs.make_config("bandit", arms=3, horizon=400)
    tr = metarl.rollout(params, long_cfg, 2048, metarl.stream(2, 2))   # 819,200 samples
    assert tr.a.min() >= 0 and tr.a.max() < 3
    assert np.isfinite(tr.h).all() and np.isfinite(tr.pi).all()
    np.testing.assert_allclose(tr.pi.sum(axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("env_name", ["bandit", "dependent-bandit"])
def test_pseudo_regret_sums_the_gap_to_the_best_arm_of_each_pull(env_name):
    cfg = envs.make_config(env_name, horizon=6)
    params = metarl.init_params(envs.n_inputs(cfg), 8, 2, metarl.stream(0))
    tr = metarl.rollout(params, cfg, 4, metarl.stream(3))
    expected = np.zeros(4)
    for e in range(4):
        p = tr.tasks[0, e] if env_name == "bandit" else [tr.tasks[0, e, 0], 1 - tr.tasks[0, e, 0]]
        expected[e] = sum(max(p) - p[tr.a[t, e]] for t in range(6))
    np.testing.assert_allclose(runs.pseudo_regret(cfg, tr), expected, rtol=1e-12)
