"""The belief-state measures, and machines given by their equations.

TESTS is the registry of measures of "the agent's state is a belief state": probe.py reads
them off the agent, ladders.py off machines whose answer is known, and the report places the
agent on the ladders through them. Scripted machines (a state, its update on one event, a
policy) run on a family's episodes (scripted_run, scripted_splices) or along recorded ones
(scripted_machine): the exact Bayes filter, a value learner, and every ladder machine. The
recent-events LSTM is a trained network that is not a belief state on purpose: it acts as
the recent-events control does and carries the last 3 inputs, a reference point on the
ladders beside the untrained and the Bayes-distilled networks.

A machine's value of a test on a seed is a finite number or a record of why there is none,
the same in memory and in results.json, so that both are read alike: {"undefined": why}
where its measure has no value on that seed's episodes (a relative KL whose no-information
KL is 0); {"not measured": why} where it has no such measure by design (a ladder grade with
no LSTM distilled). A bare NaN or None is refused.
"""
import numbers
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

import belief
import distill
import envs
import kernels
import machines
import metarl
import runs
from boundary import check_float, check_real_array

PANEL_STREAM = 2 ** 33 + 2   # the exact filter's own episodes, beside probe's stream (2³³)
UNDEFINED, NOT_MEASURED = "undefined", "not measured"   # the records of a value that is not there
RECENT_UPDATES = 800         # the recent-events LSTM's budget: on the bandit its most likely
                             # action agreed with the control's at every step of 500 fresh
                             # episodes after 2,000 updates, its loss flat from ~800 (measured)


# ------------------------------------------------------------------------------------------
# The registry of belief-state measures: probe.py, ladders.py and the report all read TESTS
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Test:
    """One measure of the belief-state claim, and how its value is read off a machine's
    measures, the dict that ladders.driven_values and own_values build and probe_measures
    reads off a probe summary:

        decode                          mean held-out R² of the posterior means (linear probe)
        agent_to_bayes, bayes_to_agent  machines.agent_to_bayes / bayes_to_agent, MLP map
        minimality                      machines.minimality
        interchange                     machines.interchange (a linear alignment)
        splice, value_loss              machines.splice_agreement, machines.value_loss (own)

    Adding a test is adding a record here (and its measure there, if it is a new one)."""

    name: str
    label: str
    value: Callable              # a machine's measures → the test's value
    measures: tuple              # the properties (ladders.LADDERS) it is meant to measure, the
                                 # ladders deciding whether it does: agent → Bayes maps ask
                                 # whether the belief is a function of the state (sufficiency),
                                 # Bayes → agent maps whether the state is one of the belief
                                 # (minimality)
    own: bool = False            # read on the machine's own episodes, not along recorded ones
    paired_label: str = None     # its row in the report's §2b table of trained − untrained
    trained_alone: bool = False  # ... where the trained network's own value is shown too
    undefined: str = "its measure gave no number on these episodes"   # recorded for a NaN


def agreement_beyond_mean_policy(direction):
    """A map's action agreement beyond its machine's mean policy's (agreement_gain)."""
    return lambda m: agreement_gain(m[direction]["action_agreement"],
                                    m[direction]["action_agreement_baseline"])


SUFFICIENCY, MINIMALITY, POLICY, CAUSAL_USE = ("sufficiency",), ("minimality",), ("policy",), \
    ("causal use",)   # the properties, as ladders.LADDERS names them
NOTHING_TO_GAIN = "the machine's mean policy already agrees at every step: nothing is left to gain"
NO_GROUPS = "no step has two groups of episodes with the same belief"
TESTS = (
    Test("decode", "decoding: held-out R² of the posterior means (linear probe)",
         lambda m: m["decode"], SUFFICIENCY, undefined="a posterior mean does not vary along these episodes"),
    Test("a2b_state", "agent → Bayes state dissimilarity (MLP map)",
         lambda m: m["agent_to_bayes"]["state_dissimilarity"], SUFFICIENCY,
         paired_label="agent → Bayes state dissimilarity (MLP)", trained_alone=True),
    Test("a2b_output", "agent → Bayes relative output KL (MLP map)",
         lambda m: m["agent_to_bayes"]["output_kl_relative"], SUFFICIENCY + POLICY,
         paired_label="agent → Bayes relative output KL (MLP)", trained_alone=True,
         undefined="the Bayes policy at the mapped states is the machine's mean policy at every "
                   "step (no-information KL 0)"),
    Test("a2b_agreement", "agent → Bayes action agreement beyond the mean policy's (MLP map)",
         agreement_beyond_mean_policy("agent_to_bayes"), SUFFICIENCY + POLICY,
         undefined=NOTHING_TO_GAIN),
    Test("b2a_state", "Bayes → agent state dissimilarity (MLP map)",
         lambda m: m["bayes_to_agent"]["state_dissimilarity"], MINIMALITY,
         paired_label="Bayes → agent state dissimilarity (MLP)", trained_alone=True),
    Test("b2a_output", "Bayes → agent relative output KL (MLP map)",
         lambda m: m["bayes_to_agent"]["output_kl_relative"], MINIMALITY,
         undefined="the machine's policy is its mean policy at every step (no-information KL 0)"),
    Test("b2a_agreement", "Bayes → agent action agreement beyond the mean policy's (MLP map)",
         agreement_beyond_mean_policy("bayes_to_agent"), MINIMALITY,
         undefined=NOTHING_TO_GAIN),
    Test("partial_r2", "minimality: partial R² of history beyond the belief",
         lambda m: float(np.mean(list(m["minimality"]["partial_r2"].values()))), MINIMALITY,
         paired_label="partial R² beyond the belief (mean over features)",
         undefined="the belief alone predicts a history feature without error"),
    Test("within_between", "within/between spread (per-unit standardised)",
         lambda m: m["minimality"]["within_between_ratio"], MINIMALITY,
         paired_label="within/between spread ratio (per-unit standardised)",
         undefined=NO_GROUPS),
    Test("within_between_whitened", "within/between spread (whitened state)",
         lambda m: m["minimality"]["within_between_whitened"], MINIMALITY,
         paired_label="within/between spread ratio (whitened state)", undefined=NO_GROUPS),
    Test("interchange", "interchange: mass on the donor's Bayes actions after swapping the "
                        "linearly aligned subspace",
         lambda m: m["interchange"]["interchange"], CAUSAL_USE,
         paired_label="interchange (linearly aligned subspace swapped)",
         undefined="no step where the two beliefs' Bayes-optimal actions differ"),
    Test("splice", "splice contrast at lags ≥ 3 (spliced − recipient agreement)",
         lambda m: machines.splice_contrast(m["splice"]), CAUSAL_USE, own=True),
    Test("value_loss", "value loss per step relative to the uniform policy's at the same beliefs",
         lambda m: m["value_loss"]["value_loss_relative"], POLICY, own=True,
         undefined="every action is optimal at every belief reached: the uniform policy loses "
                   "nothing"),
)


# ------------------------------------------------------------------------------------------
# Scripted machines: a state, its update on one event, a policy
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scripted:
    """A machine given by its equations on the events of cfg's task family: state S (B, D),
    S_0 = prior(B), S_{t+1} = step(S_t, a_t, r_t, o_t) (any S, so mapped states too),
    π_t = policy(S_t, t) (B, A)."""

    name: str
    cfg: envs.EnvConfig
    prior: Callable
    step: Callable
    policy: Callable


def exact_bayes(cfg, ref):
    """The exact Bayes filter on the family's coordinates x, acting with the tie-split
    Bayes-optimal policy (two-step: belief-greedy) at x."""
    fam = machines.family(cfg)
    return Scripted(name="Bayes", cfg=cfg, prior=lambda B: fam.prior(cfg, B),
                    step=lambda x, a, r, obs: fam.step(cfg, x, a, r, obs),
                    policy=lambda x, t: belief.tie_split_policy(fam.q(cfg, ref, x, t)))


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

    return Scripted(name=f"value learner α = {alpha:g}", cfg=cfg,
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


def recent_events_targets(cfg, ref, tr, window=machines.CONTROL_WINDOW):
    """What the recent-events LSTM learns on its own rollout tr: π_w (T, B, A),
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
# The measures a machine acts by
# ------------------------------------------------------------------------------------------
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
    """A measured value as it is kept: the number, or {UNDEFINED: why} (test.undefined)
    where the measure has no value on these episodes (NaN)."""
    return float(value) if np.isfinite(value) else {UNDEFINED: test.undefined}


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


def agent_values(summary):
    """The tests read off one probe.probe_agent summary of the trained agent (the
    same functions, on the agent's own episodes): {test: value}, NaN where undefined (a NaN
    that results.json holds as null, so the summary read back gives the same values)."""
    try:
        measures = probe_measures(summary)
    except KeyError as e:
        raise ValueError(f"the probe summary has no {e.args[0]!r}, which the tests "
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
    probe.probe_agent summary: its MLP maps, its minimality, its interchange, the held-out R²
    of the posterior means from its state, and for the trained agent its splicing and value
    loss."""
    features = summary["features"]
    r2 = summary["decode"] if net == "trained" else summary["controls_by_feature"][net]
    mini = summary["minimality"]
    measures = {
        "decode": float(np.mean([r2[features[j]]
                                 for j in belief.posterior_mean_columns(features)])),
        **{d: {k: v[net]["mlp"] for k, v in summary["simulation"][d].items()}
           for d in machines.DIRECTION_LABEL},
        "minimality": {k: mini[k][net] for k in ("partial_r2", "within_between_ratio",
                                                 "within_between_whitened")},
        "interchange": summary["interchange"][net]}
    if net == "trained":   # splicing and value loss run the trained agent alone
        measures.update(splice=summary["splice"], value_loss=summary["value_loss"])
    return measures
