"""Bandit beliefs, the Bayes-optimal DP, the baselines and the CLI of belief.py (sections A, C)."""
import itertools
import json
import math
from fractions import Fraction
from functools import partial

import numpy as np
import pytest

import belief as bl
from conftest import run_script
from envs import FAMILIES, make_config, n_actions

GRID = (np.arange(100_000) + 0.5) / 100_000   # midpoints over p: error O(1e-10) on smooth moments


def random_history(T, B, k, seed):
    """Any (action, reward) history has positive probability, so uniform ones test every case."""
    rng = np.random.default_rng(seed)
    return rng.integers(k, size=(T, B)), rng.integers(2, size=(T, B)).astype(float)


def grid_mean_sd(log_likelihood, a, b):
    """Posterior mean and sd of p on GRID from prior Beta(a, b) × likelihood, normalised."""
    log_post = (a - 1) * np.log(GRID) + (b - 1) * np.log1p(-GRID) + log_likelihood
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    mean = np.sum(w * GRID)
    return mean, np.sqrt(np.sum(w * (GRID - mean) ** 2))


# --- beliefs against brute force ---

@pytest.mark.parametrize("a, b, k", [(1.0, 1.0, 2), (2.5, 1.5, 3)])
def test_bandit_belief_matches_grid_posterior(a, b, k):
    cfg = make_config("bandit", arms=k, horizon=12, prior_a=a, prior_b=b)
    actions, rewards = random_history(12, 3, k, seed=0)
    F, names = bl.belief_features(cfg, actions, rewards, np.zeros((12, 3, 0)))
    assert names == [f"mean_{i}" for i in range(k)] + [f"sd_{i}" for i in range(k)] + [
        f"count_{i}" for i in range(k)]
    for e in range(3):
        log_like = np.zeros((k, GRID.size))   # log Π over the steps seen so far, per arm
        for t in range(12):                   # row t: the belief before action t
            for i in range(k):
                mean, sd = grid_mean_sd(log_like[i], a, b)
                assert F[t, e, i] == pytest.approx(mean, abs=1e-8)
                assert F[t, e, k + i] == pytest.approx(sd, abs=1e-8)
                assert F[t, e, 2 * k + i] == np.sum(actions[:t, e] == i)
            i, r = actions[t, e], rewards[t, e]
            log_like[i] += r * np.log(GRID) + (1 - r) * np.log1p(-GRID)


@pytest.mark.parametrize("a, b", [(1.0, 1.0), (3.0, 1.5)])
def test_dependent_bandit_belief_matches_pooled_grid_posterior(a, b):
    cfg = make_config("dependent-bandit", horizon=15, prior_a=a, prior_b=b)
    actions, rewards = random_history(15, 3, 2, seed=1)
    F, names = bl.belief_features(cfg, actions, rewards, np.zeros((15, 3, 0)))
    assert names == ["mean_p", "sd_p", "count_0", "count_1"]
    for e in range(3):
        log_like = np.zeros(GRID.size)
        for t in range(15):
            mean, sd = grid_mean_sd(log_like, a, b)
            assert F[t, e, :2] == pytest.approx([mean, sd], abs=1e-8)
            assert list(F[t, e, 2:]) == [np.sum(actions[:t, e] == 0), np.sum(actions[:t, e] == 1)]
            p_arm = GRID if actions[t, e] == 0 else 1.0 - GRID   # arm 1 pays 1 − p
            log_like += np.log(p_arm) if rewards[t, e] else np.log1p(-p_arm)


def test_jitted_belief_update_and_env_step_equal_their_numpy_twins():
    rng = np.random.default_rng(2)
    alpha, beta = rng.random((257, 4)) * 5, rng.random((257, 4)) * 5
    actions, rewards = rng.integers(4, size=257), rng.integers(2, size=257).astype(float)
    for jit_out, numpy_out in zip(bl.beta_counts_step(alpha, beta, actions, rewards),
                                  bl.beta_counts_step_numpy(alpha, beta, actions, rewards)):
        assert np.array_equal(jit_out, numpy_out)
    means, u = rng.random((257, 4)), rng.random((257, 3))
    assert np.array_equal(bl.bandit_step_numba(means, actions, u), bl.bandit_step_numpy(means, actions, u))


# --- the Bayes-optimal DP against exhaustive search ---

def marginal_likelihood(x, c):
    """P(evidence x) = Π_j B(c_{2j} + x_{2j}, c_{2j+1} + x_{2j+1}) / B(c_{2j}, c_{2j+1}), exact."""
    def beta_fn(u, v):
        return Fraction(math.factorial(u - 1) * math.factorial(v - 1), math.factorial(u + v - 1))
    return math.prod(beta_fn(c[j] + x[j], c[j + 1] + x[j + 1]) / beta_fn(c[j], c[j + 1])
                     for j in range(0, len(c), 2))


def exhaustive_q(arms, c, x, steps):
    """Q of each arm at evidence x with `steps` pulls left: enumerate every outcome, and at every
    later node every action, keeping the best; outcome probabilities are ratios of marginal
    likelihoods. arms[i] = (component a success adds to, component a failure adds to)."""
    q = []
    for success, failure in arms:
        value = Fraction(0)
        for reward, j in ((1, success), (0, failure)):
            y = tuple(n + (m == j) for m, n in enumerate(x))
            future = max(exhaustive_q(arms, c, y, steps - 1)) if steps > 1 else 0
            value += marginal_likelihood(y, c) / marginal_likelihood(x, c) * (reward + future)
        q.append(value)
    return q


def root_q(cfg):
    dp = bl.bayes_dp(cfg)
    return dp, bl.bayes_q(dp, cfg, bl.bandit_prior(cfg, 1), 0)[0]


@pytest.mark.parametrize("k, T, a, b", [(2, T, 1, 1) for T in range(1, 7)]
                         + [(2, 5, 2, 1), (3, 1, 1, 1), (3, 2, 1, 1), (3, 3, 1, 1), (3, 3, 1, 2)])
def test_bandit_dp_equals_exhaustive_search(k, T, a, b):
    cfg = make_config("bandit", arms=k, horizon=T, prior_a=a, prior_b=b)
    dp, q = root_q(cfg)
    arms = [(2 * i, 2 * i + 1) for i in range(k)]
    exact = exhaustive_q(arms, (a, b) * k, (0,) * (2 * k), T)
    assert q == pytest.approx([float(v) for v in exact], rel=1e-12)
    assert bl.bayes_value(dp) == pytest.approx(float(max(exact)), rel=1e-12)


@pytest.mark.parametrize("T, a, b", [(1, 1, 1), (4, 1, 1), (6, 1, 1), (5, 3, 2)])
def test_dependent_bandit_dp_equals_exhaustive_search(T, a, b):
    cfg = make_config("dependent-bandit", horizon=T, prior_a=a, prior_b=b)
    dp, q = root_q(cfg)
    exact = exhaustive_q([(0, 1), (1, 0)], (a, b), (0, 0), T)   # arm 1's success counts against p
    assert q == pytest.approx([float(v) for v in exact], rel=1e-12)


@pytest.mark.parametrize("n", [2, 4, 6])
def test_rank_numbers_the_count_vectors_of_each_sum_without_gaps(n):
    C = np.array([[math.comb(m, j) for j in range(n)] for m in range(12 + n)], dtype=np.int64)
    for t in range(7):
        vectors = [np.array(v) for v in itertools.product(range(t + 1), repeat=n) if sum(v) == t]
        ranks = sorted(bl.rank(v, C) for v in vectors)
        assert ranks == list(range(math.comb(t + n - 1, n - 1)))
        for v, j in itertools.product(vectors[:5], range(n)):
            assert bl.rank(v, C, j) == bl.rank(v + np.eye(n, dtype=np.int64)[j], C)
        x, visited = np.zeros(n, dtype=np.int64), set()   # the odometer visits each once
        x[-1] = t
        while True:
            visited.add(tuple(x))
            if not bl.next_counts(x):
                break
        assert visited == {tuple(v) for v in vectors}


@pytest.mark.parametrize("name, k", [("bandit", 2), ("bandit", 3), ("dependent-bandit", 2)])
def test_reference_q_is_consistent_with_the_dp_values(name, k):
    cfg = make_config(name, horizon=8, **({"arms": k} if name == "bandit" else {}))
    actions, rewards = random_history(8, 50, k, seed=3)
    Q = bl.reference_q(cfg, actions, rewards, np.zeros((8, 50, 0)))   # (T, B, k)
    dp = bl.bayes_dp(cfg)
    beliefs = bl.belief_trajectory(cfg, actions, rewards, np.zeros((8, 50, 0)))
    for t in range(8):
        x = bl.evidence_counts(cfg, {key: v[t] for key, v in beliefs.items()})
        V_t = dp.V[[dp.offsets[t] + bl.rank(xe, dp.C) for xe in x]]
        assert np.array_equal(Q[t].max(axis=1), V_t)        # V_t(x) = max_a Q_t(x, a)
    last = {key: v[7] for key, v in beliefs.items()}         # one pull left: Q = E[p_a]
    assert np.allclose(Q[7], bl.posterior_arm_means(cfg, last), rtol=1e-14)


def test_a_too_large_dp_is_refused_before_allocating():
    with pytest.raises(ValueError, match="states"):
        bl.bayes_dp(make_config("bandit", arms=5, horizon=60))


# --- the oracle's exact value ---

def beta_cdf_polynomial(a, b):
    """I_x(a, b) for integers a, b: P(Binomial(a + b − 1, x) ≥ a), as a polynomial in x."""
    n, x = a + b - 1, np.polynomial.Polynomial([0, 1])
    return sum(math.comb(n, j) * x ** j * (1 - x) ** (n - j) for j in range(a, n + 1))


@pytest.mark.parametrize("a, b", [(1, 1), (2, 3), (4, 1)])
def test_betainc_equals_the_binomial_tail_for_integer_parameters(a, b):
    cdf = beta_cdf_polynomial(a, b)
    for x in (0.01, 0.2, 0.5, 0.77, 0.99):
        assert bl.betainc(a, b, x) == pytest.approx(cdf(x), abs=1e-14)
    assert bl.betainc(0.4, 2.5, 0.3) == pytest.approx(1 - bl.betainc(2.5, 0.4, 0.7), abs=1e-14)


@pytest.mark.parametrize("k, a, b", [(2, 1, 1), (5, 1, 1), (3, 2, 3)])
def test_oracle_value_is_T_times_expected_best_arm(k, a, b):
    cfg = make_config("bandit", arms=k, horizon=7, prior_a=a, prior_b=b)
    expected_max = (1 - beta_cdf_polynomial(a, b) ** k).integ()   # E[max] = ∫ 1 − I_x^k dx
    assert bl.independent_oracle_value(cfg) == pytest.approx(7 * expected_max(1.0), rel=1e-12)
    if a == b == 1:
        assert bl.independent_oracle_value(cfg) == pytest.approx(7 * k / (k + 1), rel=1e-12)


@pytest.mark.parametrize("a, b", [(1, 1), (2, 3)])
def test_dependent_oracle_value_is_T_times_expected_max_of_p_and_one_minus_p(a, b):
    x = np.polynomial.Polynomial([0, 1])
    pdf = beta_cdf_polynomial(a, b).deriv()
    left, right = ((1 - x) * pdf).integ(), (x * pdf).integ()   # max(p, 1 − p) on each half
    exact = left(0.5) - left(0) + right(1) - right(0.5)
    cfg = make_config("dependent-bandit", horizon=9, prior_a=a, prior_b=b)
    assert bl.opposite_oracle_value(cfg) == pytest.approx(9 * exact, rel=1e-12)


# --- policies and the baselines ---

def test_ties_are_broken_uniformly_and_a_unique_best_always_wins():
    rng = np.random.default_rng(4)
    choice = bl.argmax_random_ties(np.array([[1.0, 3.0, 3.0, 3.0]] * 30_000), rng)
    assert set(choice) == {1, 2, 3}
    assert np.all(np.abs(np.bincount(choice, minlength=4)[1:] / 30_000 - 1 / 3)
                  < 4 * np.sqrt(2 / 9 / 30_000))
    assert np.all(bl.argmax_random_ties(np.array([[0.0, np.inf, 5.0]] * 9), rng) == 1)


def test_ucb1_first_pulls_every_arm_once():
    cfg = make_config("bandit", arms=4, horizon=4)
    actions, _, _ = bl.run_policy(cfg, partial(bl.ucb1, cfg), 100, seed=5)   # (T, B)
    assert np.all(np.sort(actions, axis=0) == np.arange(4)[:, None])


@pytest.mark.parametrize("name", ["bandit", "dependent-bandit"])
def test_monte_carlo_returns_agree_with_exact_values(name):
    cfg = make_config(name, horizon=20)
    exact, table = bl.exact_values(cfg), bl.run_baselines(cfg, 20_000, seed=7)
    for policy, key in (("bayes_optimal", "bayes_optimal_exact"), ("oracle", "oracle_exact")):
        assert abs(table[policy]["mean"] - exact[key]) < 3 * table[policy]["stderr"]
    for policy in ("thompson", "ucb1", "greedy", "epsilon_greedy", "random"):
        assert table[policy]["mean"] < exact["bayes_optimal_exact"] + 3 * table[policy]["stderr"]


def test_same_seed_gives_the_same_baselines_table():
    cfg = make_config("bandit", arms=3, horizon=6)
    first = bl.run_baselines(cfg, 300, seed=8)
    assert first == bl.run_baselines(cfg, 300, seed=8)
    assert first != bl.run_baselines(cfg, 300, seed=9)


def test_policies_with_the_same_seed_meet_the_same_tasks_and_noise():
    # arm i pays 1[u_t < p_i] with the same uniform u_t whoever pulls it, so in every single
    # episode the oracle (best arm) earns at least what "always arm 0" earns
    cfg = make_config("bandit", arms=2, horizon=10)

    def always_arm0(past, rng):
        return np.zeros(len(past["tasks"]), dtype=np.int64)

    oracle = bl.bandit_policies(cfg, bl.bayes_dp(cfg))["oracle"]
    G0 = bl.run_policy(cfg, always_arm0, 2_000, seed=10)[1].sum(axis=0)
    G_oracle = bl.run_policy(cfg, oracle, 2_000, seed=10)[1].sum(axis=0)
    assert np.all(G_oracle >= G0) and np.any(G_oracle > G0)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_run_policy_hands_each_step_the_belief_of_the_history_so_far(name):
    # the runner keeps the belief online; folding the same filter over the recorded episodes
    # afterwards must give, before every step, exactly what the policy was handed
    cfg = make_config(name, horizon=7, **({"arms": 3} if name == "bandit" else {}))
    seen = []

    def record_and_act_randomly(past, rng):
        seen.append(past["belief"])
        return rng.integers(n_actions(cfg), size=len(past["tasks"]))

    actions, rewards, obs = bl.run_policy(cfg, record_and_act_randomly, 40, seed=11)
    beliefs = bl.belief_trajectory(cfg, actions, rewards, obs)
    assert len(seen) == 7 and set(seen[0]) == set(beliefs)
    for t, belief in enumerate(seen):
        for key, value in belief.items():
            assert np.array_equal(value, beliefs[key][t])
    assert any(not np.array_equal(v, beliefs[k][0]) for k, v in seen[-1].items())  # it moved


# --- command line: belief.main in this process (conftest.cli); the JSON run as a script ---


@pytest.mark.parametrize("args, says", [
    (["--arms", "1"], "--arms"),
    (["--horizon", "0"], "--horizon"),
    (["--env", "slot-machine"], "unknown env"),
    (["--episodes", "0"], "--episodes"),
    (["--arms", "5", "--horizon", "60"], "states"),
    (["--arms", "two"], "--arms"),
])
def test_bad_arguments_give_one_clear_line_and_a_nonzero_exit(cli, args, says):
    result = cli("belief.py", "baselines", "--episodes", "10", *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def test_json_output_parses_and_has_the_keys():
    """Also the smoke test of belief.py as a user runs it: a fresh interpreter."""
    result = run_script("belief.py", "baselines", "--env", "bandit", "--arms", "2", "--horizon",
                        "5", "--episodes", "200", "--seed", "0", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"env", "arms", "horizon", "episodes", "policies", "bayes_optimal_exact",
            "oracle_exact"} <= set(report)
    assert list(report["policies"]) == ["bayes_optimal", "thompson", "ucb1", "greedy",
                                        "epsilon_greedy", "random", "oracle"]
    assert (report["env"], report["arms"], report["horizon"], report["episodes"]) == (
        "bandit", 2, 5, 200)
    assert all(set(v) == {"mean", "stderr"} for v in report["policies"].values())
    assert report["oracle_exact"] == pytest.approx(5 * 2 / 3)
