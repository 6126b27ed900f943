"""machines.py on machines whose answers are known: a network whose state *is* the exact
belief, one that stores raw recent history, maps fitted to shuffled targets, the MLP map's
gradient, and the value-loss identity."""
from types import SimpleNamespace

import numpy as np
import pytest

import belief
import envs
import machines
import metarl
import ridge
from conftest import assert_png_shows_the_figure, plot_axes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- helpers
def random_policy_episodes(cfg, B, seed):
    """(a, r, obs) of B episodes under a uniformly random policy (belief.run_policy)."""
    A = envs.n_actions(cfg)
    return belief.run_policy(cfg, lambda past, rng: rng.integers(A, size=len(past["tasks"])), B, seed)


def belief_network(cfg, ref, a, r, obs, rng):
    """A 'network' whose state is the exact belief up to an invertible affine map:
    s_t = b_t M + m. Its step and policy are the Bayes machine's, read through the map."""
    bayes = machines.bayes_machine(cfg, SimpleNamespace(a=a, r=r, obs=obs), ref)
    D = bayes.states.shape[-1]
    M = rng.normal(size=(D, D)) + 3 * np.eye(D)
    m = rng.normal(size=D)
    M_inv = np.linalg.inv(M)
    return bayes, machines.Machine(
        name="belief network", states=bayes.states @ M + m,
        step=lambda S, t: bayes.step((S - m) @ M_inv, t) @ M + m,
        policy=lambda S, t: bayes.policy((S - m) @ M_inv, t))


def bandit_belief_network(horizon, B, seed):
    """Random-policy bandit episodes, the Bayes machine and the belief network on them, and
    5 episode folds: (cfg, (a, r, obs), bayes, net, fold, rng)."""
    cfg = envs.make_config("bandit", horizon=horizon)
    a, r, obs = random_policy_episodes(cfg, B, seed=seed)
    rng = np.random.default_rng(seed)
    bayes, net = belief_network(cfg, machines.reference(cfg), a, r, obs, rng)
    return cfg, (a, r, obs), bayes, net, machines.episode_folds(B, 5, rng), rng


def history_network(a, r, A, window=5):
    """A 'network' whose state is its last `window` events, [one_hot(a), r] each, newest first."""
    T, B = a.shape
    events = np.concatenate([np.eye(A)[a], r[..., None]], axis=-1)          # (T, B, A + 1)
    states = np.zeros((T, B, window * (A + 1)))
    for t in range(1, T):
        states[t] = np.concatenate([events[t - 1], states[t - 1][:, :-(A + 1)]], axis=1)
    return machines.Machine(
        name="history network", states=states,
        step=lambda S, t: np.concatenate([events[t], S[:, :-(A + 1)]], axis=1),
        policy=lambda S, t: np.full((len(S), A), 1.0 / A))


def run_belief_agent(cfg, ref, B, seed, implant=None):
    """The Bayes-optimal agent run as the LSTM is: the state carried into step t has read the
    events < t − 1, step t reads event t − 1 and acts by the most likely action of the
    tie-split Bayes policy. implant = (t_s, states) replaces the state carried into t_s."""
    fam = machines.family(cfg)
    env = envs.make_env(cfg, B)
    env.reset(seed)
    T, A = cfg.horizon, envs.n_actions(cfg)
    a, r = np.zeros((T, B), dtype=np.int64), np.zeros((T, B))
    obs, pi = np.zeros((T, B, envs.n_observations(cfg))), np.zeros((T, B, A))
    carried, log = fam.prior(cfg, B), []
    for t in range(T):
        if implant is not None and t == implant[0]:
            carried = implant[1]
        log.append(carried)
        S = carried if t == 0 else fam.step(cfg, carried, a[t - 1], r[t - 1], obs[t - 1])
        pi[t] = belief.tie_split_policy(fam.q(cfg, ref, S, t))
        a[t] = pi[t].argmax(1)
        _, r[t], _ = env.step(a[t])
        obs[t] = env.obs
        carried = S
    return SimpleNamespace(a=a, r=r, obs=obs, pi=pi, carried=np.stack(log))


# ----------------------------------------------------------------------------- alignment
@pytest.mark.parametrize("name", ["bandit", "dependent-bandit", "tiger", "two-step"])
def test_bayes_machine_steps_reproduce_the_filter_and_its_q_is_belief_reference_q(name):
    cfg = envs.make_config(name, horizon=12)
    a, r, obs = random_policy_episodes(cfg, 50, seed=0)
    ref = machines.reference(cfg)
    bayes = machines.bayes_machine(cfg, SimpleNamespace(a=a, r=r, obs=obs), ref)
    for t in range(cfg.horizon - 1):
        np.testing.assert_allclose(bayes.step(bayes.states[t], t), bayes.states[t + 1], atol=1e-9)
    fam = machines.family(cfg)
    q = np.stack([fam.q(cfg, ref, bayes.states[t], t) for t in range(cfg.horizon)])
    np.testing.assert_allclose(q, belief.reference_q(cfg, a, r, obs), atol=1e-12)


def test_agent_machine_state_t_is_the_state_that_chose_action_t():
    cfg = envs.make_config("bandit", horizon=10)
    params = metarl.init_params(envs.n_inputs(cfg), 8, 2, np.random.default_rng(0))
    tr = metarl.rollout(params, cfg, 20, metarl.stream(0))
    agent = machines.agent_machine(params, tr)
    np.testing.assert_allclose(agent.states, np.concatenate([tr.h[1:], tr.c[1:]], -1), atol=1e-12)
    np.testing.assert_allclose(agent.policies(), tr.pi, atol=1e-12)
    for t in range(cfg.horizon - 1):
        np.testing.assert_allclose(agent.step(agent.states[t], t), agent.states[t + 1], atol=1e-12)


def test_nearest_counts_are_exact_states_and_fix_exact_states():
    rng = np.random.default_rng(0)
    t = 7
    S = rng.normal(2, 3, size=(500, 4))
    x = machines.nearest_counts(S, t)
    assert (x >= 0).all() and (x.sum(1) == t).all()
    exact = rng.multinomial(t, [0.1, 0.2, 0.3, 0.4], size=200)
    np.testing.assert_array_equal(machines.nearest_counts(exact + rng.uniform(-0.4, 0.4, exact.shape) / 4, t), exact)


# ----------------------------------------------------------------------------- simulation
def test_belief_network_simulates_bayes_and_bayes_simulates_it():
    _, _, bayes, net, fold, rng = bandit_belief_network(horizon=12, B=150, seed=1)
    forward = machines.agent_to_bayes(net, bayes, fold, "linear", rng)
    backward = machines.bayes_to_agent(bayes, net, fold, "linear", rng)
    # the maps are exact affine maps up to ridge shrinkage (λ ≥ 1e-4, N-scaled): errors ~1e-4
    assert forward["state_dissimilarity"] < 1e-3 and backward["state_dissimilarity"] < 1e-3
    assert forward["output_kl"] < 1e-9 and backward["output_kl"] < 1e-9
    assert forward["action_agreement"] == 1.0 and forward["map_r2"] > 0.999
    assert forward["output_kl_baseline"] > 0.1   # the measure could have failed


def test_maps_fitted_to_shuffled_targets_score_about_one():
    _, _, bayes, net, fold, rng = bandit_belief_network(horizon=12, B=2000, seed=2)
    # A map fitted to other episodes' targets can learn only E[target | t]; stepping from it
    # then errs by Δ − E[Δ | t], which under a random policy is Δ − mean Δ: ratio 1. What is
    # left is the map's spurious slope β on the episode's own state (fitted to noise, sd
    # ~ 1/√rows), which enters as (1 − β)²: over seeds 2..7 at B = 2000 the ratios were all
    # within 0.05 of 1. Tolerance 0.1.
    forward = machines.agent_to_bayes(net, bayes, fold, "linear", rng, shuffled=True)
    backward = machines.bayes_to_agent(bayes, net, fold, "linear", rng, shuffled=True)
    assert abs(forward["state_dissimilarity"] - 1) < 0.1
    assert abs(backward["state_dissimilarity"] - 1) < 0.1


# ----------------------------------------------------------------------------- minimality
def test_belief_network_is_minimal_and_history_network_is_not():
    cfg, (a, r, obs), bayes, net, fold, rng = bandit_belief_network(horizon=15, B=200, seed=3)
    history, names = machines.history_features(cfg, a, r, obs)
    minimal = machines.minimality(net, bayes, history, names, fold, seed=3)
    # the state adds only a re-coding of columns already in the belief design: held-out
    # partial R² is noise around 0 (≈ ±D_state / N_train ≈ 0.005 here)
    assert all(abs(v) < 0.02 for v in minimal["partial_r2"].values()), minimal["partial_r2"]
    # 0 up to the rounding of a group mean of identical states
    assert minimal["within_between_ratio"] < 1e-20 and minimal["within_between_rows"] > 100
    raw = machines.minimality(history_network(a, r, 2), bayes, history, names, fold, seed=3)
    assert raw["partial_r2"]["reward_t-2"] > 0.5 and raw["within_between_ratio"] > 0.1


def test_within_between_ratio_is_about_one_for_a_state_unrelated_to_the_belief():
    rng = np.random.default_rng(4)
    coords = rng.integers(0, 4, size=(10, 300, 1)).astype(float)   # 4 groups per step
    ratio = machines.within_between_ratio(rng.normal(size=(10, 300, 6)), coords)
    # F-statistic with (30, ~2960) df on 6 coordinates pooled: sd of 1/F ≈ 0.1
    assert abs(ratio["ratio"] - 1) < 0.35


# ----------------------------------------------------------------------------- splicing
@pytest.mark.parametrize("name", ["bandit", "tiger"])
def test_belief_agent_follows_the_spliced_history(name):
    cfg = envs.make_config(name, horizon=16)
    B, ref, times = 300, machines.reference(cfg), [4, 8]
    original = run_belief_agent(cfg, ref, B, seed=5)
    splices = []
    for t_s, donor in zip(times, machines.splice_donors(B, 0, times)):
        run = run_belief_agent(cfg, ref, B, seed=5, implant=(t_s, original.carried[t_s][donor]))
        np.testing.assert_array_equal(run.a[:t_s], original.a[:t_s])
        splices.append({"t_s": t_s, "donor": donor, "run": run})
    result = machines.splice_agreement(cfg, ref, original, splices)
    assert result["steps"] > 50
    assert result["agreement_spliced"] == 1.0 and result["agreement_recipient"] == 0.0
    assert result["agreement_own"] == 1.0


@pytest.mark.parametrize("name", ["bandit", "tiger"])
def test_windowed_control_forgets_the_donor(name):
    cfg = envs.make_config(name, horizon=16)
    B, ref, window = 300, machines.reference(cfg), 3
    original, runs = machines.control_splice_runs(cfg, ref, B, seed=6, times=[4, 8], window=window)
    for s in runs:
        np.testing.assert_array_equal(s["run"].a[:s["t_s"]], original.a[:s["t_s"]])
    result = machines.splice_agreement(cfg, ref, original, runs)
    lag = result["per_lag"]
    # right after the splice the control acts on the donor's last events: a splice that
    # did nothing would agree with (ii), not (i), there (0.23 and 0.12 measured with it off)
    assert lag["steps"][0] > 30 and lag["agreement_spliced"][0] > 0.7, lag["agreement_spliced"][:2]
    # from lag window − 1 on its window holds only the recipient's events; any agreement
    # with (i) on the steps where (i) and (ii) disagree is then not the donor's doing
    late = [(v, n) for v, n in zip(lag["agreement_spliced"][window - 1:], lag["steps"][window - 1:]) if n]
    assert sum(n for _, n in late) > 30
    assert sum(v * n for v, n in late) / sum(n for _, n in late) < 0.9


def test_lstm_splice_leaves_the_steps_before_the_splice_unchanged():
    cfg = envs.make_config("bandit", horizon=12)
    params = metarl.init_params(envs.n_inputs(cfg), 8, 2, np.random.default_rng(0))
    params["W_pi"] *= 300   # a policy that depends on the state
    original, runs = machines.splice_runs(params, cfg, 40, seed=0, times=[3, 6])
    for s in runs:
        t_s, run = s["t_s"], s["run"]
        np.testing.assert_array_equal(run.a[:t_s], original.a[:t_s])
        np.testing.assert_array_equal(run.h[:t_s], original.h[:t_s])
        np.testing.assert_array_equal(run.h[t_s], original.h[t_s][s["donor"]])
        assert (run.a[t_s:] != original.a[t_s:]).any()
    hybrid_a = machines.spliced_history(original, runs[0])[0]
    np.testing.assert_array_equal(hybrid_a[:2], original.a[:2][:, runs[0]["donor"]])
    np.testing.assert_array_equal(hybrid_a[2:], runs[0]["run"].a[2:])


# ----------------------------------------------------------------------------- the maps
def test_mlp_backward_matches_finite_differences():
    rng = np.random.default_rng(6)
    X, Y = rng.normal(size=(7, 4)), rng.normal(size=(7, 3))
    P = machines.mlp_init(4, 5, 3, rng)
    P["b1"] += 0.3 * rng.normal(size=5)
    Yhat, Z = machines.mlp_forward(P, X)
    grads = machines.mlp_backward(P, X, Z, machines.mse_loss(Yhat, Y)[1])
    eps = 1e-5
    for name, p in P.items():
        numeric = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + eps
            up = machines.mse_loss(machines.mlp_forward(P, X)[0], Y)[0]
            p[i] = old - eps
            down = machines.mse_loss(machines.mlp_forward(P, X)[0], Y)[0]
            p[i] = old
            numeric[i] = (up - down) / (2 * eps)
        err = np.linalg.norm(grads[name] - numeric) / (np.linalg.norm(grads[name]) + np.linalg.norm(numeric))
        assert err < 1e-6, f"{name}: relative error {err:.1e}"


def test_mlp_map_recovers_a_nonlinear_function_the_linear_map_cannot():
    rng = np.random.default_rng(7)
    T, B = 10, 200
    X = rng.uniform(-2, 2, size=(T, B, 3))
    Y = (np.sin(2 * X[..., 0]) * X[..., 1] + X[..., 2] ** 2)[..., None]
    fold = machines.episode_folds(B, 5, rng)
    fitted = {kind: machines.cross_fitted(X, Y, fold, kind, rng, batch=64, steps=2000)
              for kind in ("linear", "mlp")}   # small batches: a larger budget than the default
    r2 = {kind: ridge.r2_score(Y.reshape(-1, 1), v.reshape(-1, 1))[0] for kind, v in fitted.items()}
    assert r2["linear"] < 0.1 and r2["mlp"] > 0.9, r2


def test_mlp_map_is_never_worse_than_the_linear_map_where_the_truth_is_linear():
    # Y = X A + noise: the linear map is right, and the MLP map (the linear map plus a net on
    # its residual, kept only where it validates better) must not lose held-out accuracy
    rng = np.random.default_rng(8)
    T, B, F, M = 20, 100, 6, 3
    X = rng.standard_normal((T, B, F))
    Y = X @ rng.standard_normal((F, M)) + 0.3 * rng.standard_normal((T, B, M))
    fold = machines.episode_folds(B, 5, rng)
    sse = {kind: float(((Y - machines.cross_fitted(X, Y, fold, kind, np.random.default_rng(0),
                                                   batch=256)) ** 2).sum())
           for kind in ("linear", "mlp")}
    assert sse["mlp"] <= 1.01 * sse["linear"], sse   # tolerance: 1 %, the nets' fitting noise


def test_score_scale_is_the_sd_of_the_one_step_change_or_of_the_value():
    rng = np.random.default_rng(9)
    counts = np.cumsum(rng.integers(0, 2, (30, 40, 1)), axis=0).astype(float)   # moves by 0/1
    slow = np.broadcast_to(rng.standard_normal((1, 40, 1)), (30, 40, 1))      # never moves
    scale = machines.score_scale(np.concatenate([counts, slow], axis=-1))
    assert np.isclose(scale[0], np.diff(counts, axis=0).std())
    assert np.isclose(scale[1], slow.std())


# ----------------------------------------------------------------------------- value loss
@pytest.mark.parametrize("name", ["bandit", "tiger"])
def test_value_loss_sums_to_the_performance_difference(name):
    cfg = envs.make_config(name, horizon=10)
    params = metarl.init_params(envs.n_inputs(cfg), 8, envs.n_actions(cfg), np.random.default_rng(8))
    params["W_pi"] *= 100   # a random policy far from uniform, and far from Bayes-optimal
    tr = metarl.rollout(params, cfg, 4000, metarl.stream(8))
    result = machines.value_loss(cfg, machines.reference(cfg), tr)
    assert result["value_loss_per_episode"] > 0.5   # far from optimal: the check has teeth
    # E[Σ ℓ_t] = V*_0 − E[return]: per episode the difference has mean 0, paired SE
    assert abs(result["identity_gap"]) < 3 * result["identity_gap_se"]


@pytest.mark.parametrize("name", ["bandit", "tiger"])
def test_the_relative_value_loss_is_one_for_the_uniform_policy(name):
    cfg = envs.make_config(name, horizon=10)
    ref = machines.reference(cfg)
    run = run_belief_agent(cfg, ref, 200, seed=3)
    uniform = SimpleNamespace(**{**vars(run), "pi": np.full_like(run.pi, 1.0 / run.pi.shape[-1])})
    result = machines.value_loss(cfg, ref, uniform)
    assert result["value_loss_uniform_per_step"] > 0    # some step has a worse action
    assert np.isclose(result["value_loss_relative"], 1.0, rtol=1e-12)
    assert machines.value_loss(cfg, ref, run)["value_loss_relative"] == 0.0


@pytest.mark.parametrize("name", ["bandit", "tiger"])
def test_value_loss_is_zero_for_the_bayes_optimal_policy(name):
    cfg = envs.make_config(name, horizon=12)
    ref = machines.reference(cfg)
    run = run_belief_agent(cfg, ref, 500, seed=9)
    result = machines.value_loss(cfg, ref, run)
    assert result["value_loss_per_step"] == 0.0
    assert abs(result["identity_gap"]) < 3 * result["identity_gap_se"]


# ----------------------------------------------------------------------------- figures
def bar_heights(ax):
    return [bar.get_height() for bar in ax.patches]


def test_figures_draw_the_results_they_are_given(tmp_path, drawn):
    """Each figure is a PNG of its figure's size with a drawing in it; every panel has a
    title, a y label and an x label or named ticks, and holds exactly the numbers handed in."""
    cfg = envs.make_config("bandit", horizon=12)
    ref = machines.reference(cfg)
    run = run_belief_agent(cfg, ref, 60, seed=10)
    vl = machines.value_loss(cfg, ref, run)
    sim = {d: {m: {"trained": {"linear": 0.5, "mlp": 0.3}, "untrained": {"linear": 0.7, "mlp": 0.6}}
               for m in ("state_dissimilarity", "output_kl_relative")}
           for d in ("agent_to_bayes", "bayes_to_agent")}
    mini = {n: {"partial_r2": {"reward_t-2": 0.3, "switches": 0.1}, "within_between_ratio": 0.2}
            for n in ("trained", "untrained")}
    lag = {k: [0.5, None, 0.7] for k in ("agreement_spliced", "agreement_recipient", "agreement_own")}
    lag["steps"] = [3, 0, 2]
    splice = {"per_lag": lag, "control": {"per_lag": lag, "window": 3}}
    paths = [tmp_path / f"{k}.png" for k in ("sim", "mini", "splice", "value")]
    machines.plot_simulation(sim, paths[0])
    machines.plot_minimality(mini, paths[1])
    machines.plot_splice(splice, paths[2])
    machines.plot_value_loss(vl, paths[3])
    for p in paths:
        assert p.read_bytes()[:8] == PNG_SIGNATURE
    assert len(drawn) == len(paths)
    for path, drawing in zip(paths, drawn):
        assert_png_shows_the_figure(path, drawing)
        assert drawing.figure.get_suptitle(), path.name
        for ax in plot_axes(drawing.figure):
            ticks = [t.get_text() for t in ax.get_xticklabels()]
            assert ax.get_title() and ax.get_ylabel(), path.name
            assert ax.get_xlabel() or all(ticks), (path.name, ticks)
    simulation, minimality, splicing, value = (plot_axes(d.figure) for d in drawn)
    # one bar per direction, network and map, in that order; both measures alike here
    for ax in simulation:
        assert bar_heights(ax) == [0.5, 0.3, 0.7, 0.6] * 2
        assert [t.get_text() for t in ax.get_xticklabels()] == [
            machines.DIRECTION_LABEL[d] for d in sim]
    assert bar_heights(minimality[0]) == [0.3, 0.1, 0.3, 0.1]   # per network, per feature
    assert bar_heights(minimality[1]) == [0.2, 0.2]             # the spread ratio per network
    for ax in splicing:   # spliced, recipient's, own: a missing lag is a gap (NaN)
        assert len(ax.lines) == 3
        for line in ax.lines:
            np.testing.assert_array_equal(line.get_ydata(), [0.5, np.nan, 0.7])
    np.testing.assert_array_equal(value[0].lines[0].get_ydata(), vl["by_t"]["mean"])
    np.testing.assert_array_equal(value[1].lines[0].get_ydata(),
                                  [row["mean"] for row in vl["by_uncertainty"]])
