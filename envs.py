"""Batched task distributions for recurrent meta-RL (RL²).

Each environment runs B episodes at once. All state lives in NumPy arrays and the per-step
work is done by a small ``@njit(cache=True)`` kernel. The interface follows Gymnasium, adapted
to batches::

    env = make_env(EnvConfig(name="bandit", arms=2, horizon=100), batch=64)
    x = env.reset(seed=0)                  # (B, n_in) first agent input
    x, r, done = env.step(actions)         # actions (B,) ints

The agent's input is the RL² input (Duan et al. 2016; Wang et al. 2016), one row per episode::

    x_t = [ one_hot(a_{t-1}) , r_{t-1} / reward_scale , o_t , t / T ]

with zeros for the previous action and reward at t = 0. ``o_t`` is the environment's own
observation (nothing for bandits; hear-left / hear-right for Tiger; the second-stage state for
the two-step task). ``t / T`` is added because the finite-horizon Bayes-optimal policy depends
on the number of steps left; without it the LSTM would have to learn to count.

The hidden task is ``env.tasks`` (B, task_dim): arm means for the bandits, P(tiger is left)
as 0/1 for Tiger, "state A is the good one" as 0/1 for the two-step task. Tiger and two-step
tasks change within an episode (the tiger is re-placed, the good state swaps), so
``env.tasks`` is always the *current* hidden state. The agent never sees it; analysis code does.

Randomness: ``reset(seed)`` draws the tasks and every uniform number the episode will use,
(T, B, 3), from one ``np.random.Generator``. The same seed therefore gives bit-identical
episodes, and two policies run with the same seed face the same tasks and the same noise
(common random numbers, which makes their comparison less noisy).
"""
from dataclasses import dataclass, field

import numpy as np
from numba import njit

ENV_NAMES = ("bandit", "dependent-bandit", "tiger", "two-step")
DEFAULT_HORIZON = {"bandit": 100, "dependent-bandit": 100, "tiger": 20, "two-step": 100}
UNIFORMS_PER_STEP = 3  # the most any env needs in one step (two-step: transition, reward, swap)


@dataclass(frozen=True)
class EnvConfig:
    """One task distribution. Fields that an env does not use are ignored by it."""

    name: str = "bandit"          # one of ENV_NAMES
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


def make_config(name="bandit", horizon=None, **fields):
    """An EnvConfig with the env's default horizon, checked; raises ValueError on bad values."""
    if name not in ENV_NAMES:
        raise ValueError(f"unknown env {name!r}; accepted: {', '.join(ENV_NAMES)}")
    cfg = EnvConfig(name=name, horizon=DEFAULT_HORIZON[name] if horizon is None else horizon,
                    **fields)
    check_config(cfg)
    return cfg


def check_config(cfg):
    """Raise ValueError, in the user's words, if any field of cfg is out of range."""
    if cfg.name not in ENV_NAMES:
        raise ValueError(f"unknown env {cfg.name!r}; accepted: {', '.join(ENV_NAMES)}")
    if cfg.name == "bandit" and cfg.arms < 2:
        raise ValueError(f"--arms must be >= 2, got {cfg.arms}")
    if cfg.horizon < 1:
        raise ValueError(f"--horizon must be >= 1, got {cfg.horizon}")
    if cfg.prior_a <= 0 or cfg.prior_b <= 0:
        raise ValueError(f"Beta prior needs a > 0 and b > 0, got a={cfg.prior_a}, b={cfg.prior_b}")
    for label in ("listen_accuracy", "common_prob", "reward_good", "reward_bad", "swap_prob"):
        value = getattr(cfg, label)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{label} is a probability, must be in [0, 1], got {value}")


def n_actions(cfg):
    """Number of discrete actions: k arms; tiger: listen, open-left, open-right."""
    return {"bandit": cfg.arms, "dependent-bandit": 2, "tiger": 3, "two-step": 2}[cfg.name]


def n_observations(cfg):
    """Width of the env's own observation o_t inside the agent input."""
    return {"bandit": 0, "dependent-bandit": 0, "tiger": 2, "two-step": 2}[cfg.name]


def n_inputs(cfg):
    """Width of x_t = [one_hot(a), r, o, t/T]."""
    return n_actions(cfg) + 1 + n_observations(cfg) + 1


def task_dim(cfg):
    """Width of env.tasks."""
    return cfg.arms if cfg.name == "bandit" else 1


def reward_scale(cfg):
    """Rewards enter the agent's input (and the learner's loss) divided by this.

    Bandit and two-step rewards are already 0/1; Tiger's are ±100 and −1, which would
    saturate the LSTM's gates, so they are divided by the treasure reward (10)."""
    return abs(cfg.treasure_reward) if cfg.name == "tiger" else 1.0


@dataclass
class BatchEnv:
    """B episodes of one task distribution, stepped together. Build with make_env."""

    cfg: EnvConfig
    batch: int
    dtype: type = np.float64
    t: int = 0
    tasks: np.ndarray = field(default=None, repr=False)   # (B, task_dim) current hidden task
    means: np.ndarray = field(default=None, repr=False)   # (B, A) P(reward) per action (bandits)
    obs: np.ndarray = field(default=None, repr=False)     # (B, n_obs) latest observation o_t
    noise: np.ndarray = field(default=None, repr=False)   # (T, B, 3) uniforms for the episode

    def __post_init__(self):
        # looked up once: step() runs T times per rollout and should do no other work
        self.n_act, self.n_in, self.scale = n_actions(self.cfg), n_inputs(self.cfg), reward_scale(self.cfg)

    def reset(self, seed):
        """Sample B tasks and the episode's noise; return the first input x_0 (B, n_in)."""
        rng = np.random.default_rng(seed)
        cfg, B = self.cfg, self.batch
        if cfg.name == "bandit":
            self.tasks = rng.beta(cfg.prior_a, cfg.prior_b, size=(B, cfg.arms))
            self.means = self.tasks
        elif cfg.name == "dependent-bandit":
            p = rng.beta(cfg.prior_a, cfg.prior_b, size=(B, 1))
            self.tasks, self.means = p, np.concatenate([p, 1.0 - p], axis=1)
        else:  # tiger: tiger is left; two-step: state A is good; each with probability 1/2
            self.tasks = (rng.random((B, 1)) < 0.5).astype(np.float64)
            self.means = None
        self.noise = rng.random((cfg.horizon, B, UNIFORMS_PER_STEP))
        self.t = 0
        self.obs = np.zeros((B, n_observations(cfg)))
        no_action = np.full(B, -1, dtype=np.int64)
        return self._input(no_action, np.zeros(B))

    def step(self, actions):
        """Apply actions (B,) ints in [0, A); return (x_{t+1}, r_t, done)."""
        cfg = self.cfg
        if self.t >= cfg.horizon:
            raise RuntimeError("episode is over: call reset() before step()")
        a = np.asarray(actions, dtype=np.int64)
        if not actions_in_range(a, self.n_act):  # before any kernel indexes with them
            raise ValueError(f"actions must be integers in [0, {self.n_act}) for {cfg.name}")
        u = self.noise[self.t]
        if cfg.name in ("bandit", "dependent-bandit"):
            r = bandit_step(self.means, a, u)
        elif cfg.name == "tiger":
            r = tiger_step(self.tasks[:, 0], a, u, self.obs, cfg.listen_accuracy,
                           cfg.listen_reward, cfg.tiger_reward, cfg.treasure_reward)
        else:
            r = two_step_step(self.tasks[:, 0], a, u, self.obs, cfg.common_prob,
                              cfg.reward_good, cfg.reward_bad, cfg.swap_prob)
        self.t += 1
        x = self._input(a, r)
        done = np.full(self.batch, self.t == cfg.horizon)
        return x, r, done

    def _input(self, actions, rewards):
        x = np.empty((self.batch, self.n_in), dtype=self.dtype)  # (B, n_in)
        fill_rl2_input(x, actions, rewards, self.obs, self.t / self.cfg.horizon, self.n_act,
                       self.scale)
        return x


def make_env(cfg, batch, dtype=np.float64):
    """A BatchEnv running `batch` episodes of cfg; inputs x are of `dtype`."""
    check_config(cfg)
    if batch < 1:
        raise ValueError(f"batch (episodes) must be >= 1, got {batch}")
    return BatchEnv(cfg=cfg, batch=batch, dtype=dtype)


@njit(cache=True)
def actions_in_range(actions, n_act):
    """True if every action is in [0, n_act): the kernels index arrays with them, unchecked."""
    for a in actions:
        if a < 0 or a >= n_act:
            return False
    return True


@njit(cache=True)
def fill_rl2_input(x, actions, rewards, obs, time_fraction, n_act, scale):
    """x[e] = [one_hot(a_e), r_e / scale, o_e, t/T]; a_e = -1 means "no action yet"."""
    B, n_obs = obs.shape
    x[:] = 0.0
    for e in range(B):
        if actions[e] >= 0:
            x[e, actions[e]] = 1.0
        x[e, n_act] = rewards[e] / scale
        for j in range(n_obs):
            x[e, n_act + 1 + j] = obs[e, j]
        x[e, n_act + 1 + n_obs] = time_fraction


@njit(cache=True)
def bandit_step(means, actions, u):
    """Bernoulli reward r_e = 1[u_e < means[e, a_e]] for every episode e."""
    B = actions.shape[0]
    r = np.empty(B)
    for e in range(B):
        r[e] = 1.0 if u[e, 0] < means[e, actions[e]] else 0.0
    return r


@njit(cache=True)
def tiger_step(tiger_left, actions, u, obs, accuracy, listen_r, tiger_r, treasure_r):
    """One Tiger step. Actions: 0 listen, 1 open left, 2 open right.

    Listening costs listen_r and hears the true side with probability `accuracy`
    (obs = [hear-left, hear-right]); opening gives tiger_r or treasure_r, hears nothing, and
    re-places the tiger uniformly at random (tiger_left is updated in place)."""
    B = actions.shape[0]
    r = np.empty(B)
    for e in range(B):
        obs[e, 0] = 0.0
        obs[e, 1] = 0.0
        left = tiger_left[e] > 0.5
        if actions[e] == 0:
            r[e] = listen_r
            hear_left = left if u[e, 0] < accuracy else not left
            obs[e, 0 if hear_left else 1] = 1.0
        else:
            opened_left = actions[e] == 1
            r[e] = tiger_r if opened_left == left else treasure_r
            tiger_left[e] = 1.0 if u[e, 1] < 0.5 else 0.0
    return r


@njit(cache=True)
def two_step_step(a_good, actions, u, obs, common, p_good, p_bad, swap):
    """One two-step trial (Daw et al. 2011, one agent step per trial).

    Action 0 leads to state A and action 1 to state B with probability `common`, else to the
    other state (obs = one_hot(state)). Reward ~ Bernoulli(p_good) in the good state and
    Bernoulli(p_bad) in the other. Then the good state swaps with probability `swap`
    (a_good is updated in place)."""
    B = actions.shape[0]
    r = np.empty(B)
    for e in range(B):
        went_common = u[e, 0] < common
        state = actions[e] if went_common else 1 - actions[e]   # 0 = A, 1 = B
        obs[e, 0] = 1.0 if state == 0 else 0.0
        obs[e, 1] = 1.0 - obs[e, 0]
        good = (state == 0) == (a_good[e] > 0.5)
        r[e] = 1.0 if u[e, 1] < (p_good if good else p_bad) else 0.0
        if u[e, 2] < swap:
            a_good[e] = 1.0 - a_good[e]
    return r
