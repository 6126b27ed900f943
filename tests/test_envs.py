"""Bandit task distributions of envs.py: priors, reward statistics, reproducibility, RL² input."""
import numpy as np
import pytest

from envs import bandit_step, make_config, make_env

Z = 4.0   # tolerance in standard errors: a correct env fails such a check with probability ~6e-5


def sampled_tasks(name, B, seed, **fields):
    env = make_env(make_config(name, horizon=1, **fields), batch=B)
    env.reset(seed)
    return env


@pytest.mark.parametrize("a, b", [(1.0, 1.0), (2.0, 5.0), (0.5, 0.5)])
def test_bandit_arm_means_follow_the_beta_prior(a, b):
    p = sampled_tasks("bandit", 50_000, 0, arms=3, prior_a=a, prior_b=b).tasks.ravel()
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    assert abs(p.mean() - mean) < Z * np.sqrt(var / p.size)
    # fourth central moment of Beta(a, b), for the standard error of the sample variance
    m4 = 3 * a * b * (a * b * (a + b - 6) + 2 * (a + b) ** 2) / (
        (a + b) ** 4 * (a + b + 1) * (a + b + 2) * (a + b + 3))
    assert abs(p.var() - var) < Z * np.sqrt((m4 - var ** 2) / p.size)


def test_dependent_bandit_arms_are_p_and_one_minus_p_with_p_uniform():
    env = sampled_tasks("dependent-bandit", 100_000, 1)
    p = env.tasks[:, 0]
    assert np.array_equal(env.means[:, 0], p) and np.array_equal(env.means[:, 1], 1.0 - p)
    # under p ~ U[0, 1] the fraction below q is q, with standard error √(q(1 − q)/B)
    for q in (0.1, 0.25, 0.5, 0.9):
        assert abs(np.mean(p < q) - q) < Z * np.sqrt(q * (1 - q) / p.size)


@pytest.mark.parametrize("name", ["bandit", "dependent-bandit"])
def test_reward_frequencies_match_the_pulled_arm_mean(name):
    cfg = make_config(name, horizon=40, **({"arms": 3} if name == "bandit" else {}))
    env, rng = make_env(cfg, batch=5_000), np.random.default_rng(2)
    env.reset(3)
    p_pulled, r = [], []
    for _ in range(cfg.horizon):
        a = rng.integers(env.means.shape[1], size=env.batch)
        p_pulled.append(env.means[np.arange(env.batch), a])
        r.append(env.step(a)[1])
    p_pulled, r = np.concatenate(p_pulled), np.concatenate(r)
    # within each bin of the pulled arm's mean, Σ(r − p) / √Σ p(1 − p) is ~ N(0, 1)
    for lo in np.arange(0.0, 1.0, 0.2):
        inside = (p_pulled >= lo) & (p_pulled < lo + 0.2)
        p = p_pulled[inside]
        z = np.sum(r[inside] - p) / np.sqrt(np.sum(p * (1 - p)))
        assert abs(z) < Z


def test_same_seed_gives_identical_episodes_and_another_seed_does_not():
    cfg = make_config("bandit", arms=2, horizon=15)
    actions = np.random.default_rng(4).integers(2, size=(cfg.horizon, 64))

    def episode(seed):
        env = make_env(cfg, batch=64)
        xs = [env.reset(seed)]
        rs = []
        for a in actions:
            x, r, _ = env.step(a)
            xs.append(x)
            rs.append(r)
        return env.tasks, np.array(xs), np.array(rs)

    first, again, other = episode(5), episode(5), episode(6)
    assert all(np.array_equal(u, v) for u, v in zip(first, again))
    assert not np.array_equal(first[0], other[0]) and not np.array_equal(first[2], other[2])


def test_rl2_input_holds_previous_action_reward_and_time():
    cfg = make_config("bandit", arms=3, horizon=4)
    env = make_env(cfg, batch=2)
    x0 = env.reset(0)
    assert np.array_equal(x0, np.zeros((2, 3 + 1 + 1)))
    a = np.array([2, 0])
    x1, r, done = env.step(a)
    assert np.array_equal(x1[:, :3], np.eye(3)[a])
    assert np.array_equal(x1[:, 3], r) and np.all(x1[:, 4] == 1 / 4) and not done.any()


def test_bandit_step_kernel_pays_one_exactly_when_the_uniform_is_below_the_mean():
    means = np.array([[0.3, 0.7], [0.3, 0.7], [0.0, 1.0]])
    u = np.array([[0.5, 0, 0], [0.5, 0, 0], [0.0, 0, 0]])
    r, unread = np.full(3, np.nan), np.zeros((3, 0))
    bandit_step(np.array([0, 1, 0]), u, unread, means, unread, np.zeros(0), r)
    assert np.array_equal(r, [0.0, 1.0, 0.0])


def test_stepping_past_the_horizon_is_refused():
    env = make_env(make_config("bandit", horizon=1), batch=1)
    env.reset(0)
    env.step(np.array([0]))
    with pytest.raises(RuntimeError):
        env.step(np.array([0]))


@pytest.mark.parametrize("bad", [2, -1])
def test_an_action_out_of_range_is_refused_and_leaves_the_episode_untouched(bad):
    env = make_env(make_config("bandit", arms=2, horizon=5), batch=3)
    env.reset(0)
    env.step(np.array([0, 1, 0]))
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        env.step(np.array([0, bad, 1]))
    assert env.t == 1
    env.step(np.array([1, 1, 1]))   # the episode goes on
    assert env.t == 2


def test_tiger_input_carries_a_one_hot_clock_beside_t_over_T_and_bandits_do_not():
    cfg = make_config("tiger", horizon=5)
    env = make_env(cfg, batch=3)
    x = env.reset(0)
    base = 3 + 1 + 2 + 1                       # one_hot(a), r, o, t/T
    assert x.shape == (3, base + 5)
    for t in range(5):
        assert np.array_equal(x[:, base:], np.eye(5)[[t] * 3]) and np.allclose(x[:, base - 1], t / 5)
        x, _, _ = env.step(np.zeros(3, dtype=np.int64))
    assert not x[:, base:].any() and np.allclose(x[:, base - 1], 1.0)   # after the last step
    bandit = make_env(make_config("bandit", horizon=5), batch=2)
    assert bandit.reset(0).shape == (2, 2 + 1 + 1)
