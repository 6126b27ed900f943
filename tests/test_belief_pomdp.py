"""Tests for belief.py section B (Tiger, two-step) and twostep.py: each name states the property.

Statistical checks use fixed seeds and state their tolerance in standard errors (SE)."""
import itertools

import numpy as np
import pytest

import belief
import envs
import twostep
from conftest import assert_png_shows_the_figure, plot_axes

ENV_TOLERANCE_SE = 4  # env statistics vs their parameters: 4 SE, a false alarm ~1 in 16,000
MC_TOLERANCE_SE = 3   # Monte-Carlo returns and fitted coefficients vs their exact values


def random_rollout(cfg, episodes, seed, p_actions):
    """actions, rewards, obs of a policy drawing actions i.i.d. with probabilities p_actions."""
    def choose(past, rng):
        return rng.choice(len(p_actions), size=len(past["tasks"]), p=p_actions)
    return belief.run_policy(cfg, choose, episodes, seed)


# ----------------------------------------------------------------------------- Tiger


def brute_tiger_round_likelihoods(heard, accuracy):
    """P(the round's hearings | tiger left), P(… | tiger right); heard[i]: True = hear-left."""
    like_left = np.prod([accuracy if h else 1 - accuracy for h in heard])
    like_right = np.prod([1 - accuracy if h else accuracy for h in heard])
    return like_left, like_right


def test_tiger_belief_equals_brute_force_bayes_over_each_round():
    cfg = envs.make_config("tiger", horizon=12, listen_accuracy=0.7)
    actions, rewards, obs = random_rollout(cfg, 30, seed=1, p_actions=[0.8, 0.1, 0.1])
    b = belief.belief_trajectory(cfg, actions, rewards, obs)["p_left"]  # (T + 1, B)
    F, names = belief.belief_features(cfg, actions, rewards, obs)        # (T, B, 2)
    assert names == ["p_left", "hear_diff"]
    for e in range(actions.shape[1]):
        heard = []  # hearings since the last opening
        for t in range(cfg.horizon + 1):
            like_left, like_right = brute_tiger_round_likelihoods(heard, cfg.listen_accuracy)
            assert b[t, e] == pytest.approx(like_left / (like_left + like_right), abs=1e-12)
            if t < cfg.horizon:
                assert F[t, e, 0] == b[t, e]
                assert F[t, e, 1] == sum(heard) - (len(heard) - sum(heard))
                heard = heard + [obs[t, e, 0] == 1] if actions[t, e] == belief.LISTEN else []
    assert (actions != belief.LISTEN).any() and (np.abs(F[..., 1]) >= 3).any()  # not vacuous


def brute_tiger_q(cfg, heard, steps_left):
    """Q of (listen, open-left, open-right) after the round's hearings `heard`, with steps_left
    steps to go, by recursion over every action and observation sequence."""
    like_left, like_right = brute_tiger_round_likelihoods(heard, cfg.listen_accuracy)
    b = like_left / (like_left + like_right)
    p_hear_left = b * cfg.listen_accuracy + (1 - b) * (1 - cfg.listen_accuracy)

    def value(heard_next):
        return 0.0 if steps_left == 1 else max(brute_tiger_q(cfg, heard_next, steps_left - 1))

    listen = (cfg.listen_reward + p_hear_left * value(heard + (True,))
              + (1 - p_hear_left) * value(heard + (False,)))
    after_opening = value(())
    open_left = b * cfg.tiger_reward + (1 - b) * cfg.treasure_reward + after_opening
    open_right = (1 - b) * cfg.tiger_reward + b * cfg.treasure_reward + after_opening
    return listen, open_left, open_right


@pytest.mark.parametrize("accuracy", [0.85, 0.95])
def test_tiger_dp_value_equals_brute_force_recursion(accuracy):
    for T in range(1, 6):
        cfg = envs.make_config("tiger", horizon=T, listen_accuracy=accuracy)
        Q0 = belief.tiger_q_table(cfg)[0, T]
        np.testing.assert_allclose(Q0, brute_tiger_q(cfg, (), T), rtol=0, atol=1e-10)
        assert belief.exact_values(cfg)["bayes_optimal_exact"] == pytest.approx(Q0.max())
    assert belief.exact_values(cfg)["bayes_optimal_exact"] > -T  # the optimum opens a door


def test_tiger_reference_q_along_trajectories_equals_brute_force():
    cfg = envs.make_config("tiger", horizon=5, listen_accuracy=0.9, treasure_reward=20.0)
    actions, rewards, obs = random_rollout(cfg, 20, seed=2, p_actions=[0.7, 0.15, 0.15])
    Q = belief.reference_q(cfg, actions, rewards, obs)  # (T, B, 3)
    for e in range(actions.shape[1]):
        heard = ()
        for t in range(cfg.horizon):
            np.testing.assert_allclose(Q[t, e], brute_tiger_q(cfg, heard, cfg.horizon - t),
                                       rtol=0, atol=1e-10)
            heard = heard + (obs[t, e, 0] == 1,) if actions[t, e] == belief.LISTEN else ()


def test_tiger_bayes_optimal_monte_carlo_return_matches_exact_value():
    cfg = envs.make_config("tiger", horizon=20)
    exact = belief.exact_values(cfg)
    policies = belief.tiger_policies(cfg, belief.tiger_q_table(cfg))
    run = belief.policy_baselines(cfg, {k: policies[k] for k in ("bayes_optimal", "oracle")},
                                  episodes=20000, seed=3)
    mc = run["bayes_optimal"]
    assert abs(mc["mean"] - exact["bayes_optimal_exact"]) < MC_TOLERANCE_SE * mc["stderr"]
    assert run["oracle"] == {"mean": exact["oracle_exact"], "stderr": 0.0}


def test_tiger_env_hearing_accuracy_rewards_and_replacement_match_parameters():
    cfg = envs.make_config("tiger", horizon=20, listen_accuracy=0.8)
    env = envs.make_env(cfg, 5000)
    env.reset(4)
    heard_right_side, tiger_left_after_opening = [], []
    for t in range(cfg.horizon):
        tiger_left = env.tasks[:, 0].copy()
        a = np.where(np.arange(env.batch) % 2 == 0, belief.LISTEN, belief.OPEN_LEFT)
        _, r, _ = env.step(a)
        listened = a == belief.LISTEN
        heard_right_side.append(env.obs[listened, 0] == tiger_left[listened])
        np.testing.assert_array_equal(r[listened], cfg.listen_reward)
        np.testing.assert_array_equal(r[~listened], np.where(tiger_left[~listened] == 1,
                                                             cfg.tiger_reward, cfg.treasure_reward))
        tiger_left_after_opening.append(env.tasks[~listened, 0])
    for sample, p in ((heard_right_side, cfg.listen_accuracy), (tiger_left_after_opening, 0.5)):
        x = np.concatenate(sample)
        assert abs(x.mean() - p) < ENV_TOLERANCE_SE * np.sqrt(p * (1 - p) / x.size)


# ----------------------------------------------------------------------------- two-step


def brute_two_step_belief(states, rewards, cfg):
    """P(A good before trial t), t = 0 … T, by summing over every hidden sequence g_0 … g_t
    (g = 1: A is good) weighted by its prior and the likelihood of the rewards."""
    b = []
    for t in range(len(states) + 1):
        weight_a_good = total = 0.0
        for g in itertools.product((0, 1), repeat=t + 1):
            w = 0.5
            for k in range(t):
                good = (states[k] == 0) == (g[k] == 1)
                p_r = cfg.reward_good if good else cfg.reward_bad
                w *= p_r if rewards[k] == 1 else 1 - p_r
                w *= cfg.swap_prob if g[k + 1] != g[k] else 1 - cfg.swap_prob
            total += w
            weight_a_good += w * g[t]
        b.append(weight_a_good / total)
    return np.array(b)


def test_two_step_filter_equals_enumeration_over_swap_histories():
    cfg = envs.make_config("two-step", horizon=8, common_prob=0.7, reward_good=0.8,
                           reward_bad=0.3, swap_prob=0.2)
    actions, rewards, obs = random_rollout(cfg, 6, seed=5, p_actions=[0.5, 0.5])
    b = belief.belief_trajectory(cfg, actions, rewards, obs)["p_A_good"]  # (T + 1, B)
    F, names = belief.belief_features(cfg, actions, rewards, obs)          # (T, B, 2)
    assert names == ["p_A_good", "log_odds_A_good"]
    for e in range(actions.shape[1]):
        exact = brute_two_step_belief(obs[:, e, 1].astype(int), rewards[:, e], cfg)
        np.testing.assert_allclose(b[:, e], exact, rtol=0, atol=1e-12)
        np.testing.assert_allclose(F[:, e, 1], np.log(exact[:-1] / (1 - exact[:-1])), atol=1e-9)
    np.testing.assert_array_equal(F[..., 0], b[:-1])


def test_two_step_reference_q_is_expected_reward_under_the_belief():
    cfg = envs.make_config("two-step", horizon=10, common_prob=0.7, reward_good=0.8,
                           reward_bad=0.3)
    actions, rewards, obs = random_rollout(cfg, 4, seed=6, p_actions=[0.5, 0.5])
    b = belief.belief_features(cfg, actions, rewards, obs)[0][..., 0]
    Q = belief.reference_q(cfg, actions, rewards, obs)  # (T, B, 2)
    reward_in = {"A": 0.8 * b + 0.3 * (1 - b), "B": 0.8 * (1 - b) + 0.3 * b}
    np.testing.assert_allclose(Q[..., 0], 0.7 * reward_in["A"] + 0.3 * reward_in["B"])
    np.testing.assert_allclose(Q[..., 1], 0.3 * reward_in["A"] + 0.7 * reward_in["B"])


def test_two_step_env_transition_reward_and_swap_rates_match_parameters():
    cfg = envs.make_config("two-step", horizon=100)
    env = envs.make_env(cfg, 2000)
    env.reset(7)
    rng = np.random.default_rng(7)
    common, reward_good, reward_bad, swapped = [], [], [], []
    for t in range(cfg.horizon):
        a_good = env.tasks[:, 0].copy()
        a = rng.integers(2, size=env.batch)
        _, r, _ = env.step(a)
        state = env.obs[:, 1].astype(int)  # 0 = A, 1 = B
        in_good = (state == 0) == (a_good == 1)
        common.append(state == a)
        reward_good.append(r[in_good])
        reward_bad.append(r[~in_good])
        swapped.append(env.tasks[:, 0] != a_good)
    for sample, p in ((common, cfg.common_prob), (reward_good, cfg.reward_good),
                      (reward_bad, cfg.reward_bad), (swapped, cfg.swap_prob)):
        x = np.concatenate(sample)
        assert abs(x.mean() - p) < ENV_TOLERANCE_SE * np.sqrt(p * (1 - p) / x.size)


def test_two_step_oracle_monte_carlo_return_matches_exact_value():
    cfg = envs.make_config("two-step", horizon=100)
    oracle = {"oracle": belief.two_step_policies(cfg)["oracle"]}
    mc = belief.policy_baselines(cfg, oracle, episodes=2000, seed=8)["oracle"]
    assert abs(mc["mean"] - belief.exact_values(cfg)["oracle_exact"]) < (
        MC_TOLERANCE_SE * mc["stderr"])


def test_model_free_q_matches_plain_python_sarsa_lambda():
    cfg = envs.make_config("two-step", horizon=30)
    actions, rewards, obs = random_rollout(cfg, 3, seed=9, p_actions=[0.5, 0.5])
    alpha, lam = 0.3, 0.6
    Q1 = belief.model_free_q(actions, obs, rewards, alpha, lam)  # (T + 1, B, 2)
    for e in range(actions.shape[1]):
        q, v = [0.0, 0.0], [0.0, 0.0]
        for t in range(cfg.horizon):
            np.testing.assert_allclose(Q1[t, e], q, atol=1e-12)
            a, s, r = actions[t, e], int(obs[t, e, 1]), rewards[t, e]
            q[a] += alpha * (v[s] - q[a])      # δ1: towards the second-stage value
            q[a] += alpha * lam * (r - v[s])   # δ2 through the trace
            v[s] += alpha * (r - v[s])
        np.testing.assert_allclose(Q1[-1, e], q, atol=1e-12)


# ----------------------------------------------------------------------------- stay analysis


def stay_analysis_of(cfg, policy, episodes, seed):
    return twostep.stay_analysis(*belief.run_policy(cfg, belief.two_step_policies(cfg)[policy],
                                                    episodes, seed))


def test_stay_trials_code_reward_and_transition_of_the_previous_trial():
    actions = np.array([[0], [0], [1]])           # (T, B): stay, then switch
    obs = np.array([[[1, 0]], [[0, 1]], [[0, 1]]])  # states A (common for 0), B (rare for 0), B
    rewards = np.array([[1.0], [0.0], [1.0]])
    stay, x_r, x_c = twostep.stay_trials(actions, rewards, obs)
    np.testing.assert_array_equal(stay, [1, 0])
    np.testing.assert_array_equal(x_r, [1, -1])
    np.testing.assert_array_equal(x_c, [1, -1])


def test_model_free_learner_has_a_reward_effect_and_no_interaction_when_the_past_is_uninformative():
    # With swap_prob = 1/2 the good state is independent across trials, so which cell a trial
    # falls in says nothing about the learner's values: only its own update (λ = 1: towards r,
    # whatever the transition) can make stays differ, and that update ignores the transition.
    cfg = envs.make_config("two-step", swap_prob=0.5)
    result = stay_analysis_of(cfg, "model_free_td", episodes=1000, seed=10)
    logit = result["logit"]
    assert logit["reward"]["mean"] > 10 * logit["reward"]["se"]
    for estimate in (logit["reward x transition"], result["interaction"]):
        assert abs(estimate["mean"]) < MC_TOLERANCE_SE * estimate["se"]


def test_belief_greedy_interaction_is_large_and_exceeds_the_model_free_one():
    # In the default task the model-free learner also shows an interaction (the good state
    # persists, so a rare-unrewarded trial mostly follows a well-learned good choice; Akam,
    # Costa & Dayan 2015), but the belief-greedy policy's is far larger.
    cfg = envs.make_config("two-step")
    greedy = stay_analysis_of(cfg, "belief_greedy", episodes=500, seed=11)["interaction"]
    model_free = stay_analysis_of(cfg, "model_free_td", episodes=500, seed=11)["interaction"]
    assert greedy["mean"] > 0.5 and greedy["mean"] > 20 * greedy["se"]
    assert greedy["mean"] - model_free["mean"] > 10 * np.hypot(greedy["se"], model_free["se"])


def test_logistic_regression_recovers_known_coefficients():
    rng = np.random.default_rng(12)
    x_r, x_c = rng.choice([-1.0, 1.0], size=(2, 20000))
    X = np.stack([np.ones_like(x_r), x_r, x_c, x_r * x_c], axis=1)
    beta_true = np.array([0.5, 1.0, -0.3, 0.8])
    y = (rng.random(len(X)) < 1 / (1 + np.exp(-X @ beta_true))).astype(float)
    beta, se = twostep.logistic_regression(X, y)
    assert np.all(np.abs(beta - beta_true) < MC_TOLERANCE_SE * se)
    # Saturated ±1 design: β̂ = Xᵀ logit(p̂_cell) / 4, Var = Σ_cell 1/(n p̂(1 − p̂)) / 16
    cells = [(x_r == r) & (x_c == c) for r, c in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
    p = np.array([y[m].mean() for m in cells])
    n = np.array([m.sum() for m in cells])
    signs = np.array([[1, 1, 1, 1], [1, 1, -1, -1], [1, -1, 1, -1], [1, -1, -1, 1]])  # (coef, cell)
    np.testing.assert_allclose(beta, signs @ np.log(p / (1 - p)) / 4, atol=1e-9)
    np.testing.assert_allclose(se, np.sqrt(np.sum(1 / (n * p * (1 - p))) / 16), rtol=1e-9)


def test_logistic_regression_refuses_separated_data():
    X = np.stack([np.ones(6), [-1.0, -1, -1, 1, 1, 1]], axis=1)
    with pytest.raises(ValueError, match="did not converge"):
        twostep.logistic_regression(X, np.array([0.0, 0, 0, 1, 1, 1]))


def test_stay_probability_plot_draws_each_policys_stays_and_no_temporary_file(tmp_path, drawn):
    """A PNG of the figure's size with a drawing in it, and no temporary file; one panel per
    policy, titled by it, whose four bars are its stay probabilities (common rewarded, common
    unrewarded, rare rewarded, rare unrewarded)."""
    cfg = envs.make_config("two-step", horizon=20)
    analyses = {name: stay_analysis_of(cfg, name, episodes=50, seed=13)
                for name in ("belief_greedy", "model_free_td")}
    path = tmp_path / "stay.png"
    twostep.stay_probability_plot(analyses, str(path))
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert [p.name for p in tmp_path.iterdir()] == ["stay.png"]
    assert len(drawn) == 1
    assert_png_shows_the_figure(path, drawn[0])
    axes = plot_axes(drawn[0].figure)
    assert len(axes) == len(analyses) and axes[0].get_ylabel()   # the y axis is shared
    for ax, (name, analysis) in zip(axes, analyses.items()):
        assert ax.get_xlabel() and ax.get_title().startswith(name)
        cells = [f"{transition} {outcome}" for transition in ("common", "rare")
                 for outcome in ("rewarded", "unrewarded")]
        assert [bar.get_height() for bar in ax.patches] == [analysis["stay"][c]["p"]
                                                            for c in cells]
