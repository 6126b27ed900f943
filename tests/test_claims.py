"""claims.py's criteria: trivial and classical policies fail §1's near-optimality criterion,
the Bayes-optimal policy passes it, more noise can only make any criterion harder to pass, and
each claim's parts and gates combine as its criterion states."""
import numpy as np
import pytest

import belief
import claims
import envs

SEEDS = range(5)   # the "seeds" of a policy: five independent sets of episodes


def evaluations(cfg, choose, episodes):
    """What runs.evaluate reports for an agent, for a baseline policy on SEEDS."""
    rows = []
    for seed in SEEDS:
        a, r, _ = belief.run_policy(cfg, choose, episodes, seed)
        row = {"mean": float(r.sum(axis=0).mean())}
        if envs.family(cfg.name).loadings is not None:   # bandits: the pseudo-regret too
            env = envs.make_env(cfg, episodes)
            env.reset(seed)
            chosen = np.take_along_axis(env.means, a.T, axis=1).T
            row["pseudo_regret"] = float((env.means.max(axis=1) - chosen).sum(axis=0).mean())
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def references():
    """Each env at the experiments' own horizon, with its exact values and baselines."""
    return {name: belief.baselines_report(envs.make_config(name), 2000, seed=0)
            for name in belief.BELIEFS}


@pytest.mark.parametrize("name, policy", [
    ("bandit", "random"), ("bandit", "greedy"), ("bandit", "thompson"), ("bandit", "ucb1"),
    ("dependent-bandit", "random"), ("dependent-bandit", "thompson"),
    ("dependent-bandit", "ucb1"), ("dependent-bandit", "epsilon_greedy"),
    ("tiger", "random"), ("tiger", "always_listen"), ("tiger", "listen_k"),
    ("two-step", "random"), ("two-step", "model_free_td"),
])
def test_trivial_and_classical_policies_fail_the_near_optimality_criterion(references, name,
                                                                           policy):
    cfg = envs.make_config(name)
    fam = belief.belief_family(cfg)
    choose = fam.policies(cfg, fam.reference(cfg))[policy]
    m = claims.near_optimal_measure(belief.BELIEFS[name].near_optimal,
                                    evaluations(cfg, choose, 400), references[name])
    assert m["held"] in ("refuted", "inconclusive") and m["ucl"] > m["margin"], (m["mean"], m["ucl"])


@pytest.mark.parametrize("name, policy", [("bandit", "bayes_optimal"),
                                          ("dependent-bandit", "greedy"),   # optimal there
                                          ("tiger", "bayes_optimal")])
def test_the_bayes_optimal_policy_passes_it(references, name, policy):
    cfg = envs.make_config(name)
    fam = belief.belief_family(cfg)
    choose = fam.policies(cfg, fam.reference(cfg))[policy]
    episodes = 20_000 if name == "tiger" else 1000   # Tiger's returns are noisy (the −100 door)
    m = claims.near_optimal_measure(belief.BELIEFS[name].near_optimal,
                                    evaluations(cfg, choose, episodes), references[name])
    assert m["held"] == "held", (m["mean"], m["ucl"])


def noisier(values, factor):
    """The same mean, the spread around it multiplied by factor."""
    values = np.asarray(values)
    return values.mean() + factor * (values - values.mean())


@pytest.mark.parametrize("kind", ["regret", "gap"])
def test_a_noisier_copy_of_a_result_can_only_be_harder_to_pass(kind):
    refs = {"bayes_optimal_exact": 20.0, "oracle_exact": 30.0,
            "policies": {"random": {"mean": -600.0}, "always_listen": {"mean": -20.0}}}
    rng = np.random.default_rng(0)
    for _ in range(200):
        G = 20.0 - rng.uniform(0.0, 2.0) * (1 + rng.random(5)) ** 2 * (0.1 if kind == "gap" else 1)
        seeds = [{"mean": g} for g in G]
        m = claims.near_optimal_measure(kind, seeds, refs)
        for factor in (1.5, 3.0, 10.0):
            noisy = claims.near_optimal_measure(kind, [{"mean": g} for g in noisier(G, factor)],
                                                refs)
            assert noisy["ucl"] >= m["ucl"] - 1e-12
            assert not (noisy["held"] == "held" and m["held"] != "held")
            assert not (noisy["held"] == "refuted" and m["held"] != "refuted")


def test_every_one_sided_limit_widens_with_noise_and_narrows_with_seeds():
    rng = np.random.default_rng(1)
    values = rng.normal(1.0, 0.1, 5)
    s, s_noisy = claims.summary(values), claims.summary(noisier(values, 4.0))
    assert s_noisy["ucl"] > s["ucl"] and s_noisy["lcl"] < s["lcl"]
    more = claims.summary(np.concatenate([values, values]))   # same spread, twice the seeds
    assert more["ucl"] - more["mean"] < s["ucl"] - s["mean"]


def test_cannot_decide_with_one_seed_and_refuted_if_any_part_is_refuted():
    one = claims.near_optimal_measure("regret", [{"mean": 64.9}],
                                      {"bayes_optimal_exact": 64.9, "oracle_exact": 66.7,
                                       "policies": {}})
    assert one["held"] is None
    assert claims.all_held(["held", None]) is None
    assert claims.all_held([None, "refuted", "held"]) == "refuted"
    assert claims.all_held(["held", "inconclusive"]) == "inconclusive"
    assert claims.all_held(["held", "held"]) == "held"


def test_three_outcomes_held_refuted_inconclusive_by_the_two_limits():
    """Claim "mean below 1": held if the upper limit is below, refuted if the lower limit is
    at or above (the opposite limit clears the margin), inconclusive if 1 is between them."""
    assert claims.below(claims.summary([0.5, 0.6, 0.55]), 1.0) == "held"
    assert claims.below(claims.summary([1.5, 1.6, 1.55]), 1.0) == "refuted"
    assert claims.below(claims.summary([0.5, 1.5, 1.0]), 1.0) == "inconclusive"
    assert claims.above(claims.summary([1.5, 1.6, 1.55]), 1.0) == "held"
    assert claims.above(claims.summary([0.5, 0.6, 0.55]), 1.0) == "refuted"
    assert claims.below(claims.summary([0.5]), 1.0) is None


def test_the_shift_position_cannot_decide_where_the_two_bayes_policies_are_too_close():
    """An agent that follows the TEST prior with its usual excess e lands at u = 1 − e / gap:
    inside the band |u| < 0.5 once gap < 2e, so there the test must not decide."""
    gap, e = 0.3, 0.25
    follows_test_prior = claims.summary(1 - e / gap + np.array([-0.01, 0.0, 0.01]))
    assert abs(follows_test_prior["mean"]) < claims.SHIFT_POSITION_MAX   # it would pass ...
    assert claims.position_verdict(follows_test_prior, gap, e) is None   # ... so: cannot decide
    near_training = claims.summary(np.array([-0.05, 0.0, 0.05]))
    assert claims.position_verdict(near_training, 1.0, e) == "held"
    assert claims.position_verdict(claims.summary(np.array([0.9, 1.0, 1.1])), 1.0, e) == "refuted"
    assert claims.position_verdict(claims.summary(np.array([0.2, 0.5, 0.8])), 1.0, e) == "inconclusive"
    # the mean is 0 but the noise reaches past the band: not shown, and not refuted either
    assert claims.position_verdict(claims.summary(np.array([-0.3, 0.3, -0.6, 0.6])), 1.0, e) \
        == "inconclusive"


def test_the_shift_tests_decide_only_where_the_known_machines_separate():
    """§3's position and behaviour tests on the LSTMs distilled on each prior: validated when
    the training prior's machine holds them and the test prior's is refuted; a case whose
    known machines land on the wrong side cannot decide, whatever the agent's value."""
    def seed(r_net, kl_train, kl_test, r_train=3.0, r_test=2.0):
        return {"test": {"pseudo_regret": r_net},
                "noise_matched": {"tau": 0.1,
                                  "train_model": {"pseudo_regret": {"mean": r_train, "stderr": 0.01}},
                                  "test_model": {"pseudo_regret": {"mean": r_test, "stderr": 0.01}}},
                "behaviour": {"train": {"kl": kl_train}, "test": {"kl": kl_test}}}
    on_train = [seed(3.0, 0.1, 0.5), seed(3.05, 0.12, 0.5), seed(2.95, 0.11, 0.52)]   # u ≈ 0
    on_test = [seed(2.0, 0.5, 0.1), seed(2.05, 0.52, 0.1), seed(1.95, 0.5, 0.12)]     # u ≈ 1
    separating = {"known": {"train machine": {"expected": "train", "seeds": on_train},
                            "test machine": {"expected": "test", "seeds": on_test}}}
    c = claims.shift_calibration(separating)
    assert c["validated"] == {"position": True, "kl": True} and c["wrong"]["position"] == []
    assert c["machines"]["train machine"]["outcomes"] == {"position": "held", "kl": "held"}
    assert c["machines"]["test machine"]["outcomes"] == {"position": "refuted", "kl": "refuted"}
    assert claims.calibrated("held", c, "position") == "held"
    # the test prior's machine inside the band: the position test does not separate
    blurred = {"known": {"train machine": {"expected": "train", "seeds": on_train},
                         "test machine": {"expected": "test", "seeds": on_train}}}
    c = claims.shift_calibration(blurred)
    assert c["validated"] == {"position": False, "kl": False}
    assert c["wrong"]["position"] == ["test machine"]
    assert claims.calibrated("held", c, "position") is None            # cannot decide
    # the training prior's machine alone (was "validated" on it): one separates nothing
    alone = {"known": {"train machine": {"expected": "train", "seeds": on_train}}}
    with pytest.raises(ValueError, match="a §3 case needs a known machine on each prior, "
                                         "'train' and 'test'; its machines are on 'train'$"):
        claims.shift_calibration(alone)


def test_the_noise_matched_position_places_each_seed_between_its_own_references():
    """u_τ = (R_train(τ) − R_agent) / (R_train(τ) − R_test(τ)) per seed, with that seed's own
    references; decided only where every seed's two references are apart by > 2 SE."""
    def seed(r_agent, r_train, r_test, se=0.01):
        return {"test": {"pseudo_regret": r_agent},
                "noise_matched": {"tau": 0.1,
                                  "train_model": {"pseudo_regret": {"mean": r_train, "stderr": se}},
                                  "test_model": {"pseudo_regret": {"mean": r_test, "stderr": se}}}}
    near_training = [seed(3.0, 3.0, 2.0), seed(3.1, 3.2, 2.2), seed(2.9, 2.8, 1.8)]
    m = claims.noise_matched_numbers(near_training)
    assert np.allclose(m["position"]["values"], [0.0, 0.1, -0.1])
    assert m["apart"] and claims.matched_verdict(m) == "held"
    near_test = [seed(2.0, 3.0, 2.0), seed(2.2, 3.2, 2.2), seed(1.9, 2.8, 1.8)]
    assert claims.matched_verdict(claims.noise_matched_numbers(near_test)) == "refuted"
    too_close = [seed(3.0, 3.0, 2.98, se=0.05)] + near_training[1:]   # one seed's refs within 2 SE
    assert claims.matched_verdict(claims.noise_matched_numbers(too_close)) is None


# ------------------------------------------------------------------------------------------
# §5: the comparisons of the predictive arms
# ------------------------------------------------------------------------------------------
def test_an_improvement_is_held_refuted_or_inconclusive_by_welch_in_the_better_direction():
    """Higher is better (+1) or lower (−1); a clear move that way is held, the other way
    refuted, an overlap inconclusive; all seeds of both at one value cannot decide."""
    low, high = [0.10, 0.12, 0.11, 0.13, 0.09], [0.50, 0.52, 0.51, 0.49, 0.53]
    assert claims.improvement(high, low, +1)["held"] == claims.HELD
    assert claims.improvement(high, low, -1)["held"] == claims.REFUTED
    assert claims.improvement(low, high, -1)["held"] == claims.HELD
    assert claims.improvement(low, [0.11, 0.10, 0.14, 0.08, 0.12], +1)["held"] == \
        claims.INCONCLUSIVE
    censored = claims.improvement([1.0] * 5, [1.0] * 5, +1)
    assert censored["held"] is None and "every seed of both at 1" in censored["why"]
    assert claims.improvement([0.5], low, +1)["held"] is None   # one seed: no test
    d = claims.improvement(high, low, +1)["difference"]
    assert d["mean"] == pytest.approx(np.mean(high) - np.mean(low)) and d["n"] == (5, 5)


def test_the_margin_is_reached_at_the_first_block_whose_measure_meets_it():
    """A bandit curve at the random policy's return, then at Bayes-optimal from block 3 of 5
    (updates 1000 in blocks of 200): reached at update 600; a curve that never meets the
    margin reaches it never (None)."""
    refs = {"policies": {}, "bayes_optimal_exact": 64.9, "oracle_exact": 66.7}
    curve = {"updates": 1000, "seeds": [[50.0, 50.0, 64.9, 64.9, 64.9], [50.0] * 5]}
    assert claims.curve_reach("regret", curve, refs) == [600, None]
    assert claims.ratio_of("regret", 64.9, refs) == pytest.approx(1.0)


def test_the_comparisons_separate_prediction_from_a_small_state():
    arms = {"bandit predictive": {"agent": "bandit", "predict_weight": 3.0, "hidden": 48},
            "tiger predictive": {"agent": "tiger", "predict_weight": 3.0, "hidden": 48},
            "bandit bottleneck": {"agent": "bandit", "predict_weight": 0.0, "hidden": 6},
            "bandit bottleneck predictive": {"agent": "bandit", "predict_weight": 3.0,
                                             "hidden": 6}}
    configs = {"bandit": {"hidden": 48}, "tiger": {"hidden": 48}}
    assert claims.comparisons(arms, configs) == [
        ("prediction", "bandit predictive", "bandit"), ("prediction", "tiger predictive", "tiger"),
        ("small state", "bandit bottleneck", "bandit"),
        ("prediction in the small state", "bandit bottleneck predictive", "bandit bottleneck")]
