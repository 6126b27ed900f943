"""Tests for twostep.py's clustered stay analysis, hybrid-learner fit and model-free grid: each
name states the property. (The stay-trial coding, logistic regression and plot are tested in
test_belief_pomdp.py.)

Statistical checks use fixed seeds and state their tolerance in standard errors (SE)."""
import math

import numpy as np
import pytest

import belief
import envs
import twostep

FIT_TOLERANCE_SE = 3  # fitted parameters vs the values that generated the data
HYBRID = {"alpha": 0.5, "lam": 0.6, "beta": 5.0, "p": 0.3}  # a hybrid learner, w set per test


def rollout(cfg, choose, episodes, seed):
    return belief.run_policy(cfg, choose, episodes, seed)


def policy(cfg, name):
    return belief.two_step_policies(cfg)[name]


def random_choices(past, rng):
    return rng.integers(2, size=len(past["tasks"]))


# ----------------------------------------------------------------------------- stay analysis

def test_stay_counts_sum_the_stay_trials_of_each_cell_per_episode():
    cfg = envs.make_config("two-step", horizon=30)
    actions, rewards, obs = rollout(cfg, random_choices, 7, seed=0)
    counts = twostep.stay_counts(actions, rewards, obs)  # (B, 2, 4)
    for e in range(7):
        one = slice(e, e + 1)
        stay, x_r, x_c = twostep.stay_trials(actions[:, one], rewards[:, one], obs[:, one])
        for j, (r, c) in enumerate(((1, 1), (1, -1), (-1, 1), (-1, -1))):
            in_cell = (x_r == r) & (x_c == c)
            assert counts[e, :, j].tolist() == [in_cell.sum(), stay[in_cell].sum()]


def test_saturated_logistic_coefficients_from_cell_probabilities_equal_the_irls_fit():
    cfg = envs.make_config("two-step")
    data = rollout(cfg, policy(cfg, "model_free_td"), 300, seed=1)
    analysis, counts = twostep.stay_analysis(*data), twostep.stay_counts(*data)
    statistics = twostep.stay_statistics(counts)  # (9,) p, interaction, β
    np.testing.assert_allclose(statistics[:4], [analysis["stay"][c]["p"] for c in twostep.CELLS])
    assert statistics[4] == pytest.approx(analysis["interaction"]["mean"])
    np.testing.assert_allclose(statistics[5:], [analysis["logit"][k]["mean"]
                                                for k in twostep.COEFFICIENTS], atol=1e-9)


def linearised_cluster_se(counts):
    """Cluster-robust (delta-method) SE of the interaction Σ_c s_c k_c / n_c, with signs s =
    (+1, −1, −1, +1) in CELLS order: √(B/(B − 1) Σ_e (Σ_c s_c (k_ec − p_c n_ec) / n_c)²)."""
    n, k = counts.sum(axis=0)
    s = np.array([1.0, -1.0, -1.0, 1.0])
    u = ((counts[:, 1] - k / n * counts[:, 0]) * s / n).sum(axis=1)  # (B,) per-episode influence
    B = len(counts)
    return math.sqrt(B / (B - 1) * np.sum(u ** 2))


def model_based_or_model_free_by_episode(past, rng):
    """Even episodes stay iff the last trial was common-rewarded or rare-unrewarded (model-based
    pattern), odd ones iff it was rewarded (model-free): a strong per-episode effect."""
    B = len(past["tasks"])
    if len(past["actions"]) == 0:
        return rng.integers(2, size=B)
    a, rewarded, state = past["actions"][-1], past["rewards"][-1] > 0.5, past["obs"][-1][:, 1]
    stay = np.where(np.arange(B) % 2 == 0, (state == a) == rewarded, rewarded)
    return np.where(stay, a, 1 - a)


@pytest.mark.parametrize("name", ["belief_greedy", "model_free_td", "mixture"])
def test_interaction_bootstrap_se_matches_the_linearised_cluster_se(name):
    # The bootstrap over episodes and the delta-method sandwich over episodes estimate the same
    # SE; with 1000 replicates the bootstrap's Monte-Carlo error is ~2 %, so 10 % is ~4 SE.
    cfg = envs.make_config("two-step")
    choose = model_based_or_model_free_by_episode if name == "mixture" else policy(cfg, name)
    data = rollout(cfg, choose, 1000, seed=2)
    interaction = twostep.stay_analysis(*data, np.random.default_rng(3))["interaction"]
    assert interaction["se"] == pytest.approx(linearised_cluster_se(twostep.stay_counts(*data)),
                                              rel=0.10)


def test_clustered_se_of_the_interaction_exceeds_the_binomial_se_only_with_an_episode_effect():
    # What the data show (1000 episodes, 5 seeds each): an agent whose stay rule differs
    # between episodes has a clustered SE ~3.9–4.0 × the binomial one; belief-greedy's trials
    # are close to independent in this respect (ratio 0.93–1.00), the default model-free TD
    # learner's slightly positively correlated (1.01–1.04).
    cfg = envs.make_config("two-step")

    def ratio(choose):
        i = twostep.stay_analysis(*rollout(cfg, choose, 1000, seed=4),
                                  np.random.default_rng(5))["interaction"]
        return i["se"] / i["se_iid"]
    assert ratio(model_based_or_model_free_by_episode) > 3.0
    assert ratio(policy(cfg, "belief_greedy")) == pytest.approx(1.0, abs=0.15)
    assert ratio(policy(cfg, "model_free_td")) == pytest.approx(1.0, abs=0.15)


def test_stay_analysis_is_reproducible_from_its_generator():
    cfg = envs.make_config("two-step", horizon=40)
    data = rollout(cfg, policy(cfg, "model_free_td"), 200, seed=6)
    first = twostep.stay_analysis(*data, np.random.default_rng(7))
    assert first == twostep.stay_analysis(*data, np.random.default_rng(7))
    assert first != twostep.stay_analysis(*data)  # the default stream is a fixed one:
    assert twostep.stay_analysis(*data) == twostep.stay_analysis(
        *data, np.random.default_rng(twostep.BOOTSTRAP_SEED))
    assert first["interaction"]["se"] != twostep.stay_analysis(
        *data, np.random.default_rng(8))["interaction"]["se"]


# ----------------------------------------------------------------------------- hybrid learner

def plain_hybrid_log_likelihood(params, actions, rewards, obs, common):
    """Σ over trials and episodes of log P(a_t), written as in Daw et al. with scalars:
    Q_MB(a) = Σ_s P(s|a) V(s), logits β·Q_net(a) + p·1[a = a_{t−1}], softmax; SARSA(λ)."""
    alpha, lam, w, beta, p = (params[k] for k in twostep.HYBRID_PARAMS)
    transition = [[common, 1 - common], [1 - common, common]]  # P(s | a)
    total = 0.0
    T, B = actions.shape
    for e in range(B):
        Q, V, prev = [0.0, 0.0], [0.0, 0.0], None
        for t in range(T):
            a, s, r = int(actions[t, e]), int(obs[t, e, 1]), float(rewards[t, e])
            q_mb = [sum(transition[b][x] * V[x] for x in (0, 1)) for b in (0, 1)]
            logits = [beta * (w * q_mb[b] + (1 - w) * Q[b]) + (p if b == prev else 0.0)
                      for b in (0, 1)]
            total += logits[a] - math.log(math.exp(logits[0]) + math.exp(logits[1]))
            delta1, delta2 = V[s] - Q[a], r - V[s]
            Q[a] += alpha * (delta1 + lam * delta2)
            V[s] += alpha * delta2
            prev = a
    return total


def test_hybrid_log_likelihood_matches_a_plain_python_loop():
    cfg = envs.make_config("two-step", horizon=25, common_prob=0.7)
    data = rollout(cfg, random_choices, 6, seed=9)
    params = {"alpha": 0.4, "lam": 0.7, "w": 0.3, "beta": 3.0, "p": 0.5}
    ll, _, _ = twostep.hybrid_log_likelihood(params, cfg, *data)
    assert ll.sum() == pytest.approx(plain_hybrid_log_likelihood(params, *data, 0.7), rel=1e-12)


def test_hybrid_with_w_0_and_no_perseveration_is_softmax_of_belief_model_free_q():
    cfg = envs.make_config("two-step", horizon=40)
    actions, rewards, obs = rollout(cfg, policy(cfg, "model_free_td"), 20, seed=10)
    alpha, lam, beta = 0.3, 0.6, 4.0
    Q1 = belief.model_free_q(actions, obs, rewards, alpha, lam)[:-1]  # (T, B, 2) before trial t
    logits = beta * Q1
    expected = (np.take_along_axis(logits, actions[..., None], axis=-1)[..., 0]
                - np.logaddexp(logits[..., 0], logits[..., 1])).sum(axis=0)
    params = {"alpha": alpha, "lam": lam, "w": 0.0, "beta": beta, "p": 0.0}
    ll, _, _ = twostep.hybrid_log_likelihood(params, cfg, actions, rewards, obs)
    np.testing.assert_allclose(ll, expected, rtol=1e-12)


def test_hybrid_score_matches_finite_differences_of_the_log_likelihood():
    cfg = envs.make_config("two-step", horizon=30, common_prob=0.7)
    data = rollout(cfg, random_choices, 5, seed=11)
    params = {"alpha": 0.4, "lam": 0.7, "w": 0.3, "beta": 3.0, "p": 0.5}
    _, score, _ = twostep.hybrid_log_likelihood(params, cfg, *data)
    h = 1e-6
    for j, name in enumerate(twostep.HYBRID_PARAMS):
        up = twostep.hybrid_log_likelihood({**params, name: params[name] + h}, cfg, *data)[0]
        down = twostep.hybrid_log_likelihood({**params, name: params[name] - h}, cfg, *data)[0]
        fd = (up - down) / (2 * h)  # (B,) per episode
        assert np.max(np.abs(score[:, j] - fd)) < 1e-6 * np.max(np.abs(fd)), name


def test_objective_gradient_in_theta_matches_finite_differences():
    cfg = envs.make_config("two-step", horizon=30)
    data = (cfg, *rollout(cfg, random_choices, 5, seed=12))
    theta = np.array([-0.3, 0.8, -1.1, -2.5, 0.4])
    _, g = twostep.hybrid_objective(theta, data)
    h = 1e-6
    fd = np.array([(twostep.hybrid_objective(theta + h * e, data)[0]
                    - twostep.hybrid_objective(theta - h * e, data)[0]) / (2 * h)
                   for e in np.eye(5)])
    assert np.max(np.abs(g.sum(axis=0) - fd)) < 1e-6 * np.max(np.abs(fd))
    params, _ = twostep.params_from_theta(theta)
    np.testing.assert_allclose(twostep.theta_from_params(params), theta, rtol=1e-12)


def test_hybrid_log_likelihood_refuses_malformed_data_and_parameters():
    cfg = envs.make_config("two-step", horizon=5)
    actions, rewards, obs = rollout(cfg, random_choices, 3, seed=13)
    params = {"alpha": 0.5, "lam": 0.5, "w": 0.5, "beta": 2.0, "p": 0.0}
    bad_actions = actions.copy()
    bad_actions[2, 1] = 2
    for args, match in [((bad_actions, rewards, obs), r"actions must lie in \[0, 2\)"),
                        ((actions.astype(float), rewards, obs), "actions must be .* integers"),
                        ((actions, rewards, obs * 2), "one-hot"),
                        ((actions, rewards[:, :2], obs), "rewards must have shape")]:
        with pytest.raises(ValueError, match=match):
            twostep.hybrid_log_likelihood(params, cfg, *args)
    for name, value in (("w", 1.5), ("alpha", -0.1), ("beta", -1.0), ("p", math.nan)):
        with pytest.raises(ValueError, match=f"^{name} must be"):
            twostep.hybrid_log_likelihood({**params, name: value}, cfg, actions, rewards, obs)
    with pytest.raises(ValueError, match="two-step task, not tiger"):
        twostep.hybrid_log_likelihood(params, envs.make_config("tiger"), actions, rewards, obs)


@pytest.mark.parametrize("w", [0.2, 0.8])
def test_fit_recovers_the_parameters_of_a_simulated_hybrid_learner(w):
    cfg = envs.make_config("two-step")
    truth = {**HYBRID, "w": w}
    data = rollout(cfg, twostep.hybrid_policy(cfg, truth), 1000, seed=14)
    fit = twostep.fit_hybrid(cfg, *data)
    assert fit.converged and fit.at_bound == ()
    assert (fit.episodes, fit.trials) == (1000, 100_000)
    for name in twostep.HYBRID_PARAMS:
        assert abs(fit.estimates[name] - truth[name]) < FIT_TOLERANCE_SE * fit.se[name], name
    assert fit.se["w"] < 0.02  # 1000 episodes pin w down to a few hundredths


def test_sandwich_se_of_w_matches_the_spread_of_independent_fits():
    # 10 independent data sets of 300 episodes: if the SEs are right, z = (ŵ − w) / SE has
    # mean square 1, and Σz² ~ χ²₁₀, whose 0.1 % and 99.9 % quantiles are 1.48 and 29.6.
    cfg = envs.make_config("two-step")
    truth = {**HYBRID, "w": 0.5}
    fits = [twostep.fit_hybrid(cfg, *rollout(cfg, twostep.hybrid_policy(cfg, truth), 300, seed))
            for seed in range(100, 110)]
    w_hat = np.array([f.estimates["w"] for f in fits])
    se = np.array([f.se["w"] for f in fits])
    assert 1.48 < np.sum(((w_hat - 0.5) / se) ** 2) < 29.6
    assert 0.5 < w_hat.std(ddof=1) / se.mean() < 2.0  # sd of 10 values: ±25 % relative SE


def test_model_free_td_learner_fits_to_w_at_zero():
    cfg = envs.make_config("two-step")
    fit = twostep.fit_hybrid(cfg, *rollout(cfg, policy(cfg, "model_free_td"), 1000, seed=0))
    assert fit.estimates["w"] < 0.01 and "w" in fit.at_bound
    # its own parameters (belief.MF_ALPHA, MF_BETA; MF_LAMBDA = 1 is the bound of λ)
    assert abs(fit.estimates["alpha"] - belief.MF_ALPHA) < FIT_TOLERANCE_SE * fit.se["alpha"]
    assert abs(fit.estimates["beta"] - belief.MF_BETA) < FIT_TOLERANCE_SE * fit.se["beta"]
    assert fit.estimates["lam"] > 1 - FIT_TOLERANCE_SE * fit.se["lam"]


def test_belief_greedy_fits_to_a_high_w():
    # It acts on the exact belief, a model of the task: most of its choices are explained by
    # the model-based values (measured ŵ = 0.83 ± 0.01 on 1000 episodes, seed 0).
    cfg = envs.make_config("two-step")
    fit = twostep.fit_hybrid(cfg, *rollout(cfg, policy(cfg, "belief_greedy"), 1000, seed=0))
    assert fit.converged
    assert fit.estimates["w"] - FIT_TOLERANCE_SE * fit.se["w"] > 0.7


def test_fit_of_a_deterministic_learner_reports_beta_at_its_cap():
    cfg = envs.make_config("two-step")
    deterministic = twostep.hybrid_policy(cfg, {**HYBRID, "w": 0.5, "beta": 1e4, "p": 0.0})
    fit = twostep.fit_hybrid(cfg, *rollout(cfg, deterministic, 300, seed=15))
    assert fit.at_bound == ("beta",) and fit.estimates["beta"] > 0.99 * twostep.BETA_MAX
    assert math.isnan(fit.se["beta"]) and np.isfinite(fit.se["w"])


def test_fit_is_deterministic():
    cfg = envs.make_config("two-step", horizon=50)
    data = rollout(cfg, twostep.hybrid_policy(cfg, {**HYBRID, "w": 0.5}), 200, seed=16)
    assert twostep.fit_hybrid(cfg, *data) == twostep.fit_hybrid(cfg, *data)


# ----------------------------------------------------------------------------- model-free grid

def test_model_free_grid_rows_are_stay_analyses_and_largest_is_their_maximum():
    cfg = envs.make_config("two-step", horizon=50)
    grid = {"alpha": (0.2, 0.8), "beta": (3.0,), "lam": (0.0, 1.0)}
    result = twostep.model_free_grid(cfg, 200, seed=17, rng=np.random.default_rng(18), grid=grid,
                                     n_boot=200)
    assert len(result["settings"]) == 4
    for row in result["settings"]:
        learner = belief.two_step_policies(cfg, row["alpha"], row["beta"], row["lam"])
        direct = twostep.stay_analysis(*rollout(cfg, learner["model_free_td"], 200, seed=17))[
            "interaction"]
        assert row["interaction"] == pytest.approx(direct["mean"], abs=1e-15)
        assert row["se_iid"] == pytest.approx(direct["se_iid"], abs=1e-15)
        assert row["se"] > 0
    assert result["largest"]["interaction"] == max(r["interaction"] for r in result["settings"])
    again = twostep.model_free_grid(cfg, 200, seed=17, rng=np.random.default_rng(18), grid=grid,
                                    n_boot=200)
    assert again == result
