"""Exact Bayesian beliefs and Bayes-optimal references for the task distributions of envs.py.

The project's claim is that an RL² agent's hidden state acts as a belief state. This module
computes that belief exactly, from the same batched (action, reward, observation) arrays the
envs produce, and the reference policies that say how good "good" is.

Every env plugs the same pieces into one path (section C), as one BeliefFamily record in
BELIEFS (the companion of envs.FAMILIES): an exact Bayes filter, a pair prior(cfg, B) →
belief and update(cfg, belief, a, r, o) → belief on dicts of (B, …) arrays; features and
reference Q-values of a belief; the exact solution they read (the bandit DP, the Tiger Q
table), built once; and baseline policies choose(past, rng). One runner, run_policy, steps
the batched env with common random numbers, keeps the belief online and hands it to the
policy; belief_trajectory folds the same filter over recorded episodes, after
envs.check_history has checked them (the kernels index with them, unchecked).

Bandits (section A). With arm means p_i ~ Beta(a, b), the posterior after s_i successes and
f_i failures on arm i is Beta(α_i, β_i), α_i = a + s_i, β_i = b + f_i. In the dependent bandit
arm 0 pays p and arm 1 pays 1 − p, so a success on arm 0 and a failure on arm 1 are both
evidence for p, and one Beta(α, β) holds the whole posterior. The Bayes-optimal policy
maximises E[Σ_t r_t] under the prior; backward induction over the posterior counts x gives it:

    V_T(x) = 0,    V_t(x) = max_i Q_t(x, i),
    Q_t(x, i) = p̂_i(x) (1 + V_{t+1}(x + success on i)) + (1 − p̂_i(x)) V_{t+1}(x + failure on i),

with p̂_i(x) the posterior mean of arm i. The baselines beside it: Thompson sampling, UCB1,
greedy and ε-greedy on the posterior mean, uniform random, and the oracle that knows the task.

Tiger and two-step (section B): the same pieces for the envs with observations.

Section C runs them and answers four questions for every env, for the probe and the learner:
belief_features, reference_q, exact_values and run_baselines. From the command line:

    python belief.py baselines --env bandit --arms 2 --horizon 100 --episodes 20000 --seed 0
    python belief.py bench --batch 1024 --horizon 100
"""
import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable

import numpy as np
from numba import njit

import envs
from boundary import (OneLineErrorParser, check_int, check_memory, check_real_array,
                      check_shape, run_cli)
from envs import (UNIFORMS_PER_STEP, arm_means, bandit_step, make_config, make_env, n_actions,
                  n_observations, task_dim)

# ===== bandits: beliefs, features, Bayes-optimal DP, classical baselines (section A) =====

EPSILON = 0.1                 # ε of ε-greedy, the usual textbook value (Sutton & Barto, ch. 2)
MAX_DP_STATES = 50_000_000    # 400 MB of float64 values: the largest DP we agree to allocate
TIE_TOL = 1e-9                # scores this close are ties: DP rounding, not a preference


# --- exact posteriors, updated online from the env's (action, reward) arrays ---

@njit(cache=True)
def beta_counts_step(alpha, beta, actions, rewards):
    """Beta counts of every arm after one pull per episode (bandit); shapes (B, k).

    α'_{e,i} = α_{e,i} + 1[a_e = i] r_e,   β'_{e,i} = β_{e,i} + 1[a_e = i] (1 − r_e),
    so that from α = a, β = b: α_i = a + successes_i, β_i = b + failures_i."""
    alpha, beta = alpha.copy(), beta.copy()
    for e in range(actions.shape[0]):
        alpha[e, actions[e]] += rewards[e]
        beta[e, actions[e]] += 1.0 - rewards[e]
    return alpha, beta


def beta_counts_step_numpy(alpha, beta, actions, rewards):
    """Plain-NumPy twin of beta_counts_step, for audit and the benchmark; equal bit for bit."""
    e = np.arange(actions.shape[0])
    alpha, beta = alpha.copy(), beta.copy()
    alpha[e, actions] += rewards
    beta[e, actions] += 1.0 - rewards
    return alpha, beta


@njit(cache=True)
def loaded_beta_step(alpha, beta, actions, rewards, unknown, positive):
    """Beta(α_j, β_j) posteriors over the unknowns p_j after one pull per episode; (B, n_p).

    Arm i pays p_{j_i} if positive_i, else 1 − p_{j_i} (envs.Family.loadings), so a pull of
    arm a_e with reward r_e is one Bernoulli outcome y_e of p_{j_{a_e}}:
        y_e = r_e if positive_{a_e} else 1 − r_e,   α'_{e,j_{a_e}} = α + y_e,   β' = β + 1 − y_e.
    bandit: j_i = i, all positive (= beta_counts_step). dependent-bandit: both arms load on
    the one p, so a success on arm 0 and a failure on arm 1 are both evidence for p."""
    alpha, beta = alpha.copy(), beta.copy()
    for e in range(actions.shape[0]):
        a = actions[e]
        y = rewards[e] if positive[a] else 1.0 - rewards[e]
        alpha[e, unknown[a]] += y
        beta[e, unknown[a]] += 1.0 - y
    return alpha, beta


def bandit_prior(cfg, B):
    """The prior belief of B episodes, a dict of arrays.

    alpha, beta (B, n_p): the exact posterior's Beta counts, one pair per unknown p_j (bandit:
    one per arm; dependent-bandit: the one p). successes, failures (B, k): outcomes per arm,
    which UCB1 and the count features use (for the bandit they equal α − a and β − b)."""
    k, n_p = n_actions(cfg), task_dim(cfg)
    return {"alpha": np.full((B, n_p), cfg.prior_a), "beta": np.full((B, n_p), cfg.prior_b),
            "successes": np.zeros((B, k)), "failures": np.zeros((B, k))}


def bandit_update(cfg, belief, actions, rewards, obs):
    """The belief after every episode e took a_e and saw r_e; a new dict (obs is empty)."""
    unknown, positive = envs.family(cfg.name).loadings(cfg)
    alpha, beta = loaded_beta_step(belief["alpha"], belief["beta"], actions, rewards, unknown,
                                   positive)
    successes, failures = beta_counts_step(belief["successes"], belief["failures"],
                                           actions, rewards)
    return {"alpha": alpha, "beta": beta, "successes": successes, "failures": failures}


def beta_mean_sd(alpha, beta):
    """Mean α / (α + β) and sd √(αβ / ((α + β)² (α + β + 1))) of Beta(α, β)."""
    n = alpha + beta
    return alpha / n, np.sqrt(alpha * beta / (n * n * (n + 1.0)))


def bandit_features(cfg, beliefs):
    """Features of the beliefs before each action, (T, B, n_features), and their names.

    beliefs: belief_trajectory's dict of (T + 1, B, …) arrays (row t has seen steps < t).
    mean_j, sd_j of each unknown's Beta posterior (bandit: j = each arm; dependent-bandit:
    j = p), then count_i, the pulls of arm i."""
    mean, sd = beta_mean_sd(beliefs["alpha"][:-1], beliefs["beta"][:-1])  # (T, B, n_p)
    count = beliefs["successes"][:-1] + beliefs["failures"][:-1]           # (T, B, k)
    unknowns = envs.family(cfg.name).task_names(cfg)
    names = [f"{stat}_{j}" for stat in ("mean", "sd") for j in unknowns]
    names += [f"count_{i}" for i in range(n_actions(cfg))]
    return np.concatenate([mean, sd, count], axis=2), names


def posterior_arm_means(cfg, belief):
    """E[reward of arm i | history], (..., k): the arm means of m_j = α_j / (α_j + β_j)."""
    return arm_means(cfg, belief["alpha"] / (belief["alpha"] + belief["beta"]))


def sample_arm_means(cfg, belief, rng):
    """One joint draw of the arm means from the posterior, (B, k) (what Thompson sampling uses)."""
    return arm_means(cfg, rng.beta(belief["alpha"], belief["beta"]))


# --- Bayes-optimal reference: backward induction over posterior counts ---
#
# Both bandits are Beta-Bernoulli models of n/2 unknown probabilities (bandit: the k arm means;
# dependent-bandit: the one p). A state is the evidence count vector x = (s_0, f_0, s_1, f_1, …)
# of length n, the successes and failures seen for each probability, whose sum is the step t.
# Arm i draws on the component pair (su_i, fa_i): it pays with probability
#     p̂_i(x) = (c_{su_i} + x_{su_i}) / (c_{su_i} + c_{fa_i} + x_{su_i} + x_{fa_i}),
# c the prior pseudo-counts, and a success adds 1 to x_{su_i}, a failure to x_{fa_i}. For the
# bandit, (su_i, fa_i) = (2i, 2i + 1); for the dependent bandit, arm 0 is (0, 1) and arm 1 is
# (1, 0), since its success is evidence against p. One DP then serves both.

def evidence_map(cfg):
    """(su, fa, c): the components arm i's success and failure count towards, (k,) ints each,
    and the prior pseudo-counts c = (a, b) per unknown, (n,). From the loadings (j, positive):
    su_i = 2 j_i and fa_i = 2 j_i + 1 if positive_i, swapped otherwise."""
    unknown, positive = envs.family(cfg.name).loadings(cfg)
    su = 2 * unknown + np.where(positive, 0, 1)
    fa = 2 * unknown + np.where(positive, 1, 0)
    c = np.tile([cfg.prior_a, cfg.prior_b], task_dim(cfg))
    return su.astype(np.int64), fa.astype(np.int64), c.astype(np.float64)


def big_count(n):
    """An integer in scientific notation, also beyond the range of a float."""
    return f"{n:.2e}" if n < 1e300 else f"~1e{len(str(n)) - 1}"


@dataclass(frozen=True)
class BayesDP:
    """Bayes-optimal values V_t(x) of a Beta-Bernoulli bandit, from bayes_dp."""

    V: np.ndarray        # (offsets[T],) V_t(x) at V[offsets[t] + rank(x)], t < T; V_T = 0
    offsets: np.ndarray  # (T + 1,) start of layer t in V: offsets[t] = C(t + n − 1, n)
    C: np.ndarray        # (T + n, n) binomial coefficients C(m, j), for rank
    su: np.ndarray       # (k,) component a success on arm i adds to
    fa: np.ndarray       # (k,) component a failure on arm i adds to
    c: np.ndarray        # (n,) prior pseudo-counts


def dp_states(cfg):
    """Number of stored states, Σ_{t<T} C(t + n − 1, n − 1) = C(T + n − 1, n)."""
    n = 2 * task_dim(cfg)
    return math.comb(cfg.horizon + n - 1, n)


def bayes_dp(cfg):
    """Backward induction for cfg (bandit or dependent-bandit); ValueError if too large.

    The state count is checked before anything is allocated: k = 2 arms up to T = 100
    (4.4e6 states) and k = 5 up to T = 10 (9.2e4) fit well under MAX_DP_STATES."""
    states = dp_states(cfg)
    if states > MAX_DP_STATES:
        longest = 0
        while dp_states(replace(cfg, horizon=longest + 1)) <= MAX_DP_STATES:
            longest += 1
        raise ValueError(
            f"the Bayes-optimal DP for {cfg.name} with {n_actions(cfg)} arms and horizon "
            f"{cfg.horizon} needs {big_count(states)} states, more than the limit of "
            f"{MAX_DP_STATES:.0e} (~{MAX_DP_STATES * 8 / 1e6:.0f} MB); "
            f"the longest horizon that fits is {longest}")
    su, fa, c = evidence_map(cfg)
    T, n = cfg.horizon, c.shape[0]
    offsets = np.array([math.comb(t + n - 1, n) for t in range(T + 1)], dtype=np.int64)
    # entries past the largest rank may overflow int64; they are never read, so clip them
    int_max = np.iinfo(np.int64).max
    C = np.array([[min(math.comb(m, j), int_max) for j in range(n)] for m in range(T + n)],
                 dtype=np.int64)
    V = backward_induction(offsets, C, su, fa, c)
    return BayesDP(V=V, offsets=offsets, C=C, su=su, fa=fa, c=c)


@njit(cache=True)
def backward_induction(offsets, C, su, fa, c):
    """V_T = 0 and, for t = T − 1, …, 0 and every x with Σx = t:  V_t(x) = max_i Q_t(x, i)."""
    T, n = offsets.shape[0] - 1, c.shape[0]
    V = np.zeros(offsets[T])   # layers t = 0..T−1 back to back; V_T = 0 is not stored
    x = np.zeros(n, dtype=np.int64)
    for t in range(T - 1, -1, -1):
        x[:] = 0
        x[n - 1] = t           # the odometer's first vector of sum t
        more = True
        while more:
            best = -np.inf
            for i in range(su.shape[0]):
                best = max(best, arm_q(V, offsets, C, su, fa, c, x, t, i))
            V[offsets[t] + rank(x, C)] = best
            more = next_counts(x)
    return V


@njit(cache=True)
def arm_q(V, offsets, C, su, fa, c, x, t, i):
    """Q_t(x, i) = p̂_i (1 + V_{t+1}(x + e_{su_i})) + (1 − p̂_i) V_{t+1}(x + e_{fa_i}); V_T = 0."""
    s, f = su[i], fa[i]
    p = (c[s] + x[s]) / (c[s] + c[f] + x[s] + x[f])
    if t + 1 == offsets.shape[0] - 1:   # the last step: nothing follows it
        return p
    v_success = V[offsets[t + 1] + rank(x, C, s)]
    v_failure = V[offsets[t + 1] + rank(x, C, f)]
    return p * (1.0 + v_success) + (1.0 - p) * v_failure


@njit(cache=True)
def rank(x, C, plus=-1):
    """Index of x + e_plus (x itself if plus = −1) among the count vectors of its length and sum.

    Combinatorial number system: writing x as stars and bars, the n − 1 bars sit at
    b_j = x_0 + … + x_j + j, and rank = Σ_j C(b_j, j + 1) runs over 0 .. C(t + n − 1, n − 1) − 1."""
    r, b = 0, -1
    for j in range(x.shape[0] - 1):
        b += x[j] + 1 + (1 if j == plus else 0)
        r += C[b, j + 1]
    return r


@njit(cache=True)
def next_counts(x):
    """Step x (in place) to the next count vector of the same sum; False after the last.

    An odometer over the digits x_0 .. x_{n−2}; the last entry holds what the digits leave."""
    last = x.shape[0] - 1
    for j in range(last):
        if x[last] > 0:
            x[j] += 1
            x[last] -= 1
            return True
        x[last] += x[j]
        x[j] = 0
    return False


@njit(cache=True)
def q_table(V, offsets, C, su, fa, c, X, t):
    """Q_t(x_e, i) for every episode e and arm i, (B, k); X (B, n) counts with Σ x_e = t."""
    Q = np.empty((X.shape[0], su.shape[0]))
    for e in range(X.shape[0]):
        for i in range(su.shape[0]):
            Q[e, i] = arm_q(V, offsets, C, su, fa, c, X[e], t, i)
    return Q


def evidence_counts(cfg, belief):
    """Each episode's DP state: posterior counts minus prior, (α_0 − a, β_0 − b, …), (B, n)."""
    alpha, beta = belief["alpha"], belief["beta"]                     # (B, n / 2)
    x = np.stack([alpha - cfg.prior_a, beta - cfg.prior_b], axis=2).reshape(alpha.shape[0], -1)
    return np.rint(x).astype(np.int64)   # rint: α − a is an integer up to rounding when a is not


def bayes_q(dp, cfg, belief, t):
    """Bayes-optimal Q_t(x, i) at every episode's current belief, (B, k).

    The kernel indexes V with the rank of x, unchecked: the DP must be cfg's (same arms,
    loadings, prior and horizon), x counts ≥ 0 of the DP's width summing to t, and t < T,
    which is checked here."""
    check_dp_matches(dp, cfg)
    X = evidence_counts(cfg, belief)
    check_shape("the evidence counts", X, (None, dp.c.shape[0]))
    check_int("step t of the Bayes-optimal Q", t, 0, len(dp.offsets) - 2)
    if X.size and (X.min() < 0 or (X.sum(axis=1) != t).any()):
        raise ValueError(f"Bayes-optimal Q at step {t}: the evidence counts must be >= 0 and "
                         f"sum to {t}")
    return q_table(dp.V, dp.offsets, dp.C, dp.su, dp.fa, dp.c, X, t)


def check_dp_matches(dp, cfg):
    """ValueError unless dp was built by bayes_dp(cfg): its kernels index with cfg's counts."""
    su, fa, c = evidence_map(cfg)
    if not (len(dp.offsets) - 1 == cfg.horizon and np.array_equal(dp.su, su)
            and np.array_equal(dp.fa, fa) and np.array_equal(dp.c, c)):
        raise ValueError(f"the Bayes-optimal DP was built for other tasks than {cfg.name} with "
                         f"these arms, prior and horizon {cfg.horizon}; build it with bayes_dp(cfg)")


def bayes_value(dp):
    """E[Σ_t r_t] of the Bayes-optimal policy from the prior: V_0 at x = 0 (the only state)."""
    return float(dp.V[0])


def bandit_reference_q(cfg, dp, beliefs):
    """Bayes-optimal Q_t(belief_t, a) at the beliefs before each action, (T, B, k)."""
    return np.stack([bayes_q(dp, cfg, {key: v[t] for key, v in beliefs.items()}, t)
                     for t in range(len(beliefs["alpha"]) - 1)])


# --- the oracle that knows the task: T · E[max_i p_i] ---

def opposite_oracle_value(cfg):
    """dependent-bandit: T · E[max(p, 1 − p)] with p ~ Beta(a, b). Split at ½ and using
    x f(x; a, b) = a/(a+b) f(x; a+1, b):  E = a/(a+b) (1 − I_½(a+1, b)) + b/(a+b) I_½(a, b+1)."""
    a, b = cfg.prior_a, cfg.prior_b
    return cfg.horizon * (a / (a + b) * (1.0 - betainc(a + 1, b, 0.5))
                          + b / (a + b) * betainc(a, b + 1, 0.5))


def independent_oracle_value(cfg):
    """bandit: T · E[max_i p_i] with p_i iid Beta(a, b) of cdf I_x(a, b):
    E[max_i p_i] = ∫_0^1 (1 − I_x(a, b)^k) dx, integrated numerically (= k / (k + 1) for
    a = b = 1)."""
    a, b, T = cfg.prior_a, cfg.prior_b, cfg.horizon
    # x = sin²(πu/2) gathers nodes at both ends, where I_x(a, b) ~ x^a and 1 − I_x ~ (1 − x)^b
    # are not smooth for a, b < 1. Against a 2,000,000-point rule, 200 Gauss-Legendre nodes
    # err by < 2e-13 (relative) for a, b in [0.5, 100] and k ≤ 100, 1e-9 at (0.01, 1) and
    # 1.5e-6 at (0.001, 1000); a prior as narrow as a = b = 1000 leaves its mass between the
    # nodes (5e-4 at k = 100)
    z, w = np.polynomial.legendre.leggauss(200)
    u, w = (z + 1.0) / 2.0, w / 2.0
    x, dx_du = np.sin(np.pi * u / 2) ** 2, np.pi / 2 * np.sin(np.pi * u)
    cdf = np.array([betainc(a, b, xi) for xi in x])
    return T * float(np.sum(w * (1.0 - cdf ** cfg.arms) * dx_du))


def betainc(a, b, x):
    """Regularised incomplete beta I_x(a, b) = ∫_0^x f(y; a, b) dy, the Beta(a, b) cdf.

    Continued fraction by the modified Lentz method (Numerical Recipes, §6.4), on the side of
    the symmetry I_x(a, b) = 1 − I_{1−x}(b, a) where it converges fast."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * beta_fraction(b, a, 1.0 - x) / b


def beta_fraction(a, b, x, tol=1e-15, max_terms=10_000):
    """The continued fraction 1/(1+ d_1/(1+ d_2/(1+ …))) of I_x(a, b), NR eq. 6.4.5, by Lentz."""
    tiny = 1e-300   # keeps Lentz's denominators off zero
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, max_terms):
        for coef in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),          # d_{2m}
                     -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):  # d_{2m+1}
            d = 1.0 + coef * d
            c = 1.0 + coef / c
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < tol:
            return h
    raise ArithmeticError(f"I_x(a, b) did not converge for a={a}, b={b}, x={x}")


# --- baselines: policies choose(past, rng) for run_policy (section C) ---
#
# past["belief"] is the exact belief before this step, past["tasks"] the hidden task, which
# only the oracle reads. Ties between best-scoring arms are broken uniformly at random, so no
# policy favours arm 0 when it has no reason to.

def argmax_random_ties(scores, rng):
    """Per row of scores (B, k), an index of a maximum, chosen uniformly among the ties."""
    is_best = np.isclose(scores, scores.max(axis=1, keepdims=True), rtol=TIE_TOL, atol=TIE_TOL)
    return np.argmax(np.where(is_best, rng.random(scores.shape), -1.0), axis=1)


def bayes_optimal(dp, cfg, past, rng):
    """argmax_i Q_t(x, i) from the DP."""
    return argmax_random_ties(bayes_q(dp, cfg, past["belief"], len(past["actions"])), rng)


def thompson(cfg, past, rng):
    """argmax_i p̃_i with p̃ one draw from the posterior (Thompson 1933)."""
    return argmax_random_ties(sample_arm_means(cfg, past["belief"], rng), rng)


def ucb1(cfg, past, rng):
    """Each arm once, then argmax_i ŝ_i / n_i + √(2 ln t / n_i) (Auer et al. 2002).

    n_i are arm i's pulls and ŝ_i its successes; the arms are treated as independent, also in
    the dependent bandit, as the classical algorithm does."""
    t, successes = len(past["actions"]), past["belief"]["successes"]
    n = successes + past["belief"]["failures"]                         # (B, k)
    with np.errstate(divide="ignore", invalid="ignore"):   # untried arms (n_i = 0; t = 0)
        scores = successes / n + np.sqrt(2.0 * np.log(t) / n)
    return argmax_random_ties(np.where(n == 0, np.inf, scores), rng)


def greedy(cfg, past, rng):
    """argmax_i E[p_i | history]."""
    return argmax_random_ties(posterior_arm_means(cfg, past["belief"]), rng)


def epsilon_greedy(cfg, past, rng, epsilon=EPSILON):
    """Greedy, except with probability ε a uniformly random arm."""
    explore = rng.random(len(past["tasks"])) < epsilon
    return np.where(explore, random_arm(cfg, past, rng), greedy(cfg, past, rng))


def random_arm(cfg, past, rng):
    """A uniformly random arm."""
    return rng.integers(n_actions(cfg), size=len(past["tasks"]))


def oracle(cfg, past, rng):
    """argmax_i m_i: knows the task, hence the arm means m."""
    return argmax_random_ties(arm_means(cfg, past["tasks"]), rng)


def bandit_policies(cfg, dp):
    """The baselines by name, each choose(past, rng) → actions (B,); dp = bayes_dp(cfg)."""
    return {"bayes_optimal": partial(bayes_optimal, dp, cfg), "thompson": partial(thompson, cfg),
            "ucb1": partial(ucb1, cfg), "greedy": partial(greedy, cfg),
            "epsilon_greedy": partial(epsilon_greedy, cfg), "random": partial(random_arm, cfg),
            "oracle": partial(oracle, cfg)}


# ===== tiger and two-step: beliefs, features, reference policies (section B) =====

# Tiger (Kaelbling, Littman & Cassandra 1998) and the two-step task (Daw et al. 2011, one agent
# step per trial). Indices follow envs.py: actions[t], rewards[t] and obs[t] come from step t,
# obs[t] being what followed action t. As for the bandits, the belief is a dict of (B,) arrays
# kept by a prior and an update; along episodes, belief_trajectory stacks T + 1 of them, row t
# the belief *before* action t, so row 0 is the prior and row T the belief after the last step.

LISTEN, OPEN_LEFT, OPEN_RIGHT = 0, 1, 2  # tiger actions, as in envs.tiger_step
TIGER_LISTEN_K = 2  # the listen_k heuristic opens once |#hear-left − #hear-right| reaches this
MF_ALPHA = 0.5   # model-free TD learner: learning rate α
MF_BETA = 5.0    # inverse temperature β of its softmax choice (rewards are 0/1, so Q ∈ [0, 1])
MF_LAMBDA = 1.0  # eligibility trace λ: 1 moves Q1 straight to the reward, the pure MF signature


@njit(cache=True)
def tiger_listen_update(b, heard_left, accuracy):
    """Bayes' rule for one hearing, b = P(tiger left):
    hear-left:  b' = b·acc / (b·acc + (1 − b)(1 − acc));  hear-right: acc ↔ 1 − acc."""
    like_left = accuracy if heard_left else 1.0 - accuracy  # P(o | tiger left)
    return b * like_left / (b * like_left + (1.0 - b) * (1.0 - like_left))


@njit(cache=True)
def tiger_belief_step(p_left, d, actions, obs, accuracy):
    """P(tiger left) and d = #hear-left − #hear-right since the last door opening, after one
    step of every episode; shapes (B,).

    Listening: p_left' = tiger_listen_update(p_left, o), d' = d ± 1 (+1 for hear-left).
    Opening a door: p_left' = 1/2 and d' = 0, because the tiger is then placed anew at random.
    Within a round p_left = acc^d / (acc^d + (1 − acc)^d): d is sufficient for the belief, hence
    the state of the Bayes-optimal DP, and log-odds(p_left) = d · log(acc / (1 − acc))."""
    p_left, d = p_left.copy(), d.copy()
    for e in range(actions.shape[0]):
        if actions[e] == LISTEN:
            heard_left = obs[e, 0] > 0.5
            p_left[e] = tiger_listen_update(p_left[e], heard_left, accuracy)
            d[e] += 1 if heard_left else -1
        else:
            p_left[e] = 0.5
            d[e] = 0
    return p_left, d


def tiger_prior(cfg, B):
    """The belief of B episodes before any step: p_left = 1/2 (B,), d = 0 (B,) ints."""
    return {"p_left": np.full(B, 0.5), "d": np.zeros(B, dtype=np.int64)}


def tiger_update(cfg, belief, actions, rewards, obs):
    """The belief after one step (tiger_belief_step). rewards are unused: an opening's reward
    tells where the tiger was, and it is then re-placed."""
    p_left, d = tiger_belief_step(belief["p_left"], belief["d"], actions, obs,
                                  cfg.listen_accuracy)
    return {"p_left": p_left, "d": d}


def tiger_features(cfg, beliefs):
    """Belief before each action, F (T, B, 2) = [p_left, hear_diff], and the names.

    hear_diff is d of tiger_belief_step, proportional to the log-odds of p_left."""
    F = np.stack([beliefs["p_left"][:-1], beliefs["d"][:-1].astype(np.float64)], axis=-1)
    return F, ["p_left", "hear_diff"]


def tiger_q_table(cfg):
    """Bayes-optimal Q_t(d, a) by backward induction over (t, d); Q (T, 2T + 1, 3) = Q[t, d + T, a].

    With b = b(d) and P(hear-left | d) = b·acc + (1 − b)(1 − acc):
        Q_t(d, listen)     = listen_r + P(hear-left | d) V_{t+1}(d + 1)
                                      + P(hear-right | d) V_{t+1}(d − 1)
        Q_t(d, open-left)  = b·tiger_r + (1 − b)·treasure_r + V_{t+1}(0)
        Q_t(d, open-right) = (1 − b)·tiger_r + b·treasure_r + V_{t+1}(0)
        V_t(d) = max_a Q_t(d, a),   V_T = 0.
    """
    T, acc = cfg.horizon, cfg.listen_accuracy
    check_memory(8 * T * (2 * T + 1) * 3 * 2, f"the Tiger Q table at horizon {T}")
    b = np.empty(2 * T + 1)  # b[d + T], by Bayes' rule: acc^d / (…) would break at acc ∈ {0, 1}
    b[T] = 0.5
    for k in range(1, T + 1):
        b[T + k] = tiger_listen_update(b[T + k - 1], True, acc)
        b[T - k] = tiger_listen_update(b[T - k + 1], False, acc)
    hear_left = b * acc + (1 - b) * (1 - acc)
    open_left = b * cfg.tiger_reward + (1 - b) * cfg.treasure_reward
    open_right = (1 - b) * cfg.tiger_reward + b * cfg.treasure_reward
    Q = np.empty((T, 2 * T + 1, 3))
    V = np.zeros(2 * T + 1)  # V_T
    for t in range(T - 1, -1, -1):
        # V(d ± 1) is clamped at the edge d = ±T, unused: states reachable at t have |d| ≤ t < T
        up, down = np.append(V[1:], V[-1]), np.append(V[0], V[:-1])
        Q[t, :, LISTEN] = cfg.listen_reward + hear_left * up + (1 - hear_left) * down
        Q[t, :, OPEN_LEFT] = open_left + V[T]  # V[T] is V_{t+1}(d = 0)
        Q[t, :, OPEN_RIGHT] = open_right + V[T]
        V = Q[t].max(axis=1)
    return Q


def tiger_reference_q(cfg, Q, beliefs):
    """Bayes-optimal Q_t(d_t, a) at the beliefs before each action, (T, B, 3);
    Q = tiger_q_table(cfg)."""
    d = beliefs["d"][:-1]  # (T, B)
    return Q[np.arange(len(d))[:, None], d + cfg.horizon]


def tiger_exact_values(cfg, Q):
    """Exact expected totals: the Bayes-optimal V_0(0) from Q = tiger_q_table(cfg), and the
    oracle's T·treasure_r (it sees the tiger and opens the other door every step)."""
    V0 = Q[0, cfg.horizon].max()
    return {"bayes_optimal_exact": float(V0), "oracle_exact": cfg.horizon * cfg.treasure_reward}


@njit(cache=True)
def two_step_belief_step(b, rewards, obs, p_good, p_bad, swap):
    """b' = P(A is good | states and rewards so far) after one more trial of every episode, (B,):
    one step of the forward (HMM) filter. The trial reaches the observed state s and earns r,
    whose likelihood is L(r) = p^r (1 − p)^(1−r) with p = p_good if s is the good state, else
    p_bad:
        correct:  b⁺ = b·L(r | A good) / (b·L(r | A good) + (1 − b)·L(r | B good))
        predict:  b' = b⁺(1 − swap) + (1 − b⁺)·swap
    Actions and transitions do not enter: they are independent of which state is good."""
    b_next = np.empty_like(b)
    for e in range(b.shape[0]):
        rewarded = rewards[e] > 0.5
        like_good = p_good if rewarded else 1.0 - p_good  # P(r | s is good)
        like_bad = p_bad if rewarded else 1.0 - p_bad
        in_a = obs[e, 0] > 0.5
        like_a_good = like_good if in_a else like_bad
        like_b_good = like_bad if in_a else like_good
        post = b[e] * like_a_good / (b[e] * like_a_good + (1.0 - b[e]) * like_b_good)
        b_next[e] = post * (1.0 - swap) + (1.0 - post) * swap
    return b_next


def two_step_prior(cfg, B):
    """The belief of B episodes before any trial: p_A_good = 1/2 (B,)."""
    return {"p_A_good": np.full(B, 0.5)}


def two_step_update(cfg, belief, actions, rewards, obs):
    """The belief after one trial (two_step_belief_step)."""
    return {"p_A_good": two_step_belief_step(belief["p_A_good"], rewards, obs, cfg.reward_good,
                                             cfg.reward_bad, cfg.swap_prob)}


def two_step_features(cfg, beliefs):
    """Belief before each trial, F (T, B, 2) = [p_A_good, its log-odds], and the names.

    Evidence adds up in the log-odds (up to the swap's pull towards 0), so a linear probe may
    find it there rather than in the probability."""
    b = beliefs["p_A_good"][:-1]  # (T, B)
    return np.stack([b, np.log(b) - np.log1p(-b)], axis=-1), ["p_A_good", "log_odds_A_good"]


def two_step_action_values(cfg, b):
    """Expected reward of each first-stage action under b = P(A good), (..., 2):
    Q(a) = Σ_s P(s | a)·[b_s·p_good + (1 − b_s)·p_bad], b_A = b, b_B = 1 − b,
    P(A | 0) = P(B | 1) = common."""
    reward_a = b * cfg.reward_good + (1 - b) * cfg.reward_bad  # E[r | state A]
    reward_b = (1 - b) * cfg.reward_good + b * cfg.reward_bad
    c = cfg.common_prob
    return np.stack([c * reward_a + (1 - c) * reward_b, (1 - c) * reward_a + c * reward_b], axis=-1)


def two_step_reference_q(cfg, ref, beliefs):
    """Expected immediate reward Q(a) of each action under the belief before each trial, (T, B, 2).
    Its argmax is the belief-greedy policy: the action whose common transition leads to the
    state more likely to be good. (ref is None: there is no exact solution to build.)"""
    return two_step_action_values(cfg, beliefs["p_A_good"][:-1])


def two_step_exact_values(cfg, ref):
    """The oracle sees the good state and takes the action that commonly leads there, so every
    trial earns common·p_good + (1 − common)·p_bad in expectation, exactly. No Bayes-optimal
    value is computed (the belief is continuous)."""
    per_trial = cfg.common_prob * cfg.reward_good + (1 - cfg.common_prob) * cfg.reward_bad
    return {"bayes_optimal_exact": None, "oracle_exact": cfg.horizon * per_trial}


@njit(cache=True)
def model_free_q(actions, obs, rewards, alpha, lam):
    """First-stage values Q1 (T + 1, B, 2) of the model-free SARSA(λ) learner of Daw et al.
    (2011): Q1[t] before trial t, Q1[0] = 0. V(s) is the value of second-stage state s (one
    action there). After trial t with action a, state s and reward r:
        δ1 = V(s) − Q1(a),   δ2 = r − V(s)
        Q1(a) ← Q1(a) + α(δ1 + λ·δ2),   V(s) ← V(s) + α·δ2
    With λ = 1 this is Q1(a) ← Q1(a) + α(r − Q1(a)): the transition is ignored."""
    T, B = actions.shape
    Q1 = np.zeros((T + 1, B, 2))
    V = np.zeros((B, 2))  # only the current second-stage values are needed
    for t in range(T):
        Q1[t + 1] = Q1[t]
        for e in range(B):
            a = actions[t, e]
            s = 0 if obs[t, e, 0] > 0.5 else 1
            delta1 = V[e, s] - Q1[t, e, a]
            delta2 = rewards[t, e] - V[e, s]
            Q1[t + 1, e, a] += alpha * (delta1 + lam * delta2)
            V[e, s] += alpha * delta2
    return Q1


def tiger_policies(cfg, Q):
    """name → choose(past, rng) for run_policy: bayes_optimal (argmax of Q = tiger_q_table at
    the belief's d; ties → the first action), listen_k (listen until |d| = TIGER_LISTEN_K, then
    open the door away from the louder side, ignoring the steps left), always_listen (the best
    trivial policy: it never risks the tiger, T·listen_r), random (uniform over the 3 actions),
    oracle (opens the treasure)."""

    def bayes_optimal(past, rng):
        return Q[len(past["actions"]), past["belief"]["d"] + cfg.horizon].argmax(axis=1)

    def listen_k(past, rng):
        d = past["belief"]["d"]
        return np.where(d >= TIGER_LISTEN_K, OPEN_RIGHT,
                        np.where(d <= -TIGER_LISTEN_K, OPEN_LEFT, LISTEN))

    def always_listen(past, rng):
        return np.full(len(past["tasks"]), LISTEN)

    def random(past, rng):
        return rng.integers(3, size=len(past["tasks"]))

    def oracle(past, rng):
        return np.where(past["tasks"][:, 0] > 0.5, OPEN_RIGHT, OPEN_LEFT)

    return {"bayes_optimal": bayes_optimal, "listen_k": listen_k, "always_listen": always_listen,
            "random": random, "oracle": oracle}


def two_step_policies(cfg, alpha=MF_ALPHA, beta=MF_BETA, lam=MF_LAMBDA):
    """name → choose(past, rng) for run_policy: belief_greedy (argmax of two_step_action_values
    under the filtered belief; ties → action 0), model_free_td (softmax(β·Q1) of model_free_q,
    recomputed from the history: O(T²) per episode, cheap at these horizons, and it keeps the
    learner a pure function of the past), random, oracle (the action that commonly leads to the
    current good state)."""
    def belief_greedy(past, rng):
        return two_step_action_values(cfg, past["belief"]["p_A_good"]).argmax(axis=1)

    def model_free_td(past, rng):
        Q1 = model_free_q(past["actions"], past["obs"], past["rewards"], alpha, lam)[-1]  # (B, 2)
        p_1 = 1.0 / (1.0 + np.exp(-beta * (Q1[:, 1] - Q1[:, 0])))  # softmax over two actions
        return (rng.random(len(p_1)) < p_1).astype(np.int64)

    def random(past, rng):
        return rng.integers(2, size=len(past["tasks"]))

    def oracle(past, rng):
        return np.where(past["tasks"][:, 0] > 0.5, 0, 1)

    return {"belief_greedy": belief_greedy, "model_free_td": model_free_td, "random": random,
            "oracle": oracle}


# ===== one path for every env: the filter, the runner, dispatch, command line (section C) =====

POLICY_STREAM = 1  # policies draw from SeedSequence(seed, spawn_key=(1,)), the env from seed


@dataclass(frozen=True)
class BeliefFamily:
    """Everything belief.py knows about one task family (the companion of envs.Family).

    A belief is a dict of (B, …) arrays; `beliefs` is belief_trajectory's dict of
    (T + 1, B, …) arrays, row t the belief before action t. `ref` is the family's exact
    solution, built once by `reference` and handed to the functions that read it."""

    prior: Callable         # (cfg, B) → belief
    update: Callable        # (cfg, belief, actions (B,), rewards (B,), obs (B, n_obs)) → belief
    features: Callable      # (cfg, beliefs) → F (T, B, n_f), names
    reference: Callable     # cfg → ref: bandits the DP, tiger the Q table, two-step None
    reference_q: Callable   # (cfg, ref, beliefs) → Q_t(b_t, a) (T, B, A)
    exact_values: Callable  # (cfg, ref) → {"bayes_optimal_exact", "oracle_exact"} (or None)
    policies: Callable      # (cfg, ref) → {name: choose(past, rng)} for run_policy
    # How far a policy is from Bayes-optimal (the report's §1): "regret", its regret against
    # the oracle relative to the reference's; "gap", its gap to V* relative to the best
    # trivial policy's, where the oracle earns so much more than any policy can (Tiger's
    # opens the treasure door every step: 200 against V* = 20.4 at T = 20) that even the
    # policy that always listens has a regret ratio of 1.22
    near_optimal: str = "regret"


def bandit_exact_values(oracle_value, cfg, dp):
    """The Bayes-optimal V_0 of the DP and the oracle's value, oracle_value(cfg)."""
    return {"bayes_optimal_exact": bayes_value(dp), "oracle_exact": oracle_value(cfg)}


def no_reference(cfg):
    return None


def two_step_reference_policies(cfg, ref):
    return two_step_policies(cfg)


def bandit_family(oracle_value):
    """Both bandits share every piece but the oracle's value: how the arms load on the
    unknowns (envs.Family.loadings) is what tells them apart, and the pieces read it."""
    return BeliefFamily(prior=bandit_prior, update=bandit_update, features=bandit_features,
                        reference=bayes_dp, reference_q=bandit_reference_q,
                        exact_values=partial(bandit_exact_values, oracle_value),
                        policies=bandit_policies)


BELIEFS = {
    "bandit": bandit_family(independent_oracle_value),
    "dependent-bandit": bandit_family(opposite_oracle_value),
    "tiger": BeliefFamily(prior=tiger_prior, update=tiger_update, features=tiger_features,
                          reference=tiger_q_table, reference_q=tiger_reference_q,
                          exact_values=tiger_exact_values, policies=tiger_policies,
                          near_optimal="gap"),
    "two-step": BeliefFamily(prior=two_step_prior, update=two_step_update,
                             features=two_step_features, reference=no_reference,
                             reference_q=two_step_reference_q,
                             exact_values=two_step_exact_values,
                             policies=two_step_reference_policies),
}


def belief_family(cfg):
    """The BeliefFamily of cfg's task family; ValueError if envs knows it but belief.py does not."""
    envs.family(cfg.name)   # an unknown name is refused there, with the accepted names
    if cfg.name not in BELIEFS:
        raise ValueError(f"env {cfg.name!r} has no exact belief in belief.BELIEFS")
    return BELIEFS[cfg.name]


def reference(cfg):
    """The family's exact solution (bandit DP, Tiger Q table, or None), built once; ValueError
    if it would be too large (the bandit DP is refused before anything is allocated)."""
    return belief_family(cfg).reference(cfg)


def belief_filter(cfg):
    """The env's exact Bayes filter, the pair (prior, update):
    prior(cfg, B) → belief, update(cfg, belief, actions (B,), rewards (B,), obs (B, n_obs)) →
    the belief one step later; a belief is a dict of (B, …) arrays. This update checks the
    step's actions, rewards and obs (envs.check_history) before the kernels index with them."""
    fam = belief_family(cfg)

    def update(cfg, belief, actions, rewards, obs):
        a, r, o = envs.check_history(cfg, np.asarray(actions)[None], np.asarray(rewards)[None],
                                     np.asarray(obs)[None])
        return fam.update(cfg, belief, a[0], r[0], o[0])

    return fam.prior, update


def belief_trajectory(cfg, actions, rewards, obs):
    """The beliefs along given episodes: dict of (T + 1, B, …) arrays; row t has seen steps < t.

    actions (T, B) ints, rewards (T, B), obs (T, B, n_obs) with obs[t] the observation that
    followed action t, checked by envs.check_history before the kernels index with them. It
    folds the same filter over the steps that run_policy keeps online."""
    actions, rewards, obs = envs.check_history(cfg, actions, rewards, obs)
    fam = belief_family(cfg)   # its update unchecked: the whole history was checked above
    beliefs = [fam.prior(cfg, actions.shape[1])]
    for t in range(actions.shape[0]):
        beliefs.append(fam.update(cfg, beliefs[-1], actions[t], rewards[t], obs[t]))
    return {key: np.stack([belief[key] for belief in beliefs]) for key in beliefs[0]}


def run_policy(cfg, choose, episodes, seed):
    """Roll out a policy on `episodes` episodes of cfg; return actions (T, B), rewards (T, B)
    and obs (T, B, n_obs).

    choose(past, rng) → actions (B,), where past = {"actions": (t, B), "rewards": (t, B),
    "obs": (t, B, n_obs), "belief": the exact belief before step t (belief_filter, updated
    online), "tasks": the current hidden task (B, task_dim), for oracles only}. The env's tasks
    and noise come from `seed` alone, so policies run with one seed face the same episodes
    (common random numbers); the policy's own draws come from a separate stream of that seed."""
    T, B = cfg.horizon, episodes
    env = make_env(cfg, B)
    env.reset(seed)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(POLICY_STREAM,)))
    fam = belief_family(cfg)   # its update unchecked: the env makes the outcomes
    belief = fam.prior(cfg, B)
    actions = np.zeros((T, B), dtype=np.int64)
    rewards = np.zeros((T, B))
    obs = np.zeros((T, B, n_observations(cfg)))
    for t in range(T):
        past = {"actions": actions[:t], "rewards": rewards[:t], "obs": obs[:t],
                "belief": belief, "tasks": env.tasks}
        actions[t] = env.checked_actions(choose(past, rng))   # no silent cast of floats
        _, rewards[t], _ = env.step(actions[t])
        obs[t] = env.obs
        belief = fam.update(cfg, belief, actions[t], rewards[t], obs[t])
    return actions, rewards, obs


def mean_and_stderr(values):
    """{"mean", "stderr"} of a sample; stderr = sd / √n with the n − 1 sd (None for n = 1)."""
    values = np.asarray(values, dtype=np.float64)
    stderr = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else None
    return {"mean": float(values.mean()), "stderr": stderr}


def policy_baselines(cfg, policies, episodes, seed):
    """Total reward per episode of each policy, all run on the same episodes (one seed)."""
    return {name: mean_and_stderr(run_policy(cfg, choose, episodes, seed)[1].sum(axis=0))
            for name, choose in policies.items()}


def belief_features(cfg, actions, rewards, obs):
    """Exact belief features before each action, (T, B, n_features), and their names.

    actions (T, B) ints, rewards (T, B), obs (T, B, n_obs) with obs[t] the observation that
    followed action t. Row t is the belief after steps 0..t−1; row 0 is the prior."""
    return belief_family(cfg).features(cfg, belief_trajectory(cfg, actions, rewards, obs))


def posterior_mean_columns(names):
    """Indices of the belief features that are a posterior mean: bandit mean_i,
    dependent-bandit mean_p, tiger p_left, two-step p_A_good. The sd, count, log-odds and
    hearing-difference features are other coordinates of the same belief."""
    return [j for j, f in enumerate(names) if f.startswith(("mean_", "p_"))]


# --- a policy against the reference: the tie-split policy of its Q, KL, agreement ---

def tie_split_policy(q, atol=TIE_TOL):
    """Bayes-optimal policy from action values Q (N, A): uniform over actions within atol of max_a Q.
    A NaN value would tie with nothing and leave a row of zeros (0/0): Q must be finite."""
    q = check_real_array("q", q, (None, None))
    best = q >= q.max(1, keepdims=True) - atol  # (N, A)
    return best / best.sum(1, keepdims=True)


def policy_kl(p_ref, p_agent, eps=1e-12):
    """Mean over steps of KL(p_ref ‖ p_agent) = Σ_a p_ref log(p_ref / max(p_agent, eps)).

    Terms with p_ref = 0 contribute 0 (0 log 0 = 0); eps keeps an agent probability of exactly
    0 on a Bayes-optimal action from giving inf.
    """
    p_ref = check_probabilities("p_ref", p_ref, (None, None))
    p_agent = check_probabilities("p_agent", p_agent, p_ref.shape)
    log_ratio = np.log(np.where(p_ref > 0, p_ref, 1.0)) - np.log(np.maximum(p_agent, eps))
    return float(np.where(p_ref > 0, p_ref * log_ratio, 0.0).sum(1).mean())


def agreement_rate(q, p_agent, atol=TIE_TOL):
    """Fraction of steps where argmax_a p_agent is one of the tied-maximal actions of Q."""
    q = check_real_array("q", q, (None, None))
    p_agent = check_probabilities("p_agent", p_agent, q.shape)
    best = q >= q.max(1, keepdims=True) - atol  # (N, A)
    return float(best[np.arange(len(q)), p_agent.argmax(1)].mean())


def check_probabilities(name, p, shape):
    """p as a float64 array of `shape` of finite probabilities (entries in [0, 1])."""
    p = check_real_array(name, p, shape)
    if p.size and not (p.min() >= 0 and p.max() <= 1):
        raise ValueError(f"{name} must hold probabilities in [0, 1], got values from "
                         f"{p.min():g} to {p.max():g}")
    return p


def reference_q(cfg, actions, rewards, obs, ref=None):
    """The reference policy's Q_t(belief_t, a) before each action of given episodes, (T, B, A).

    Q_t is the expected total reward from step t on when taking a, then acting as the
    reference does (bandits and tiger: Bayes-optimally; two-step: the expected reward of this
    trial alone). ref = reference(cfg), built here if not given."""
    beliefs = belief_trajectory(cfg, actions, rewards, obs)
    fam = belief_family(cfg)
    return fam.reference_q(cfg, fam.reference(cfg) if ref is None else ref, beliefs)


def exact_values(cfg, ref=None):
    """{"bayes_optimal_exact", "oracle_exact"}: exact E[Σ_t r_t] from the prior, or None.
    ref = reference(cfg), built here if not given."""
    fam = belief_family(cfg)
    return fam.exact_values(cfg, fam.reference(cfg) if ref is None else ref)


def run_baselines(cfg, episodes, seed, ref=None):
    """{policy name: {"mean", "stderr"}} of the total reward over `episodes` episodes, each
    policy on the same episodes (one seed). ref = reference(cfg), built here if not given."""
    check_int("--episodes", episodes, 1)
    check_memory(baselines_bytes(cfg, episodes), f"--episodes {episodes}")
    fam = belief_family(cfg)
    policies = fam.policies(cfg, fam.reference(cfg) if ref is None else ref)
    return policy_baselines(cfg, policies, episodes, seed)


NOT_CLASSICAL = ("bayes_optimal", "belief_greedy", "oracle", "random")  # references, not rivals


def best_classical(policies):
    """The name of the classical baseline (not a reference of NOT_CLASSICAL) with the highest
    mean return among policies {name: {"mean", ...}}."""
    classical = [name for name in policies if name not in NOT_CLASSICAL]
    return max(classical, key=lambda name: policies[name]["mean"])


def reference_policies(policies):
    """The lines a learning curve is judged against: belief-greedy where there is no exact
    Bayes-optimal value (two-step), and the best classical baseline."""
    chosen = [name for name in ("belief_greedy",) if name in policies] + [best_classical(policies)]
    return {name: policies[name] for name in chosen}


def baselines_bytes(cfg, episodes):
    """Bytes run_policy holds for `episodes` episodes: the env's noise (T, B, 3), actions,
    rewards and obs (T, B, ·), and the history a model-free learner refolds each step; ×2 for
    temporaries."""
    return 2 * cfg.horizon * episodes * 8 * (UNIFORMS_PER_STEP + 2 + n_observations(cfg) + 4)


def baselines_report(cfg, episodes, seed):
    """The baselines command's result as one JSON-ready dict."""
    check_int("--episodes", episodes, 1)
    check_memory(baselines_bytes(cfg, episodes), f"--episodes {episodes}")
    report = {"env": cfg.name, "actions": n_actions(cfg), "horizon": cfg.horizon,
              "episodes": episodes, "seed": seed,
              **{name: getattr(cfg, name) for name in envs.family(cfg.name).fields}}
    ref = reference(cfg)                    # first: a DP too large is refused before any rollout
    report.update(exact_values(cfg, ref))
    report["policies"] = run_baselines(cfg, episodes, seed, ref)
    return report


def format_baselines(report):
    """The report as a table; regret = oracle value − mean (the oracle's exact value if known)."""
    policies, oracle_exact = report["policies"], report["oracle_exact"]
    oracle = oracle_exact if oracle_exact is not None else policies.get("oracle", {}).get("mean")
    lines = [f"{report['env']}, {report['actions']} actions, T={report['horizon']}, "
             f"{report['episodes']} episodes, seed {report['seed']}",
             f"exact: Bayes-optimal {fmt(report['bayes_optimal_exact'], '.3f')}, "
             f"oracle {fmt(oracle_exact, '.3f')}",
             f"{'policy':<16}{'mean':>10}{'stderr':>10}{'regret':>10}"]
    for name, stats in policies.items():
        regret = None if oracle is None else oracle - stats["mean"]
        lines.append(f"{name:<16}{stats['mean']:>10.3f}{fmt(stats['stderr'], '.3f'):>10}"
                     f"{fmt(regret, '.3f'):>10}")
    return "\n".join(lines)


def fmt(value, spec):
    """format(value, spec), or "-" for a value that does not exist."""
    return "-" if value is None else format(value, spec)


def bandit_step_numpy(means, actions, u):
    """Plain-NumPy twin of envs.bandit_step, for the benchmark: r_e = 1[u_e < means[e, a_e]]."""
    return (u[:, 0] < means[np.arange(actions.shape[0]), actions]).astype(np.float64)


def bandit_step_numba(means, actions, u):
    """envs.bandit_step (the family kernel, whose task, observation and parameter arrays a
    bandit leaves unread) with bandit_step_numpy's arguments and return value."""
    r, unread = np.empty(actions.shape[0]), np.zeros((actions.shape[0], 0))
    bandit_step(actions, u, unread, means, unread, unread[0], r)
    return r


def bench(batch, horizon, repeats=7, seed=0):
    """Steps per second (episodes × steps / s) of the 2-armed bandit's step + belief update.

    Three ways: the NumPy twins, the Numba kernels, and BatchEnv.step (kernel plus building
    the RL² input) followed by the Numba update. Each is run once to compile and warm up, then
    timed `repeats` times; the median is reported. Actions are drawn beforehand."""
    cfg = make_config("bandit", arms=2, horizon=horizon)
    check_int("--batch", batch, 1)
    check_int("--repeats", repeats, 1)
    # means, actions, uniforms and the env's own noise, rewards and counts, ×2 for temporaries
    check_memory(2 * 8 * batch * (horizon * (1 + 2 * UNIFORMS_PER_STEP) + 16), f"--batch {batch}")
    rng = np.random.default_rng(seed)
    means = rng.random((batch, 2))                                # (B, k)
    actions = rng.integers(2, size=(horizon, batch))              # (T, B)
    u = rng.random((horizon, batch, UNIFORMS_PER_STEP))           # (T, B, 3)

    def kernels(step, update):
        alpha, beta = np.ones((batch, 2)), np.ones((batch, 2))
        for t in range(horizon):
            alpha, beta = update(alpha, beta, actions[t], step(means, actions[t], u[t]))

    def batch_env():
        env = make_env(cfg, batch)
        env.reset(seed)
        alpha, beta = np.ones((batch, 2)), np.ones((batch, 2))
        for t in range(horizon):
            _, r, _ = env.step(actions[t])
            alpha, beta = beta_counts_step(alpha, beta, actions[t], r)

    runs = {"numpy": partial(kernels, bandit_step_numpy, beta_counts_step_numpy),
            "numba": partial(kernels, bandit_step_numba, beta_counts_step),
            "batchenv+numba": batch_env}
    steps_per_s = {}
    for name, run in runs.items():
        run()
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - start)
        steps_per_s[name] = batch * horizon / float(np.median(seconds))
    return {"batch": batch, "horizon": horizon, "repeats": repeats, "steps_per_s": steps_per_s,
            "speedup_numba_over_numpy": steps_per_s["numba"] / steps_per_s["numpy"]}


def format_bench(result):
    """The benchmark as a table."""
    lines = [f"bandit k=2: env step + belief update, B={result['batch']}, T={result['horizon']}, "
             f"median of {result['repeats']}",
             f"{'implementation':<16}{'steps/s':>14}"]
    lines += [f"{name:<16}{rate:>14.3e}" for name, rate in result["steps_per_s"].items()]
    lines.append(f"numba / numpy: {result['speedup_numba_over_numpy']:.1f}x")
    return "\n".join(lines)


def build_parser():
    parser = OneLineErrorParser(prog="belief.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    base = commands.add_parser("baselines", help="mean total reward of the baseline policies")
    base.add_argument("--env", default="bandit", help=f"one of: {', '.join(envs.FAMILIES)}")
    base.add_argument("--arms", type=int, default=argparse.SUPPRESS,
                      help=f"bandit: number of arms k in [2, {envs.MAX_ARMS}] (default 2)")
    base.add_argument("--horizon", type=int, default=None, help="T; default: the env's own")
    base.add_argument("--episodes", type=int, default=20_000)
    base.add_argument("--seed", type=int, default=0, help="seed (>= 0) of tasks and policies")
    for name in ("prior_a", "prior_b"):
        base.add_argument(envs.flag(name), type=float, default=argparse.SUPPRESS,
                          help="bandits: arms' Beta(a, b) prior, in [0.001, 1000] (default 1)")
    base.add_argument("--json", action="store_true", help="print one JSON object")
    speed = commands.add_parser("bench", help="steps/s of bandit step + belief update")
    speed.add_argument("--batch", type=int, default=1024)
    speed.add_argument("--horizon", type=int, default=100)
    speed.add_argument("--repeats", type=int, default=7)
    speed.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)

    def command():
        if args.command == "baselines":
            given = {k: getattr(args, k) for k in ("arms", "prior_a", "prior_b") if hasattr(args, k)}
            cfg = make_config(args.env, horizon=args.horizon, **given)
            check_int("--seed", args.seed, 0)
            result = baselines_report(cfg, args.episodes, args.seed)
            text = format_baselines(result)
        else:
            result = bench(args.batch, args.horizon, args.repeats)
            text = format_bench(result)
        print(json.dumps(result) if args.json else text)

    return run_cli("belief.py", command)


if __name__ == "__main__":
    import belief   # run as the module itself: Numba caches must never name __main__
    sys.exit(belief.main())
