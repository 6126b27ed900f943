"""ladders.py and panel.py: every ladder's known answers (its top grade is the exact filter, bit
for bit; τ → 0 acts as Bayes; the whole aligned subspace swapped gives the donor's actions),
the bases change coordinates and not behaviour, partial R² sees the last event, and the
reading of a ladder (qualification, placement, verdicts) follows its rule."""

import numpy as np
import pytest

import ladders
import machines
import metarl
import panel

ENVS = ("bandit", "dependent-bandit", "tiger", "two-step")


def small(env, T=20):
    hp = metarl.recipe(env, horizon=T, hidden=8)
    cfg = metarl.env_config(hp)
    return hp, cfg, machines.reference(cfg)


def bayes_episodes(env, episodes=30, seed=3, T=20):
    """The exact filter's own episodes of a small family, as an LSTM's inputs would be."""
    hp, cfg, ref = small(env, T)
    return hp, cfg, ref, ladders.bayes_episodes(hp, cfg, ref, episodes, seed)


# ----------------------------------------------------------------------------- known answers
@pytest.mark.parametrize("env", ENVS)
def test_each_ladder_that_keeps_everything_is_the_exact_filter_bit_for_bit(env):
    """κ = 1, k = 0, τ = 0 and λ = 1 give the exact filter's states and policies exactly, along
    recorded episodes and on the machine's own (the same generator, the same actions)."""
    _, cfg, ref, tr = bayes_episodes(env)
    exact = panel.exact_bayes(cfg, ref)
    want = panel.scripted_machine(exact, tr)
    own = panel.scripted_run(cfg, exact, 30, metarl.stream(5, 1))
    for ladder in ladders.LADDERS:
        machine = ladder.build(cfg, ref, ladder.exact)
        got = panel.scripted_machine(machine, tr)
        np.testing.assert_array_equal(got.states, want.states)
        np.testing.assert_array_equal(got.policies(), want.policies())
        run = panel.scripted_run(cfg, machine, 30, metarl.stream(5, 1))
        np.testing.assert_array_equal(run.a, own.a)
        np.testing.assert_array_equal(run.pi, own.pi)


@pytest.mark.parametrize("env", ENVS)
def test_a_vanishing_temperature_acts_as_the_bayes_policy(env):
    """softmax(Q*/τR) → the tie-split Bayes policy as τ → 0: at τ = 1e-9 the same actions from
    the same generator, and probabilities within 1e-6 of it (tied actions split evenly, since
    exp(0) = 1 for each; Tiger's Q* ties up to DP rounding of ~1e-15, which moves
    exp(−gap/τR) by ~1e-7); a larger τ moves off it."""
    _, cfg, ref = small(env)
    exact = panel.scripted_run(cfg, panel.exact_bayes(cfg, ref), 40, metarl.stream(2, 9))
    cold = panel.scripted_run(cfg, ladders.softmax_bayes(cfg, ref, 1e-9), 40, metarl.stream(2, 9))
    np.testing.assert_array_equal(cold.a, exact.a)
    np.testing.assert_allclose(cold.pi, exact.pi, atol=1e-6)
    warm = panel.scripted_run(cfg, ladders.softmax_bayes(cfg, ref, 0.3), 40, metarl.stream(2, 9))
    assert np.abs(warm.pi - exact.pi).max() > 0.01


@pytest.mark.parametrize("env", ENVS)
def test_swapping_the_whole_aligned_subspace_of_the_exact_filter_gives_the_donors_actions(env):
    """For the exact filter the linear map to the belief reads every coordinate, so the
    aligned subspace is the whole state, the swapped state is the donor's and the machine
    acts as the donor: interchange 1 (and so does the random subspace of that dimension,
    the whole space too)."""
    _, cfg, ref, tr = bayes_episodes(env, episodes=40)
    ep = ladders.episodes_along(cfg, tr, 0, 4, 10, ref)
    exact = panel.scripted_machine(panel.exact_bayes(cfg, ref), tr)
    X, groups = machines.ridge.flatten_episodes(exact.states)
    U = machines.aligned_subspace(X, X, groups, np.random.default_rng(0))
    assert U.shape == (X.shape[1], X.shape[1])
    s, donor = exact.states[5, :4], exact.states[5, 4:8]
    np.testing.assert_allclose(s + (donor - s) @ U @ U.T, donor, atol=1e-12)
    result = machines.interchange(exact, ep.bayes, ep.fold, np.random.default_rng(0))
    assert result["informative_steps"] > 0
    assert result["interchange"] == pytest.approx(1.0, abs=1e-9)


def test_a_machine_that_ignores_its_belief_is_not_moved_by_the_swap():
    """λ = 0 acts by the prior's Bayes policy whatever it carries, so the swap moves nothing
    and its mass on the donor's Bayes actions is what that fixed policy puts there; the
    swap moves only the λ part of the policy, so interchange is linear in λ, from that value
    to the exact filter's 1."""
    _, cfg, ref, tr = bayes_episodes("bandit", episodes=40)
    ep = ladders.episodes_along(cfg, tr, 0, 4, 10, ref)
    values = [machines.interchange(panel.scripted_machine(ladders.belief_weighted(cfg, ref, lam),
                                                          tr), ep.bayes, ep.fold,
                                   np.random.default_rng(0))["interchange"]
              for lam in (0.0, 0.5, 1.0)]
    assert values[0] < 0.6 and values[2] == pytest.approx(1.0, abs=1e-9)
    assert values[1] == pytest.approx((values[0] + values[2]) / 2, abs=1e-9)


def test_the_events_ladder_carries_the_last_k_events_and_the_belief():
    """exact + k events: the state after step t is [x_{t+1}, e_t, …, e_{t−k+1}], zeros before
    the episode; its policy reads x alone."""
    _, cfg, ref, tr = bayes_episodes("bandit", episodes=6)
    machine = panel.scripted_machine(ladders.with_events(cfg, ref, 2), tr)
    exact = panel.scripted_machine(panel.exact_bayes(cfg, ref), tr)
    D, width = exact.states.shape[-1], 3   # bandit: one-hot a (2), r, no observation
    np.testing.assert_array_equal(machine.states[..., :D], exact.states)
    e = lambda t: ladders.event_vector(cfg, tr.a[t], tr.r[t], tr.obs[t])
    np.testing.assert_array_equal(machine.states[0, :, D:], 0.0)
    np.testing.assert_array_equal(machine.states[1, :, D:D + width], e(0))
    np.testing.assert_array_equal(machine.states[1, :, D + width:], 0.0)
    np.testing.assert_array_equal(machine.states[7, :, D:], np.concatenate([e(6), e(5)], 1))
    np.testing.assert_array_equal(machine.policies(), exact.policies())


def test_the_forgetful_filter_shrinks_old_evidence_by_kappa_per_step():
    """Bandit coordinates are counts from the prior 0: one success on arm 0 at step 0 is
    worth κ³ after three more steps on the other arm."""
    _, cfg, ref = small("bandit")
    m = ladders.forgetful(cfg, ref, 0.5)
    S = m.step(m.prior(1), np.array([0]), np.array([1.0]), np.zeros((1, 0)))
    for _ in range(3):
        S = m.step(S, np.array([1]), np.array([0.0]), np.zeros((1, 0)))
    full = panel.exact_bayes(cfg, ref).step(panel.exact_bayes(cfg, ref).prior(1), np.array([0]),
                                            np.array([1.0]), np.zeros((1, 0)))
    assert S[0, 0] == pytest.approx(full[0, 0] * 0.5 ** 4)


@pytest.mark.parametrize("basis", ladders.BASES)
@pytest.mark.parametrize("env", ENVS)
def test_a_basis_changes_the_coordinates_not_the_behaviour(env, basis):
    """The exact filter in any basis acts as in its own (the same actions from the same
    generator), its states map back (g⁻¹(g(S)) = S to 1e-9); a forgetful filter, whose policy
    reads its continuous state through the nearest exact belief, picks the same actions
    along recorded episodes at ≥ 99 % of steps (a rounding of 1e-15 can cross a boundary)."""
    _, cfg, ref, tr = bayes_episodes(env)

    def moved(machine):
        scale = ladders.state_scale(machine, tr)
        return ladders.in_basis(machine, basis, scale, ladders.TANH_WIDTH * len(scale),
                                ladders.basis_rng(0, basis))

    exact = panel.exact_bayes(cfg, ref)
    a = panel.scripted_run(cfg, exact, 30, metarl.stream(1, 4))
    b = panel.scripted_run(cfg, moved(exact), 30, metarl.stream(1, 4))
    np.testing.assert_array_equal(b.a, a.a)
    np.testing.assert_allclose(b.pi, a.pi, atol=1e-9)
    if basis != "identity":
        D = a.states.shape[-1]
        assert b.states.shape[-1] == (D if basis == "linear" else ladders.TANH_WIDTH * D)
        assert not np.allclose(b.states[..., :D], a.states)
    forgetful = ladders.forgetful(cfg, ref, 0.9)
    best = lambda m: panel.scripted_machine(m, tr).policies().argmax(-1)
    assert np.mean(best(moved(forgetful)) == best(forgetful)) >= 0.99


def test_partial_r2_sees_the_last_event():
    """The exact filter plus its last event holds r_{t−1} beyond the belief: partial R² of
    reward_t-1 near 1, where the exact filter's is near 0 (bandit, 200 episodes; the belief
    does not determine the last reward)."""
    _, cfg, ref, tr = bayes_episodes("bandit", episodes=200)
    ep = ladders.episodes_along(cfg, tr, 0, 5, 10, ref)
    assert "reward_t-1" in ep.names

    def partial(k):
        m = panel.scripted_machine(ladders.with_events(cfg, ref, k), tr)
        return machines.minimality(m, ep.bayes, ep.history, ep.names, ep.fold, 0)["partial_r2"]

    assert partial(1)["reward_t-1"] > 0.9
    assert abs(partial(0)["reward_t-1"]) < 0.05


def test_evidence_kept_is_one_for_the_exact_filter_and_falls_with_kappa():
    kept = [ladders.evidence_kept(k, 100) for k in (0.8, 0.9, 0.97, 0.99, 1.0)]
    assert kept[-1] == 1.0 and np.all(np.diff(kept) > 0)
    assert ladders.evidence_kept(0.5, 1) == 1.0   # one step: nothing to forget yet


# ----------------------------------------------------------------------------- reading a ladder
def synthetic(curves, noise=0.0, seeds=3):
    """Ladder seeds whose test "splice" takes curves[basis][grade] (+ noise per seed) on the
    causal-use ladder; every other value a constant."""
    rng = np.random.default_rng(0)
    grades = len(ladders.PROPERTY["causal use"].grades)
    out = []
    for s in range(seeds):
        lad = {}
        for ladder in ladders.LADDERS:
            lad[ladder.name] = {b: [{t.name: 0.5 for t in panel.TESTS}
                                    for _ in ladder.grades] for b in curves}
        for b, curve in curves.items():
            for g in range(grades):
                lad["causal use"][b][g]["splice"] = float(curve[g] + noise * rng.normal())
        out.append({"ladders": lad, "seed": s, "episodes": 10, "splice_episodes": 10})
    return out


LINE = [0.0, 0.25, 0.5, 0.75, 1.0]


def test_a_test_qualifies_where_it_is_monotone_in_every_basis_and_bases_agree():
    cal = ladders.calibration(synthetic({"identity": LINE, "linear": LINE, "tanh": LINE}))
    q = cal["causal use"]["splice"]
    assert q["pairs"] == [True] * 4 and q["range"] == [[0.0, 1.0]]
    assert ladders.chosen_test(cal, "causal use") == "splice"
    assert not cal["causal use"]["interchange"]["qualified"]   # constant: not monotone
    reversed_tanh = ladders.calibration(synthetic({"identity": LINE, "linear": LINE,
                                                   "tanh": LINE[::-1]}))
    assert not reversed_tanh["causal use"]["splice"]["qualified"]
    assert set(reversed_tanh["causal use"]["splice"]["reason"]) == {"not monotone (tanh)"}
    shifted = ladders.calibration(synthetic({"identity": LINE,
                                             "tanh": [v + 0.3 for v in LINE]}))
    assert set(shifted["causal use"]["splice"]["reason"]) == {"basis spread ≥ step"}
    flat_top = ladders.calibration(synthetic({"identity": [0, 0.5, 1, 1, 1]}))
    assert flat_top["causal use"]["splice"]["range"] == [[0.0, 0.5]]


def test_only_a_test_meant_for_the_property_places_a_machine():
    """A test that grades a ladder but is not meant to measure its property (value loss on
    the sufficiency ladder, here) is not chosen for it."""
    seeds = synthetic({"identity": LINE, "linear": LINE})
    grades = ladders.PROPERTY["sufficiency"].grades
    for s in seeds:
        for b in s["ladders"]["sufficiency"]:
            for g, kappa in enumerate(grades):
                s["ladders"]["sufficiency"][b][g]["value_loss"] = 1 - kappa
    cal = ladders.calibration(seeds)
    assert cal["sufficiency"]["value_loss"]["qualified"]
    assert ladders.chosen_test(cal, "sufficiency") is None


def test_a_machine_is_placed_where_the_curve_takes_its_value():
    """On a line from 0 to 1 over λ ∈ [0, 1], values around 0.6 sit at λ ≈ 0.6 with an
    interval around it; values at the ladder's top are open there; values wholly past an end
    are censored at it (held past the top, refuted past the bottom); an undefined value is
    not placed."""
    cal = ladders.calibration(synthetic({"identity": LINE, "linear": LINE}, noise=0.01))
    prof = ladders.profile(cal, [{"splice": v} | {t.name: 0.5 for t in panel.TESTS
                                                   if t.name != "splice"}
                                 for v in (0.58, 0.6, 0.62)])["causal use"]
    placed = prof["tests"]["splice"]
    assert placed["position"] == pytest.approx(0.6, abs=0.02)
    assert placed["low"] < 0.6 < placed["high"] and placed["high"] - placed["low"] < 0.3
    assert prof["verdict"] == "refuted"   # λ < 0.75 at the upper limit
    top = ladders.profile(cal, [{**{t.name: 0.5 for t in panel.TESTS}, "splice": v}
                                for v in (0.99, 1.0, 1.01)])["causal use"]
    assert top["tests"]["splice"]["open_high"] and top["verdict"] == "held"
    for values, end, verdict in (((1.5, 1.6, 1.7), 1.0, "held"), ((-0.7, -0.6, -0.5), 0.0,
                                                                   "refuted")):
        far = ladders.profile(cal, [{**{t.name: 0.5 for t in panel.TESTS}, "splice": v}
                                    for v in values])["causal use"]
        placed = far["tests"]["splice"]   # past an end: censored there, open on that side
        assert placed["beyond"] and placed["position"] == placed["low"] == placed["high"] == end
        assert placed["open_high"] == (end == 1.0) and placed["open_low"] == (end == 0.0)
        assert far["verdict"] == verdict
    undefined = ladders.profile(cal, [{**{t.name: 0.5 for t in panel.TESTS},
                                       "splice": {panel.UNDEFINED: "why"}}] * 3)["causal use"]
    assert undefined["verdict"] == "cannot decide"


def test_each_seed_is_read_through_the_curve_alone_and_censored_at_the_ends():
    """seed_positions: on the line from 0 to 1 over λ ∈ [0, 1], each seed's value is its own
    position (no interval); a value past an end sits at that end; an undefined value is NaN;
    no position where no test qualifies."""
    cal = ladders.calibration(synthetic({"identity": LINE, "linear": LINE}))
    causal = ladders.PROPERTY["causal use"]
    rows = [{**{t.name: 0.5 for t in panel.TESTS}, "splice": v}
            for v in (0.3, 0.62, 1.4, -2.0, {panel.UNDEFINED: "why"})]
    positions = ladders.seed_positions(cal, causal, rows)
    np.testing.assert_allclose(positions[:4], [0.3, 0.62, 1.0, 0.0], atol=1e-3)
    assert np.isnan(positions[4])
    assert ladders.seed_positions(cal, ladders.PROPERTY["sufficiency"], rows) is None


def test_the_verdict_reads_the_interval_against_the_tolerance():
    causal, minimal = ladders.PROPERTY["causal use"], ladders.PROPERTY["minimality"]

    def placed(low, high, segment=(0.0, 1.0)):
        return {"position": (low + high) / 2, "low": low, "high": high, "open_low": False,
                "open_high": False, "segment": list(segment)}

    assert ladders.verdict(causal, placed(0.8, 0.95)) == "held"
    assert ladders.verdict(causal, placed(0.5, 0.7)) == "refuted"
    assert ladders.verdict(causal, placed(0.6, 0.9)) == "inconclusive"
    assert ladders.verdict(causal, None) == "cannot decide"
    assert ladders.verdict(minimal, placed(0.2, 0.9, (0, 5))) == "held"
    assert ladders.verdict(minimal, placed(1.5, 3, (0, 5))) == "refuted"
    # an interval open below a range that starts above the ladder's bottom may reach it
    open_low = {**placed(0.8, 0.9, (0.75, 1.0)), "open_low": True}
    assert ladders.verdict(causal, open_low) == "inconclusive"
    both = {"sufficiency": {"verdict": "held"}, "causal use": {"verdict": "held"}}
    assert ladders.belief_state(both) == "held"
    assert ladders.belief_state({**both, "causal use": {"verdict": "refuted"}}) == "refuted"
    assert ladders.belief_state({**both, "causal use": {"verdict": "inconclusive"}}) == \
        "inconclusive"


# ----------------------------------------------------------------------------- the registry
def test_every_test_is_meant_for_a_property_of_the_ladders():
    names = {ladder.name for ladder in ladders.LADDERS}
    for t in panel.TESTS:
        assert t.measures and set(t.measures) <= names, t.name
    assert {p for t in panel.TESTS for p in t.measures} == names


def test_the_value_learner_moves_the_taken_action_towards_its_reward_only():
    _, cfg, _ = small("bandit")
    learner = panel.value_learner(cfg, 0.25, np.array([0.5, 0.5]))
    Q = learner.step(learner.prior(2), np.array([0, 1]), np.array([1.0, 0.0]), np.zeros((2, 0)))
    np.testing.assert_allclose(Q, [[0.5 + 0.25 * 0.5, 0.5], [0.5, 0.5 - 0.25 * 0.5]], atol=1e-15)
    np.testing.assert_array_equal(learner.policy(Q, 1), [[1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_array_equal(learner.policy(learner.prior(1), 0), [[0.5, 0.5]])


def test_prior_rewards_are_the_prior_mean_rewards():
    """Bandit with Beta(1, 1) arms: E[r | a] = 1/2 for each arm (4,000 tasks: SE 0.008, so a
    tolerance of 0.04 is 5 SE). Tiger at the first step: listen −1 exactly; a door pays
    +10 or −100 with probability 1/2 each: mean −45 (SE 0.87, tolerance 5 SE)."""
    _, cfg, _ = small("bandit")
    np.testing.assert_allclose(panel.prior_rewards(cfg, np.random.default_rng(0)), 0.5, atol=0.04)
    _, tiger, _ = small("tiger")
    q0 = panel.prior_rewards(tiger, np.random.default_rng(0))
    listen = machines.belief.LISTEN
    assert q0[listen] == -1.0
    np.testing.assert_allclose(np.delete(q0, listen), -45.0, atol=4.4)


def test_a_scripted_splice_reads_the_donor_history_then_its_own_events():
    """Before t_s − 1 the spliced run is the original; the state at t_s is the step of the
    donor's state at t_s − 1 by the recipient's event t_s − 1, for the exact Bayes machine the
    exact belief of the spliced history."""
    _, cfg, ref = small("bandit")
    spec = panel.exact_bayes(cfg, ref)
    original, splices = panel.scripted_splices(cfg, spec, 12, seed=4)
    for splice in splices:
        t_s, run = splice["t_s"], splice["run"]
        np.testing.assert_array_equal(run.a[:t_s], original.a[:t_s])
        np.testing.assert_array_equal(run.states[:t_s - 1], original.states[:t_s - 1])
        spliced = machines.exact_coordinates(cfg, *machines.spliced_history(original, splice))
        np.testing.assert_allclose(run.states[t_s:], spliced[t_s:-1], atol=1e-12)


# ----------------------------------------------------------------------------- whitening
def test_the_whitened_spread_does_not_depend_on_a_linear_map_of_the_state():
    """A state = exact counts plus history noise: the whitened ratio is the same after any
    invertible linear map; the per-unit standardised one is not (it sees only scale)."""
    rng = np.random.default_rng(1)
    _, cfg, _ = small("bandit")
    run = panel.scripted_run(cfg, panel.value_learner(cfg, 0.3, np.full(2, 0.5)), 200,
                             metarl.stream(0, 1))
    coords = machines.exact_coordinates(cfg, run.a, run.r, run.obs)[:-1]
    states = np.concatenate([coords, run.states, rng.normal(size=coords.shape[:2] + (2,))], -1)
    # an invertible map that keeps every axis well above whiten's cut (condition number 10)
    Q1, Q2 = (np.linalg.qr(rng.normal(size=(8, 8)))[0] for _ in range(2))
    A = Q1 @ np.diag(np.geomspace(0.3, 3, 8)) @ Q2
    base = machines.within_between_ratio(machines.whiten(states), coords)["ratio"]
    mapped = machines.within_between_ratio(machines.whiten(states @ A), coords)["ratio"]
    assert base > 0.01
    np.testing.assert_allclose(mapped, base, rtol=1e-6)
    raw = machines.within_between_ratio(states, coords)["ratio"]
    raw_mapped = machines.within_between_ratio(states @ A, coords)["ratio"]
    assert abs(raw_mapped - raw) > 1e-3 * raw


def test_the_agreement_gain_is_one_when_perfect_and_zero_at_the_mean_policy():
    assert panel.agreement_gain(1.0, 0.6) == 1.0
    assert panel.agreement_gain(0.6, 0.6) == 0.0
    assert np.isclose(panel.agreement_gain(0.8, 0.6), 0.5)
    assert np.isnan(panel.agreement_gain(1.0, 1.0))   # nothing left to gain: undefined


@pytest.mark.slow
def test_the_api_places_a_scripted_machine_that_is_not_on_any_ladder():
    """ladders.place_machine on a greedy value learner (α = 0.3: recency-weighted rewards, no
    posterior), against ladders built at small sizes (T = 20, 40 episodes, 2 seeds, 20 MLP
    steps): a profile per property with the chosen test, positions inside their intervals
    and a verdict; the exact filter itself is placed at the top of the policy ladder (τ = 0:
    its value loss is exactly the τ = 0 grade's, 0) wherever value loss places it."""
    hp, cfg, ref = small("bandit")
    built = ladders.build_ladders(hp, (0, 1), 40, 20, agent_basis=False, map_steps=20)
    learner = panel.value_learner(cfg, 0.3, panel.prior_rewards(cfg, np.random.default_rng(0)))
    placed = ladders.place_machine(learner, hp, built, map_steps=20)
    assert len(placed["values"]) == 2
    for ladder in ladders.LADDERS:
        prop = placed["profile"][ladder.name]
        assert prop["verdict"] in ("held", "refuted", "inconclusive", "cannot decide")
        for where in prop["tests"].values():
            if "outside" not in where:
                assert where["low"] <= where["position"] <= where["high"]
    exact = ladders.place_machine(panel.exact_bayes(cfg, ref), hp, built, map_steps=20)
    assert [v["value_loss"] for v in exact["values"]] == [0.0, 0.0]
    policy = exact["profile"]["policy"]
    if "value_loss" in policy["tests"]:
        assert policy["tests"]["value_loss"]["position"] == 0.0
