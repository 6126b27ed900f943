"""The claims the report decides, one record each: what is claimed, the criterion that decides
it (stated before the numbers are seen, applied to every run alike), the constants of that
criterion with the reason for each, and the function that decides it.

report.py reads results.json, hands each section's raw numbers to the functions here (the
*_numbers functions: statistics over seeds and every outcome), and only formats and draws
what they return. Every limit is one-sided at stats.LEVEL (95 %), from Student's t with n − 1
degrees of freedom over seeds, paired where the design is paired (stats.py).

An outcome is "held", "refuted", "inconclusive" (neither one-sided limit clears the margin)
or None, cannot decide: one seed (no limits), or a test that cannot tell its hypotheses apart
(the report's measured text says which). A claim decided env by env gives one line,
across_envs: "held (bandit); cannot decide (tiger)".
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

import belief
import ladders
import panel
import stats
from stats import LEVEL

HELD, REFUTED, INCONCLUSIVE, CANNOT_DECIDE = "held", "refuted", "inconclusive", "cannot decide"
OUTCOME_ORDER = (HELD, REFUTED, INCONCLUSIVE, CANNOT_DECIDE)


@dataclass(frozen=True)
class Claim:
    """One claim of the report: its statement, its criterion as a str.format template of
    {level} (stats.LEVEL), its constants and the facts of the run the report fills in, and
    decide: the section's numbers (its *_numbers function) → the outcome."""

    statement: str
    criterion: str
    constants: dict   # name in the criterion → value: a named constant below, its reason beside it
    decide: Callable

    def criterion_text(self, **facts):
        return self.criterion.format(level=LEVEL, **self.constants, **facts)


# ------------------------------------------------------------------------------------------
# Statistics over seeds, and the outcomes they give
# ------------------------------------------------------------------------------------------
def summary(values):
    """Mean, SE over seeds, n, and the one-sided 95 % limits (t, n − 1 df)."""
    values = [float(v) for v in values]
    s = stats.mean_ci(values, LEVEL)
    return {"mean": s["mean"], "stderr": s["stderr"], "n": s["n"], "values": values,
            "lcl": stats.lower_confidence_limit(values, LEVEL),
            "ucl": stats.upper_confidence_limit(values, LEVEL)}


def summary_if_defined(values):
    """summary(values), or one of NaN mean and SE (shown n/a) if a value is undefined (NaN)."""
    if np.all(np.isfinite(values)):
        return summary(values)
    nan = float("nan")
    return {"mean": nan, "stderr": nan, "n": len(values), "values": [float(v) for v in values],
            "lcl": None, "ucl": None}


def below(s, margin):
    """The claim "the mean is below margin" from a summary s over seeds: held if its upper
    limit is below margin, refuted if its lower limit is at or above margin (the opposite
    limit clears it), else inconclusive; None (cannot decide) with one seed (no limits)."""
    if s["ucl"] is None:
        return None
    return HELD if s["ucl"] < margin else REFUTED if s["lcl"] >= margin else INCONCLUSIVE


def above(s, margin):
    """The claim "the mean is above margin", as below."""
    if s["lcl"] is None:
        return None
    return HELD if s["lcl"] > margin else REFUTED if s["ucl"] <= margin else INCONCLUSIVE


def all_held(outcomes):
    """A claim made of parts (every env, every feature): refuted if any part is, else held if
    all are, else cannot decide (None) if any part cannot, else inconclusive."""
    outcomes = list(outcomes)
    if REFUTED in outcomes:
        return REFUTED
    if all(o == HELD for o in outcomes):
        return HELD
    return None if None in outcomes else INCONCLUSIVE


def outcome(held):
    """An outcome's words: held, refuted, inconclusive, a calibrated test's per-env line, or
    cannot decide (None: one seed, or a test that cannot separate its hypotheses)."""
    return CANNOT_DECIDE if held is None else held


def across_envs(outcomes):
    """One line for a test's outcomes in several envs: 'held (bandit); cannot decide (tiger)'."""
    groups = {o: [env for env, v in outcomes.items() if v == o] for o in OUTCOME_ORDER}
    return "; ".join(f"{o} ({', '.join(envs_)})" for o, envs_ in groups.items() if envs_)


# ------------------------------------------------------------------------------------------
# §1 Agents act near Bayes-optimally
# ------------------------------------------------------------------------------------------
# The regret against the oracle relative to the Bayes-optimal regret (two-step: to the
# belief-greedy regret). 1.25 is a quarter more regret than Bayes-optimal; the best classical
# baselines need 1.6 (Thompson sampling, greedy on the 2-arm bandit) and 3.0 (model-free TD);
# on the dependent bandit greedy *is* Bayes-optimal (both arms inform about the one p).
REGRET_RATIO_MARGIN = 1.25
# Tiger: the gap to Bayes-optimal relative to the gap between Bayes-optimal and the best
# trivial policy (always listen, −20 at T = 20): 0.015 is ≈ 0.6 of return, less than the
# 0.81 (ratio 0.020) of the best listen-k heuristic (listen until |hearing difference| = 2).
TIGER_GAP_MARGIN = 0.015
TRIVIAL_POLICIES = ("random", "always_listen")
MARGINS = {"regret": REGRET_RATIO_MARGIN, "gap": TIGER_GAP_MARGIN}


def near_optimal_measure(kind, seeds, references):
    """The per-seed values of §1's measure of `kind` (belief.BeliefFamily.near_optimal) and
    its verdict.

    regret: (oracle − G) / (oracle − G_ref), G_ref the exact Bayes-optimal value (bandits: the
        pseudo-regret Σ_t (max_i m_i − m_{a_t}) replaces oracle − G, same expectation, ~1/6 of
        the noise) or the belief-greedy policy's return where there is no exact value (two-step).
    gap: (V* − G) / (V* − G_trivial), G_trivial the best of TRIVIAL_POLICIES.
    Near-optimal: the one-sided upper 95 % limit over seeds (t, n − 1 df) below the margin, so
    that more noise can only make it harder to pass."""
    policies = references["policies"]
    bayes, oracle = references["bayes_optimal_exact"], references["oracle_exact"]
    if kind == "regret":
        reference = bayes if bayes is not None else policies["belief_greedy"]["mean"]
        if bayes is not None and "pseudo_regret" in seeds[0]:
            values = [s["pseudo_regret"] / (oracle - bayes) for s in seeds]
        else:
            values = [(oracle - s["mean"]) / (oracle - reference) for s in seeds]
    else:
        trivial = max(policies[p]["mean"] for p in TRIVIAL_POLICIES if p in policies)
        values = [(bayes - s["mean"]) / (bayes - trivial) for s in seeds]
    s = summary(values)
    return {**s, "kind": kind, "margin": MARGINS[kind], "held": below(s, MARGINS[kind])}


def near_optimal_kind(results, name):
    """The measure of §1 for agent `name`: its task family's (belief.BeliefFamily.near_optimal)."""
    return belief.BELIEFS[results["facts"]["configs"][name]["env"]].near_optimal


def near_optimal_numbers(results):
    """§1's measure per env, over the seeds of its agent."""
    return {env: near_optimal_measure(near_optimal_kind(results, env), r["seeds"], r["references"])
            for env, r in results["near_optimal"].items()}


NEAR_OPTIMAL = Claim(
    statement="The meta-trained LSTM agents act near Bayes-optimally on every task distribution.",
    criterion="Upper {level:.0%} limit over seeds (t, n − 1 df) of the regret ratio "
              "(oracle − G) / (oracle − G_Bayes) ≤ {regret} (bandits: pseudo-regret; two-step: "
              "G_Bayes → belief-greedy); Tiger: of (V* − G) / (V* − G_always-listen) ≤ {gap}.",
    constants={"regret": REGRET_RATIO_MARGIN, "gap": TIGER_GAP_MARGIN},
    decide=lambda numbers: all_held(m["held"] for m in numbers.values()))


# ------------------------------------------------------------------------------------------
# §2 Hidden states are belief states
# ------------------------------------------------------------------------------------------
DECODE_R2_MIN = 0.8      # "linearly decodable": held-out R² of each posterior mean
CONTROL_MARGIN = 0.1     # ... and this far above the memoryless and shuffled controls


def posterior_means(features):
    return [features[j] for j in belief.posterior_mean_columns(features)]


def belief_state_numbers(seeds):
    """§2's statistics for one env from its seeds' probe results."""
    probes = [s["probe"] for s in seeds]
    means = posterior_means(probes[0]["features"])

    def r2(p, condition, f):
        return p["decode"][f] if condition == "trained" else p["controls_by_feature"][condition][f]

    decode = {f: {c: summary(r2(p, c, f) for p in probes)
                  for c in ("trained", "untrained", "memoryless", "shuffled")}
              for f in probes[0]["features"]}
    margins = {f: {c: summary(r2(p, "trained", f) - r2(p, c, f) for p in probes)
                   for c in ("untrained", "memoryless", "shuffled")} for f in means}
    learned = summary(np.mean([r2(p, "trained", f) - r2(p, "untrained", f) for f in means])
                      for p in probes)
    snapshots = [[point["updates"] for point in s["over_training"]] for s in seeds]
    gaps = [[point["r2"] - s["over_training"][0]["r2"] for point in s["over_training"]]
            for s in seeds]   # snapshot 0 is the untrained network
    after_one = snapshots[0].index(1)   # the snapshot after the first update
    growth = summary(g[-1] - g[after_one] for g in gaps)
    decodable = all_held([above(decode[f]["trained"], DECODE_R2_MIN)
                          for f in means] + [above(margins[f][c], CONTROL_MARGIN)
                                             for f in means for c in ("memoryless", "shuffled")])
    return {"features": probes[0]["features"], "means": means, "decode": decode,
            "margins": margins, "learned": learned, "learned_held": above(learned, 0.0),
            "decodable": decodable, "snapshots": snapshots[0], "gaps": gaps,
            "returns": [[point["return"] for point in s["over_training"]] for s in seeds],
            "growth": growth, "growth_held": above(growth, 0.0),
            "policy_kl": summary(p["policy_kl"] for p in probes),
            "agreement": summary(p["agreement"] for p in probes),
            "encode": summary(p["encode_r2"] for p in probes)}


def decoding_validated(results):
    """{env: whether decoding grades sufficiency on the env's ladders (§2c: it qualifies
    there); False where the env has no ladders}."""
    return {env: bool(lad["seeds"])
            and ladders.calibration(lad["seeds"])["sufficiency"]["decode"]["qualified"]
            for env, lad in results["ladders"].items()}


def belief_states_numbers(results):
    """§2's statistics per env, and whether decoding grades sufficiency there ("validated")."""
    valid = decoding_validated(results)
    return {env: {**belief_state_numbers(seeds), "validated": valid[env]}
            for env, seeds in results["belief_states"].items()}


def gated(held, validated):
    """A decoding claim's outcome in one env: its own where decoding grades sufficiency on the
    env's ladder, else cannot decide."""
    return outcome(held) if validated else CANNOT_DECIDE


def per_env(key):
    """A §2 claim decided env by env: each env's outcome `key`, gated by the ladder."""
    return lambda numbers: across_envs({env: gated(m[key], m["validated"])
                                        for env, m in numbers.items()})


GATE = (" Decides an env only where decoding grades sufficiency on its ladder (§2c: monotone in "
        "κ in every basis, basis spread below the step): where it does not, decodability says "
        "nothing of a belief state.")
DECODABLE = Claim(
    statement="The exact posterior is linearly decodable from the trained agent's state, well "
              "beyond what the current input alone or other episodes' states give.",
    criterion="In every env, for each posterior mean: lower {level:.0%} limit over seeds of the "
              "held-out R² from [h, c] ≥ {r2_min}, and of its margin over the memoryless and "
              "the shuffled controls (paired by seed) ≥ {control}." + GATE,
    constants={"r2_min": DECODE_R2_MIN, "control": CONTROL_MARGIN},
    decide=per_env("decodable"))
LEARNED = Claim(
    statement="Training makes the state more belief-like than the same network untrained.",
    criterion="In every env: lower {level:.0%} limit (t, n − 1 df) of trained − untrained R² "
              "(mean over the posterior means; same episodes and folds, paired by seed) > 0."
              + GATE,
    constants={}, decide=per_env("learned_held"))
GROWTH = Claim(
    statement="Along training the state becomes more belief-like than the untrained network, "
              "on the same histories.",
    criterion="In every env: lower {level:.0%} limit of (trained − untrained R² at the last "
              "snapshot) − (the same after one update), all snapshots probed on one fixed set "
              "of the final agent's histories, paired by seed, > 0." + GATE,
    constants={}, decide=per_env("growth_held"))


# ------------------------------------------------------------------------------------------
# §2b The map check (descriptive: a map that fails it is flagged, no claim rests on it)
# ------------------------------------------------------------------------------------------
MAP_CHECK_SE = 2.0   # no MLP map's held-out error may exceed the linear map's by more SEs


def map_check(linear, mlp):
    """The MLP map's held-out error in excess of the linear map's, paired by seed, and
    whether the MLP map fails the check: that excess more than MAP_CHECK_SE SEs above 0."""
    excess = summary(np.subtract(mlp, linear))
    return excess, excess["stderr"] is not None and excess["mean"] > MAP_CHECK_SE * excess["stderr"]


# ------------------------------------------------------------------------------------------
# §2c The agent on the ladders: one claim per property, and the seed paper's
# ------------------------------------------------------------------------------------------
def ladder_numbers(results):
    """Per env with ladders: the calibration of every test on every ladder
    (ladders.calibration over the ladder seeds), the agent's values per seed (panel.agent_values
    of its §2 probes), its profile (ladders.profile: positions with intervals and verdicts,
    read on the LSTM basis's curve where that ladder has one), the reference networks'
    profiles (their values on the ladder seeds, read alike) and the seed paper's claim
    (ladders.belief_state)."""
    out = {}
    for env, lad in results["ladders"].items():
        if not lad["seeds"]:
            continue
        cal = ladders.calibration(lad["seeds"])
        agent = [panel.agent_values(s["probe"]) for s in results["belief_states"][env]]
        references = {name: [s["references"][name] for s in lad["seeds"]]
                      for name in lad["seeds"][0]["references"]}
        profile = ladders.profile(cal, agent, ladders.LSTM)   # networks: on their own basis
        out[env] = {"calibration": cal, "agent": agent, "profile": profile,
                    "belief_state": ladders.belief_state(profile),
                    "references": {name: {"values": v,
                                          "profile": ladders.profile(cal, v, ladders.LSTM)}
                                   for name, v in references.items()},
                    "ladder_seeds": len(lad["seeds"]), "agent_basis": lad["agent_basis"]}
    return out


PROPERTY_STATEMENTS = {
    "sufficiency": "The agent's state is sufficient: it keeps the evidence as the exact filter does.",
    "minimality": "The agent's state is minimal: it holds no more of the history than the belief.",
    "policy": "The agent acts on its belief as the Bayes-optimal policy does.",
    "causal use": "Changing the belief the agent's state carries changes its actions as Bayes "
                  "predicts.",
}
PLACEMENT = ("The agent's position on the {name} ladder ({unit}: {grades}), read off the test "
             "meant for {name} that qualifies over the most grades, its interval where the "
             "ladder's one-sided {level:.0%} band meets the agent's one-sided {level:.0%} "
             "limits (§2c's method). {tolerance}; cannot decide where no test qualifies or the "
             "agent lies outside its range.")


def property_claim(ladder):
    """The claim that the agent has the property of `ladder`, env by env (ladders.verdict)."""
    return Claim(
        statement=PROPERTY_STATEMENTS[ladder.name], criterion=PLACEMENT,
        constants={"name": ladder.name, "unit": ladder.unit,
                   "grades": ", ".join(f"{g:g}" for g in ladder.grades),
                   "tolerance": ladders.TOLERANCE[ladder.name][1].capitalize()},
        decide=lambda numbers: across_envs({env: m["profile"][ladder.name]["verdict"]
                                            for env, m in numbers.items()}))


PROPERTY_CLAIMS = tuple(property_claim(ladder) for ladder in ladders.LADDERS)
BELIEF_STATE = Claim(
    statement="The agent's state is a belief state (the seed paper's claim): sufficient, and "
              "used causally as a belief.",
    criterion="Sufficiency ∧ causal use: held where both hold, refuted where either is "
              "refuted, else inconclusive (cannot decide where neither ladder places the agent); "
              "minimality is reported beside it.",
    constants={}, decide=lambda numbers: across_envs({env: m["belief_state"]
                                                      for env, m in numbers.items()}))


# ------------------------------------------------------------------------------------------
# §3 Failures are belief failures
# ------------------------------------------------------------------------------------------
SHIFT_POSITION_MAX = 0.5  # |position| of the agent: nearer the training-prior Bayes policy
                          # than the test-prior one, and not further from it than that


def shift_numbers(case, decoding_valid):
    """§3's statistics for one case from its raw numbers; decoding_valid: whether decoding
    grades sufficiency on the ladders of the agent's training family (the crossed-decoding
    claim's gate)."""
    refs = case["references"]
    r_train = refs["bayes_train_model"]["pseudo_regret"]["mean"]
    r_test = refs["bayes_test_model"]["pseudo_regret"]["mean"]
    position = summary((r_train - s["test"]["pseudo_regret"]) / (r_train - r_test)
                       for s in case["seeds"])
    kl = stats.paired_difference([s["behaviour"]["train"]["kl"] for s in case["seeds"]],
                                 [s["behaviour"]["test"]["kl"] for s in case["seeds"]], LEVEL)
    agreement = stats.paired_difference([s["behaviour"]["train"]["agreement"] for s in case["seeds"]],
                                        [s["behaviour"]["test"]["agreement"] for s in case["seeds"]],
                                        LEVEL)
    def contrast(decoding):   # Δ = R²(training-model posterior) − R²(test-model posterior)
        return decoding["train"] - decoding["test"]

    shifted = [contrast(s["decoding"]["trained"]) for s in case["seeds"]]
    untrained = [contrast(s["decoding"]["untrained"]) for s in case["seeds"]]
    crossed = stats.paired_difference(shifted, untrained, LEVEL)
    own_regret = refs["own_exact"]["oracle_exact"] - refs["own_exact"]["bayes_optimal_exact"]
    test_regret = refs["test_exact"]["oracle_exact"] - refs["test_exact"]["bayes_optimal_exact"]
    excess_own = summary(s["own"]["pseudo_regret"] - own_regret for s in case["seeds"])
    matched = noise_matched_numbers(case["seeds"])
    calibration = shift_calibration(case)
    position_held = matched_verdict(matched)
    kl_held = below(summary(s["behaviour"]["train"]["kl"] - s["behaviour"]["test"]["kl"]
                            for s in case["seeds"]), 0.0)
    return {"position": position, "matched": matched,
            "position_exact_held": position_verdict(position, r_train - r_test,
                                                    excess_own["ucl"]),
            "position_measured": position_held, "kl_measured": kl_held,
            "position_held": calibrated(position_held, calibration, "position"),
            "calibration": calibration,
            "kl": kl, "kl_held": calibrated(kl_held, calibration, "kl"),
            "agreement": agreement,
            "shifted": summary(shifted), "untrained": summary(untrained),
            "control": summary(contrast(s["trained"]) for s in case["control_seeds"]),
            "crossed": crossed,
            "crossed_held": above(summary(a - b for a, b in zip(shifted, untrained)), 0.0),
            "decoding_validated": decoding_valid,
            "r_train": r_train, "r_test": r_test, "excess_own": excess_own,
            "excess_test": summary(s["test"]["pseudo_regret"] - test_regret for s in case["seeds"]),
            "return_test": summary(s["test"]["mean"] for s in case["seeds"])}


def shift_section_numbers(results):
    """§3's statistics per case (shift_numbers), each gated by decoding in its agent's family."""
    valid = decoding_validated(results)
    return {label: shift_numbers(case, valid[results["facts"]["configs"][case["agent"]]["env"]])
            for label, case in results["shift"].items()}


def shift_calibration(case):
    """§3's position and behaviour tests on the case's known machines
    (experiments.shift_machines: LSTMs distilled on the training prior and on the test
    prior), each machine over its evaluation seeds: u_τ (noise_matched_numbers) with its
    |u_τ| < SHIFT_POSITION_MAX outcome, and KL(training-prior Bayes ‖ π) − KL(test-prior
    Bayes ‖ π) with its "< 0" outcome. A test separates them (validated) when the training
    prior's machine holds it and the test prior's is refuted; "wrong" names the machines on
    the wrong side. A case without a machine of each prior is refused (ValueError), as the
    results schema refuses it: one machine alone separates nothing."""
    priors = sorted({m["expected"] for m in case["known"].values()})
    if priors != ["test", "train"]:
        raise ValueError("a §3 case needs a known machine on each prior, 'train' and "
                         f"'test'; its machines are on {', '.join(map(repr, priors)) or 'none'}")
    rows, wrong = {}, {"position": [], "kl": []}
    for name, m in case["known"].items():
        matched = noise_matched_numbers(m["seeds"])
        kl = summary(s["behaviour"]["train"]["kl"] - s["behaviour"]["test"]["kl"]
                     for s in m["seeds"])
        outcomes = {"position": matched_verdict(matched), "kl": below(kl, 0.0)}
        right = HELD if m["expected"] == "train" else REFUTED
        for test, result in outcomes.items():
            if result != right:
                wrong[test].append(name)
        rows[name] = {"expected": m["expected"], "matched": matched, "kl": kl,
                      "outcomes": outcomes}
    return {"machines": rows, "wrong": wrong,
            "validated": {test: not names for test, names in wrong.items()}}


def calibrated(held, calibration, test):
    """A §3 case's outcome where its known machines validate `test` (shift_calibration); else
    None, cannot decide."""
    return held if calibration["validated"][test] else None


def noise_matched_numbers(seeds):
    """The position against noise-matched references (experiments.noise_matched_references),
    per seed u_τ = (R_train(τ) − R_agent) / (R_train(τ) − R_test(τ)) with τ the seed's own
    temperature; and whether every seed's references are apart: R_train(τ) − R_test(τ) > 2 ×
    the SE of that difference (the two SEs combined as if independent: conservative, the runs
    share their episodes); where they are not, no position (None)."""
    r = [{m: s["noise_matched"][m]["pseudo_regret"] for m in ("train_model", "test_model")}
         for s in seeds]
    gaps = [x["train_model"]["mean"] - x["test_model"]["mean"] for x in r]
    apart = all(g > 2 * np.hypot(x["train_model"]["stderr"], x["test_model"]["stderr"])
                for g, x in zip(gaps, r))
    return {"position": summary((x["train_model"]["mean"] - s["test"]["pseudo_regret"]) / g
                                for x, s, g in zip(r, seeds, gaps)) if apart else None,
            "apart": apart, "tau": summary(s["noise_matched"]["tau"] for s in seeds),
            "r_train": summary(x["train_model"]["mean"] for x in r),
            "r_test": summary(x["test_model"]["mean"] for x in r)}


def matched_verdict(matched):
    """|u_τ| < SHIFT_POSITION_MAX (band_verdict), where every seed's two noise-matched
    references are apart (None, cannot decide, otherwise)."""
    if matched["position"] is None or matched["position"]["ucl"] is None:
        return None
    return band_verdict(matched["position"])


def position_verdict(position, gap, excess_ucl):
    """|u| < SHIFT_POSITION_MAX against the exact references (a descriptive column of the
    report): held if both one-sided limits are inside the band, refuted if one limit is
    outside it on its own side (the whole interval beyond ±SHIFT_POSITION_MAX), else
    inconclusive; None (cannot decide) when the test cannot tell the two hypotheses apart:
    an agent that follows one of the two Bayes policies with its usual in-distribution excess
    pseudo-regret e lands at u = −e / gap (training prior) or 1 − e / gap (test prior), so
    only gap > 2e (upper limit of e) keeps the second outside the band."""
    if position["ucl"] is None or not gap > 2 * excess_ucl:
        return None
    return band_verdict(position)


def band_verdict(position):
    """|u| < SHIFT_POSITION_MAX by the two one-sided limits of a position with limits: held,
    refuted or inconclusive, as position_verdict states."""
    if -SHIFT_POSITION_MAX < position["lcl"] and position["ucl"] < SHIFT_POSITION_MAX:
        return HELD
    if position["lcl"] >= SHIFT_POSITION_MAX or position["ucl"] <= -SHIFT_POSITION_MAX:
        return REFUTED
    return INCONCLUSIVE


POSITION = Claim(
    statement="On shifted tasks the agent earns what the Bayes-optimal policy of its TRAINING "
              "prior earns there, not what the test prior's earns (both made as noisy as the "
              "agent is on its own tasks).",
    criterion="Both one-sided {level:.0%} limits over seeds of the position u_τ = "
              "(R_train(τ) − R_agent) / (R_train(τ) − R_test(τ)) within (−{band}, {band}); "
              "R_·(τ): pseudo-regret on the test tasks of the softmax policy π(a) ∝ "
              "exp(Q*(b, a) / τ) of each prior's Bayes-optimal values, τ (per seed) the "
              "temperature at which the training prior's softmax policy has the agent's own "
              "pseudo-regret on its own tasks, so that both references degrade as the agent "
              "does. Decided only where every seed's two references are apart (their "
              "difference > 2 SE), and where the known machines separate (LSTMs distilled on "
              "each prior, measured the same way: the training prior's holds, the test "
              "prior's is refuted).",
    constants={"band": SHIFT_POSITION_MAX},
    decide=lambda numbers: all_held(m["position_held"] for m in numbers.values()))
BEHAVIOUR = Claim(
    statement="On shifted tasks the agent acts like the training-prior Bayes policy.",
    criterion="Upper {level:.0%} limit of KL(training-prior Bayes ‖ agent) − KL(test-prior "
              "Bayes ‖ agent) per step, paired by seed, < 0. Decided only where the known "
              "machines separate (as above).",
    constants={},
    decide=lambda numbers: all_held(m["kl_held"] for m in numbers.values()))
CROSSED = Claim(
    statement="On shifted tasks the agent's state holds the training-prior posterior, beyond "
              "what running sums of the same inputs give.",
    criterion="Probe fitted on the agent's own tasks, applied unchanged to its test-task "
              "states: Δ = R²(training-model posterior) − R²(test-model posterior). Lower "
              "{level:.0%} limit (t, n − 1 df) of Δ(trained) − Δ(the same network untrained, "
              "fed the same inputs, probed the same way), paired by seed, > 0. Decides a case "
              "only where decoding grades sufficiency on the ladders of the agent's training "
              "family (§2c).",
    constants={},
    decide=lambda numbers: (all_held(m["crossed_held"] for m in numbers.values())
                            if all(m["decoding_validated"] for m in numbers.values()) else None))


# ------------------------------------------------------------------------------------------
# §4 "Model-based" behaviour from a model-free learner
# ------------------------------------------------------------------------------------------
HYBRID_W_MIN = 0.5       # the hybrid model's weight on model-based values


def two_step_numbers(r):
    interaction = summary(s["stay"]["interaction"]["mean"] for s in r["seeds"])
    w = summary(s["hybrid"]["estimates"]["w"] for s in r["seeds"])
    bound = r["grid"]["largest"]
    return {"interaction": interaction, "w": w, "bound": bound,
            "interaction_held": above(interaction, bound["interaction"]),
            "w_held": above(w, HYBRID_W_MIN)}


INTERACTION = Claim(
    statement="The RL² agent, trained by a model-free learner, shows a larger reward × "
              "transition interaction than any model-free learner of the grid.",
    criterion="Lower {level:.0%} limit over seeds (t, n − 1 df) of the agent's interaction > "
              "the largest interaction of the model-free TD learners (α, β, λ grid of "
              "{settings} settings).",
    constants={}, decide=lambda numbers: numbers["interaction_held"])
HYBRID = Claim(
    statement="Fitted by the hybrid model of Daw et al. (2011), the agent's choices weigh "
              "model-based values more than model-free ones.",
    criterion="Lower {level:.0%} limit over seeds of the fitted weight w > {w_min}.",
    constants={"w_min": HYBRID_W_MIN}, decide=lambda numbers: numbers["w_held"])


# ------------------------------------------------------------------------------------------
# §5 Does predicting the next outcome make the state a belief state? (Kuo et al. 2025)
# ------------------------------------------------------------------------------------------
def comparisons(arms, configs):
    """The §5 comparisons among the run's arms (results["predictive"]["arms"]) and the plain
    agents (configs: results["facts"]["configs"]), (label, arm, control): the effect of
    prediction at the agent's width, of a small state without prediction, and of prediction
    within the small state."""
    def small(name):
        return arms[name]["hidden"] < configs[arms[name]["agent"]]["hidden"]

    out = []
    for name, arm in arms.items():
        if arm["predict_weight"] > 0 and not small(name):
            out.append(("prediction", name, arm["agent"]))
        elif arm["predict_weight"] == 0 and small(name):
            out.append(("small state", name, arm["agent"]))
        elif arm["predict_weight"] > 0:
            out += [("prediction in the small state", name, other) for other in arms
                    if small(other) and arms[other]["predict_weight"] == 0
                    and arms[other]["agent"] == arm["agent"]
                    and arms[other]["hidden"] == arm["hidden"]]
    return out


def curve_reach(kind, curve, references):
    """Updates until a learning curve (block means of the training batch's return) first
    meets §1's margin, per seed: the last update of the first block whose §1 measure
    (ratio_of) is at or below the margin; None for a seed that never does. The training
    batch acts with its entropy bonus: a crossing is read from sampled behaviour."""
    ends = np.cumsum([len(b) for b in np.array_split(np.arange(curve["updates"]),
                                                      len(curve["seeds"][0]))])
    reach = []
    for returns in curve["seeds"]:
        met = [u for u, g in zip(ends, returns)
               if ratio_of(kind, g, references) <= MARGINS[kind]]
        reach.append(int(met[0]) if met else None)
    return reach


def ratio_of(kind, G, references):
    """§1's measure of one mean return G (near_optimal_measure's, from the return)."""
    policies = references["policies"]
    bayes, oracle = references["bayes_optimal_exact"], references["oracle_exact"]
    if kind == "regret":
        reference = bayes if bayes is not None else policies["belief_greedy"]["mean"]
        return (oracle - G) / (oracle - reference)
    trivial = max(policies[p]["mean"] for p in TRIVIAL_POLICIES if p in policies)
    return (bayes - G) / (bayes - trivial)


def improvement(arm, control, better):
    """Welch's one-sided test of "arm is better than control" over seeds (two independent
    sets of networks), better = +1 where higher is better, −1 where lower: held if the
    one-sided test of better rejects at LEVEL, refuted if the test of worse does, else
    inconclusive; cannot decide (None) with an undefined value, fewer than 2 seeds, or no
    spread in either (every seed of both censored at one end of a ladder's range)."""
    a, b = np.asarray(arm, np.float64), np.asarray(control, np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()) or min(a.size, b.size) < 2:
        return {"difference": None, "held": None}
    if a.std() == 0 and b.std() == 0:
        return {"difference": None, "held": None, "why": f"every seed of both at {a[0]:g}"
                if a[0] == b[0] else "no spread over seeds"}
    up, down = stats.welch_difference(better * a, better * b), stats.welch_difference(
        better * b, better * a)
    held = HELD if up["greater"] else REFUTED if down["greater"] else INCONCLUSIVE
    return {"difference": stats.welch_difference(a, b), "p_better": up["p_greater"],
            "held": held}


def reach_improvement(arm, control):
    """improvement in updates to §1's margin (fewer is better), where every seed of both
    reaches it; else cannot decide, saying how many do."""
    if None in arm or None in control:
        return {"difference": None, "held": None,
                "why": f"{sum(u is not None for u in arm)}/{len(arm)} and "
                       f"{sum(u is not None for u in control)}/{len(control)} seeds reach it"}
    return improvement(arm, control, -1)


def machine_numbers(env, seeds_values, evaluations, curve, results, cal):
    """One arm's or plain agent's §5 numbers: §1's measure and its verdict, the updates to
    reach its margin, and on a laddered family its profile, belief-state verdict and per-seed
    positions (ladders.seed_positions, on the curves the plain agent is read on)."""
    kind = near_optimal_kind(results, env)
    refs = results["near_optimal"][env]["references"]
    out = {"returns": near_optimal_measure(kind, evaluations, refs),
           "reach": curve_reach(kind, curve, refs)}
    if seeds_values is not None:
        prof = ladders.profile(cal, seeds_values, ladders.LSTM)
        out |= {"values": seeds_values, "profile": prof, "belief_state": ladders.belief_state(prof),
                "positions": {ladder.name: ladders.seed_positions(cal, ladder, seeds_values,
                                                                  ladders.LSTM)
                              for ladder in ladders.LADDERS}}
    return out


def predictive_numbers(results, ladder_nums):
    """§5 from results["predictive"] and the plain agents' §1, §2 and §2c numbers
    (ladder_nums: ladder_numbers(results)): each machine's numbers (machine_numbers) and
    every comparison (comparisons) in returns, in updates to the margin and on every ladder
    (improvement, in the ladder's better direction)."""
    sec = results["predictive"]
    facts = results["facts"]
    machines_ = {}
    for agent in dict.fromkeys(arm["agent"] for arm in sec["arms"].values()):   # in order
        lad = ladder_nums.get(agent)
        machines_[agent] = machine_numbers(
            agent, lad["agent"] if lad else None, results["near_optimal"][agent]["seeds"],
            facts["learning_curves"][agent], results, lad["calibration"] if lad else None)
    for name, arm in sec["arms"].items():
        lad = ladder_nums.get(arm["agent"])
        probed = lad is not None and all("probe" in s for s in arm["seeds"])
        machines_[name] = machine_numbers(
            arm["agent"], [panel.agent_values(s["probe"]) for s in arm["seeds"]] if probed
            else None, [s["evaluation"] for s in arm["seeds"]], arm["curve"], results,
            lad["calibration"] if lad else None)
    compared = []
    for label, arm, control in comparisons(sec["arms"], facts["configs"]):
        a, c = machines_[arm], machines_[control]
        row = {"label": label, "arm": arm, "control": control, "env": sec["arms"][arm]["agent"],
               "returns": improvement(a["returns"]["values"], c["returns"]["values"], -1),
               "reach": reach_improvement(a["reach"], c["reach"]), "ladders": {}}
        if "positions" in a and "positions" in c:
            for ladder in ladders.LADDERS:
                pa, pc = a["positions"][ladder.name], c["positions"][ladder.name]
                row["ladders"][ladder.name] = (improvement(pa, pc, ladder.better)
                                               if pa is not None and pc is not None
                                               else {"difference": None, "held": None})
        compared.append(row)
    references = {env: {ref: {**r, "positions": {
        ladder.name: ladders.seed_positions(lad["calibration"], ladder, r["values"], ladders.LSTM)
        for ladder in ladders.LADDERS}} for ref, r in lad["references"].items()}
        for env, lad in ladder_nums.items()}
    return {"weight": sec["weight"], "bottleneck_hidden": sec["bottleneck_hidden"],
            "machines": machines_, "comparisons": compared, "references": references}


def outcomes_of(numbers, label, key):
    """{env: outcome} of the comparisons labelled `label`, by key: returns, reach, or a ladder
    (the envs with ladders only); cannot decide spelled out."""
    return {row["env"]: outcome_words((row[key] if key in ("returns", "reach")
                                       else row["ladders"][key])["held"])
            for row in numbers["comparisons"]
            if row["label"] == label and (key in ("returns", "reach") or row["ladders"])}


def outcome_words(held):
    return CANNOT_DECIDE if held is None else held


def decided(outcomes):
    """across_envs, or cannot decide (None) where the run has no such comparison."""
    return across_envs(outcomes) if outcomes else None


PREDICTIVE_NEAR_OPTIMAL = Claim(
    statement="The agents trained with the predictive loss act near Bayes-optimally (§1's "
              "criterion).",
    criterion="As §1: upper {level:.0%} limit over seeds of the regret ratio ≤ {regret} "
              "(Tiger: the gap ratio ≤ {gap}).",
    constants={"regret": REGRET_RATIO_MARGIN, "gap": TIGER_GAP_MARGIN},
    decide=lambda numbers: decided({
        row["env"]: outcome_words(numbers["machines"][row["arm"]]["returns"]["held"])
        for row in numbers["comparisons"] if row["label"] == "prediction"}))
PREDICTION_RETURNS = Claim(
    statement="Predicting the next outcome brings the agent's returns nearer Bayes-optimal "
              "than plain RL²'s.",
    criterion="§1's measure, predictive − plain: Welch's one-sided t test over seeds at "
              "{level:.0%}: held if lower, refuted if higher, else inconclusive.",
    constants={}, decide=lambda numbers: decided(outcomes_of(numbers, "prediction", "returns")))


PREDICTION_REACH = Claim(
    statement="Predicting the next outcome brings the agent to §1's margin in fewer updates "
              "than plain RL².",
    criterion="Per seed, the updates until its learning curve (block means of the training "
              "batch's return) first meets §1's margin; predictive − plain: Welch's one-sided "
              "t test over seeds at {level:.0%}: held if fewer, refuted if more, else "
              "inconclusive; cannot decide unless every seed of both reaches the margin.",
    constants={}, decide=lambda numbers: decided(outcomes_of(numbers, "prediction", "reach")))


def prediction_claim(ladder):
    return Claim(
        statement=f"Predicting the next outcome moves the agent's state toward the belief on "
                  f"the {ladder.name} ladder.",
        criterion=POSITION_TEST + " Here: predictive − plain, {direction}.",
        constants={"direction": f"{ladder.unit} {'higher' if ladder.better > 0 else 'lower'}"},
        decide=lambda numbers: decided(outcomes_of(numbers, "prediction", ladder.name)))


POSITION_TEST = ("Each seed's position on the ladder (its value read through the curve the "
                 "plain agent is read on, censored at the range's ends); Welch's one-sided t "
                 "test over seeds at {level:.0%} in the belief's direction: held if the arm "
                 "moves there, refuted if it moves away, else inconclusive.")
PREDICTION_MOVES = tuple(prediction_claim(ladder) for ladder in ladders.LADDERS)
PREDICTIVE_BELIEF_STATE = Claim(
    statement="The predictive agent's state is a belief state (sufficiency ∧ causal use), as "
              "Kuo et al. report of their predictive agents.",
    criterion="As §2c's claim, on the predictive agent's own positions.",
    constants={}, decide=lambda numbers: decided(
        {row["env"]: numbers["machines"][row["arm"]].get("belief_state")
         for row in numbers["comparisons"] if row["label"] == "prediction"
         and "belief_state" in numbers["machines"][row["arm"]]}))


def by_property(label):
    """A comparison's outcomes on every ladder, one line: {"env property": outcome}."""
    return lambda numbers: decided({f"{env} {ladder.name}": held for ladder in ladders.LADDERS
                                        for env, held in outcomes_of(numbers, label,
                                                                     ladder.name).items()})


SMALL_STATE = Claim(
    statement="A small state, without prediction, moves the state toward the belief (the "
              "bottleneck arm against plain RL²).",
    criterion=POSITION_TEST + " Here: bottleneck − plain, on each ladder.",
    constants={}, decide=by_property("small state"))
PREDICTION_IN_SMALL_STATE = Claim(
    statement="Within the small state, predicting the next outcome moves it toward the belief.",
    criterion=POSITION_TEST + " Here: bottleneck with prediction − bottleneck, on each ladder.",
    constants={}, decide=by_property("prediction in the small state"))
