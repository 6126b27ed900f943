"""Ladders: each property of a belief state graded by machines whose answer is known.

"Is the agent's state a belief state?" is four questions, each answered in the units of a
ladder of machines that varies one property and holds every other at the exact filter's
(x: the family's exact belief coordinates, Q*: the Bayes-optimal action values at x):

    sufficiency  κ   forgetful filters x' = κ · step(x), acting by Q*(x): the evidence of an
                     event k steps back counts κᵏ; κ = 1 is the exact filter
    minimality   k   the exact filter plus its last k events, [x, e_{t−1}, …, e_{t−k}]
                     (e = [one-hot a, r, o]), acting by Q*(x); k = 0 is the exact filter
    policy       τ   the exact filter acting by softmax(Q*(x) / (τ R)), R the family's reward
                     scale; τ = 0 is the tie-split Bayes-optimal policy
    causal use   λ   the exact filter acting by λ π*(x) + (1 − λ) π*(x₀, t): weight λ on the
                     belief it carries, the rest on the Bayes policy of the prior (a rule that
                     knows nothing of the episode); λ = 1 is the exact filter

Each ladder is built in several bases, so that a measure that reads the basis rather than
the belief shows it: identity; linear z = (x / σ) M, M a random rotation with random axis
scales; tanh z = tanh((x / σ) M + c) into 2D units (σ the state's sd along the episodes); and
the agent's own, an LSTM of the agent's architecture distilled from the grade's machine (its
policy and its state, distill.distill_update), where the budget allows (LSTM_GRADES).

Every measure of panel.TESTS is read off every grade in every basis, along the same episodes
and folds as the agent's (the agent's own probe episodes). A measure *qualifies* for a
property between two adjacent grades when its mean moves in the same direction in every
basis and the spread of the fixed bases at both grades is smaller than the move of the mean
curve between them (qualify). A machine's value is then read back through the curve (place;
a network on the LSTM basis's curve where there is one): a position in the ladder's units
with an interval that counts its seeds (one-sided t limits) and the ladder's noise (t limits
of the curve over seeds × bases), within the test's widest qualified range, censored at an
end it lies wholly past. A verdict per property compares the interval with a tolerance in
the ladder's units written here before any number (TOLERANCE); the test that places
machines on a ladder is chosen from the ladder alone (chosen_test).
"""
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Callable

import numpy as np

import belief
import envs
import machines
import metarl
import panel
import ridge
import runs
import stats
from boundary import check_int

LADDER_STREAM = 2 ** 33 + 3   # the bases' random maps, beside panel.PANEL_STREAM
BASES = ("identity", "linear", "tanh")   # fixed bases; "LSTM" (distilled) where LSTM_GRADES say
LSTM = "LSTM"
LINEAR_LOG_SCALE = 0.5        # the linear basis's axis scales exp(N(0, 0.5²)): unequal, but the
                              # map stays well conditioned (its inverse is applied every step)
TANH_WIDTH = 2                # the tanh basis has 2 units per state coordinate: injective,
                              # nonlinear, and its maps cost no more than the state's
EMBED_OFFSET = 0.5            # the tanh basis's offsets c ~ U(−0.5, 0.5): units not all odd in x
LSTM_UPDATES = 800            # distillation updates of a grade's LSTM: the recent-events LSTM's
                              # budget (panel.RECENT_UPDATES), its loss flat from ~800 (measured)


@dataclass(frozen=True)
class Ladder:
    """One property's ladder: grades (ascending) of a parameter in `unit`; build(cfg, ref,
    grade) → panel.Scripted; `exact` the grade that is the exact filter; `better` +1 if a
    higher grade has more of the property, −1 if less; same_states: every grade has the
    exact filter's states (only its policy differs), so state-only measures are shared."""

    name: str
    unit: str
    grades: tuple
    exact: float
    better: int
    build: Callable
    same_states: bool
    distilled_has_it: bool = True   # the Bayes-distilled LSTM has the property by construction
                                    # (trained to carry the belief and act Bayes-optimally by
                                    # it; nothing keeps it from holding its inputs too)


def forgetful(cfg, ref, kappa):
    """x' = κ · step(x) from the prior x₀ = 0, acting by the tie-split Bayes-optimal policy at
    x. At κ = 1 this is panel.exact_bayes, bit for bit (1.0 · y = y)."""
    fam = machines.family(cfg)
    return panel.Scripted(name=f"forgetful κ = {kappa:g}", cfg=cfg,
                          prior=lambda B: fam.prior(cfg, B),
                          step=lambda x, a, r, obs: kappa * fam.step(cfg, x, a, r, obs),
                          policy=lambda x, t: belief.tie_split_policy(fam.q(cfg, ref, x, t)))


def event_vector(cfg, a, r, obs):
    """e = [one-hot a (A), r, o (n_obs)] of one step, (B, A + 1 + n_obs)."""
    A = envs.n_actions(cfg)
    return np.concatenate([np.eye(A)[a], np.asarray(r, np.float64)[:, None],
                           np.asarray(obs, np.float64).reshape(len(a), -1)], axis=1)


def with_events(cfg, ref, k):
    """The exact filter plus its last k events: S = [x, e_{t−1}, …, e_{t−k}] (zeros before the
    episode), S' = [step(x), e_t, e_{t−1}, …, e_{t−k+1}]; acting by the tie-split
    Bayes-optimal policy at x. k = 0 is panel.exact_bayes's state and policy."""
    fam = machines.family(cfg)
    D = len(fam.coordinate_names(cfg))
    width = envs.n_actions(cfg) + 1 + envs.n_observations(cfg)

    def step(S, a, r, obs):
        x = fam.step(cfg, S[:, :D], a, r, obs)
        recent = np.concatenate([event_vector(cfg, a, r, obs), S[:, D:]], axis=1)
        return np.concatenate([x, recent[:, :k * width]], axis=1)

    return panel.Scripted(name=f"exact + {k} events", cfg=cfg,
                          prior=lambda B: np.concatenate([fam.prior(cfg, B),
                                                          np.zeros((B, k * width))], axis=1),
                          step=step,
                          policy=lambda S, t: belief.tie_split_policy(fam.q(cfg, ref, S[:, :D], t)))


def softmax_policy(q, tau):
    """π(a) ∝ exp(Q(a) / τ) (B, A), max-shifted; τ = 0: the tie-split policy (its limit)."""
    if tau == 0:
        return belief.tie_split_policy(q)
    z = np.exp((q - q.max(1, keepdims=True)) / tau)
    return z / z.sum(1, keepdims=True)


def softmax_bayes(cfg, ref, tau):
    """The exact filter acting by softmax(Q*(x) / (τ R)), R = the family's reward scale."""
    fam = machines.family(cfg)
    scale = tau * envs.family(cfg.name).reward_scale(cfg)
    exact = panel.exact_bayes(cfg, ref)
    return replace(exact, name=f"softmax τ = {tau:g}",
                   policy=lambda x, t: softmax_policy(fam.q(cfg, ref, x, t), scale))


def belief_weighted(cfg, ref, lam):
    """The exact filter acting by λ π*(x) + (1 − λ) π*(x₀, t): the belief it carries moves only
    the λ part of its action (π* tie-split Bayes-optimal, x₀ the prior state)."""
    fam = machines.family(cfg)
    exact = panel.exact_bayes(cfg, ref)

    def policy(x, t):
        blind = belief.tie_split_policy(fam.q(cfg, ref, fam.prior(cfg, len(x)), t))
        return lam * exact.policy(x, t) + (1 - lam) * blind

    return replace(exact, name=f"belief weight λ = {lam:g}", policy=policy)


LADDERS = (
    Ladder("sufficiency", "κ", (0.8, 0.9, 0.97, 1.0), 1.0, +1, forgetful, False),
    Ladder("minimality", "k", (0, 1, 2, 4), 0, -1, with_events, False, False),
    Ladder("policy", "τ", (0.0, 0.01, 0.03, 0.1, 0.3), 0.0, -1, softmax_bayes, True),
    Ladder("causal use", "λ", (0.0, 0.25, 0.5, 0.75, 1.0), 1.0, +1, belief_weighted, True),
)
PROPERTY = {ladder.name: ladder for ladder in LADDERS}
# The verdicts' tolerances, in each ladder's units, fixed before any number: (grade, words)
TOLERANCE = {
    "sufficiency": (0.97, "held if the lower limit is at least κ = 0.97 (evidence 30 steps "
                          "back kept at 0.4 of its weight), refuted if the upper limit is below"),
    "minimality": (1, "held (minimal) if the upper limit is at most k = 1 event, refuted (holds "
                      "history) if the lower limit is above"),
    "policy": (0.03, "held if the upper limit is at most τ = 0.03 reward scales, refuted if "
                     "the lower limit is above"),
    "causal use": (0.75, "held if the lower limit is at least λ = 0.75, refuted if the upper "
                         "limit is below"),
}
LSTM_GRADES = {"sufficiency": (0.8, 0.9, 0.97, 1.0)}   # the grades built in the agent's basis,
# where the main job's budget allows (the LSTM's own cost to a measure shows on sufficiency)


# ------------------------------------------------------------------------------------------
# Bases: the same machine in another coordinate system
# ------------------------------------------------------------------------------------------
def in_basis(machine, basis, scale, width, rng):
    """`machine` (panel.Scripted) with state z = g(S): prior g(S₀), step g(step(g⁻¹(z))),
    policy at g⁻¹(z). identity: the machine itself. linear: g(S) = (S / σ) M, M = Q diag(e^u)
    (Q a random rotation, u ~ N(0, LINEAR_LOG_SCALE²)). tanh: g(S) = tanh((S / σ) M + c), M
    (D, width) ~ N(0, 1/D), c ~ U(−EMBED_OFFSET, EMBED_OFFSET), g⁻¹ by the pseudo-inverse
    with z clipped into (−1, 1) (injective: width ≥ D). scale σ (D,): the state's sd; width:
    the tanh basis's units."""
    if basis == "identity":
        return machine
    D = len(scale)
    if basis == "linear":
        Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
        M = Q * np.exp(LINEAR_LOG_SCALE * rng.standard_normal(D))
        M_inv = np.linalg.inv(M)

        def g(S):
            return (S / scale) @ M

        def g_inv(z):
            return (z @ M_inv) * scale
    elif basis == "tanh":
        if width < D:
            raise ValueError(f"the tanh basis needs width ≥ the state's {D} coordinates")
        M = rng.standard_normal((D, width)) / np.sqrt(D)
        c = rng.uniform(-EMBED_OFFSET, EMBED_OFFSET, width)
        M_pinv = np.linalg.pinv(M)

        def g(S):
            return np.tanh((S / scale) @ M + c)

        def g_inv(z):
            return ((np.arctanh(np.clip(z, -1 + 1e-12, 1 - 1e-12)) - c) @ M_pinv) * scale
    else:
        raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
    return replace(machine, name=f"{machine.name} ({basis})",
                   prior=lambda B: g(machine.prior(B)),
                   step=lambda z, a, r, obs: g(machine.step(g_inv(z), a, r, obs)),
                   policy=lambda z, t: machine.policy(g_inv(z), t))


def evidence_kept(kappa, horizon):
    """The fraction of the evidence a filter of forgetting κ keeps, averaged over the steps of
    an episode: (1/T) Σ_{t=1..T} (1/t) Σ_{k<t} κᵏ (1 at κ = 1: every event at full weight)."""
    t = np.arange(1, horizon + 1)
    kept = t if kappa == 1 else (1 - kappa ** t) / (1 - kappa)
    return float(np.mean(kept / t))


def basis_rng(seed, basis):
    """The generator of one basis's maps on one ladder seed: every grade of a ladder in that
    basis gets the same map (where its state has the same width), so grades differ by the
    machine, not by the map."""
    return metarl.stream(seed, LADDER_STREAM, BASES.index(basis))


# ------------------------------------------------------------------------------------------
# The measures of one machine along the ladder's episodes
# ------------------------------------------------------------------------------------------
@dataclass
class Episodes:
    """What every machine of one ladder seed is measured along: the recorded episodes tr (x,
    a, r, obs), the exact Bayes machine on them, the posterior means, the history features,
    the folds, the seed and the splice episodes."""

    cfg: envs.EnvConfig
    ref: object
    tr: SimpleNamespace
    bayes: machines.Machine
    posterior_means: np.ndarray
    history: np.ndarray
    names: list
    belief_sse: np.ndarray   # minimality's belief-only SSE, the same for every machine
    fold: np.ndarray
    k: int
    seed: int
    splice_episodes: int
    map_steps: int           # Adam steps of each MLP map fit (machines.MLP_STEPS by default)


def episodes_along(cfg, tr, seed, k, splice_episodes, ref=None, map_steps=machines.MLP_STEPS,
                   episodes=None):
    """Episodes of one ladder seed along recorded episodes tr (x, a, r, obs of a
    metarl.rollout; its first `episodes` if given, as machines.analyse reads a probe's),
    checked by machines.check_sizes; map_steps: the MLP maps' Adam steps, as the agent's
    probe was measured with."""
    tr = SimpleNamespace(**{key: getattr(tr, key)[:, :episodes] for key in ("x", "a", "r", "obs")})
    machines.check_sizes(cfg, tr.a.shape[1], k)
    check_int("splice_episodes", splice_episodes, 2)
    ref = machines.reference(cfg) if ref is None else ref
    F, names = belief.belief_features(cfg, tr.a, tr.r, tr.obs)
    history, history_names = machines.history_features(cfg, tr.a, tr.r, tr.obs)
    bayes = machines.bayes_machine(cfg, tr, ref)
    fold = machines.episode_folds(tr.a.shape[1], k, np.random.default_rng(seed))
    return Episodes(cfg=cfg, ref=ref, tr=tr, bayes=bayes,
                    posterior_means=F[..., belief.posterior_mean_columns(names)],
                    history=history, names=history_names,
                    belief_sse=machines.belief_only_sse(bayes, history, fold, seed),
                    fold=fold, k=k, seed=seed, splice_episodes=splice_episodes,
                    map_steps=check_int("map_steps", map_steps, 1))


def state_measures(machine, ep):
    """The measures that read only a Machine's states: decoding, minimality and the two MLP
    maps' fitted states (shared by every machine with these states)."""
    X, groups = ridge.flatten_episodes(machine.states)
    Y = ridge.flatten_episodes(ep.posterior_means)[0]
    decoded = ridge.decode(X, Y, groups, rng=np.random.default_rng(ep.seed), k=ep.k,
                           folds=ep.fold[groups])
    return {"decode": float(decoded.r2.mean()),
            "minimality": machines.minimality(machine, ep.bayes, ep.history, ep.names, ep.fold,
                                              ep.seed, ep.belief_sse),
            "a2b_mapped": machines.cross_fitted(machine.inputs(), ep.bayes.states, ep.fold, "mlp",
                                                np.random.default_rng(ep.seed),
                                                steps=ep.map_steps),
            "b2a_mapped": machines.cross_fitted(ep.bayes.inputs(), machine.states, ep.fold, "mlp",
                                                np.random.default_rng(ep.seed),
                                                steps=ep.map_steps)}


def driven_values(machine, ep, shared=None):
    """Every driven test of panel.TESTS on one Machine along ep, as recorded; shared: its
    state_measures if already computed (a machine with the same states)."""
    shared = state_measures(machine, ep) if shared is None else shared
    rng = np.random.default_rng(ep.seed)
    measures = {"decode": shared["decode"], "minimality": shared["minimality"],
                "agent_to_bayes": machines.agent_to_bayes(machine, ep.bayes, ep.fold, "mlp", rng,
                                                          mapped=shared["a2b_mapped"]),
                "bayes_to_agent": machines.bayes_to_agent(ep.bayes, machine, ep.fold, "mlp", rng,
                                                          mapped=shared["b2a_mapped"]),
                "interchange": machines.interchange(machine, ep.bayes, ep.fold,
                                                    np.random.default_rng(ep.seed))}
    return {t.name: panel.recorded(t, t.value(measures)) for t in panel.TESTS if not t.own}


def scripted_values(machine, ep, shared=None):
    """Every test of panel.TESTS of a scripted machine: driven along ep, and its own (splice,
    value loss) on its own episodes of the splice stream. Returns (values, state_measures)."""
    driven = panel.scripted_machine(machine, ep.tr)
    shared = state_measures(driven, ep) if shared is None else shared
    values = driven_values(driven, ep, shared)
    values.update(panel.own_values(ep.cfg, ep.ref, *panel.scripted_splices(
        ep.cfg, machine, ep.splice_episodes, ep.seed)))
    return values, shared


def network_values(params, ep, name="network"):
    """Every test of panel.TESTS of an LSTM (parameters of the agent's architecture): driven
    along ep (machines.agent_machine), and its own on its own episodes."""
    values = driven_values(machines.agent_machine(params, ep.tr, name), ep)
    values.update(panel.own_values(ep.cfg, ep.ref, *machines.splice_runs(
        params, ep.cfg, ep.splice_episodes, ep.seed)))
    return values


def state_scale(machine, tr):
    """σ (D,): the sd of each state coordinate of `machine` along tr (at least 1e-3, so a
    constant coordinate is not divided by 0)."""
    S = panel.scripted_machine(machine, tr).states
    return np.maximum(S.reshape(-1, S.shape[-1]).std(0), 1e-3)


def ladder_part(ep, basis):
    """Every ladder in one fixed basis along ep: {property: [values per grade]}, values
    {test: value} (a number or a record of why there is none, panel.recorded). The ladders whose
    machines share the exact filter's states reuse its state-only measures
    (state_measures)."""
    out, exact_shared = {}, None
    for ladder in LADDERS:
        rows = []
        for grade in ladder.grades:
            base = ladder.build(ep.cfg, ep.ref, grade)
            scale = None if basis == "identity" else state_scale(base, ep.tr)
            width = None if scale is None else TANH_WIDTH * len(scale)
            machine = in_basis(base, basis, scale, width, basis_rng(ep.seed, basis))
            values, computed = scripted_values(machine, ep,
                                               exact_shared if ladder.same_states else None)
            if ladder.name == "sufficiency" and grade == ladder.exact:
                exact_shared = computed   # the exact filter, in this basis
            rows.append(values)
        out[ladder.name] = rows
    return out


def lstm_part(ep, lstms):
    """The ladders in the agent's basis along ep: {property: [values per grade]} for the
    properties of lstms {property: {grade: params}} (grade_lstm's), a {NOT_MEASURED} record
    at a grade with no network."""
    return {prop: [network_values(grades[g], ep) if g in grades else
                   {t.name: {panel.NOT_MEASURED: "no LSTM distilled at this grade"}
                    for t in panel.TESTS} for g in PROPERTY[prop].grades]
            for prop, grades in lstms.items()}


def ladder_seed(ep, lstms=None, log=None):
    """One seed of every ladder on ep's family along its episodes: {"ladders": {property:
    {basis: [values per grade]}}, "seed", "episodes", "splice_episodes"} (ladder_part per
    basis of BASES, and lstm_part in the basis LSTM where lstms are given)."""
    log = log or (lambda line: None)
    out = {ladder.name: {} for ladder in LADDERS}
    for basis in BASES:
        for prop, rows in ladder_part(ep, basis).items():
            out[prop][basis] = rows
        log(f"{ep.cfg.name} seed {ep.seed}: the ladders in the {basis} basis")
    for prop, rows in lstm_part(ep, lstms or {}).items():
        out[prop][LSTM] = rows
    return {"ladders": out, "seed": ep.seed, "episodes": int(ep.tr.a.shape[1]),
            "splice_episodes": ep.splice_episodes}


def grade_targets(machine, cfg):
    """distill targets of a ladder machine on a student rollout tr: its policy π (T, B, A) and
    its state (T, B, D) along tr's events, in tr's dtype."""
    def targets(tr):
        driven = panel.scripted_machine(machine, tr)
        return (driven.policies().astype(tr.pi.dtype), driven.states.astype(tr.pi.dtype))
    return targets


def grade_lstm(agent_hp, prop, grade, log=None):
    """An LSTM of the agent's architecture distilled from one ladder machine (the agent's
    distillation recipe, panel.distill_recipe_for, with LSTM_UPDATES updates): the grade in
    the agent's own basis."""
    hp = panel.distill_recipe_for(agent_hp)
    hp = replace(hp, updates=min(LSTM_UPDATES, hp.updates),
                 log_every=max(1, min(LSTM_UPDATES, hp.updates) // 2))
    cfg = metarl.env_config(hp)
    machine = PROPERTY[prop].build(cfg, machines.reference(cfg), grade)
    return runs.train(hp, None, log=log or (lambda line: None),
                      targets=grade_targets(machine, cfg))


# ------------------------------------------------------------------------------------------
# Reading a ladder: which measures grade its property, and where a machine sits on it
# ------------------------------------------------------------------------------------------
def values_of(seeds, prop, test):
    """{basis: array (grades, seeds)} of one test on one ladder over ladder seeds
    [ladder_seed(...)], NaN where a value is a record, and {basis: (grades,) bool}: where
    some seed's value is {UNDEFINED} (the measure has no value there; a {NOT_MEASURED} grade
    is simply not part of that basis)."""
    values, undefined = {}, {}
    for basis in seeds[0]["ladders"][prop]:
        kept = [[s["ladders"][prop][basis][g][test] for s in seeds]
                for g in range(len(PROPERTY[prop].grades))]
        values[basis] = np.array([[number(v) for v in row] for row in kept])
        undefined[basis] = np.array([any(panel.record_of(v) == panel.UNDEFINED for v in row)
                                     for row in kept])
    return values, undefined


def number(value):
    """A recorded value as a float, NaN for a record of why there is none."""
    return float("nan") if panel.record_of(value) else float(value)


def qualify(by_basis, undefined=None):
    """Whether a measure grades a ladder, per adjacent pair of grades, from its values
    {basis: (grades, seeds)} (NaN where not measured) and {basis: (grades,) bool} where it is
    undefined. The pair qualifies when it is defined at both grades in every basis, every
    basis that measured both grades (the LSTM basis too) moves its mean in the curve's
    direction, and the spread of the fixed bases' means (BASES: the same machine in other
    coordinates) at both grades is smaller than the curve's move between them. The curve is
    the fixed bases' pooled mean; an LSTM basis, whose machines only approximate the grade's
    and pay the cost of being an LSTM, must grade the property too, but its level may
    differ. Returns {"curve", "band" (one-sided t limits of the pooled mean), "spread",
    "by_basis" {basis: {"curve", "band"}} (over seeds), "monotone" per basis, "pairs" [bool
    per pair], "reason" per pair (None where it qualifies)}."""
    grades = len(next(iter(by_basis.values())))
    undefined = undefined or {b: np.zeros(grades, bool) for b in by_basis}
    measured = {b: np.isfinite(v).all(axis=1) for b, v in by_basis.items()}
    means = {b: np.where(measured[b], np.nanmean(np.where(measured[b][:, None], v, 0.0), axis=1),
                         np.nan) for b, v in by_basis.items()}
    fixed = [b for b in by_basis if b in BASES]
    pooled = [np.concatenate([by_basis[b][g] for b in fixed if measured[b][g]]
                             or [np.empty(0)]) for g in range(grades)]
    curve = np.array([p.mean() if len(p) else np.nan for p in pooled])
    spread = np.array([np.ptp([means[b][g] for b in fixed if measured[b][g]])
                       if any(measured[b][g] for b in fixed) else np.nan for g in range(grades)])
    pairs, reasons = [], []
    for g in range(grades - 1):
        move = curve[g + 1] - curve[g]
        gone = [b for b in by_basis if undefined[b][g] or undefined[b][g + 1]]
        if gone:
            reason = f"undefined ({gone[0]})"
        elif not np.isfinite(move):
            reason = "not measured"
        elif move == 0:
            reason = "flat: blind to the grade"
        else:
            reason = next((f"not monotone ({b})" for b in means
                           if measured[b][g] and measured[b][g + 1]
                           and np.sign(means[b][g + 1] - means[b][g]) != np.sign(move)), None)
            if reason is None and not max(spread[g], spread[g + 1]) < abs(move):
                reason = "basis spread ≥ step"
        pairs.append(reason is None)
        reasons.append(reason)
    monotone = {b: bool(np.all(np.diff(means[b][measured[b]]) > 0)
                        or np.all(np.diff(means[b][measured[b]]) < 0)) for b in means}
    return {"curve": curve, "spread": spread, "monotone": monotone, "pairs": pairs,
            "reason": reasons, "band": [curve_band(p) for p in pooled],
            "by_basis": {b: {"curve": means[b],
                             "band": [curve_band(v[g] if measured[b][g] else np.empty(0))
                                      for g in range(grades)]}
                         for b, v in by_basis.items()}}


def curve_band(pooled, level=stats.LEVEL):
    """One-sided t limits (n − 1 df) of the mean of one grade's values over seeds × bases;
    (mean, mean) with fewer than two values."""
    if len(pooled) < 2:
        m = float(pooled.mean()) if len(pooled) else float("nan")
        return (m, m)
    return (stats.lower_confidence_limit(pooled, level), stats.upper_confidence_limit(pooled, level))


def segments(pairs):
    """The maximal runs of qualified adjacent pairs, as (first grade, last grade) indices."""
    out, start = [], None
    for g, ok in enumerate(list(pairs) + [False]):
        if ok and start is None:
            start = g
        if not ok and start is not None:
            out.append((start, g))
            start = None
    return out


def place(grades, q, values, basis=None, level=stats.LEVEL, resolution=2001):
    """Where a machine with per-seed values of one measure sits on a ladder (grades, q =
    qualify(...) of a test that qualifies somewhere): the grade at which the curve comes
    nearest its mean (piecewise linear in the grade), and the interval of grades at which the
    curve's band (one-sided t limits) meets the machine's one-sided t limits over its seeds,
    both within the test's widest qualified range; an interval that reaches an end of that
    range is open there ("≤"/"≥"). A machine whose whole interval lies past an end of that
    range is censored there ("beyond": position, low and high that end, open on its side).
    The curve: the fixed bases' pooled one, or basis's (q["by_basis"]) if given. Returns
    {"position", "low", "high", "open_low", "open_high", "beyond", "segment", "mean",
    "limits"} or {"outside": why}."""
    v = np.asarray(values, np.float64)
    if not np.isfinite(v).all() or len(v) == 0:
        return {"outside": "its value is undefined on some seed"}
    mean = float(v.mean())
    lo, hi = ((stats.lower_confidence_limit(v, level), stats.upper_confidence_limit(v, level))
              if len(v) > 1 else (mean, mean))
    x, curve, band_lo, band_hi, segment = curve_on_range(grades, q, basis, resolution)
    inside = (band_hi >= lo) & (band_lo <= hi)
    rising = curve[-1] > curve[0]
    if not inside.any():   # the whole interval lies past one end: censored there
        below = hi < band_lo if rising else lo > band_hi   # past the low grades' side
        end = 0 if below[0] else -1 if (lo > band_hi if rising else hi < band_lo)[-1] else None
        if end is None:
            return {"outside": "outside the range the test grades"}
        return {"position": float(x[end]), "low": float(x[end]), "high": float(x[end]),
                "open_low": end == 0, "open_high": end == -1, "beyond": True,
                "segment": segment, "mean": mean, "limits": [lo, hi]}
    where = x[inside]
    return {"position": float(x[np.argmin(np.abs(curve - mean))]), "low": float(where.min()),
            "high": float(where.max()), "open_low": bool(inside[0]),
            "open_high": bool(inside[-1]), "beyond": False, "segment": segment,
            "mean": mean, "limits": [lo, hi]}


def curve_on_range(grades, q, basis=None, resolution=2001):
    """The curve of a qualified test (q: place's) and its band, piecewise linear in the grade
    on `resolution` points of its widest qualified range: (x, curve, band low, band high,
    [first grade, last grade]); basis's curve if given, else the fixed bases' pooled one."""
    if basis is not None:
        q = {**q, **q["by_basis"][basis]}
    g = np.asarray(grades, np.float64)
    first, last = widest(segments(q["pairs"]))
    x = np.linspace(g[first], g[last], resolution)
    seg = slice(first, last + 1)
    return (x, np.interp(x, g[seg], q["curve"][seg]),
            np.interp(x, g[seg], [b[0] for b in q["band"][seg]]),
            np.interp(x, g[seg], [b[1] for b in q["band"][seg]]), [float(g[first]), float(g[last])])


def widest(runs):
    """The run of qualified pairs spanning the most grades (the first of equals): the range
    in which a test places machines, one monotone piece of its curve."""
    return max(runs, key=lambda run: (run[1] - run[0], -run[0]))


def calibration(seeds):
    """Every ladder and test over ladder seeds [ladder_seed(...)]: {property: {test:
    {"values": {basis: (grades, seeds) as lists}, **qualify(...)}}}, with "qualified" (at
    least one qualified pair) and "range" (the qualified segments as grade pairs)."""
    out = {}
    for ladder in LADDERS:
        out[ladder.name] = {}
        for test in panel.TESTS:
            by_basis, undefined = values_of(seeds, ladder.name, test.name)
            q = qualify(by_basis, undefined)
            q["values"] = {b: v.tolist() for b, v in by_basis.items()}
            q["qualified"] = any(q["pairs"])
            q["range"] = [[ladder.grades[a], ladder.grades[b]] for a, b in segments(q["pairs"])]
            out[ladder.name][test.name] = q
    return out


def chosen_test(cal, prop):
    """The test that places machines on a property's ladder: of the tests meant to measure
    the property (panel.Test.measures) that qualify on its ladder, the one qualified over the
    most adjacent pairs, ties to the first in panel.TESTS; chosen from the ladder alone,
    never from the machine placed. None if no such test qualifies."""
    ranked = [(sum(cal[prop][t.name]["pairs"]), -i, t.name) for i, t in enumerate(panel.TESTS)
              if prop in t.measures and cal[prop][t.name]["qualified"]]
    return max(ranked)[2] if ranked else None


def profile(cal, values, basis=None):
    """A machine's position on every ladder: values [{test: value} per seed] of the machine
    (panel.TESTS, NaN or a record where undefined). Per property: every qualified test's
    placement, the chosen test (chosen_test), the curve it was read on ("basis": `basis`
    where that ladder was built in it, else None: the fixed bases' pooled curve) and the
    verdict against TOLERANCE. An LSTM (the agent, a reference network) is read with basis
    LSTM: on the ladder of its own architecture where there is one."""
    out = {}
    for ladder in LADDERS:
        own = own_basis(cal, ladder, basis)
        by_test = {test.name: place(ladder.grades, curves(cal[ladder.name][test.name]),
                                    [number_or_nan(v[test.name]) for v in values], own)
                   for test in panel.TESTS if cal[ladder.name][test.name]["qualified"]}
        chosen = chosen_test(cal, ladder.name)
        placed = by_test.get(chosen) if chosen else None
        out[ladder.name] = {"tests": by_test, "chosen": chosen, "basis": own,
                            "verdict": verdict(ladder, placed)}
    return out


def own_basis(cal, ladder, basis):
    """basis if the ladder was built in it (a network's own, LSTM), else None: the fixed
    bases' pooled curve."""
    return basis if basis in cal[ladder.name][panel.TESTS[0].name]["values"] else None


def curves(q):
    """A test's calibration (calibration(...)[property][test], as results.json holds it) with
    its curves and bands as place reads them."""
    return {**q, "curve": np.asarray(q["curve"]), "band": [tuple(b) for b in q["band"]],
            "by_basis": {b: {"curve": np.asarray(c["curve"]), "band": [tuple(x) for x in c["band"]]}
                         for b, c in q["by_basis"].items()}}


def seed_positions(cal, ladder, values, basis=None):
    """Each seed's own position on `ladder` by its chosen test: the grade at which the curve
    profile reads (place's) comes nearest that seed's value, within the test's widest
    qualified range (so a value past an end sits at that end: censored there). The per-seed
    sample that compares two machines (a Welch test over seeds). None where no test
    qualifies; NaN for a seed whose value is undefined."""
    test = chosen_test(cal, ladder.name)
    if test is None:
        return None
    x, curve, *_ = curve_on_range(ladder.grades, curves(cal[ladder.name][test]),
                                  own_basis(cal, ladder, basis))
    out = []
    for v in values:
        value = number_or_nan(v[test])
        out.append(float(x[np.argmin(np.abs(curve - value))]) if np.isfinite(value)
                   else float("nan"))
    return out


def number_or_nan(value):
    """A value as a float: a number, NaN or None (NaN), or a panel record (NaN)."""
    if value is None:
        return float("nan")
    if isinstance(value, dict):
        return number(value)
    return float(value)


def verdict(ladder, placed):
    """held / refuted / inconclusive against TOLERANCE[property] in the ladder's units, or
    "cannot decide" where no qualified test places the machine. A limit open at a segment's
    end counts as reaching the ladder's end there."""
    if placed is None or "outside" in placed:
        return "cannot decide"
    tol = TOLERANCE[ladder.name][0]
    g = ladder.grades
    low = g[0] if placed["open_low"] and placed["segment"][0] == g[0] else placed["low"]
    high = g[-1] if placed["open_high"] and placed["segment"][1] == g[-1] else placed["high"]
    if placed["open_low"] and placed["segment"][0] != g[0]:
        low = g[0]       # the interval may continue below the qualified range
    if placed["open_high"] and placed["segment"][1] != g[-1]:
        high = g[-1]
    good_high = ladder.better > 0   # more of the property at higher grades
    if good_high:
        return "held" if low >= tol else "refuted" if high < tol else "inconclusive"
    return "held" if high <= tol else "refuted" if low > tol else "inconclusive"


def belief_state(prof):
    """The seed paper's claim, "the state is a belief state": sufficiency ∧ causal use. held if
    both hold, refuted if either is refuted, else inconclusive (or cannot decide if neither
    ladder can place the machine)."""
    parts = [prof["sufficiency"]["verdict"], prof["causal use"]["verdict"]]
    if "refuted" in parts:
        return "refuted"
    if parts == ["held", "held"]:
        return "held"
    return "cannot decide" if parts == ["cannot decide"] * 2 else "inconclusive"


# ------------------------------------------------------------------------------------------
# The API: place any machine
# ------------------------------------------------------------------------------------------
def machine_values(machine, hp, seeds, episodes, splice_episodes, k=machines.FOLDS, along=None,
                   map_steps=machines.MLP_STEPS):
    """A machine's values of every test, one dict per seed: `machine` a panel.Scripted of
    hp's family or LSTM parameters of hp's architecture; on seed s it is measured along the
    episodes `along(s)` (x, a, r, obs of a rollout) or, by default, the exact filter's own
    episodes of that seed (its inputs as an LSTM would receive them)."""
    cfg = metarl.env_config(hp)
    ref = machines.reference(cfg)
    out = []
    for seed in seeds:
        tr = along(seed) if along is not None else bayes_episodes(hp, cfg, ref, episodes, seed)
        ep = episodes_along(cfg, tr, seed, k, splice_episodes, ref, map_steps)
        if isinstance(machine, panel.Scripted):
            out.append(scripted_values(machine, ep)[0])
        else:
            out.append(network_values(machine, ep))
    return out


def bayes_episodes(hp, cfg, ref, episodes, seed):
    """The exact filter's own episodes on stream (seed, PANEL_STREAM), with the inputs x an
    LSTM of hp's architecture would read (replayed through the untrained network)."""
    run = panel.scripted_run(cfg, panel.exact_bayes(cfg, ref), episodes,
                             metarl.stream(seed, panel.PANEL_STREAM))
    net = metarl.initial_params(replace(hp, seed=seed), cfg, np.float64)
    tr = metarl.rollout(net, cfg, episodes, metarl.stream(seed, panel.PANEL_STREAM), actions=run.a)
    return SimpleNamespace(x=tr.x, a=run.a, r=run.r, obs=run.obs)


def build_ladders(hp, seeds, episodes, splice_episodes, k=machines.FOLDS, along=None,
                  agent_basis=True, log=None, map_steps=machines.MLP_STEPS):
    """Every ladder of hp's family over `seeds` (ladder_seed), along `along(seed)` or the
    exact filter's own episodes; with the agent's basis (LSTM_GRADES) if agent_basis."""
    cfg = metarl.env_config(hp)
    ref = machines.reference(cfg)
    lstms = ({prop: {g: grade_lstm(hp, prop, g) for g in grades}
              for prop, grades in LSTM_GRADES.items()} if agent_basis else None)
    out = []
    for seed in seeds:
        tr = along(seed) if along is not None else bayes_episodes(hp, cfg, ref, episodes, seed)
        out.append(ladder_seed(episodes_along(cfg, tr, seed, k, splice_episodes, ref, map_steps),
                               lstms, log))
    return out


def place_machine(machine, hp, ladder_seeds, seeds=(0, 1), episodes=None, splice_episodes=None,
                  k=machines.FOLDS, along=None, map_steps=machines.MLP_STEPS):
    """The API: the profile (positions with intervals and verdicts on every ladder) of any
    machine, a panel.Scripted of hp's family or LSTM parameters of hp's architecture. It is
    measured on `seeds`, each along `along(seed)` (or the exact filter's own episodes), with
    the ladder's sizes: ladder_seeds are build_ladders's, or a family's "seeds" in
    results.json's "ladders" (the main job's map_steps is machines.MLP_STEPS). A ladder read
    along other episodes than the machine's is a coarser scale: the measures depend on the
    histories they read. Returns {"values": [per seed], "profile": profile(...)}."""
    first = ladder_seeds[0]
    episodes = episodes or first["episodes"]
    splice_episodes = splice_episodes or first["splice_episodes"]
    values = machine_values(machine, hp, seeds, episodes, splice_episodes, k, along, map_steps)
    return {"values": values, "profile": profile(calibration(ladder_seeds), values)}
