"""Batched task distributions for recurrent meta-RL (RL²).

Each environment runs B episodes at once. All state lives in NumPy arrays and the per-step
work is done by a small ``@njit(cache=True)`` kernel. The interface follows Gymnasium, adapted
to batches::

    env = make_env(EnvConfig(name="bandit", arms=2, horizon=100), batch=64)
    x = env.reset(seed=0)                  # (B, n_in) first agent input
    x, r, done = env.step(actions)         # actions (B,) ints

The agent's input is the RL² input (Duan et al. 2016; Wang et al. 2016), one row per episode::

    x_t = [ one_hot(a_{t-1}) , r_{t-1} / reward_scale , o_{t-1} , t / T , clock_t ]

with zeros for the previous action, reward and observation at t = 0. ``o_{t-1}`` is the
environment's own observation that followed action a_{t-1} (nothing for bandits; hear-left /
hear-right for Tiger; the second-stage state for the two-step task): a rollout's ``obs[t]``
follows ``a[t]``, so step t reads ``obs[t - 1]`` (metarl.rollout, belief.belief_features).
``t / T`` is added because the finite-horizon Bayes-optimal policy depends on the number of
steps left; without it the LSTM would have to learn to count. ``clock_t`` = one_hot(t) (T
inputs) only for families whose record sets ``clock``: Tiger, whose Bayes-optimal policy
depends on the exact number of steps left (near the end it listens at t = 15 and 17 but opens
at t = 16, as the listen-listen-open cycles that still fit change parity), a step function of t
that one smooth input t / T exposes only to a network that has learned sharp thresholds.
Measured when the clock was added: with the recipes tried before it (lr, batch, γ, λ, value
weight, entropy schedules), Tiger agents given t / T alone acted greedily exactly as the
listen-twice heuristic; with the clock, a geometric entropy decay took them past it (Tiger's
recipe, its number of updates included, is metarl.RECIPES["tiger"]). Without the clock only a
four-phase entropy schedule, holding β high for half of a much longer run, escaped: the clock
shortens the run and keeps the recipe simple.

The hidden task is ``env.tasks`` (B, task_dim): arm means for the bandits, P(tiger is left)
as 0/1 for Tiger, "state A is the good one" as 0/1 for the two-step task. Tiger and two-step
tasks change within an episode (the tiger is re-placed, the good state swaps), so
``env.tasks`` is always the *current* hidden state. The agent never sees it; analysis code does.

Task families (bandit, dependent-bandit, tiger, two-step) are records: each ``Family`` in
``FAMILIES`` holds its sampler, step kernel, input layout and checks, and ``family(name)`` is
the one place a name is looked up (and an unknown one refused). Adding a family means adding
one record here and one ``belief.BeliefFamily``; the learner, the probe and the baselines need
no change. Every number of an ``EnvConfig`` is checked (type, finite, range) by
``check_config`` before any kernel runs, and ``BatchEnv.step`` checks the actions.

Randomness: ``reset(seed)`` draws the tasks and every uniform number the episode will use,
(T, B, 3), from one ``np.random.Generator``. The same seed therefore gives bit-identical
episodes, and two policies run with the same seed face the same tasks and the same noise
(common random numbers, which makes their comparison less noisy).
"""
from dataclasses import dataclass, field, fields, replace
from typing import Callable

import numpy as np
from numba import njit

from boundary import check_float, check_int, check_int_array, check_real_array, check_shape

UNIFORMS_PER_STEP = 3  # the most any env needs in one step (two-step: transition, reward, swap)
MAX_HORIZON = 10_000   # longer episodes are refused: the exact references grow with T
MAX_ARMS = 100


@dataclass(frozen=True)
class EnvConfig:
    """One task distribution. A field its family does not read must keep its default."""

    name: str = "bandit"          # a key of FAMILIES
    arms: int = 2                 # bandit: number of arms k (dependent-bandit always has 2)
    horizon: int = 100            # T: agent steps per episode (two-step: trials)
    prior_a: float = 1.0          # bandit arms p_i ~ Beta(a, b); dependent-bandit p ~ Beta(a, b)
    prior_b: float = 1.0          # a = b = 1 is the uniform prior of Duan et al. and Wang et al.
    listen_accuracy: float = 0.85  # tiger: P(hear the tiger's true side) (Kaelbling et al. 1998)
    listen_reward: float = -1.0    # tiger: cost of listening
    tiger_reward: float = -100.0   # tiger: opening the tiger's door
    treasure_reward: float = 10.0  # tiger: opening the other door
    common_prob: float = 0.8       # two-step: P(common transition) (Daw et al. 2011)
    reward_good: float = 0.9       # two-step: P(reward) in the good second-stage state
    reward_bad: float = 0.1        # two-step: P(reward) in the other state
    swap_prob: float = 0.025       # two-step: P(good state swaps) after each trial


# The accepted range of every number of EnvConfig, as (low, high, low_open, high_open).
# Probabilities that enter Bayes' rule as likelihoods stay off 0 and 1 (a zero likelihood
# would give 0/0 on a history the model calls impossible; a swap probability of 0 lets the
# two-step belief reach exactly 0 or 1, whose log-odds are infinite); rewards are bounded so
# that the exact values stay far from overflow.
FIELD_RANGES = {
    "prior_a": (1e-3, 1e3, False, False), "prior_b": (1e-3, 1e3, False, False),
    "listen_accuracy": (0.5, 1.0, False, True), "listen_reward": (-1e4, 1e4, False, False),
    "tiger_reward": (-1e4, 1e4, False, False), "treasure_reward": (0.0, 1e4, True, False),
    "common_prob": (0.0, 1.0, False, False), "reward_good": (0.0, 1.0, True, True),
    "reward_bad": (0.0, 1.0, True, True), "swap_prob": (0.0, 0.5, True, False),
}


def flag(name):
    """The command-line spelling of an EnvConfig or Config field: prior_a → --prior-a."""
    return "--" + name.replace("_", "-")


# ------------------------------------------------------------------------------------------
# One record per task family: adding a family means adding one Family here (and one
# belief.BeliefFamily in belief.py); nothing else dispatches on the name.
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    """Everything envs.py knows about one task family."""

    default_horizon: int
    fields: tuple            # EnvConfig fields it reads besides name and horizon
    n_actions: Callable      # cfg → A
    n_observations: int      # width of its own observation o_t in the input
    task_dim: Callable       # cfg → width of env.tasks
    reward_scale: Callable   # cfg → divisor of rewards in the agent's input and in the loss
    sample_tasks: Callable   # (cfg, rng, B) → tasks (B, task_dim)
    step: Callable           # Numba kernel (actions (B,), u (B, 3), tasks, means, obs, par, r):
                             # writes rewards into r (B,) and moves tasks and obs in place
    step_params: Callable    # cfg → the float64 array `par` of numbers its step kernel reads
    check_outcomes: Callable  # (cfg, actions, rewards, obs) → None; ValueError if impossible
    outcomes: Callable       # (cfg, actions, rewards, obs) → y (..., G) in {0, 1}: what a_t
                             # revealed, the targets of the learner's predictive head
    outcome_names: tuple     # the G outcomes' names
    # bandits only (None otherwise): how arm i loads on the Beta-distributed unknowns p of the
    # task, cfg → (j, positive) of shape (A,) each: arm i pays p_{j_i} if positive_i, else
    # 1 − p_{j_i}; and the names of the unknowns, cfg → [str] (for feature names)
    loadings: Callable = None
    task_names: Callable = None
    clock: bool = False      # input one_hot(t) beside t / T (see the module docstring)
    quick_horizon: int = 20  # T of experiments.py --quick, a check of the pipeline in seconds


def family(name):
    """The Family record of a task family's name; ValueError for an unknown name."""
    if name not in FAMILIES:
        raise ValueError(f"unknown env {name!r}; accepted: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def make_config(name="bandit", horizon=None, **values):
    """An EnvConfig with the family's default horizon, checked (check_config)."""
    return check_config(EnvConfig(name=name, horizon=family(name).default_horizon
                                  if horizon is None else horizon, **values))


def check_config(cfg):
    """cfg with every number as a Python int or float (np.int8(127) + 1 would wrap in the
    input layout's sums), or ValueError, in the user's words, if any field is of the wrong
    type, out of its range, or set although the family does not read it."""
    fam = family(cfg.name)
    cfg = replace(cfg, horizon=check_int(flag("horizon"), cfg.horizon, 1, MAX_HORIZON),
                  arms=check_int(flag("arms"), cfg.arms, 2, MAX_ARMS),
                  **{name: check_float(flag(name), getattr(cfg, name), *bounds)
                     for name, bounds in FIELD_RANGES.items()})
    default = EnvConfig()
    for f in fields(EnvConfig):
        if f.name not in ("name", "horizon", *fam.fields) and getattr(cfg, f.name) != getattr(default, f.name):
            users = [n for n, other in FAMILIES.items() if f.name in other.fields]
            raise ValueError(f"{flag(f.name)} does not apply to {cfg.name} (it applies to: "
                             f"{', '.join(users) or 'no env'}); leave it at its default "
                             f"{getattr(default, f.name)}")
    return cfg


def n_actions(cfg):
    """Number of discrete actions: k arms; tiger: listen, open-left, open-right."""
    return family(cfg.name).n_actions(cfg)


def n_observations(cfg):
    """Width of the env's own observation o inside the agent input (o_{t−1} in x_t)."""
    return family(cfg.name).n_observations


def n_inputs(cfg):
    """Width of x_t = [one_hot(a_{t−1}), r_{t−1}, o_{t−1}, t/T, clock_t]."""
    return n_actions(cfg) + 1 + n_observations(cfg) + 1 + (cfg.horizon if family(cfg.name).clock
                                                           else 0)


def task_dim(cfg):
    """Width of env.tasks."""
    return family(cfg.name).task_dim(cfg)


def arm_means(cfg, p):
    """Bandits: the arms' reward probabilities (..., A) from the unknowns p (..., task_dim),
    m_i = p_{j_i} if positive_i else 1 − p_{j_i} (Family.loadings)."""
    j, positive = family(cfg.name).loadings(cfg)
    return np.where(positive, p[..., j], 1.0 - p[..., j])


def reward_scale(cfg):
    """Rewards enter the agent's input (and the learner's loss) divided by this."""
    return family(cfg.name).reward_scale(cfg)


def n_outcomes(cfg):
    """G, the number of binary outcomes each action reveals (Family.outcomes)."""
    return len(family(cfg.name).outcome_names)


def outcomes(cfg, actions, rewards, obs):
    """y (..., G) in {0, 1}: the outcomes of the actions, as the learner's predictive head
    predicts them (metarl.prediction_loss). Arrays as a rollout records them."""
    return family(cfg.name).outcomes(cfg, actions, rewards, obs)


def check_history(cfg, actions, rewards, obs):
    """Recorded episodes as the env makes them, or ValueError: actions (T, B) integers in
    [0, A), rewards (T, B) and obs (T, B, n_obs) finite and possible for the family, and
    T ≤ horizon. Returns them as int64 / float64 arrays: the belief kernels index with them."""
    actions = np.asarray(actions)
    check_shape("actions", actions, (None, None))
    T, B = actions.shape
    if T > cfg.horizon:
        raise ValueError(f"episodes have {T} steps, more than the horizon {cfg.horizon}")
    actions = check_int_array("actions", actions, (T, B), 0, n_actions(cfg))
    rewards = check_real_array("rewards", rewards, (T, B))
    obs = check_real_array("obs", obs, (T, B, n_observations(cfg)))
    family(cfg.name).check_outcomes(cfg, actions, rewards, obs)
    return actions, rewards, obs


@dataclass
class BatchEnv:
    """B episodes of one task distribution, stepped together. Build with make_env."""

    cfg: EnvConfig
    batch: int
    dtype: type = np.float64
    t: int = 0
    tasks: np.ndarray = field(default=None, repr=False)   # (B, task_dim) current hidden task
    means: np.ndarray = field(default=None, repr=False)   # (B, A) P(reward) per action; (B, 0)
                                                          # for families without arm means
    obs: np.ndarray = field(default=None, repr=False)     # (B, n_obs) latest observation o_t
    noise: np.ndarray = field(default=None, repr=False)   # (T, B, 3) uniforms for the episode

    def __post_init__(self):
        # looked up once: step() runs T times per rollout and should do no other work
        self.family = family(self.cfg.name)
        self.n_act, self.n_in, self.scale = n_actions(self.cfg), n_inputs(self.cfg), reward_scale(self.cfg)
        self.par = np.asarray(self.family.step_params(self.cfg), dtype=np.float64)

    def reset(self, seed):
        """Sample B tasks and the episode's noise; return the first input x_0 (B, n_in).
        seed: an integer ≥ 0 or a np.random.Generator (None would not be reproducible)."""
        rng = seed if isinstance(seed, np.random.Generator) else \
            np.random.default_rng(check_int("seed", seed, 0))
        cfg, B = self.cfg, self.batch
        self.tasks = self.family.sample_tasks(cfg, rng, B)
        self.means = (arm_means(cfg, self.tasks) if self.family.loadings is not None
                      else np.zeros((B, 0)))
        self.noise = rng.random((cfg.horizon, B, UNIFORMS_PER_STEP))
        self.t = 0
        self.obs = np.zeros((B, n_observations(cfg)))
        no_action = np.full(B, -1, dtype=np.int64)
        return self._input(no_action, np.zeros(B))

    def step(self, actions):
        """Apply actions (B,) integers in [0, A); return (x_{t+1}, r_t, done)."""
        if self.noise is None or self.t >= self.cfg.horizon:
            raise RuntimeError("no episode is running: call reset(seed) before step()")
        a = self.checked_actions(actions)
        r = np.empty(self.batch)
        self.family.step(a, self.noise[self.t], self.tasks, self.means, self.obs, self.par, r)
        self.t += 1
        x = self._input(a, r)
        done = np.full(self.batch, self.t == self.cfg.horizon)
        return x, r, done

    def checked_actions(self, actions):
        """actions as int64 (B,), or ValueError: the kernels index arrays with them, unchecked.
        The common case (an int64 array of the right shape) costs one Numba range scan."""
        a = actions if isinstance(actions, np.ndarray) else np.asarray(actions)
        if a.dtype == np.int64 and a.shape == (self.batch,) and actions_in_range(a, self.n_act):
            return a
        return check_int_array("actions", a, (self.batch,), 0, self.n_act)

    def _input(self, actions, rewards):
        x = np.empty((self.batch, self.n_in), dtype=self.dtype)  # (B, n_in)
        fill_rl2_input(x, actions, rewards, self.obs, self.t, self.cfg.horizon, self.n_act,
                       self.scale, self.family.clock)
        return x


def make_env(cfg, batch, dtype=np.float64):
    """A BatchEnv running `batch` episodes of cfg; inputs x are of `dtype` (float64 or
    float32: t/T and the scaled rewards are fractions)."""
    cfg = check_config(cfg)
    if np.dtype(dtype) not in (np.float64, np.float32):
        raise ValueError(f"the env's input dtype must be float64 or float32, got {np.dtype(dtype)}")
    check_int("batch (episodes)", batch, 1)
    return BatchEnv(cfg=cfg, batch=batch, dtype=dtype)


@njit(cache=True)
def actions_in_range(actions, n_act):
    """True if every action is in [0, n_act): the kernels index arrays with them, unchecked."""
    for a in actions:
        if a < 0 or a >= n_act:
            return False
    return True


@njit(cache=True)
def fill_rl2_input(x, actions, rewards, obs, t, T, n_act, scale, clock):
    """x[e] = [one_hot(a_e), r_e / scale, o_e, t/T, one_hot(t) if clock]; a_e = -1 means "no
    action yet"; the clock is all zeros at t = T, after the last step."""
    B, n_obs = obs.shape
    x[:] = 0.0
    for e in range(B):
        if actions[e] >= 0:
            x[e, actions[e]] = 1.0
        x[e, n_act] = rewards[e] / scale
        for j in range(n_obs):
            x[e, n_act + 1 + j] = obs[e, j]
        x[e, n_act + 1 + n_obs] = t / T
        if clock and t < T:
            x[e, n_act + 2 + n_obs + t] = 1.0


@njit(cache=True)
def bandit_step(actions, u, tasks, means, obs, par, r):
    """Bernoulli reward r_e = 1[u_e < means[e, a_e]] for every episode e (tasks, obs and par
    unused: a bandit's task does not move and it observes nothing but the reward)."""
    for e in range(actions.shape[0]):
        r[e] = 1.0 if u[e, 0] < means[e, actions[e]] else 0.0


@njit(cache=True)
def tiger_step(actions, u, tasks, means, obs, par, r):
    """One Tiger step. Actions: 0 listen, 1 open left, 2 open right; tasks[e, 0] = 1 if the
    tiger is left; par = [accuracy, listen_r, tiger_r, treasure_r].

    Listening costs listen_r and hears the true side with probability `accuracy`
    (obs = [hear-left, hear-right]); opening gives tiger_r or treasure_r, hears nothing, and
    re-places the tiger uniformly at random (tasks is updated in place)."""
    accuracy, listen_r, tiger_r, treasure_r = par[0], par[1], par[2], par[3]
    for e in range(actions.shape[0]):
        obs[e, 0] = 0.0
        obs[e, 1] = 0.0
        left = tasks[e, 0] > 0.5
        if actions[e] == 0:
            r[e] = listen_r
            hear_left = left if u[e, 0] < accuracy else not left
            obs[e, 0 if hear_left else 1] = 1.0
        else:
            opened_left = actions[e] == 1
            r[e] = tiger_r if opened_left == left else treasure_r
            tasks[e, 0] = 1.0 if u[e, 1] < 0.5 else 0.0


@njit(cache=True)
def two_step_step(actions, u, tasks, means, obs, par, r):
    """One two-step trial (Daw et al. 2011, one agent step per trial); tasks[e, 0] = 1 if
    state A is the good one; par = [common, p_good, p_bad, swap].

    Action 0 leads to state A and action 1 to state B with probability `common`, else to the
    other state (obs = one_hot(state)). Reward ~ Bernoulli(p_good) in the good state and
    Bernoulli(p_bad) in the other. Then the good state swaps with probability `swap`
    (tasks is updated in place)."""
    common, p_good, p_bad, swap = par[0], par[1], par[2], par[3]
    for e in range(actions.shape[0]):
        went_common = u[e, 0] < common
        state = actions[e] if went_common else 1 - actions[e]   # 0 = A, 1 = B
        obs[e, 0] = 1.0 if state == 0 else 0.0
        obs[e, 1] = 1.0 - obs[e, 0]
        good = (state == 0) == (tasks[e, 0] > 0.5)
        r[e] = 1.0 if u[e, 1] < (p_good if good else p_bad) else 0.0
        if u[e, 2] < swap:
            tasks[e, 0] = 1.0 - tasks[e, 0]


# ------------------------------------------------------------------------------------------
# The families: the functions their records hold, then FAMILIES
# ------------------------------------------------------------------------------------------
def beta_tasks(cfg, rng, B):
    """Bandits: the Beta(a, b)-distributed unknowns of B tasks, (B, task_dim)."""
    return rng.beta(cfg.prior_a, cfg.prior_b, size=(B, task_dim(cfg)))


def coin_tasks(cfg, rng, B):
    """Tiger (tiger is left) and two-step (state A is good): 0/1 with probability 1/2, (B, 1)."""
    return (rng.random((B, 1)) < 0.5).astype(np.float64)


def independent_loadings(cfg):
    """bandit: arm i pays with its own p_i."""
    return np.arange(cfg.arms), np.ones(cfg.arms, dtype=bool)


def opposite_loadings(cfg):
    """dependent-bandit: arm 0 pays with p and arm 1 with 1 − p."""
    return np.array([0, 0]), np.array([True, False])


def no_params(cfg):
    """The bandits' step reads no number of cfg."""
    return np.zeros(0)


def tiger_params(cfg):
    return np.array([cfg.listen_accuracy, cfg.listen_reward, cfg.tiger_reward,
                     cfg.treasure_reward])


def two_step_params(cfg):
    return np.array([cfg.common_prob, cfg.reward_good, cfg.reward_bad, cfg.swap_prob])


def check_binary_rewards(cfg, actions, rewards, obs):
    """Bandit and two-step rewards are 0 or 1."""
    if not np.isin(rewards, (0.0, 1.0)).all():
        raise ValueError(f"{cfg.name} rewards must be 0 or 1")


def check_tiger_outcomes(cfg, actions, rewards, obs):
    """Listening costs listen_reward and hears one side (obs one-hot); opening a door pays
    tiger_reward or treasure_reward and hears nothing (obs zero)."""
    listen = actions == 0
    if not (rewards[listen] == cfg.listen_reward).all():
        raise ValueError(f"tiger: a listening step must have reward {cfg.listen_reward}")
    if not np.isin(rewards[~listen], (cfg.tiger_reward, cfg.treasure_reward)).all():
        raise ValueError(f"tiger: an opening must have reward {cfg.tiger_reward} or "
                         f"{cfg.treasure_reward}")
    heard = obs.sum(axis=-1)
    if not (np.isin(obs, (0.0, 1.0)).all() and (heard == listen).all()):
        raise ValueError("tiger: obs must be one-hot [hear-left, hear-right] after listening "
                         "and [0, 0] after opening a door")


def check_two_step_outcomes(cfg, actions, rewards, obs):
    """Rewards 0 or 1, and obs one-hot over the second-stage states [A, B]."""
    check_binary_rewards(cfg, actions, rewards, obs)
    if not (np.isin(obs, (0.0, 1.0)).all() and (obs.sum(axis=-1) == 1.0).all()):
        raise ValueError("two-step: obs must be one-hot over the states [A, B]")


def reward_outcome(cfg, actions, rewards, obs):
    """Bandits: y = [r_t], the Bernoulli reward."""
    return rewards[..., None].astype(np.float64)


def tiger_outcome(cfg, actions, rewards, obs):
    """Tiger: y = [the side the tiger shows itself on, 1 = right]: the side heard after a
    listen (obs = [hear-left, hear-right]); after an opening, the tiger's side before it was
    re-placed (the tiger's door pays tiger_reward). Either way P(y = 1) follows the belief:
    a listen hears the right with probability acc·(1 − b) + (1 − acc)·b, and an opening finds
    the tiger right with probability 1 − b, b = P(tiger left)."""
    tiger_behind = rewards == cfg.tiger_reward
    right_after_opening = np.where(actions == 1, ~tiger_behind, tiger_behind)
    return np.where(actions == 0, obs[..., 1] > 0.5, right_after_opening)[..., None].astype(
        np.float64)


def two_step_outcome(cfg, actions, rewards, obs):
    """Two-step: y = [the second-stage state is B, r_t]."""
    return np.stack([obs[..., 1], rewards], axis=-1).astype(np.float64)


def arms(cfg):
    return cfg.arms


def arm_names(cfg):
    return [str(i) for i in range(cfg.arms)]


def constant(value):
    """A record field that is the same for every config of the family."""
    return lambda cfg: value


FAMILIES = {
    "bandit": Family(
        default_horizon=100, fields=("arms", "prior_a", "prior_b"), n_actions=arms,
        n_observations=0, task_dim=arms, reward_scale=constant(1.0), sample_tasks=beta_tasks,
        step=bandit_step, step_params=no_params, check_outcomes=check_binary_rewards,
        outcomes=reward_outcome, outcome_names=("reward",), loadings=independent_loadings,
        task_names=arm_names),
    "dependent-bandit": Family(
        default_horizon=100, fields=("prior_a", "prior_b"), n_actions=constant(2),
        n_observations=0, task_dim=constant(1), reward_scale=constant(1.0),
        sample_tasks=beta_tasks, step=bandit_step, step_params=no_params,
        check_outcomes=check_binary_rewards, outcomes=reward_outcome, outcome_names=("reward",),
        loadings=opposite_loadings, task_names=constant(["p"])),
    # Tiger's rewards are ±100 and −1, which would saturate the LSTM's gates: they enter the
    # input and the loss divided by the treasure reward (10)
    "tiger": Family(
        default_horizon=20,
        fields=("listen_accuracy", "listen_reward", "tiger_reward", "treasure_reward"),
        n_actions=constant(3), n_observations=2, task_dim=constant(1),
        reward_scale=lambda cfg: cfg.treasure_reward, sample_tasks=coin_tasks,
        step=tiger_step, step_params=tiger_params, check_outcomes=check_tiger_outcomes,
        outcomes=tiger_outcome, outcome_names=("tiger right",),
        clock=True, quick_horizon=10),
    "two-step": Family(
        default_horizon=100, fields=("common_prob", "reward_good", "reward_bad", "swap_prob"),
        n_actions=constant(2), n_observations=2, task_dim=constant(1),
        reward_scale=constant(1.0), sample_tasks=coin_tasks, step=two_step_step,
        step_params=two_step_params, check_outcomes=check_two_step_outcomes,
        outcomes=two_step_outcome, outcome_names=("state B", "reward")),
}
