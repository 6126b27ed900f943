"""Calibration: every belief-state test run on machines whose answer is known.

A test of "the agent's state is a belief state" is evidence only once it separates machines
that are belief states from machines that are not. This module builds, per task family, a
panel of such machines and runs each through exactly the measures that judge the agent
(probe.py's decoding, machines.py's simulation, minimality, splicing and value loss):

    positives   embedded Bayes   the exact Bayes filter's coordinates x_t through a fixed random
                                 injective nonlinear map z = tanh((x / σ) M + c) into 2H units,
                                 acting with the Bayes-optimal (tie-split) policy at x = g⁻¹(z);
                distilled        an LSTM of the agent's architecture trained to act as the exact
                                 reference and to carry the belief (metarl.py distill), if given
    negatives   untrained        the agent's architecture at its initial weights
                value learner α  a model-free learner with long memory and no posterior: per
                                 action Q_a ← Q_a + α 1[a_t = a] (r_t − Q_a), greedy (ties split)
                forgetful κ      the Bayes filter's step with the state shrunk towards the prior
                                 each step, x' = κ · step(x): recency-weighted evidence, acting
                                 by the splice control's scores at x (bandits: greedy on the
                                 posterior means)
                never reset      (Tiger) the hearing difference d of every listen in the
                                 episode, not reset when a door opens: long memory, but after
                                 the first opening not the posterior; acting by Q* at d
                                 (any family whose record has an unreset_step)
                recent events    machines.control_run, the exact belief of the last 3 events
                                 (splicing and value loss only: its state is a window of events)

The driven measures (decoding, simulation, minimality) read every machine along the same
episodes, so that what differs is the machine: the agent's own (its probe's episodes and
folds), or without an agent the Bayes-optimal policy's own. Splicing and
value loss run each machine on its own (same tasks, noise and donors as the agent's test).

Each test states, before any number, its perfect value and its null value, and a machine
*passes* when its value lies on the perfect side of their midpoint: by the one-sided 95 %
limit over panel seeds (t, n − 1 df) it passes, by the opposite limit it fails, otherwise it
is unclear. A test is *validated* on a family when every positive passes and every negative
fails; only then does it judge the agent, with three outcomes: held (the agent passes),
refuted (it fails), inconclusive (neither limit clears the midpoint).

A machine's value of a test on a seed is a finite number or a record of why there is none,
the same in memory (calibrate) and in results.json, so that both are read alike:
{"undefined": why} where its measure has no value on that seed's episodes (a relative KL whose
no-information KL is 0): the machine is then unclear, which stops the test;
{"not measured": why} where it has no such measure by design (the recent-events machine's
driven tests): it is not among that test's machines. A bare NaN or None is refused.
"""
import numbers
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Callable

import numpy as np

import belief
import distill
import envs
import kernels
import machines
import metarl
import ridge
import runs
import stats
from boundary import check_float, check_int, check_real_array

PANEL_STREAM = 2 ** 33 + 2   # the panel's driven episodes, beside probe's stream (2³³)
VALUE_RATES = (0.01, 0.05, 0.3)   # α of the value learners: from long memory to short (α = 0.01
                                  # passed the dependent bandit's splice test, measured)
FORGETTING = (0.8,)          # κ of the forgetful filters
EMBED_OFFSET = 0.5           # the embedding's offsets c ~ U(−0.5, 0.5): units not all odd in x
BELIEF, NOT_BELIEF = "belief state", "not a belief state"
KNOWN = (BELIEF, NOT_BELIEF)   # a machine's known answer is one of these
UNDEFINED, NOT_MEASURED = "undefined", "not measured"   # the records of a value that is not there
WINDOW_STATE = ("its state is a window of the last events, not a vector that the maps and "
                "probes read")   # why the recent-events machine has no driven tests
RECENT_UPDATES = 800         # the recent-events LSTM's budget: on the bandit its most likely
                             # action agreed with the control's at every step of 500 fresh
                             # episodes after 2,000 updates, its loss flat from ~800 (measured)


# ------------------------------------------------------------------------------------------
# The registry of belief-state tests: the panel, probe.py and the report all read TESTS
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Test:
    """One measure of the belief-state claim: the value a belief state has (perfect), the
    value of a machine that holds nothing of the belief (null), and how the value is read off
    a machine's measures, the dict that driven_values and own_values build for a panel
    machine and probe_measures for the agent:

        decode                          mean held-out R² of the posterior means (linear probe)
        agent_to_bayes, bayes_to_agent  machines.agent_to_bayes / bayes_to_agent, MLP map
        minimality                      machines.minimality
        splice, value_loss              machines.splice_agreement, machines.value_loss (own)

    Adding a test is adding a record here (and its measure there, if it is a new one)."""

    name: str
    label: str
    perfect: float
    null: float
    value: Callable              # a machine's measures → the test's value
    own: bool = False            # read on the machine's own episodes, not along the panel's
    paired_label: str = None     # its row in the report's §2b table of trained − untrained
    trained_alone: bool = False  # ... where the trained network's own value is shown too
    undefined: str = "its measure gave no number on these episodes"   # recorded for a NaN

    def midpoint(self):
        return 0.5 * (self.perfect + self.null)

    def passes(self, value):
        """value on the perfect side of the midpoint."""
        return (value < self.midpoint()) if self.perfect < self.null else (value > self.midpoint())


def agreement_beyond_mean_policy(direction):
    """A map's action agreement beyond its machine's mean policy's (agreement_gain)."""
    return lambda m: agreement_gain(m[direction]["action_agreement"],
                                    m[direction]["action_agreement_baseline"])


NOTHING_TO_GAIN = "the machine's mean policy already agrees at every step: nothing is left to gain"
NO_GROUPS = "no step has two groups of episodes with the same belief"
TESTS = (
    Test("decode", "decoding: held-out R² of the posterior means (linear probe)", 1.0, 0.0,
         lambda m: m["decode"], undefined="a posterior mean does not vary along these episodes"),
    Test("a2b_state", "agent → Bayes state dissimilarity (MLP map)", 0.0, 1.0,
         lambda m: m["agent_to_bayes"]["state_dissimilarity"],
         paired_label="agent → Bayes state dissimilarity (MLP)", trained_alone=True),
    Test("a2b_output", "agent → Bayes relative output KL (MLP map)", 0.0, 1.0,
         lambda m: m["agent_to_bayes"]["output_kl_relative"],
         paired_label="agent → Bayes relative output KL (MLP)", trained_alone=True,
         undefined="the Bayes policy at the mapped states is the machine's mean policy at every "
                   "step (no-information KL 0)"),
    Test("a2b_agreement", "agent → Bayes action agreement beyond the mean policy's (MLP map)",
         1.0, 0.0, agreement_beyond_mean_policy("agent_to_bayes"), undefined=NOTHING_TO_GAIN),
    Test("b2a_state", "Bayes → agent state dissimilarity (MLP map)", 0.0, 1.0,
         lambda m: m["bayes_to_agent"]["state_dissimilarity"],
         paired_label="Bayes → agent state dissimilarity (MLP)", trained_alone=True),
    Test("b2a_output", "Bayes → agent relative output KL (MLP map)", 0.0, 1.0,
         lambda m: m["bayes_to_agent"]["output_kl_relative"],
         undefined="the machine's policy is its mean policy at every step (no-information KL 0)"),
    Test("b2a_agreement", "Bayes → agent action agreement beyond the mean policy's (MLP map)",
         1.0, 0.0, agreement_beyond_mean_policy("bayes_to_agent"), undefined=NOTHING_TO_GAIN),
    Test("partial_r2", "minimality: partial R² of history beyond the belief", 0.0, 1.0,
         lambda m: float(np.mean(list(m["minimality"]["partial_r2"].values()))),
         paired_label="partial R² beyond the belief (mean over features)",
         undefined="the belief alone predicts a history feature without error"),
    Test("within_between", "within/between spread (per-unit standardised)", 0.0, 1.0,
         lambda m: m["minimality"]["within_between_ratio"],
         paired_label="within/between spread ratio (per-unit standardised)",
         undefined=NO_GROUPS),
    Test("within_between_whitened", "within/between spread (whitened state)", 0.0, 1.0,
         lambda m: m["minimality"]["within_between_whitened"],
         paired_label="within/between spread ratio (whitened state)", undefined=NO_GROUPS),
    Test("splice", "splice contrast at lags ≥ 3 (spliced − recipient agreement)", 1.0, 0.0,
         lambda m: machines.splice_contrast(m["splice"]), own=True),
    Test("value_loss", "value loss per step relative to the uniform policy's at the same beliefs",
         0.0, 1.0, lambda m: m["value_loss"]["value_loss_relative"], own=True,
         undefined="every action is optimal at every belief reached: the uniform policy loses "
                   "nothing"),
)
EQUIVALENCE = 0.25   # δ of the agent's equivalence to the panel's positives, as a fraction of
                     # |perfect − null| (on the scale where the null is 0 and perfect is 1)


# ------------------------------------------------------------------------------------------
# Scripted machines: a state, its update on one event, a policy
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scripted:
    """A machine given by its equations on the events of cfg's task family: state S (B, D),
    S_0 = prior(B), S_{t+1} = step(S_t, a_t, r_t, o_t) (any S, so mapped states too),
    π_t = policy(S_t, t) (B, A); known: BELIEF or NOT_BELIEF."""

    name: str
    known: str
    cfg: envs.EnvConfig
    prior: Callable
    step: Callable
    policy: Callable

    def __post_init__(self):
        check_known(self.known, f"the known answer of {self.name!r}")


def check_known(known, what):
    """ValueError unless known is one of KNOWN: any other word would count as neither."""
    if not (isinstance(known, str) and known in KNOWN):
        raise ValueError(f"{what} must be {BELIEF!r} or {NOT_BELIEF!r}, got {known!r}")


def exact_bayes(cfg, ref):
    """The exact Bayes filter on the family's coordinates x, acting with the tie-split
    Bayes-optimal policy (two-step: belief-greedy) at x."""
    fam = machines.family(cfg)
    return Scripted(name="Bayes", known=BELIEF, cfg=cfg, prior=lambda B: fam.prior(cfg, B),
                    step=lambda x, a, r, obs: fam.step(cfg, x, a, r, obs),
                    policy=lambda x, t: belief.tie_split_policy(fam.q(cfg, ref, x, t)))


def embedded_bayes(cfg, ref, width, scale, rng):
    """The exact Bayes filter in a nonlinear basis: z = g(x) = tanh((x / σ) M + c), M (D,
    width) ~ N(0, 1/D), c ~ U(−EMBED_OFFSET, EMBED_OFFSET); g is injective (tanh is, and M
    has full row rank), g⁻¹(z) = (atanh(z) − c) M⁺ σ with z clipped into (−1, 1), so mapped
    states have a preimage too. step(z) = g(step_Bayes(g⁻¹(z))); policy: the tie-split
    Bayes-optimal policy (two-step: belief-greedy) at g⁻¹(z). scale σ (D,): the coordinates'
    sd, so that tanh is neither linear nor saturated. width ≥ D, or M could not have full row
    rank and g would merge beliefs."""
    fam = machines.family(cfg)
    D = len(fam.coordinate_names(cfg))
    if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < D:
        raise ValueError(f"width must be an integer ≥ the {D} belief coordinates of "
                         f"{cfg.name}, so that the embedding is injective; got {width!r}")
    scale = check_real_array("scale", scale, (D,))
    if (scale <= 0).any():
        raise ValueError(f"scale (the coordinates' sd) must be positive, got {scale.min():g}")
    M = rng.standard_normal((D, width)) / np.sqrt(D)
    c = rng.uniform(-EMBED_OFFSET, EMBED_OFFSET, width)
    M_pinv = np.linalg.pinv(M)

    def g(x):
        return np.tanh((x / scale) @ M + c)

    def g_inv(z):
        z = np.clip(z, -1 + 1e-12, 1 - 1e-12)
        return ((np.arctanh(z) - c) @ M_pinv) * scale

    return Scripted(
        name="embedded Bayes", known=BELIEF, cfg=cfg, prior=lambda B: g(fam.prior(cfg, B)),
        step=lambda z, a, r, obs: g(fam.step(cfg, g_inv(z), a, r, obs)),
        policy=lambda z, t: belief.tie_split_policy(fam.q(cfg, ref, g_inv(z), t)))


def value_learner(cfg, alpha, q0):
    """Q_a ← Q_a + α 1[a_t = a] (r_t − Q_a) from Q = q0 (A,), greedy with ties split: it
    remembers old rewards for ~1/α steps but holds no counts, so no posterior. q0 should be
    the prior's expected reward of each action (prior_rewards): from Q = 0 a greedy learner
    never leaves the first arm that paid. α in (0, 1]: at α = 0 it would learn nothing."""
    alpha = check_float("alpha", alpha, 0.0, 1.0, low_open=True)
    q0 = check_real_array("q0 (one value per action)", q0, (envs.n_actions(cfg),))

    def step(Q, a, r, obs):
        Q = np.array(Q, dtype=np.float64)
        e = np.arange(len(Q))
        Q[e, a] += alpha * (r - Q[e, a])
        return Q

    return Scripted(name=f"value learner α = {alpha:g}", known=NOT_BELIEF, cfg=cfg,
                    prior=lambda B: np.tile(q0, (B, 1)), step=step,
                    policy=lambda Q, t: belief.tie_split_policy(Q))


def prior_rewards(cfg, rng, episodes=4000):
    """E[r | a] at the first step under the prior, per action (A,): the mean reward of
    `episodes` fresh tasks given action a."""
    env = envs.make_env(cfg, episodes)
    means = []
    for a in range(envs.n_actions(cfg)):
        env.reset(rng)
        means.append(float(env.step(np.full(episodes, a))[1].mean()))
    return np.array(means)


def forgetful_filter(cfg, ref, kappa):
    """x' = κ · step_Bayes(x): every family's prior state is x = 0, so the evidence of an
    event k steps back counts κᵏ; acting by the family's splice-control scores at x (the
    scores meant for states that are not the exact belief)."""
    fam = machines.family(cfg)
    return Scripted(name=f"forgetful κ = {kappa:g}", known=NOT_BELIEF, cfg=cfg,
                    prior=lambda B: fam.prior(cfg, B),
                    step=lambda x, a, r, obs: kappa * fam.step(cfg, x, a, r, obs),
                    policy=lambda x, t: belief.tie_split_policy(fam.control_q(cfg, ref, x, t)))


def never_reset_filter(cfg, ref):
    """The family's filter without its resets (Family.unreset_step; Tiger: d' = d ± 1 on a
    listen, d' = d on an opening, where the Bayes step sets d' = 0 for the new tiger). It
    keeps every hearing of the episode, as a long-memory learner would, yet from the first
    opening on its state is not the posterior; acting Bayes-optimally at that state."""
    fam = machines.family(cfg)
    return Scripted(name="never reset", known=NOT_BELIEF, cfg=cfg,
                    prior=lambda B: fam.prior(cfg, B),
                    step=lambda S, a, r, obs: fam.unreset_step(cfg, S, a, r, obs),
                    policy=lambda S, t: belief.tie_split_policy(fam.q(cfg, ref, S, t)))


def recent_events_targets(cfg, ref, tr, window=machines.CONTROL_WINDOW):
    """What the panel's trained non-belief LSTM learns on its own rollout tr: π_w (T, B, A),
    the recent-events control's policy at every step (machines.window_policy: the exact
    belief of the last `window` events only), and F (T, B, window · n_in), its last `window`
    inputs [x_t, x_{t−1}, …] (zeros before the episode), which the state choosing a_t has
    read; both in tr's dtype, for distill.distill_update."""
    a, r, obs = tr.a, np.asarray(tr.r, np.float64), np.asarray(tr.obs, np.float64)
    target = np.stack([machines.window_policy(cfg, ref, a, r, obs, t, window)
                       for t in range(cfg.horizon)])
    x = np.asarray(tr.x, np.float64)
    lagged = [np.concatenate([np.zeros((k,) + x.shape[1:]), x[:len(x) - k]]) for k in range(window)]
    return target.astype(tr.pi.dtype), np.concatenate(lagged, axis=-1).astype(tr.pi.dtype)


def distill_recipe_for(agent_hp):
    """The distillation recipe (distill.distill_recipe) of the agent's env, horizon and width,
    with no more updates or episodes per update than the agent had (for --quick runs)."""
    fields = {k: getattr(agent_hp, k) for k in ("env", "arms", "horizon", "prior_a", "prior_b",
                                                "hidden", "log_every")}
    default = distill.distill_recipe(agent_hp.env)
    return distill.distill_recipe(**fields, updates=min(default.updates, agent_hp.updates),
                                 batch=min(default.batch, agent_hp.batch))


def recent_events_recipe(hp):
    """The recent-events LSTM's recipe from a distillation recipe hp: RECENT_UPDATES updates,
    or hp's if fewer."""
    updates = min(RECENT_UPDATES, hp.updates)
    return replace(hp, updates=updates, log_every=max(1, updates // 2))


def train_recent_events_lstm(hp, log=None):
    """A *trained* LSTM that is not a belief state: hp (objective distill, the agent's
    architecture) trained by runs.train with recent_events_targets, so it acts as the
    recent-events control does and carries its last 3 inputs, nothing older on purpose."""
    cfg = metarl.env_config(hp)
    ref = machines.reference(cfg)   # the control's scores read the reference (Tiger's Q table)
    return runs.train(hp, None, log=log or (lambda line: None),
                        targets=lambda tr: recent_events_targets(cfg, ref, tr))


@dataclass
class ScriptedRun:
    """A scripted machine's own episodes: a (T, B), r, obs, π (T, B, A), states (T, B, D)
    (states[t] chose a_t)."""

    a: np.ndarray
    r: np.ndarray
    obs: np.ndarray
    pi: np.ndarray
    states: np.ndarray


def scripted_run(cfg, machine, episodes, rng, implant=None):
    """Run `machine` on `episodes` fresh episodes of cfg: the env and then the action uniforms
    drawn from rng in metarl.rollout's order, so the same generator gives the same tasks,
    noise and uniforms as an LSTM rollout. Actions by the inverse CDF of π at the uniform.
    implant = (t_s, S (B, D)): the state that reads event t_s − 1 is S instead of the
    machine's own (S: the donor's states[t_s − 1]), as metarl.rollout's implant of the state
    carried into step t_s."""
    T, B, A = cfg.horizon, episodes, envs.n_actions(cfg)
    env = envs.make_env(cfg, B)
    env.reset(rng)
    u = rng.random((T, B))
    a, r = np.zeros((T, B), dtype=np.int64), np.zeros((T, B))
    obs, pi = np.zeros((T, B, envs.n_observations(cfg))), np.zeros((T, B, A))
    S = machine.prior(B)
    states = np.zeros((T,) + S.shape)
    for t in range(T):
        states[t] = S
        pi[t] = machine.policy(S, t)
        kernels.sample_categorical(pi[t], u[t], a[t])
        _, r[t], _ = env.step(a[t])
        obs[t] = env.obs
        if implant is not None and t == implant[0] - 1:
            S = implant[1]
        S = machine.step(S, a[t], r[t], obs[t])
    return ScriptedRun(a=a, r=r, obs=obs, pi=pi, states=states)


def scripted_splices(cfg, machine, episodes, seed, times=None):
    """machines.splice_runs for a scripted machine: the same stream, times and donors."""
    times = machines.splice_times(cfg.horizon) if times is None else times

    def run(implant=None):
        return scripted_run(cfg, machine, episodes, metarl.stream(seed, machines.SPLICE_STREAM),
                            implant)

    original = run()
    return original, [{"t_s": t_s, "donor": donor,
                       "run": run((t_s, original.states[t_s - 1][donor]))}
                      for t_s, donor in zip(times, machines.splice_donors(episodes, seed, times))]


def scripted_machine(machine, tr):
    """`machine` as a machines.Machine along the recorded episodes tr (a, r, obs), checked as
    events of its family (envs.check_history: the steps index with a and obs)."""
    a, r, obs = envs.check_history(machine.cfg, tr.a, tr.r, tr.obs)
    T, B = a.shape
    S = machine.prior(B)
    states = np.zeros((T,) + S.shape)
    for t in range(T):
        states[t] = S
        S = machine.step(S, a[t], r[t], obs[t])
    return machines.Machine(name=machine.name, states=states,
                            step=lambda S, t: machine.step(S, a[t], r[t], obs[t]),
                            policy=machine.policy)


# ------------------------------------------------------------------------------------------
# The measures of one machine
# ------------------------------------------------------------------------------------------
def driven_values(machine, bayes, posterior_means, history, names, fold, k, seed):
    """The driven tests of one Machine along the panel's episodes: {test: value}, each by the
    function that measures the agent (every fit from default_rng(seed), the same folds), as
    recorded (a number, or why there is none)."""
    X, groups = ridge.flatten_episodes(machine.states)
    Y = ridge.flatten_episodes(posterior_means)[0]
    decoded = ridge.decode(X, Y, groups, rng=np.random.default_rng(seed), k=k, folds=fold[groups])
    a2b = machines.agent_to_bayes(machine, bayes, fold, "mlp", np.random.default_rng(seed))
    b2a = machines.bayes_to_agent(bayes, machine, fold, "mlp", np.random.default_rng(seed))
    mini = machines.minimality(machine, bayes, history, names, fold, seed)
    measures = {"decode": float(decoded.r2.mean()), "agent_to_bayes": a2b,
                "bayes_to_agent": b2a, "minimality": mini}
    return {t.name: recorded(t, t.value(measures)) for t in TESTS if not t.own}


def agreement_gain(agree, base):
    """Action agreement through the map beyond what the machine's mean policy gets (base), as
    a fraction of what is left to gain: (agree − base) / (1 − base); 1 perfect, 0 no better
    than a policy that knows nothing of the episode."""
    return (agree - base) / (1 - base) if base < 1 else float("nan")


def own_values(cfg, ref, original, splices):
    """The tests of a machine acting on its own: splice contrast, and value loss per step on
    the unspliced run of the splice test (the machine's own episodes), as recorded."""
    measures = {"splice": machines.splice_agreement(cfg, ref, original, splices),
                "value_loss": machines.value_loss(cfg, ref, original)}
    return {t.name: recorded(t, t.value(measures)) for t in TESTS if t.own}


def recorded(test, value):
    """A measured value as the panel keeps it: the number, or {UNDEFINED: why} (test.undefined)
    where the measure has no value on these episodes (NaN)."""
    return float(value) if np.isfinite(value) else {UNDEFINED: test.undefined}


def calibrate(hp, seed, episodes, splice_episodes, k=machines.FOLDS, distilled=None,
              recent=None, along=None):
    """One seed of the panel on hp's task family: {"machines": {name: {"known", "values":
    {test: value}}}, "episodes", "splice_episodes", "along"}, its machines those of lineup.
    The panel's LSTMs have hp's architecture (the untrained one initialised from `seed`);
    distilled: parameters of a distilled LSTM of the same architecture, or None; recent: those
    of train_recent_events_lstm, or None. A value is a number or a record of why there is
    none (the module's docstring): the recent-events machine has splicing and value loss
    only, its other tests {NOT_MEASURED: WINDOW_STATE}. along: recorded episodes (x, a, r,
    obs of a metarl.rollout, at least `episodes` of them) whose first `episodes` the driven
    tests read: the agent's own, so that machines and agent are measured on the same
    histories and folds; None: the exact Bayes machine's own episodes (a panel with no
    agent)."""
    cfg = metarl.env_config(hp)
    machines.check_sizes(cfg, episodes, k)
    check_int("splice_episodes", splice_episodes, 2)
    check_int("seed", seed, 0)
    ref = machines.reference(cfg)
    untrained = metarl.initial_params(replace(hp, seed=seed), cfg, np.float64)
    if along is None:   # the exact Bayes machine's own episodes, the LSTMs' inputs replayed
        run = scripted_run(cfg, exact_bayes(cfg, ref), episodes,
                           metarl.stream(seed, PANEL_STREAM))
        tr = metarl.rollout(untrained, cfg, episodes, metarl.stream(seed, PANEL_STREAM),
                            actions=run.a)
        if not (np.array_equal(tr.r, run.r) and np.array_equal(tr.obs, run.obs)):
            raise RuntimeError("the panel's LSTM rollout did not replay the Bayes machine's "
                               "episodes")
    else:
        if along.a.shape[1] < episodes:
            raise ValueError(f"along holds {along.a.shape[1]} episodes; the panel reads "
                             f"{episodes}")
        tr = SimpleNamespace(**{key: getattr(along, key)[:, :episodes]
                                for key in ("x", "a", "r", "obs")})
    # the embedding's unit scale: the exact belief coordinates' spread along these episodes
    states = scripted_machine(exact_bayes(cfg, ref), tr).states
    scale = np.maximum(states.reshape(-1, states.shape[-1]).std(0), 1e-3)
    rng = metarl.stream(seed, PANEL_STREAM, 1)
    q0 = prior_rewards(cfg, rng)
    width = 2 * hp.hidden
    scripted = [embedded_bayes(cfg, ref, width, scale, rng),
                *(value_learner(cfg, alpha, q0) for alpha in VALUE_RATES),
                *(forgetful_filter(cfg, ref, kappa) for kappa in FORGETTING)]
    if machines.family(cfg).unreset_step is not None:   # Tiger: the value learners' Q moves
        scripted.append(never_reset_filter(cfg, ref))  # only when a door opens there
    networks = {"untrained": (untrained, NOT_BELIEF)}
    if distilled is not None:
        networks["distilled"] = (distilled, BELIEF)
    if recent is not None:
        networks["trained on recent events"] = (recent, NOT_BELIEF)
    fold = machines.episode_folds(episodes, k, np.random.default_rng(seed))
    bayes = machines.bayes_machine(cfg, tr, ref)
    F, feature_names = belief.belief_features(cfg, tr.a, tr.r, tr.obs)
    posterior_means = F[..., belief.posterior_mean_columns(feature_names)]
    history, names = machines.history_features(cfg, tr.a, tr.r, tr.obs)

    def driven(m):
        return driven_values(m, bayes, posterior_means, history, names, fold, k, seed)

    out = {}
    for machine in scripted:
        values = driven(scripted_machine(machine, tr))
        values.update(own_values(cfg, ref, *scripted_splices(cfg, machine, splice_episodes, seed)))
        out[machine.name] = {"known": machine.known, "values": values}
    for name, (params, known) in networks.items():
        values = driven(machines.agent_machine(params, tr, name))
        values.update(own_values(cfg, ref, *machines.splice_runs(params, cfg, splice_episodes, seed)))
        out[name] = {"known": known, "values": values}
    control = machines.control_splice_runs(cfg, ref, splice_episodes, seed)
    out["recent events"] = {"known": NOT_BELIEF,
                            "values": {**{t.name: {NOT_MEASURED: WINDOW_STATE}
                                          for t in TESTS if not t.own},
                                       **own_values(cfg, ref, *control)}}
    return {"machines": out, "episodes": episodes, "splice_episodes": splice_episodes,
            "along": "bayes" if along is None else "agent"}


def lineup(cfg, distilled=True, recent=True):
    """The machines of calibrate's panel on cfg's family, in its order: {name: (known answer,
    the names of the tests it is measured by)}; distilled, recent: whether those LSTMs are
    given. The results schema requires each of them (experiments.RESULTS)."""
    every, own = tuple(t.name for t in TESTS), tuple(t.name for t in TESTS if t.own)
    known = {"embedded Bayes": BELIEF,
             **{f"value learner α = {alpha:g}": NOT_BELIEF for alpha in VALUE_RATES},
             **{f"forgetful κ = {kappa:g}": NOT_BELIEF for kappa in FORGETTING}}
    if machines.family(cfg).unreset_step is not None:
        known["never reset"] = NOT_BELIEF
    known["untrained"] = NOT_BELIEF
    if distilled:
        known["distilled"] = BELIEF
    if recent:
        known["trained on recent events"] = NOT_BELIEF
    return {**{name: (answer, every) for name, answer in known.items()},
            "recent events": (NOT_BELIEF, own)}


# ------------------------------------------------------------------------------------------
# Reading the panel: which tests separate, and what they say of the agent
# ------------------------------------------------------------------------------------------
def limits(values, level=stats.LEVEL):
    """(mean, SE, lower, upper) one-sided limits over seeds (t, n − 1 df); limits None for n < 2."""
    x = np.asarray(values, np.float64)
    s = stats.mean_ci(x, level)
    return (s["mean"], s["stderr"], stats.lower_confidence_limit(x, level),
            stats.upper_confidence_limit(x, level))


def judge(test, values, level=stats.LEVEL):
    """"passes" if the limit on the perfect side clears the midpoint, "fails" if the opposite
    limit clears it the other way, else "unclear" (also with one value: no limits)."""
    _, _, low, high = limits(values, level)
    if low is None:
        return "unclear"
    towards, away = (high, low) if test.perfect < test.null else (low, high)
    if test.passes(towards):
        return "passes"
    if not test.passes(away):
        return "fails"
    return "unclear"


def calibration_table(seeds):
    """The panel over seeds [calibrate(...)], per test: each machine's mean, SE, n, verdict,
    values (NaN where undefined) and the reasons of its undefined values, and whether the test
    separates (validated: every measured positive passes, every measured negative fails, and
    both kinds were measured) with the machines that stop it. A machine undefined on any seed
    is unclear, so it stops the test; one not measured is not among the test's machines.
    seeds are checked first (check_panel), so a value missing, NaN or None is refused."""
    check_panel(seeds)
    names = list(seeds[0]["machines"])
    table = {}
    for test in TESTS:
        rows, wrong = {}, []
        for name in names:
            known = seeds[0]["machines"][name]["known"]
            kept = [s["machines"][name]["values"][test.name] for s in seeds]
            if record_of(kept[0]) == NOT_MEASURED:   # then on every seed (check_panel)
                continue
            values = [float("nan") if record_of(v) else float(v) for v in kept]
            undefined = sorted({v[UNDEFINED] for v in kept if record_of(v)})
            if undefined:   # no value on some seed: no limits, so unclear, and the test stops
                mean, se, verdict = float("nan"), float("nan"), "unclear"
            else:
                (mean, se, _, _), verdict = limits(values), judge(test, values)
            rows[name] = {"known": known, "mean": mean, "se": se, "n": len(values),
                          "verdict": verdict, "values": values, "undefined": undefined}
            if verdict != ("passes" if known == BELIEF else "fails"):
                wrong.append(name)
        kinds = {r["known"] for r in rows.values()}
        table[test.name] = {"label": test.label, "perfect": test.perfect, "null": test.null,
                            "midpoint": test.midpoint(), "machines": rows,
                            # a test with no measured positive (or negative) separates nothing
                            "validated": not wrong and kinds == {BELIEF, NOT_BELIEF},
                            "wrong": wrong}
    return table


def record_of(value):
    """UNDEFINED or NOT_MEASURED if value is that record, None if it is a finite number;
    ValueError for anything else (a bare NaN or None does not say which it is)."""
    if isinstance(value, dict) and len(value) == 1:
        kind, why = next(iter(value.items()))
        if kind in (UNDEFINED, NOT_MEASURED) and isinstance(why, str):
            return kind
    elif (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and np.isfinite(value)):
        return None
    raise ValueError(f"must be a finite number, {{{UNDEFINED!r}: why}} or "
                     f"{{{NOT_MEASURED!r}: why}}, got {value!r}")


def check_panel(seeds):
    """ValueError, naming the seed, machine and test, unless seeds is a non-empty list of
    panel seeds (calibrate's) with the same machines, each with a known answer of KNOWN, the
    same on every seed, and per test of TESTS a value that record_of accepts, not measured
    on every seed or on none."""
    if not isinstance(seeds, (list, tuple)) or not seeds:
        raise ValueError(f"the panel needs at least one seed (a list of calibrate's results), "
                         f"got {seeds!r}")
    first = seeds[0]["machines"]
    for s, seed in enumerate(seeds):
        missing = [n for n in first if n not in seed["machines"]]
        extra = [n for n in seed["machines"] if n not in first]
        if missing or extra:
            raise ValueError(f"machine {(missing + extra)[0]!r} is "
                             + (f"missing on panel seed {s}" if missing else
                                f"on panel seed {s} but not on panel seed 0")
                             + ": every seed of the panel holds the same machines")
        for name, machine in seed["machines"].items():
            check_known(machine["known"], f"the known answer of {name!r} on panel seed {s}")
            if machine["known"] != first[name]["known"]:
                raise ValueError(f"{name!r} is {machine['known']!r} on panel seed {s} but "
                                 f"{first[name]['known']!r} on panel seed 0")
            for test in TESTS:
                where = f"test {test.name!r} of {name!r} on panel seed {s}"
                if test.name not in machine["values"]:
                    raise ValueError(f"{where} has no value: a value that is not there is "
                                     f"recorded as {{{UNDEFINED!r}: why}} or "
                                     f"{{{NOT_MEASURED!r}: why}}")
                try:
                    kind = record_of(machine["values"][test.name])
                except ValueError as e:
                    raise ValueError(f"{where} {e}") from None
                if (kind == NOT_MEASURED) != (record_of(first[name]["values"][test.name])
                                              == NOT_MEASURED):
                    raise ValueError(f"{where} is measured on some seeds and not on others")


def agent_outcome(test, values, validated):
    """What a test says of the agent's per-seed values: "cannot decide" if the panel did not
    validate it, else held / refuted / inconclusive by the one-sided limits at the midpoint
    (inconclusive too if the value is undefined on some seed)."""
    if not validated:
        return "cannot decide"
    if not np.all(np.isfinite(values)):   # undefined on some seed: no limits to judge by
        return "inconclusive"
    return {"passes": "held", "fails": "refuted", "unclear": "inconclusive"}[judge(test, values)]


def scaled(test, values):
    """values on the test's common scale: 0 the null, 1 perfect, (v − null) / (perfect − null)."""
    return (np.asarray(values, np.float64) - test.null) / (test.perfect - test.null)


def placement(test, agent_values, row, level=stats.LEVEL):
    """Where the agent sits between the panel's groups on a validated test (row: the test's
    calibration_table entry), on the common scale, by Welch t tests (agent seeds and panel
    seeds are independent samples):

    beyond_negatives  the agent is nearer perfect than the strongest negative (the known
                      non-belief with the highest mean): one-sided, at `level`;
    positive          the weakest positive (the known belief state with the lowest mean);
    equivalence       "equivalent" if both one-sided limits of agent − that positive lie
                      within ±δ (two one-sided tests, δ = EQUIVALENCE), "further" if its upper
                      limit is below −δ (measurably further from perfect), "nearer" if its
                      lower limit is above δ, else "unresolved"."""
    agent = scaled(test, agent_values)

    def group(known):
        return {n: scaled(test, r["values"]) for n, r in row["machines"].items()
                if r["known"] == known}

    negatives, positives = group(NOT_BELIEF), group(BELIEF)
    strongest = max(negatives, key=lambda n: negatives[n].mean())
    weakest = min(positives, key=lambda n: positives[n].mean())
    beyond = stats.welch_difference(agent, negatives[strongest], level)
    # one-sided limits of d = agent − positive: low from the test of d > 0, high from −d > 0
    low = stats.welch_difference(agent, positives[weakest], level)["lower_one_sided"]
    minus_high = stats.welch_difference(positives[weakest], agent, level)["lower_one_sided"]
    if low is None or minus_high is None:   # fewer than 2 values on a side: no limits
        equivalence = "unresolved"
    elif -EQUIVALENCE < low and -minus_high < EQUIVALENCE:
        equivalence = "equivalent"
    elif -minus_high < -EQUIVALENCE:
        equivalence = "further"
    elif low > EQUIVALENCE:
        equivalence = "nearer"
    else:
        equivalence = "unresolved"
    return {"strongest_negative": strongest, "beyond_negatives": beyond["greater"],
            "positive": weakest, "difference": float(agent.mean() - positives[weakest].mean()),
            "equivalence": equivalence}


def agent_beside_panel(agent, seeds):
    """One agent's values {test: value} (agent_values) beside the panel over seeds
    [calibrate(...)]: per test, whether the panel validates it and the machines that stop it,
    each machine's known answer, mean, SE, n and verdict, and the agent's value with the side
    of the midpoint it lies on ("perfect" or "null"; None if undefined). One agent is a point,
    not a verdict: the report judges the agent over its seeds (agent_outcome)."""
    for test in TESTS:
        if test.name not in agent:
            raise ValueError(f"the agent has no value of test {test.name!r}: agent_values "
                             "gives one for every test of panel.TESTS")
        if isinstance(agent[test.name], bool) or not isinstance(agent[test.name], numbers.Real):
            raise ValueError(f"the agent's value of test {test.name!r} must be a number (NaN "
                             f"where undefined), got {agent[test.name]!r}")
    table = calibration_table(seeds)
    out = {}
    for test in TESTS:
        row, value = table[test.name], agent[test.name]
        side = None if not np.isfinite(value) else "perfect" if test.passes(value) else "null"
        out[test.name] = {
            "label": test.label, "perfect": test.perfect, "null": test.null,
            "validated": row["validated"], "wrong": row["wrong"], "agent": value,
            "agent_side": side,
            "machines": {name: {key: r[key] for key in ("known", "mean", "se", "n", "verdict")}
                         for name, r in row["machines"].items()}}
    return out


def agent_values(summary):
    """The panel's tests read off one probe.probe_agent summary of the trained agent (the
    same functions, on the agent's own episodes): {test: value}, NaN where undefined (a NaN
    that results.json holds as null, so the summary read back gives the same values)."""
    try:
        measures = probe_measures(summary)
    except KeyError as e:
        raise ValueError(f"the probe summary has no {e.args[0]!r}, which the panel's tests "
                         "read: give probe.probe_agent's summary") from None
    values = {}
    for t in TESTS:
        try:
            value = t.value(measures)
        except KeyError as e:
            raise ValueError(f"the probe summary has no {e.args[0]!r}, which test {t.name!r} "
                             "reads: give probe.probe_agent's summary") from None
        values[t.name] = float("nan") if value is None else value
    return values


def probe_measures(summary, net="trained"):
    """The measures (see Test) of network `net` ("trained" or "untrained") in one
    probe.probe_agent summary: its MLP maps, its minimality, the held-out R² of the posterior
    means from its state, and for the trained agent its splicing and value loss."""
    features = summary["features"]
    r2 = summary["decode"] if net == "trained" else summary["controls_by_feature"][net]
    mini = summary["minimality"]
    measures = {
        "decode": float(np.mean([r2[features[j]]
                                 for j in belief.posterior_mean_columns(features)])),
        **{d: {k: v[net]["mlp"] for k, v in summary["simulation"][d].items()}
           for d in machines.DIRECTION_LABEL},
        "minimality": {k: mini[k][net] for k in ("partial_r2", "within_between_ratio",
                                                 "within_between_whitened")}}
    if net == "trained":   # splicing and value loss run the trained agent alone
        measures.update(splice=summary["splice"], value_loss=summary["value_loss"])
    return measures
