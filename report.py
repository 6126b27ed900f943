"""REPORT.md and its figures, from results.json alone: criteria, verdicts, tables, figures.

experiments.py measures and writes every raw number (per seed) into results.json; this module
reads that file and nothing else. It states each claim's criterion before applying it (the
constants under "Criteria"), computes the statistics (stats.py: Student-t limits with n − 1
degrees of freedom, paired where the design is paired), decides each verdict, and formats.
`python experiments.py report DIR` calls write_report on DIR/results.json, so a report can be
rewritten, byte for byte, without training anything.
"""
import os
import textwrap
from dataclasses import dataclass

import numpy as np

import envs
import machines
import panel
import stats
import twostep
from boundary import (atomic_write, check_json, focus_on_plateau, new_figure, parse_json,
                      save_png, write_files_together)

# ------------------------------------------------------------------------------------------
# Criteria: stated before the numbers are seen, applied to every run alike
# ------------------------------------------------------------------------------------------
LEVEL = 0.95   # every limit is one-sided at 95 %, with the t quantile of n − 1 df over seeds
# §1: the regret against the oracle relative to the Bayes-optimal regret (two-step: to the
# belief-greedy regret). 1.25 is a quarter more regret than Bayes-optimal; the best classical
# baselines need 1.6 (Thompson sampling, greedy on the 2-arm bandit) and 3.0 (model-free TD);
# on the dependent bandit greedy *is* Bayes-optimal (both arms inform about the one p).
REGRET_RATIO_MARGIN = 1.25
# §1, Tiger: the gap to Bayes-optimal relative to the gap between Bayes-optimal and the best
# trivial policy (always listen, −20 at T = 20): 0.015 is ≈ 0.6 of return, less than the
# 0.81 (ratio 0.020) of the best listen-k heuristic (listen until |hearing difference| = 2).
TIGER_GAP_MARGIN = 0.015
TRIVIAL_POLICIES = ("random", "always_listen")
NEAR_OPTIMAL_MEASURE = {"bandit": "regret", "dependent-bandit": "regret", "two-step": "regret",
                        "tiger": "gap"}
DECODE_R2_MIN = 0.8      # §2: "linearly decodable": held-out R² of each posterior mean
CONTROL_MARGIN = 0.1     # §2: ... and this far above the memoryless and shuffled controls
SHIFT_POSITION_MAX = 0.5  # §3: |position| of the agent: nearer the training-prior Bayes policy
                          # than the test-prior one, and not further from it than that
HYBRID_W_MIN = 0.5       # §4: the hybrid model's weight on model-based values

# Fixed colours, so a condition has the same colour in every figure.
COLOURS = {"trained": "C0", "untrained": "C1", "memoryless": "C2", "shuffled": "C3"}


@dataclass
class Verdict:
    """One claim, the criterion that decides it, the numbers measured, and the outcome."""

    claim: str
    criterion: str
    measured: str
    held: object    # "held", "refuted", "inconclusive", a calibrated test's per-env line, or
                    # None: cannot decide (one seed, or a test that cannot separate its
                    # hypotheses; the measured text says which)


@dataclass
class Section:
    """One experiment as the report shows it."""

    title: str
    verdicts: list
    tables: list    # (caption, header, rows), cells already formatted
    figures: list   # (file name in the output folder, caption)
    notes: list     # paragraphs a reader needs to judge the numbers


# ------------------------------------------------------------------------------------------
# Reading results.json
# ------------------------------------------------------------------------------------------
# What the report reads of results.json, in boundary.check_json's terms: every key it looks
# up, of the type it uses it as; extra keys are allowed, as nothing reads them.
PAIR = {"trained": "number", "untrained": "number"}
MAPS = {net: {"linear": "number", "mlp": "number"} for net in ("trained", "untrained")}
MEASURES = ("state_dissimilarity", "output_kl", "output_kl_relative", "action_agreement",
            "action_agreement_baseline")
MAP_CHECK_SE = 2.0   # §2b: no MLP map's held-out error may exceed the linear map's by more SEs
SPLICE = {"agreement_spliced": "number", "agreement_recipient": "number",
          "agreement_own": "number", "steps": "integer",
          "per_lag": {"agreement_spliced": ["number?"], "agreement_recipient": ["number?"],
                      "steps": ["integer"]}}
PROBE = {"features": ["string"], "decode": {"*": "number"},
         "controls_by_feature": {c: {"*": "number"} for c in ("untrained", "memoryless", "shuffled")},
         "policy_kl": "number", "agreement": "number", "encode_r2": "number",
         "simulation": {**{d: {**{m: MAPS for m in MEASURES}, "map_error?": MAPS}
                           for d in ("agent_to_bayes", "bayes_to_agent")},
                        "shuffled": {d: {m: {"trained": {"linear": "number", "mlp?": "number"}}
                                         for m in MEASURES}
                                     for d in ("agent_to_bayes", "bayes_to_agent")}},
         "simulation_episodes": "integer",
         "minimality": {"partial_r2": {"trained": {"*": "number"}, "untrained": {"*": "number"}},
                        "within_between_ratio": PAIR, "within_between_whitened?": PAIR,
                        "belief_design": "string"},
         "splice": {**SPLICE, "control": SPLICE},
         "value_loss": {"value_loss_per_step": "number", "value_loss_per_episode": "number",
                        "value_loss_relative": "number?",
                        "identity_gap?": "number?", "uncertainty": "string",
                        "by_t": {"mean": ["number"]},
                        "by_uncertainty": [{"low": "number", "high": "number", "mean": "number"}]}}
EXACT = {"bayes_optimal_exact": "number", "oracle_exact": "number"}
TRAIN_TEST = {"train": "number", "test": "number"}
STAY = {"stay": {cell: {"p": "number", "se": "number"} for cell in twostep.CELLS},
        "interaction": {"mean": "number", "se": "number"}}
BEHAVIOUR = {"stay": STAY, "hybrid": {"estimates": {"w": "number"}, "se": {"w": "number?"},
                                      "at_bound": "strings"}}
GRID_POINT = {k: "number" for k in ("alpha", "beta", "lam", "interaction", "se")}
SHIFT_BEHAVIOUR = {"own": {"pseudo_regret": "number"},   # experiments.shift_behaviour
                   "test": {"pseudo_regret": "number", "mean": "number"},
                   "noise_matched?": {"tau": "number", **{m: {"pseudo_regret": {
                       "mean": "number", "stderr": "number"}} for m in ("train_model", "test_model")}},
                   "behaviour": {m: {"kl": "number", "agreement": "number"}
                                 for m in ("train", "test")}}
RESULTS = {
    "facts": {"command": "string", "quick": "boolean", "wall_seconds": "number",
              "workers": "integer", "seeds": "integer", "stages": [("string", "number")],
              "training_seconds": {"*": ["number"]},
              "learning_curves": {"*": {"updates": "integer", "seeds": [["number"]]}},
              "configs": {"*": {"env": "string", "horizon": "integer?", "prior_a": "number",
                                "prior_b": "number", "hidden": "integer", "batch": "integer",
                                "updates": "integer", "lr": "number", "gamma": "number",
                                "dtype": "string", "entropy_start": "number",
                                "entropy_end": "number"}},
              "machine": {"*": "any", "cpu_count": "any"},
              "scale": {k: "integer" for k in ("folds", "probe_episodes", "snapshot_episodes",
                                               "eval_steps", "stay_episodes", "grid_episodes")}},
    "near_optimal": {"*": {
        "seeds": [{"mean": "number", "stderr": "number?", "horizon": "integer",
                   "episodes": "integer", "pseudo_regret?": "number"}],
        "references": {"policies": {"*": {"mean": "number", "stderr": "number?"}},
                       "bayes_optimal_exact": "number?", "oracle_exact": "number",
                       "episodes": "integer"}}},
    "belief_states": {"*": [{"probe": PROBE, "over_training": [
        {"updates": "integer", "r2": "number", "return": "number"}]}]},
    "calibration?": {"*": {"distilled": {"updates": "integer", "batch?": "integer",
                                         "evaluation": {
                               "mean": "number", "stderr": "number?", "episodes": "integer",
                               "pseudo_regret?": "number"}},
                           "seeds": [{"machines": {"*": {"known": "string",
                                                         "values": {"*": "number?"}}},
                                      "episodes": "integer", "splice_episodes": "integer",
                                      "along?": "string"}]}},
    "shift": {"*": {
        "agent": "string",
        "seeds": [{**SHIFT_BEHAVIOUR,
                   "decoding": {"trained": TRAIN_TEST, "untrained": TRAIN_TEST}}],
        "known?": {"*": {"expected": frozenset({"train", "test"}), "seeds": [SHIFT_BEHAVIOUR]}},
        "control_seeds": [{"trained": TRAIN_TEST}],
        "references": {"own_exact": EXACT, "test_exact": EXACT,
                       "bayes_train_model": {"pseudo_regret": {"mean": "number"}},
                       "bayes_test_model": {"pseudo_regret": {"mean": "number"}}}}},
    "two_step": {"swap_prob": "number", "seeds": [BEHAVIOUR], "belief_greedy": BEHAVIOUR,
                 "model_free_td": BEHAVIOUR,
                 "grid": {"largest": GRID_POINT, "settings": [GRID_POINT]}}}


def load_results(folder):
    """The results.json of a run's folder, its structure checked against RESULTS; ValueError
    naming the file (and the key) if it is missing, not JSON, nested too deep, or lacks
    what the report reads."""
    path = os.path.join(folder, "results.json")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist: run experiments.py --out {folder} first") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a readable results file: {e}") from None
    try:
        results = parse_json(text)
    except ValueError as e:
        raise ValueError(f"{path} is not a readable results file: {e}") from None
    missing = [k for k in RESULTS if not k.endswith("?")
               and (not isinstance(results, dict) or k not in results)]
    if missing:
        raise ValueError(f"{path} is not an experiments.py results file: missing "
                         f"{', '.join(missing)}")
    try:
        check_json(results, RESULTS, "results")
    except ValueError as e:
        raise ValueError(f"{path} lacks what the report reads: {e}") from None
    return results


# ------------------------------------------------------------------------------------------
# Statistics over seeds, as the tables show them
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


HELD, REFUTED, INCONCLUSIVE, CANNOT_DECIDE = "held", "refuted", "inconclusive", "cannot decide"


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


# ------------------------------------------------------------------------------------------
# §1 Agents act near Bayes-optimally
# ------------------------------------------------------------------------------------------
def near_optimal_measure(kind, seeds, references):
    """The per-seed values of §1's measure and its verdict.

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
        margin = REGRET_RATIO_MARGIN
    else:
        trivial = max(policies[p]["mean"] for p in TRIVIAL_POLICIES if p in policies)
        values = [(bayes - s["mean"]) / (bayes - trivial) for s in seeds]
        margin = TIGER_GAP_MARGIN
    s = summary(values)
    return {**s, "margin": margin, "held": below(s, margin)}


def near_optimal_section(results, out):
    numbers = {env: near_optimal_measure(NEAR_OPTIMAL_MEASURE[env], r["seeds"], r["references"])
               for env, r in results["near_optimal"].items()}
    returns = {env: summary(s["mean"] for s in r["seeds"])
               for env, r in results["near_optimal"].items()}
    near_optimal_figure(results["near_optimal"], numbers, os.path.join(out, "fig1_near_optimal.png"))
    learning_curves_figure(results, os.path.join(out, "fig1_learning_curves.png"))
    n = next(iter(numbers.values()))["n"]
    verdict = Verdict(
        claim="The meta-trained LSTM agents act near Bayes-optimally on every task distribution.",
        criterion=f"Upper {LEVEL:.0%} limit over seeds (t, n − 1 df) of the regret ratio "
                  f"(oracle − G) / (oracle − G_Bayes) ≤ {REGRET_RATIO_MARGIN} (bandits: "
                  "pseudo-regret; two-step: G_Bayes → belief-greedy); Tiger: of "
                  f"(V* − G) / (V* − G_always-listen) ≤ {TIGER_GAP_MARGIN}.",
        measured="; ".join(f"{env}: {pm(m)} (upper limit {fmt(m['ucl'])}) → "
                           f"{outcome(m['held'])}" for env, m in numbers.items()) + f"; n = {n}",
        held=all_held(m["held"] for m in numbers.values()))
    main = []
    for env, r in results["near_optimal"].items():
        refs, m = r["references"], numbers[env]
        best = best_classical(refs["policies"])
        reference = (refs["bayes_optimal_exact"] if refs["bayes_optimal_exact"] is not None
                     else refs["policies"]["belief_greedy"]["mean"])
        main.append([env, str(r["seeds"][0]["horizon"]), str(m["n"]),
                     str(r["seeds"][0]["episodes"]), pm(returns[env]), fmt(reference),
                     f"{best} {fmt(refs['policies'][best]['mean'])}",
                     {"regret": "regret ratio", "gap": "gap ratio"}[NEAR_OPTIMAL_MEASURE[env]],
                     pm(m), fmt(max(m["values"])), fmt(m["ucl"]), f"≤ {m['margin']:g}",
                     outcome(m["held"])])
    per_seed = [[env, str(i), fmt(s["mean"]) + " ± " + fmt(s["stderr"]),
                 fmt(s.get("pseudo_regret")), fmt(numbers[env]["values"][i], 4)]
                for env, r in results["near_optimal"].items() for i, s in enumerate(r["seeds"])]
    baselines = [[env, policy.replace("_", " "), fmt(b["mean"]) + " ± " + fmt(b["stderr"]),
                  str(r["references"]["episodes"])]
                 for env, r in results["near_optimal"].items()
                 for policy, b in r["references"]["policies"].items()]
    tables = [("Agents against the reference (exact Bayes-optimal value; two-step: the "
                 "belief-greedy policy) and the best classical baseline. Return and ratio: mean "
                 "± SE over n seeds, each evaluated on the given number of fresh episodes; "
                 "worst seed: the largest ratio of any seed, beside the mean.",
                 ["env", "T", "n", "episodes per seed", "agent return", "reference",
                  "best classical", "measure", "measure (mean ± SE)", "worst seed",
                  f"upper {LEVEL:.0%} limit", "margin", "near-optimal"], main),
                ("Per seed: return ± its evaluation SE, pseudo-regret (bandits), and the measure.",
                 ["env", "seed", "return", "pseudo-regret", "measure"], per_seed),
                ("Baselines (belief.run_baselines on one seed): return ± SE over the episodes.",
                 ["env", "policy", "return", "episodes"], baselines)]
    if "calibration" in results:
        tables.append(capacity_table(results, numbers))
    return Section(
        title="1. Agents act near Bayes-optimally",
        verdicts=[verdict], tables=tables,
        figures=[("fig1_learning_curves.png",
                  f"Learning curves: the training batch's mean return per update (block means), "
                  f"mean over n = {n} seeds with a band of ± 1 SE, against the exact "
                  "Bayes-optimal value (two-step: belief-greedy) and the best classical baseline."),
                 ("fig1_near_optimal.png",
                  f"Each agent's distance from Bayes-optimal, per seed (dots; n = {n}), with the "
                  f"mean ± SE over seeds, the one-sided upper {LEVEL:.0%} limit (t, n − 1 df) and "
                  "the margin it must stay below. Crosses: the best classical baseline's value of "
                  "the same measure.")],
        notes=["The references are exact values where the Bayes-optimal policy is computed "
               "exactly (bandits, Tiger); two-step's belief-greedy return is one Monte-Carlo "
               "run (SE in the baselines table), whose error is not carried into the limits: "
               "it shifts every seed's ratio alike."])


def capacity_table(results, numbers):
    """Capacity against optimisation: the Bayes-distilled LSTM (§2c; the agent's inputs,
    width and heads, trained by cross-entropy to the reference's actions) on the same
    measure. If it is near the reference, a network of this size can represent the policy,
    and the agent's excess is the policy-gradient training's."""
    rows = []
    for env, cal in results["calibration"].items():
        r = results["near_optimal"][env]
        evaluation = cal["distilled"]["evaluation"]
        distilled = near_optimal_measure(NEAR_OPTIMAL_MEASURE[env], [evaluation], r["references"])
        rows.append([env, pm(numbers[env]), fmt(distilled["values"][0], 4),
                     fmt(evaluation["mean"]) + " ± " + fmt(evaluation["stderr"]),
                     fmt(evaluation.get("pseudo_regret")), str(evaluation["episodes"]),
                     f"{cal['distilled']['updates']} of B = {cal['distilled'].get('batch', 'n/a')}"])
    return ("Capacity against optimisation: the Bayes-distilled LSTM of the agent's architecture "
            "(one network per family, seed 0; metarl.py distill) on the same measure as the "
            "agents (n = 1 network; return ± its evaluation SE). A distilled value near 1 (Tiger: "
            "near 0) says that a network of this size can represent the Bayes-optimal policy, so "
            "the agents' excess is their training's. Its evaluation uses the agents' evaluation "
            "seed and budget, so a figure here can differ by about its SE from a "
            "`metarl.py evaluate` of the same network with another seed.",
            ["env", "agents' measure (mean ± SE)", "distilled measure", "distilled return",
             "distilled pseudo-regret", "episodes", "distillation updates"], rows)


def curve_references(results, name):
    """{label: value} lines for agent `name`'s learning curve: its task distribution's exact
    Bayes-optimal value (two-step: belief-greedy) and best classical baseline, from §1's
    references, or from §3's for an agent that §1 does not evaluate."""
    if name in results["near_optimal"]:
        refs = results["near_optimal"][name]["references"]
        best = best_classical(refs["policies"])
        lines = {"Bayes-optimal (exact)": refs["bayes_optimal_exact"]}
        if refs["bayes_optimal_exact"] is None:
            lines = {"belief-greedy": refs["policies"]["belief_greedy"]["mean"]}
        return {**lines, f"best classical ({best.replace('_', ' ')})": refs["policies"][best]["mean"]}
    own = next(case["references"]["own_exact"] for case in results["shift"].values()
               if case["agent"] == name)
    return {"Bayes-optimal (exact)": own["bayes_optimal_exact"]}


def learning_curves_figure(results, path):
    curves = results["facts"]["learning_curves"]
    rows = (len(curves) + 1) // 2
    fig, axes = new_figure(rows, 2, width=4.4, height=3.0)
    for ax, (name, c) in zip(axes.ravel(), curves.items()):
        seeds = np.array(c["seeds"])                        # (n, points)
        u = (np.arange(seeds.shape[1]) + 0.5) * c["updates"] / seeds.shape[1]
        mean = seeds.mean(axis=0)
        ax.plot(u, mean, color=COLOURS["trained"], label=f"agent (n = {len(seeds)})")
        if len(seeds) > 1:
            se = seeds.std(axis=0, ddof=1) / np.sqrt(len(seeds))
            ax.fill_between(u, mean - se, mean + se, color=COLOURS["trained"], alpha=0.3)
        for k, (label, value) in enumerate(curve_references(results, name).items()):
            ax.axhline(value, color=("k", "C2")[k], ls=("--", ":")[k], lw=1, label=label)
        ax.set(xlabel="update", ylabel="return per episode", title=name)
        focus_on_plateau(ax, mean)
        ax.legend(fontsize=6, loc="lower right")
    for ax in axes.ravel()[len(curves):]:
        ax.set_visible(False)
    fig.suptitle("Learning curves of the recipes")
    save_png(fig, path)


def best_classical(policies):
    return max((p for p in policies if p not in ("bayes_optimal", "belief_greedy", "oracle",
                                                  "random")), key=lambda p: policies[p]["mean"])


def near_optimal_figure(raw, numbers, path):
    fig, axes = new_figure(1, 2, width=4.4, height=3.8)
    groups = (("regret", "regret ratio (1 = Bayes-optimal)", REGRET_RATIO_MARGIN),
              ("gap", "gap ratio (0 = Bayes-optimal)", TIGER_GAP_MARGIN))
    for ax, (kind, label, margin) in zip(axes[0], groups):
        envs_ = [env for env in numbers if NEAR_OPTIMAL_MEASURE[env] == kind]
        for x, env in enumerate(envs_):
            m = numbers[env]
            ax.scatter(np.full(m["n"], x) + np.linspace(-0.12, 0.12, m["n"]), m["values"], s=14,
                       color=COLOURS["trained"], zorder=3, label="seeds" if x == 0 else None)
            ax.errorbar(x + 0.25, m["mean"], yerr=m["stderr"] or 0.0, fmt="o", color="k",
                        capsize=3, label="mean ± SE" if x == 0 else None)
            if m["ucl"] is not None:
                ax.scatter(x + 0.25, m["ucl"], marker="_", s=200, color="C3",
                           label=f"upper {LEVEL:.0%} limit" if x == 0 else None)
            refs = raw[env]["references"]
            best = refs["policies"][best_classical(refs["policies"])]
            classical = near_optimal_measure(kind, [best], refs)["mean"]
            ax.scatter(x - 0.3, classical, marker="x", color="C2",
                       label="best classical" if x == 0 else None)
        ax.axhline(margin, color="C3", ls="--", lw=1, label="margin")
        ax.axhline(1.0 if kind == "regret" else 0.0, color="k", ls=":", lw=1)
        ax.set_xticks(range(len(envs_)), envs_)
        ax.set(ylabel=label, title="regret against the oracle" if kind == "regret"
               else "Tiger: gap to Bayes-optimal")
        ax.legend(fontsize=7)
    fig.suptitle("§1 Distance from the Bayes-optimal policy")
    save_png(fig, path)


# ------------------------------------------------------------------------------------------
# §2 Hidden states are belief states
# ------------------------------------------------------------------------------------------
def posterior_means(features):
    return [f for f in features if f.startswith(("mean_", "p_"))]


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
    """{env: whether the panel (§2c) validates the decoding test there}; empty for a run
    without the panel, which validates nothing."""
    return {env: panel.calibration_table(cal["seeds"])["decode"]["validated"]
            for env, cal in results.get("calibration", {}).items()}


def gated(held, validated):
    """A decoding claim's outcome in one env: its own where the panel validates decoding,
    else cannot decide."""
    return outcome(held) if validated else CANNOT_DECIDE


def decoding_caveat(validated, where="here"):
    """What a decoding claim's measured text adds where the panel does not validate decoding."""
    return "" if validated else f", but the panel does not validate decoding {where} → cannot decide"


def belief_states_section(results, out):
    numbers = {env: belief_state_numbers(seeds) for env, seeds in results["belief_states"].items()}
    n = next(iter(numbers.values()))["learned"]["n"]
    scale = results["facts"]["scale"]
    decoding_figure(numbers, os.path.join(out, "fig2_decoding.png"))
    over_training_figure(numbers, os.path.join(out, "fig2_over_training.png"))

    valid = decoding_validated(results)

    def measured(describe, key):
        return "; ".join(f"{env}: {describe(m)} → {outcome(m[key])}"
                         + decoding_caveat(valid.get(env, False)) for env, m in numbers.items())

    def decided(key):
        return across_envs({env: gated(m[key], valid.get(env, False))
                            for env, m in numbers.items()})

    gate = (" Decides an env only where the panel (§2c) validates decoding: where known "
            "non-beliefs decode as well, decodability says nothing of a belief state.")

    def worst(m):
        return min((m["decode"][f]["trained"]["lcl"] or -np.inf, f) for f in m["means"])

    verdicts = [
        Verdict(claim="The exact posterior is linearly decodable from the trained agent's state, "
                      "well beyond what the current input alone or other episodes' states give.",
                criterion=f"In every env, for each posterior mean: lower {LEVEL:.0%} limit over "
                          f"seeds of the held-out R² from [h, c] ≥ {DECODE_R2_MIN}, and of its "
                          f"margin over the memoryless and the shuffled controls (paired by "
                          f"seed) ≥ {CONTROL_MARGIN}." + gate,
                measured=measured(lambda m: f"lowest limit {fmt(worst(m)[0])} ({worst(m)[1]})",
                                  "decodable") + f"; n = {n}",
                held=decided("decodable")),
        Verdict(claim="Training makes the state more belief-like than the same network untrained.",
                criterion=f"In every env: lower {LEVEL:.0%} limit (t, n − 1 df) of trained − "
                          "untrained R² (mean over the posterior means; same episodes and folds, "
                          "paired by seed) > 0." + gate,
                measured=measured(lambda m: f"{pm(m['learned'])}", "learned_held") + f"; n = {n}",
                held=decided("learned_held")),
        Verdict(claim="Along training the state becomes more belief-like than the untrained "
                      "network, on the same histories.",
                criterion=f"In every env: lower {LEVEL:.0%} limit of (trained − untrained R² at "
                          "the last snapshot) − (the same after one update), all snapshots "
                          "probed on one fixed set of the final agent's histories, paired by seed, "
                          "> 0." + gate,
                measured=measured(lambda m: f"{pm(m['growth'])}", "growth_held") + f"; n = {n}",
                held=decided("growth_held"))]
    decode_rows = [[env, f + (" *" if f in m["means"] else ""),
                    *(pm(m["decode"][f][c]) for c in ("trained", "untrained", "memoryless",
                                                        "shuffled"))]
                   for env, m in numbers.items() for f in m["features"]]
    gap_rows = [[env, f, pm(m["margins"][f]["untrained"]), fmt(m["margins"][f]["untrained"]["lcl"]),
                 pm(m["margins"][f]["memoryless"]), pm(m["margins"][f]["shuffled"])]
                for env, m in numbers.items() for f in m["means"]]
    behaviour = [[env, pm(m["encode"]), pm(m["policy_kl"]), pm(m["agreement"])]
                 for env, m in numbers.items()]
    training = [[env, str(u), pm(summary(g[i] for g in m["gaps"])),
                 pm(summary(r[i] for r in m["returns"]))]
                for env, m in numbers.items() for i, u in enumerate(m["snapshots"])]
    return Section(
        title="2. Hidden states are belief states",
        verdicts=verdicts,
        tables=[(f"Held-out R² ({scale['folds']}-fold CV over episodes, "
                 f"{scale['probe_episodes']} fresh episodes per agent), mean ± SE over n = {n} "
                 "seeds; * marks the posterior means.",
                 ["env", "feature", "trained [h, c]", "untrained", "input x_t only",
                  "shuffled targets"], decode_rows),
                (f"Margins of the trained state's R² over each control, paired by seed (mean ± SE, "
                 f"n = {n}), posterior means only.",
                 ["env", "feature", "over untrained", f"its lower {LEVEL:.0%} limit",
                  "over input only", "over shuffled"], gap_rows),
                (f"Encoding (belief → [h, c], mean R² over units) and behaviour against the "
                 f"Bayes-optimal (two-step: belief-greedy) policy, mean ± SE over n = {n} seeds.",
                 ["env", "encode R²", "policy KL (nats/step)", "agreement"], behaviour),
                (f"Along training, on {scale['snapshot_episodes']} fixed histories per agent: "
                 "trained − untrained R² of the posterior means, and each snapshot's own return "
                 f"(mean ± SE, n = {n}).",
                 ["env", "updates", "R² gain over untrained", "return"], training)],
        figures=[("fig2_decoding.png",
                  f"Left: how much better the trained state decodes each posterior mean than "
                  f"the same network untrained (R² gain; dots: seeds, n = {n}; bars: mean ± SE). "
                  "Right: what the probe misses, 1 − R², on a log axis, for the trained state "
                  "and the controls (mean over seeds)."),
                 ("fig2_over_training.png",
                  "Left: R² gain of the trained state over the untrained network along "
                  "training, all snapshots probed on the same histories (mean ± SE over "
                  f"n = {n} seeds). Right: each snapshot's return relative to its env's last.")],
        notes=["Controls, on the same episodes and folds: *untrained* is the same architecture "
               "with its initial weights, driven by the trained agent's own inputs; *input x_t "
               "only* decodes from the current input alone; *shuffled targets* pairs each "
               "episode's [h, c] with another episode's beliefs. A random LSTM already holds "
               "running sums of its inputs, which is why the gap to it carries the claim."])


def decoding_figure(numbers, path):
    fig, axes = new_figure(1, 2, width=5.4, height=4.0)
    ax, ax_log = axes[0]
    labels = []
    for x, (env, f) in enumerate((env, f) for env, m in numbers.items() for f in m["means"]):
        gap = numbers[env]["margins"][f]["untrained"]
        ax.bar(x, gap["mean"], yerr=gap["stderr"] or 0.0, color=COLOURS["trained"], alpha=0.6,
               capsize=3)
        ax.scatter(np.full(gap["n"], x), gap["values"], s=12, color="k", zorder=3)
        labels.append(f"{env}\n{textwrap.fill(feature_words(f), 14)}")
        for condition in ("trained", "untrained", "memoryless", "shuffled"):
            miss = max(1.0 - numbers[env]["decode"][f][condition]["mean"], 1e-4)
            ax_log.scatter(x, miss, color=COLOURS[condition], label=condition_words(condition)
                           if x == 0 else None)
    for a in (ax, ax_log):
        a.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.axhline(0.0, color="k", lw=1)
    ax.set(ylabel="R² gain, trained − untrained", title="What training adds")
    ax_log.set(yscale="log", ylabel="1 − held-out R²", title="What the probe misses")
    ax_log.legend(fontsize=7)
    fig.suptitle("§2 Decoding the exact posterior mean from [h, c]")
    save_png(fig, path)


def over_training_figure(numbers, path):
    fig, axes = new_figure(1, 2, width=4.6, height=3.6)
    for k, (env, m) in enumerate(numbers.items()):
        u = np.maximum(m["snapshots"], 0.5)   # update 0 (untrained) placed at 0.5 on a log axis
        gap = [summary(g[i] for g in m["gaps"]) for i in range(len(u))]
        axes[0, 0].errorbar(u, [g["mean"] for g in gap], yerr=[g["stderr"] or 0.0 for g in gap],
                            fmt="o-", capsize=3, color=f"C{k}", label=env)
        returns = np.mean(m["returns"], axis=0)
        axes[0, 1].plot(u, returns - returns[-1], "s--", color=f"C{k}", label=env)
    axes[0, 0].set(xscale="log", xlabel="updates (0 shown at 0.5)",
                   ylabel="R² gain over untrained", title="Belief-likeness")
    axes[0, 1].set(xscale="log", xlabel="updates (0 shown at 0.5)",
                   ylabel="return − final return", title="Return")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("§2 Along training, on fixed histories")
    save_png(fig, path)


def feature_words(f):
    """A belief feature's name in words."""
    words = {"mean_p": "posterior mean of p", "p_left": "P(tiger left)",
             "p_A_good": "P(state A good)"}
    if f in words:
        return words[f]
    if f.startswith("mean_"):
        return f"posterior mean of arm {f[5:]}"
    return f.replace("_", " ")


def condition_words(condition):
    return {"trained": "trained [h, c]", "untrained": "untrained network",
            "memoryless": "input x_t only", "shuffled": "shuffled targets"}[condition]


# ------------------------------------------------------------------------------------------
# §2b Beyond decoding: simulation, minimality, splicing, value loss (machines.analyse)
# ------------------------------------------------------------------------------------------
def paired(probes, value):
    """summary of the per-seed differences value(p, "trained") − value(p, "untrained"): a
    paired design, tested as pairs."""
    return summary(value(p, "trained") - value(p, "untrained") for p in probes)


def belief_test_numbers(seeds):
    """§2b's statistics for one env from its seeds' probe summaries: trained − untrained paired
    by seed, the trained network's own value of each simulation, the splice contrasts."""
    probes = [s["probe"] for s in seeds]

    def sim(direction, measure, kind="mlp"):
        return lambda p, net: p["simulation"][direction][measure][net][kind]

    def partial(p, net):
        return float(np.mean(list(p["minimality"]["partial_r2"][net].values())))

    tests = {
        "a2b_state": paired(probes, sim("agent_to_bayes", "state_dissimilarity")),
        "a2b_output": paired(probes, sim("agent_to_bayes", "output_kl_relative")),
        "b2a_state": paired(probes, sim("bayes_to_agent", "state_dissimilarity")),
        "partial_r2": paired(probes, partial),
        "ratio": paired(probes, lambda p, net: p["minimality"]["within_between_ratio"][net])}
    if all("within_between_whitened" in p["minimality"] for p in probes):   # runs since §2c
        tests["ratio_whitened"] = paired(
            probes, lambda p, net: p["minimality"]["within_between_whitened"][net])
    for key, value in (("a2b_state", sim("agent_to_bayes", "state_dissimilarity")),
                       ("a2b_output", sim("agent_to_bayes", "output_kl_relative")),
                       ("b2a_state", sim("bayes_to_agent", "state_dissimilarity"))):
        tests[f"{key}_trained"] = summary(value(p, "trained") for p in probes)
    splice = summary(p["splice"]["agreement_spliced"] - p["splice"]["agreement_recipient"]
                     for p in probes)
    splice_vs_control = summary(machines.splice_contrast(p["splice"])
                                - machines.splice_contrast(p["splice"]["control"]) for p in probes)
    value = {k: [p["value_loss"].get(k) for p in probes]
             for k in ("value_loss_per_step", "identity_gap", "value_loss_per_episode")}
    return {"tests": tests, "splice": splice, "splice_vs_control": splice_vs_control,
            "probes": probes, "value_loss": {k: summary(v) if None not in v else None
                                             for k, v in value.items()}}


def belief_tests_section(results, out):
    numbers = {env: belief_test_numbers(seeds) for env, seeds in results["belief_states"].items()}
    n = len(next(iter(numbers.values()))["probes"])
    simulation_figure(numbers, os.path.join(out, "fig2_simulation.png"))
    splice_figure(numbers, os.path.join(out, "fig2_splice.png"))
    value_loss_figure(numbers, os.path.join(out, "fig2_value_loss.png"))

    paired_rows = [[env, label, pm(m["tests"][key]), fmt(m["tests"][key]["ucl"]),
                    pm(m["tests"][f"{key}_trained"]) if f"{key}_trained" in m["tests"] else "n/a"]
                   for env, m in numbers.items() for key, label in PAIRED_LABELS.items()
                   if key in m["tests"]]
    paired_rows += [[env, "splice contrast, all lags (spliced − recipient)", pm(m["splice"]),
                     "n/a", "n/a"] for env, m in numbers.items()]
    paired_rows += [[env, f"splice contrast at lags ≥ {machines.SPLICE_LAG_MIN}, agent − "
                          "recent-events control", pm(m["splice_vs_control"]), "n/a", "n/a"]
                    for env, m in numbers.items()]
    sim_rows = []
    for env, m in numbers.items():
        for direction, label in (("agent_to_bayes", "agent → Bayes"), ("bayes_to_agent",
                                                                       "Bayes → agent")):
            for measure in ("state_dissimilarity", "output_kl", "output_kl_relative",
                            "action_agreement"):
                cells = [pm(summary(p["simulation"][direction][measure][net][kind]
                                    for p in m["probes"]))
                         for net in ("trained", "untrained") for kind in ("linear", "mlp")]
                nulls = [pm(summary(p["simulation"]["shuffled"][direction][measure]["trained"][kind]
                                    for p in m["probes"]))
                         if all(kind in p["simulation"]["shuffled"][direction][measure]["trained"]
                                for p in m["probes"]) else "n/a" for kind in ("linear", "mlp")]
                sim_rows.append([env, label, measure.replace("_", " "), *cells, *nulls])
    mini_rows = [[env, feature.replace("_", " "),
                  *(pm(summary(p["minimality"]["partial_r2"][net][feature] for p in m["probes"]))
                    for net in ("trained", "untrained"))]
                 for env, m in numbers.items()
                 for feature in m["probes"][0]["minimality"]["partial_r2"]["trained"]]
    mini_rows += [[env, "within/between spread ratio",
                   *(pm(summary(p["minimality"]["within_between_ratio"][net] for p in m["probes"]))
                     for net in ("trained", "untrained"))] for env, m in numbers.items()]
    splice_rows = [[env, name, *(pm(summary(get(p)[k] for p in m["probes"]))
                                 for k in ("agreement_spliced", "agreement_recipient",
                                           "agreement_own")),
                    str(sum(get(p)["steps"] for p in m["probes"]))]
                   for env, m in numbers.items()
                   for name, get in (("agent", lambda p: p["splice"]),
                                     ("control", lambda p: p["splice"]["control"]))]
    value_rows = [[env, pm(m["value_loss"]["value_loss_per_step"]),
                   pm(m["value_loss"]["value_loss_per_episode"]),
                   "n/a (no exact Q*)" if m["value_loss"]["identity_gap"] is None
                   else pm(m["value_loss"]["identity_gap"])] for env, m in numbers.items()]
    probe0 = next(iter(numbers.values()))["probes"][0]
    map_tables = [] if not all("map_error" in p["simulation"]["agent_to_bayes"]
                               for m in numbers.values() for p in m["probes"]) else [(
        f"Map check: held-out error of each map in the units it is fitted in (per coordinate, "
        f"the sd of the target's one-step change), mean ± SE over n = {n} seeds, and the "
        f"MLP map's excess over the linear map, paired by seed; a map fails the check if "
        f"that excess is more than {MAP_CHECK_SE:g} SE above 0.",
        ["env", "direction", "network", "linear", "MLP", "MLP − linear", "check"],
        map_check_rows(numbers))]
    return Section(
        title="2b. Beyond decoding: simulation, minimality, splicing, value loss",
        verdicts=[],
        tables=[(f"Trained − untrained, paired by seed (mean ± SE and the upper {LEVEL:.0%} "
                 "limit, t with n − 1 df; same episodes and folds) and the trained network's own "
                 f"value (null 1), n = {n}. These comparisons were §2b's criteria before the "
                 "calibration panel; they are descriptive here, since an untrained network is "
                 "only one of the machines a test must separate (§2c decides the claims).",
                 ["env", "measure", "trained − untrained", f"upper {LEVEL:.0%} limit",
                  "trained alone"], paired_rows),
                (f"State-machine simulation (Mikulik et al. 2020), {probe0['simulation_episodes']} "
                 f"episodes per seed, mean ± SE over n = {n} seeds; maps fitted and scored on "
                 "different episodes (5-fold). Last columns: the trained network's maps of each "
                 "kind fitted to targets shuffled across episodes, the null (n/a: a run made "
                 "before the MLP null existed).",
                 ["env", "direction", "measure", "trained, linear", "trained, MLP",
                  "untrained, linear", "untrained, MLP", "shuffled, linear", "shuffled, MLP"],
                 sim_rows),
                (f"Minimality: held-out partial R² of features of the history beyond the belief "
                 f"({probe0['minimality']['belief_design']}), and the within/between spread of "
                 f"[h, c] among histories with the same sufficient statistic (n = {n}).",
                 ["env", "history feature", "trained", "untrained"], mini_rows),
                (f"Splicing: agreement of the agent's most likely action with the Bayes action "
                 "under the spliced history (i) and the recipient's (ii), over the steps where "
                 "they differ; own = the unspliced run's agreement (ceiling). Control: a machine "
                 f"that acts on the exact belief of its last {machines.SPLICE_LAG_MIN} events only "
                 f"(n = {n}; steps summed over seeds).",
                 ["env", "machine", "spliced (i)", "recipient (ii)", "own", "steps"], splice_rows),
                ("Value loss: Σ_a π(a|s_t) (max Q*(b_t) − Q*(b_t, a)) per step and per episode; "
                 "by the performance-difference identity its episode sum has the expectation "
                 "V*_0 − return: the last column should be 0 within its SE, a weak check at "
                 "this number of episodes, whose return noise exceeds the losses themselves "
                 f"(n = {n}).",
                 ["env", "per step", "per episode", "per-episode sum − (V*_0 − return)"],
                 value_rows)] + map_tables,
        figures=[("fig2_simulation.png",
                  f"State dissimilarity of the simulation in both directions, trained and "
                  f"untrained (one-hidden-layer maps; dots: seeds, n = {n}; bars: means)."),
                 ("fig2_splice.png",
                  "After a splice: agreement of the agent's action with the Bayes action under "
                  "the spliced history (solid) and the recipient's (dashed), by steps since the "
                  f"splice, and the same for the recent-events control (grey); mean over n = {n} "
                  "seeds."),
                 ("fig2_value_loss.png",
                  f"Where the agent loses value: expected loss per step against the exact "
                  f"Bayes-optimal Q*, by step and by belief uncertainty (mean over n = {n} seeds).")],
        notes=["The state dissimilarity is normalised by the variance of the target machine's "
               "one-step change: 0 is a perfect simulation, 1 no better than predicting the mean "
               "change; a map error that the next step does not carry along costs about "
               "2 Var(error) / Var(change), so values above 1 occur. The untrained network's "
               "policy is near-uniform, so its raw Bayes → agent output KL is ≈ 0 by "
               "construction; the relative KLs and the agent → Bayes direction are the ones to "
               "compare."])


def map_check_rows(numbers):
    """One row per env, direction and network: both maps' held-out errors and the MLP's excess,
    "fails" if the excess is more than MAP_CHECK_SE standard errors above 0."""
    rows = []
    for env, m in numbers.items():
        for direction, label in machines.DIRECTION_LABEL.items():
            for net in ("trained", "untrained"):
                error = {kind: [p["simulation"][direction]["map_error"][net][kind]
                                for p in m["probes"]] for kind in ("linear", "mlp")}
                excess = summary(np.subtract(error["mlp"], error["linear"]))
                worse = excess["stderr"] is not None and \
                    excess["mean"] > MAP_CHECK_SE * excess["stderr"]
                rows.append([env, label, net, pm(summary(error["linear"])),
                             pm(summary(error["mlp"])), pm(excess),
                             "fails" if worse else "passes"])
    return rows


# ------------------------------------------------------------------------------------------
# §2c Calibration: which tests separate known belief states from known non-beliefs
# ------------------------------------------------------------------------------------------
OUTCOME_ORDER = ("held", "refuted", "inconclusive", "cannot decide")


def calibration_numbers(results):
    """Per env: the panel's table (panel.calibration_table over its seeds), the agent's value
    of each test per seed (panel.agent_values of its probes), their summary and outcome."""
    out = {}
    for env, cal in results["calibration"].items():
        table = panel.calibration_table(cal["seeds"])
        agent = [panel.agent_values(s["probe"]) for s in results["belief_states"][env]]
        out[env] = {"table": table, "seeds": cal["seeds"],
                    "placement": {t.name: panel.placement(t, [a[t.name] for a in agent],
                                                          table[t.name])
                                  for t in panel.TESTS if table[t.name]["validated"]
                                  and np.all(np.isfinite([a[t.name] for a in agent]))},
                    "agent": {t.name: summary_if_defined([a[t.name] for a in agent])
                              for t in panel.TESTS},
                    "outcome": {t.name: panel.agent_outcome(t, [a[t.name] for a in agent],
                                                            table[t.name]["validated"])
                                for t in panel.TESTS}}
    return out


def across_envs(outcomes):
    """One line for a test's outcomes in several envs: 'held (bandit); cannot decide (tiger)'."""
    groups = {o: [env for env, v in outcomes.items() if v == o] for o in OUTCOME_ORDER}
    return "; ".join(f"{o} ({', '.join(envs_)})" for o, envs_ in groups.items() if envs_)


def calibration_section(results, out):
    if "calibration" not in results:   # a run from before the panel existed
        return Section(
            title="2c. Calibration: which belief-state tests can decide", verdicts=[], tables=[],
            figures=[], notes=["This run has no calibration panel (results.json predates "
                               "it): none of the belief-state tests of §2b has been shown to "
                               "separate belief states from non-beliefs, so none decides."])
    numbers = calibration_numbers(results)
    first = next(iter(numbers.values()))
    n_panel = len(first["seeds"])
    n_agent = first["agent"][panel.TESTS[0].name]["n"]
    calibration_figure(numbers, os.path.join(out, "fig2_calibration.png"))

    def measured(test):
        def one(env, m):
            row = m["table"][test.name]
            why = "" if row["validated"] else f"; the panel: {', '.join(wrong_words(row))}"
            return f"{env}: agent {pm(m['agent'][test.name])} → {m['outcome'][test.name]}{why}"
        return "; ".join(one(env, m) for env, m in numbers.items()) + f"; agent n = {n_agent}"

    verdicts = [Verdict(
        claim=f"The agent's state passes the test of {test.label}.",
        criterion=f"Decides an env only if the panel validates it (every known belief state "
                  f"passes, every known non-belief fails: one-sided {LEVEL:.0%} limits over "
                  f"n = {n_panel} panel seeds against the midpoint {fmt(test.midpoint(), 2)} of "
                  f"perfect {fmt(test.perfect, 0)} and null {fmt(test.null, 0)}); then held, "
                  "refuted or inconclusive by the agent's limits against the same midpoint.",
        measured=measured(test),
        held=across_envs({env: m["outcome"][test.name] for env, m in numbers.items()}))
        for test in panel.TESTS]
    tables = []
    for env, m in numbers.items():
        panel_machines = m["seeds"][0]["machines"]   # every panel machine, in the panel's order
        names = list(panel_machines)
        rows = []
        for test in panel.TESTS:
            row = m["table"][test.name]
            cells = [machine_cell(row["machines"].get(name)) for name in names]
            rows.append([test.label, fmt(test.midpoint(), 2), *cells,
                         "yes" if row["validated"] else "no", pm(m["agent"][test.name]),
                         m["outcome"][test.name], *placement_cells(m["placement"].get(test.name))])
        known = {name: panel_machines[name]["known"] for name in names}
        tables.append((f"{env}: the panel (mean ± SE over n = {n_panel} panel seeds, "
                       f"{m['seeds'][0]['episodes']} driven episodes and "
                       f"{m['seeds'][0]['splice_episodes']} splice episodes each; ✓ passes, "
                       "✗ fails, ? unclear) and the agent (n = "
                       f"{n_agent} seeds, its own episodes).",
                       ["test", "midpoint",
                        *(f"{name} ({'+' if known[name] == panel.BELIEF else '−'})"
                          for name in names),
                        "validated", "agent", "outcome", "beyond the strongest negative",
                        f"against the weakest positive (δ = {panel.EQUIVALENCE:g})"], rows))
    return Section(
        title="2c. Calibration: which belief-state tests can decide",
        verdicts=verdicts, tables=tables,
        figures=[("fig2_calibration.png",
                  "Each test's value on a common scale, 1 = the perfect value and 0 = the null "
                  "(clipped to [−1, 2]): the panel's known belief states (+), known non-beliefs "
                  "(×) and the agent (★), means over seeds; the dashed line is the midpoint "
                  "that a machine must clear.")],
        notes=["The panel (+ known belief states, − known non-beliefs): *embedded Bayes* is the "
               "exact filter's coordinates through a fixed random injective tanh map into 2H "
               "units, acting Bayes-optimally; *distilled* an LSTM of the agent's architecture "
               "trained to act as the exact reference and carry the belief (metarl.py "
               "distill; one network per family, its SE over panel episodes only); "
               "*untrained* the agent's architecture at its initial weights; *value learner "
               "α* a greedy model-free learner Q_a ← Q_a + α (r − Q_a); *forgetful κ* the "
               "Bayes filter with its evidence shrunk by κ each step; *never reset* (Tiger "
               "only, where the value learners' Q moves only at an opening) the hearing "
               "difference of every listen in the episode, not reset when a door opens; "
               "*trained on recent events* an LSTM of the agent's architecture trained to act "
               "on its last 3 events and carry them; *recent events* the exact belief of the "
               "last 3 events (splicing only). " + panel_episodes(results),
               "A test that the panel does not validate says nothing about the agent in either "
               "direction, whatever the agent's value: its row names the machines on the "
               "wrong side.",
               "Where a test is validated, the last two columns place the agent on the scale "
               "(null 0, perfect 1) by Welch t tests at one-sided 95 %, agent and panel "
               "seeds taken as independent samples (where a panel seed reads an agent's "
               "episodes, the two share them, and a shared episode that moves both values "
               "the same way makes the test conservative): is it nearer perfect than the "
               "strongest known "
               "non-belief, and is it within δ of the weakest known belief state by two "
               "one-sided tests (equivalent), measurably further, or unresolved."])


def panel_episodes(results):
    """Which episodes the panel's driven tests read (panel.calibrate's "along"; a run made
    before it was recorded read the Bayes-optimal policy's)."""
    along = {s.get("along", "bayes") for m in results["calibration"].values() for s in m["seeds"]}
    if along == {"agent"}:
        return ("Driven tests read every machine along the agent's own episodes, the same "
                "histories and folds as its §2 probe (panel seed s: the seed-s agent's); "
                "splicing runs each machine on its own.")
    return ("Driven tests read every machine along the Bayes-optimal policy's own episodes; "
            "splicing runs each machine on its own.")


def placement_cells(place):
    """The agent's place on a validated test (panel.placement), or n/a."""
    if place is None:
        return ["n/a", "n/a"]
    beyond = {True: "yes", False: "no", None: "n/a"}[place["beyond_negatives"]]
    return [f"{beyond} ({place['strongest_negative']})",
            f"{place['equivalence']} ({place['positive']}, Δ = {fmt(place['difference'])})"]


def wrong_words(row):
    """'embedded Bayes (+) fails, untrained (−) passes' for the machines that stop a test."""
    return [f"{name} ({'+' if row['machines'][name]['known'] == panel.BELIEF else '−'}) "
            f"{row['machines'][name]['verdict']}" for name in row["wrong"]]


def machine_cell(row):
    if row is None:
        return "n/a"
    mark = {"passes": "✓", "fails": "✗", "unclear": "?"}[row["verdict"]]
    return f"{fmt(row['mean'])} ± {fmt(row['se'])} {mark}"


def calibration_figure(numbers, path):
    fig, axes = new_figure(2, 2, width=5.2, height=3.6)
    x = np.arange(len(panel.TESTS))

    def shown(test, value):   # the common scale, clipped to the axis
        return float(np.clip(panel.scaled(test, value), -1, 2))

    for ax, (env, m) in zip(axes.ravel(), numbers.items()):
        rows = [m["table"][t.name]["machines"] for t in panel.TESTS]
        for name, machine in m["seeds"][0]["machines"].items():   # the panel's order
            belief_state = machine["known"] == panel.BELIEF
            ys = [shown(t, r[name]["mean"]) if name in r else np.nan
                  for t, r in zip(panel.TESTS, rows)]
            ax.plot(x, ys, "o" if belief_state else "x", color="C2" if belief_state else "C3",
                    ms=4, alpha=0.8)
        ax.plot(x, [shown(t, m["agent"][t.name]["mean"]) for t in panel.TESTS], "*",
                color="C0", ms=9, label="agent")
        ax.axhline(0.5, color="0.4", ls="--", lw=1)
        ax.set(xticks=x, xlabel="test", ylabel="(value − null) / (perfect − null)", title=env,
               ylim=(-1.1, 2.1))
        ax.set_xticklabels([t.name.replace("_", " ") for t in panel.TESTS], rotation=60,
                           fontsize=6)
    axes[0, 0].plot([], [], "o", color="C2", label="known belief state")
    axes[0, 0].plot([], [], "x", color="C3", label="known non-belief")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle("§2c Calibration: does each test separate belief states from non-beliefs?")
    save_png(fig, path)


PAIRED_LABELS = {"a2b_state": "agent → Bayes state dissimilarity (MLP)",
                 "a2b_output": "agent → Bayes relative output KL (MLP)",
                 "b2a_state": "Bayes → agent state dissimilarity (MLP)",
                 "partial_r2": "partial R² beyond the belief (mean over features)",
                 "ratio": "within/between spread ratio (per-unit standardised)",
                 "ratio_whitened": "within/between spread ratio (whitened state)"}


def simulation_figure(numbers, path):
    fig, axes = new_figure(1, 2, width=4.8, height=3.8)
    for ax, direction, title in ((axes[0, 0], "agent_to_bayes", "agent → Bayes"),
                                 (axes[0, 1], "bayes_to_agent", "Bayes → agent")):
        for x, (env, m) in enumerate(numbers.items()):
            for dx, net in ((-0.18, "trained"), (0.18, "untrained")):
                values = [p["simulation"][direction]["state_dissimilarity"][net]["mlp"]
                          for p in m["probes"]]
                ax.bar(x + dx, np.mean(values), 0.34, color=COLOURS[net], alpha=0.6,
                       label=condition_words(net) if x == 0 else None)
                ax.scatter(np.full(len(values), x + dx), values, s=10, color="k", zorder=3)
        ax.axhline(1.0, color="k", ls="--", lw=1)
        ax.set_xticks(range(len(numbers)), list(numbers), fontsize=7)
        ax.set(ylabel="state dissimilarity (0 = perfect)", title=title)
        ax.legend(fontsize=7)
    fig.suptitle("§2b State-machine simulation (one-hidden-layer maps)")
    save_png(fig, path)


def splice_figure(numbers, path):
    fig, axes = new_figure(2, 2, width=4.4, height=3.2)
    for ax, (env, m) in zip(axes.ravel(), numbers.items()):
        for key, style in (("agreement_spliced", "-"), ("agreement_recipient", "--")):
            for get, colour, name in ((lambda p: p["splice"], "C0", "agent"),
                                      (lambda p: p["splice"]["control"], "0.5", "control")):
                curves = np.array([[np.nan if v is None else v for v in get(p)["per_lag"][key]]
                                   for p in m["probes"]], dtype=float)
                ax.plot(mean_over_seeds(curves), style, color=colour,
                        label=f"{name}: {'spliced (i)' if key.endswith('spliced') else 'recipient (ii)'}")
        ax.set(xlabel="steps since the splice", ylabel="agreement with Bayes", title=env,
               ylim=(-0.02, 1.02))
    axes[0, 0].legend(fontsize=6)
    fig.suptitle("§2b Whose history does the agent act on after a splice?")
    save_png(fig, path)


def mean_over_seeds(curves):
    """Column means of (seeds, lags) ignoring NaN (a lag with no counted step); NaN where no
    seed has a value."""
    counted = np.isfinite(curves)
    with np.errstate(invalid="ignore"):
        return np.where(counted, curves, 0.0).sum(0) / counted.sum(0)


def value_loss_figure(numbers, path):
    fig, axes = new_figure(1, 2, width=4.6, height=3.6)
    for k, (env, m) in enumerate(numbers.items()):
        curves = np.array([p["value_loss"]["by_t"]["mean"] for p in m["probes"]])
        axes[0, 0].plot(curves.mean(axis=0), color=f"C{k}", label=env)
        rows = [p["value_loss"]["by_uncertainty"] for p in m["probes"]]
        if len({len(r) for r in rows}) == 1:
            centres = np.mean([[(b["low"] + b["high"]) / 2 for b in r] for r in rows], axis=0)
            axes[0, 1].plot(centres, np.mean([[b["mean"] for b in r] for r in rows], axis=0),
                            "o-", color=f"C{k}", label=f"{env} ({rows[0] and m['probes'][0]['value_loss']['uncertainty']})")
    axes[0, 0].set(xlabel="step t", ylabel="expected value loss per step", title="By time")
    axes[0, 1].set(xlabel="belief uncertainty (bin centre; see legend)",
                   ylabel="expected value loss per step", title="By belief uncertainty")
    for ax in axes[0]:
        ax.legend(fontsize=6)
    fig.suptitle("§2b Where the agent loses value against Bayes-optimal")
    save_png(fig, path)


# ------------------------------------------------------------------------------------------
# §3 Failures are belief failures
# ------------------------------------------------------------------------------------------
def shift_numbers(case):
    """§3's statistics for one case from its raw numbers."""
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
    exact_held = position_verdict(position, r_train - r_test, excess_own["ucl"])
    calibration = shift_calibration(case)
    position_held = matched_verdict(matched) if matched is not None else exact_held
    kl_held = below(summary(s["behaviour"]["train"]["kl"] - s["behaviour"]["test"]["kl"]
                            for s in case["seeds"]), 0.0)
    return {"position": position, "matched": matched, "position_exact_held": exact_held,
            "position_measured": position_held, "kl_measured": kl_held,
            "position_held": calibrated(position_held, calibration, "position"),
            "calibration": calibration,
            "resolvable": excess_own["ucl"] is not None
                          and r_train - r_test > 2 * excess_own["ucl"],
            "kl": kl, "kl_held": calibrated(kl_held, calibration, "kl"),
            "agreement": agreement,
            "shifted": summary(shifted), "untrained": summary(untrained),
            "control": summary(contrast(s["trained"]) for s in case["control_seeds"]),
            "crossed": crossed,
            "crossed_held": above(summary(a - b for a, b in zip(shifted, untrained)), 0.0),
            "r_train": r_train, "r_test": r_test, "excess_own": excess_own,
            "excess_test": summary(s["test"]["pseudo_regret"] - test_regret for s in case["seeds"]),
            "return_test": summary(s["test"]["mean"] for s in case["seeds"])}


def shift_calibration(case):
    """§3's position and behaviour tests on the case's known machines
    (experiments.shift_machines: LSTMs distilled on the training prior and on the test
    prior), each machine over its evaluation seeds: u_τ (noise_matched_numbers) with its
    |u_τ| < SHIFT_POSITION_MAX outcome, and KL(training-prior Bayes ‖ π) − KL(test-prior
    Bayes ‖ π) with its "< 0" outcome. A test separates them (validated) when the training
    prior's machine holds it and the test prior's is refuted; "wrong" names the machines on
    the wrong side. None for a run made before the known machines."""
    if "known" not in case:
        return None
    rows, wrong = {}, {"position": [], "kl": []}
    for name, m in case["known"].items():
        matched = noise_matched_numbers(m["seeds"])
        kl = summary(s["behaviour"]["train"]["kl"] - s["behaviour"]["test"]["kl"]
                     for s in m["seeds"])
        outcomes = {"position": matched_verdict(matched) if matched is not None else None,
                    "kl": below(kl, 0.0)}
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
    None, cannot decide. A run made before the known machines keeps its outcome."""
    return held if calibration is None or calibration["validated"][test] else None


def shift_caveat(calibration, test):
    """The words a §3 case's measured value gets where its known machines do not validate
    the test (empty where they do, or where the run has none)."""
    if calibration is None or calibration["validated"][test]:
        return ""
    return (", but the known machines do not separate here (wrong side: "
            f"{', '.join(calibration['wrong'][test])}) → cannot decide")


def noise_matched_numbers(seeds):
    """The position against noise-matched references (experiments.noise_matched_references),
    per seed u_τ = (R_train(τ) − R_agent) / (R_train(τ) − R_test(τ)) with τ the seed's own
    temperature; and whether every seed's references are apart: R_train(τ) − R_test(τ) > 2 ×
    the SE of that difference (the two SEs combined as if independent: conservative, the runs
    share their episodes); where they are not, no position (None). None for a run made before
    these references existed."""
    if not all("noise_matched" in s for s in seeds):
        return None
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
    """|u| < SHIFT_POSITION_MAX: held if both one-sided limits are inside the band, refuted if
    one limit is outside it on its own side (the whole interval beyond ±SHIFT_POSITION_MAX),
    else inconclusive; None (cannot decide) when the test cannot tell the two hypotheses apart:
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


def shift_section(results, out):
    numbers = {label: shift_numbers(case) for label, case in results["shift"].items()}
    n = next(iter(numbers.values()))["position"]["n"]
    shift_figure(numbers, os.path.join(out, "fig3_shift.png"))

    def measured(describe, key, test=None):
        return "; ".join(f"{label}: {describe(m)} → {outcome(m[key])}"
                         + (shift_caveat(m["calibration"], test)
                            if test and m[key] is not None else "")
                         for label, m in numbers.items()) + f"; n = {n}"

    decodes = decoding_validated(results)
    valid = {label: decodes.get(results["facts"]["configs"][case["agent"]]["env"], False)
             for label, case in results["shift"].items()}
    matched_run = all(m["matched"] is not None for m in numbers.values())
    position_claim = Verdict(
        claim="On shifted tasks the agent earns what the Bayes-optimal policy of its TRAINING "
              "prior earns there, not what the test prior's earns (both made as noisy as the "
              "agent is on its own tasks).",
        criterion=f"Both one-sided {LEVEL:.0%} limits over seeds of the position u_τ = "
                  "(R_train(τ) − R_agent) / (R_train(τ) − R_test(τ)) within "
                  f"(−{SHIFT_POSITION_MAX}, {SHIFT_POSITION_MAX}); R_·(τ): pseudo-regret on the "
                  "test tasks of the softmax policy π(a) ∝ exp(Q*(b, a) / τ) of each prior's "
                  "Bayes-optimal values, τ (per seed) the temperature at which the training "
                  "prior's softmax policy has the agent's own pseudo-regret on its own tasks, so "
                  "that both references degrade as the agent does. Decided only where every "
                  "seed's two references are apart (their difference > 2 SE), and where the "
                  "known machines separate (LSTMs distilled on each prior, measured the same "
                  "way: the training prior's holds, the test prior's is refuted).",
        measured=measured(lambda m: (
            f"u_τ = {pm(m['matched']['position'])}" if m["matched"]["apart"] else
            "the noise-matched references are not apart: the test cannot tell the priors apart")
            + f" at τ = {pm(m['matched']['tau'])} (exact references: u = {pm(m['position'])})",
            "position_measured", "position"),
        held=all_held(m["position_held"] for m in numbers.values())) if matched_run else None
    verdicts = [
        position_claim or Verdict(
                claim="On shifted tasks the agent earns what the Bayes-optimal policy of its "
                      "TRAINING prior earns there, not what the test prior's earns.",
                criterion=f"Both one-sided {LEVEL:.0%} limits over seeds of the position "
                          "u = (R_train − R_agent) / (R_train − R_test) within "
                          f"(−{SHIFT_POSITION_MAX}, {SHIFT_POSITION_MAX}) (pseudo-regret R on the "
                          "test tasks; u = 0: as the training-prior Bayes policy, u = 1: as the "
                          "test-prior one): nearer the training-prior policy than the test-prior "
                          "one, and no further from it in the other direction. Decided only "
                          "where R_train − R_test > 2 × the upper limit of the agent's excess "
                          "pseudo-regret on its own tasks (else an agent following the test "
                          "prior as loosely would pass).",
                measured=measured(lambda m: f"u = {pm(m['position'])}" + (
                    "" if m["resolvable"] else f" (R_train − R_test = "
                    f"{fmt(m['r_train'] - m['r_test'])} < 2 × the agent's own excess, upper "
                    f"limit {fmt(m['excess_own']['ucl'])}: the test cannot tell the two "
                    "policies apart)"), "position_held"),
                held=all_held(m["position_held"] for m in numbers.values())),
        Verdict(claim="On shifted tasks the agent acts like the training-prior Bayes policy.",
                criterion=f"Upper {LEVEL:.0%} limit of KL(training-prior Bayes ‖ agent) − "
                          "KL(test-prior Bayes ‖ agent) per step, paired by seed, < 0. Decided "
                          "only where the known machines separate (as above).",
                measured=measured(lambda m: f"{pm(m['kl'])} nats/step", "kl_measured", "kl"),
                held=all_held(m["kl_held"] for m in numbers.values())),
        Verdict(claim="On shifted tasks the agent's state holds the training-prior posterior, "
                      "beyond what running sums of the same inputs give.",
                criterion="Probe fitted on the agent's own tasks, applied unchanged to its "
                          "test-task states: Δ = R²(training-model posterior) − R²(test-model "
                          f"posterior). Lower {LEVEL:.0%} limit (t, n − 1 df) of Δ(trained) − "
                          "Δ(the same network untrained, fed the same inputs, probed the same "
                          "way), paired by seed, > 0. Decides a case only where the panel "
                          "(§2c) validates decoding in the agent's training family.",
                measured="; ".join(
                    f"{label}: {pm(m['shifted'])} vs untrained {pm(m['untrained'])} → "
                    f"{outcome(m['crossed_held'])}" + decoding_caveat(valid[label], "there")
                    for label, m in numbers.items()) + f"; n = {n}",
                held=all_held(m["crossed_held"] for m in numbers.values())
                if all(valid.values()) else None)]
    returns = [[label, pm(m["return_test"]), fmt(m["r_train"]), fmt(m["r_test"]),
                pm(m["excess_own"]), pm(m["excess_test"]), pm(m["position"]),
                f"{fmt(m['position']['lcl'])} to {fmt(m['position']['ucl'])}",
                outcome(m["position_exact_held"])]
               for label, m in numbers.items()]
    behaviour = [[label, pm(m["kl"]), pm(m["agreement"]), outcome(m["kl_measured"])]
                 for label, m in numbers.items()]
    known_rows = [[label, machine, {"train": "the training prior",
                                    "test": "the test prior"}[row["expected"]],
                   *((pm(row["matched"]["tau"]), pm(row["matched"]["position"])
                      if row["matched"]["position"] is not None else "not apart")
                     if row["matched"] is not None else ("n/a", "n/a")),
                   outcome(row["outcomes"]["position"]), pm(row["kl"]),
                   outcome(row["outcomes"]["kl"]),
                   *("yes" if m["calibration"]["validated"][t] else "no"
                     for t in ("position", "kl"))]
                  for label, m in numbers.items() if m["calibration"] is not None
                  for machine, row in m["calibration"]["machines"].items()]
    known_n = next((row["kl"]["n"] for m in numbers.values() if m["calibration"] is not None
                    for row in m["calibration"]["machines"].values()), None)
    known_tables = [] if not known_rows else [(
        "Known machines of the position and behaviour tests: an LSTM of the agent's "
        "architecture distilled on each prior (metarl.py distill; one network each, mean ± SE "
        f"over n = {known_n} evaluation seeds, so the SE is over episodes only), measured "
        "exactly as the agent is. A test decides a case only where the training prior's "
        "machine holds it and the test prior's is refuted.",
        ["case", "machine", "acts on", "τ", "position u_τ", "|u_τ| < 0.5",
         "KL difference (nats/step)", "KL difference < 0", "position test separates",
         "behaviour test separates"], known_rows)]
    matched_tables = [] if not matched_run else [(
        f"Noise-matched references (n = {n} seeds, each with its own τ): the softmax policies of "
        "the two priors' Q* at the temperature τ at which the training prior's has the agent's "
        "own pseudo-regret on its own tasks, run on the test tasks; mean ± SE over seeds.",
        ["case", "τ", "R_train(τ)", "R_test(τ)", "references apart", "position u_τ",
         f"one-sided {LEVEL:.0%} limits", "|u_τ| < 0.5"],
        [[label, pm(m["matched"]["tau"]), pm(m["matched"]["r_train"]),
          pm(m["matched"]["r_test"]), "yes" if m["matched"]["apart"] else "no",
          *((pm(p), f"{fmt(p['lcl'])} to {fmt(p['ucl'])}") if p is not None else ("n/a", "n/a")),
          outcome(m["position_held"])]
         for label, m in numbers.items() for p in [m["matched"]["position"]]])]
    decoding = [[label, pm(m["shifted"]), pm(m["untrained"]), pm(m["crossed"]),
                 fmt(m["crossed"]["lower_one_sided"]), outcome(m["crossed_held"]),
                 pm(m["control"])]
                for label, m in numbers.items()]
    scale = results["facts"]["scale"]
    return Section(
        title="3. Failures are belief failures (distribution shift)",
        verdicts=verdicts,
        tables=[(f"Returns on the test tasks ({scale['eval_steps']} agent steps per seed) and "
                 "pseudo-regrets R of the two Bayes-optimal policies on the test tasks; excess = "
                 f"the agent's pseudo-regret − (oracle − Bayes-optimal) of the tasks at hand. "
                 f"Mean ± SE over n = {n} seeds.",
                 ["case", "agent return", "R of training-prior Bayes", "R of test-prior Bayes",
                  "excess (own tasks)", "excess (test tasks)", "position u",
                  f"one-sided {LEVEL:.0%} limits (a {2 * LEVEL - 1:.0%} interval)",
                  "|u| < 0.5 (exact references)"], returns),
                (f"Behaviour on the test tasks ({scale['probe_episodes']} episodes per seed), "
                 "paired by seed: KL(training-prior Bayes ‖ agent) − KL(test-prior Bayes ‖ "
                 "agent), and agreement with the training-prior − with the test-prior Bayes "
                 f"action (mean ± SE, n = {n}).", ["case", "KL difference (nats/step)", "agreement difference",
                             "nearer the training prior"], behaviour),
                *matched_tables,
                *known_tables,
                ("Crossed decoding: Δ = R²(training-model posterior) − R²(test-model posterior) "
                 "of a probe fitted on a network's states on the agent's own tasks and applied "
                 "unchanged to its states on the test tasks, for the trained agent and for the "
                 "same network untrained (fed the same inputs), paired by seed; last column, "
                 "for comparison: Δ of the agent trained on the test tasks, probed on its own "
                 f"(mean ± SE, n = {n}).",
                 ["case", "Δ trained", "Δ untrained", "difference (paired)",
                  f"lower {LEVEL:.0%} limit", "held", "Δ of the agent trained on the test tasks"],
                 decoding)],
        figures=[("fig3_shift.png",
                  f"Left: the position u of each shifted agent between the Bayes-optimal "
                  f"policies of its training prior (0) and of the test prior (1), per seed "
                  f"(dots, n = {n}) with mean ± SE"
                  + ("; squares: u_τ against the noise-matched references" if matched_run else "")
                  + ". Right: the crossed decoding, Δ for the shifted agent and for the same "
                  "network untrained (bars: mean ± SE; dots: seeds).")],
        notes=[])


def shift_figure(numbers, path):
    fig, axes = new_figure(1, 2, width=4.8, height=4.0)
    labels = [label.replace(" agent on ", "\non ") for label in numbers]
    for x, m in enumerate(numbers.values()):
        p = m["position"]
        axes[0, 0].scatter(np.full(p["n"], x), p["values"], s=14, color=COLOURS["trained"],
                           label="u (exact references)" if x == 0 else None)
        axes[0, 0].errorbar(x + 0.2, p["mean"], yerr=p["stderr"] or 0.0, fmt="o", color="k",
                            capsize=3)
        if m["matched"] is not None and m["matched"]["position"] is not None:
            q = m["matched"]["position"]
            axes[0, 0].scatter(np.full(q["n"], x - 0.2), q["values"], s=14, marker="s",
                               color="C4", label="u_τ (noise-matched)" if x == 0 else None)
        for dx, key, colour, name in ((-0.15, "shifted", "C0", "trained"),
                                      (0.15, "untrained", "C1", "untrained")):
            s = m[key]
            axes[0, 1].bar(x + dx, s["mean"], 0.3, yerr=s["stderr"] or 0.0, capsize=3,
                           color=colour, alpha=0.6, label=name if x == 0 else None)
            axes[0, 1].scatter(np.full(len(s["values"]), x + dx), s["values"], s=12, color="k",
                               zorder=3)
    axes[0, 0].axhline(0.0, color="C2", ls="--", lw=1, label="training-prior Bayes")
    axes[0, 0].axhline(1.0, color="C3", ls="--", lw=1, label="test-prior Bayes")
    for bound in (-SHIFT_POSITION_MAX, SHIFT_POSITION_MAX):
        axes[0, 0].axhline(bound, color="k", ls=":", lw=1,
                           label="criterion" if bound > 0 else None)
    axes[0, 0].set(ylabel="position u", title="Return between the two Bayes policies")
    axes[0, 1].axhline(0.0, color="k", lw=1)
    axes[0, 1].set(ylabel="Δ R², training − test posterior", title="Which posterior the state holds")
    for ax in axes[0]:
        ax.set_xticks(range(len(labels)), labels, fontsize=6)
        ax.legend(fontsize=7)
    fig.suptitle("§3 Distribution shift")
    save_png(fig, path)


# ------------------------------------------------------------------------------------------
# §4 "Model-based" behaviour from a model-free learner
# ------------------------------------------------------------------------------------------
def two_step_numbers(r):
    interaction = summary(s["stay"]["interaction"]["mean"] for s in r["seeds"])
    w = summary(s["hybrid"]["estimates"]["w"] for s in r["seeds"])
    bound = r["grid"]["largest"]
    return {"interaction": interaction, "w": w, "bound": bound,
            "interaction_held": above(interaction, bound["interaction"]),
            "w_held": above(w, HYBRID_W_MIN)}


def two_step_section(results, out):
    r = results["two_step"]
    m = two_step_numbers(r)
    n, scale = m["interaction"]["n"], results["facts"]["scale"]
    stay_figure(r, os.path.join(out, "fig4_two_step_stay.png"))
    bound = m["bound"]
    verdicts = [
        Verdict(claim="The RL² agent, trained by a model-free learner, shows a larger reward × "
                      "transition interaction than any model-free learner of the grid.",
                criterion=f"Lower {LEVEL:.0%} limit over seeds (t, n − 1 df) of the agent's "
                          "interaction > the largest interaction of the model-free TD learners "
                          f"(α, β, λ grid of {len(r['grid']['settings'])} settings).",
                measured=f"agent {pm(m['interaction'])} (lower limit "
                         f"{fmt(m['interaction']['lcl'])}); largest model-free "
                         f"{fmt(bound['interaction'])} ± {fmt(bound['se'])} at α {bound['alpha']:g}, "
                         f"β {bound['beta']:g}, λ {bound['lam']:g}; n = {n}",
                held=m["interaction_held"]),
        Verdict(claim="Fitted by the hybrid model of Daw et al. (2011), the agent's choices "
                      "weigh model-based values more than model-free ones.",
                criterion=f"Lower {LEVEL:.0%} limit over seeds of the fitted weight w > "
                          f"{HYBRID_W_MIN}.",
                measured=f"agent w = {pm(m['w'])} (lower limit {fmt(m['w']['lcl'])}); "
                         f"belief-greedy {hybrid_w(r['belief_greedy'])}; model-free TD "
                         f"{hybrid_w(r['model_free_td'])}; n = {n}",
                held=m["w_held"])]
    rows = [["RL² agent (mean ± SE over seeds)",
             *(pm(summary(s["stay"]["stay"][c]["p"] for s in r["seeds"])) for c in twostep.CELLS),
             pm(m["interaction"]), pm(m["w"])]]
    for name, label in (("belief_greedy", "belief-greedy"), ("model_free_td", "model-free TD")):
        a = r[name]["stay"]
        rows.append([f"{label} (± clustered SE)",
                     *(fmt(a["stay"][c]["p"]) + " ± " + fmt(a["stay"][c]["se"])
                       for c in twostep.CELLS),
                     fmt(a["interaction"]["mean"]) + " ± " + fmt(a["interaction"]["se"]),
                     hybrid_w(r[name])])
    grid = sorted(r["grid"]["settings"], key=lambda s: -s["interaction"])[:5]
    grid_rows = [[f"{s['alpha']:g}", f"{s['beta']:g}", f"{s['lam']:g}",
                  fmt(s["interaction"]) + " ± " + fmt(s["se"])] for s in grid]
    return Section(
        title="4. \"Model-based\" behaviour from a model-free learner",
        verdicts=verdicts,
        tables=[(f"P(stay with the previous choice) after each kind of trial, the reward × "
                 f"transition interaction and the hybrid model's w. Agent: {n} seeds × "
                 f"{scale['stay_episodes']} episodes; references: {scale['stay_episodes']} "
                 "episodes, SEs by a bootstrap over episodes (trials of one episode are "
                 "correlated) and, for w, the sandwich SE clustered by episode.",
                 ["policy", *twostep.CELLS, "interaction", "hybrid w"], rows),
                (f"The five model-free learners of the grid with the largest interaction "
                 f"({scale['grid_episodes']} episodes each, clustered SE).",
                 ["α", "β", "λ", "interaction"], grid_rows)],
        figures=[("fig4_two_step_stay.png",
                  f"Stay probabilities: the RL² agent (mean ± SE over n = {n} seeds, seeds as "
                  "dots), belief-greedy and the default model-free TD learner (± clustered SE); "
                  "the interaction of each and the model-free grid's largest.")],
        notes=[f"A positive interaction alone does not show model-based behaviour here: with "
               f"the good state persisting (swap probability {r['swap_prob']}), model-free "
               "learners show one too, by a selection confound (Akam, Costa & Dayan 2015); "
               "hence the bound from the strongest learner of a grid, and the hybrid fit."])


def hybrid_w(behaviour):
    h = behaviour["hybrid"]
    se = h["se"]["w"]
    return f"{h['estimates']['w']:.3f}" + (" (at its bound)" if "w" in h["at_bound"] else
                                           f" ± {fmt(se)}")


def stay_figure(r, path):
    fig, axes = new_figure(2, 2, width=4.2, height=3.4)
    panels = [("RL² agent", [s["stay"] for s in r["seeds"]]),
              ("belief-greedy", [r["belief_greedy"]["stay"]]),
              ("model-free TD (α 0.5, β 5, λ 1)", [r["model_free_td"]["stay"]])]
    for ax, (title, analyses) in zip(axes.ravel(), panels):
        for k, (transition, colour) in enumerate((("common", "C0"), ("rare", "C3"))):
            cells = [f"{transition} {outcome_}" for outcome_ in ("rewarded", "unrewarded")]
            values = np.array([[a["stay"][c]["p"] for c in cells] for a in analyses])
            if len(analyses) > 1:
                err = values.std(axis=0, ddof=1) / np.sqrt(len(analyses))
            else:
                err = [analyses[0]["stay"][c]["se"] for c in cells]
            x = np.arange(2) + (k - 0.5) * 0.38
            ax.bar(x, values.mean(axis=0), 0.38, yerr=err, capsize=3, color=colour,
                   label=f"previous transition {transition}")
            if len(analyses) > 1:
                for j in range(2):
                    ax.scatter(np.full(len(values), x[j]), values[:, j], s=8, color="k", zorder=3)
        ax.set_xticks(range(2), ["rewarded", "unrewarded"])
        ax.set(ylim=(0, 1.05), ylabel="P(stay)", xlabel="previous outcome", title=title)
    axes[0, 0].legend(fontsize=7, loc="lower left")
    ax = axes[1, 1]
    agent = [s["stay"]["interaction"]["mean"] for s in r["seeds"]]
    ax.scatter(np.zeros(len(agent)), agent, s=14, color="C0", label="agent seeds")
    for x, (label, value, se) in enumerate(
            (("belief-greedy", r["belief_greedy"]["stay"]["interaction"]["mean"],
              r["belief_greedy"]["stay"]["interaction"]["se"]),
             ("model-free TD", r["model_free_td"]["stay"]["interaction"]["mean"],
              r["model_free_td"]["stay"]["interaction"]["se"]),
             ("largest model-free", r["grid"]["largest"]["interaction"], r["grid"]["largest"]["se"])),
            start=1):
        ax.errorbar(x, value, yerr=se, fmt="o", color="k", capsize=3)
    ax.set_xticks(range(4), ["RL² agent", "belief-\ngreedy", "model-free\nTD", "largest\nmodel-free"],
                  fontsize=7)
    ax.set(ylabel="reward × transition interaction", title="Interaction")
    fig.suptitle("§4 Two-step task: stay probabilities")
    save_png(fig, path)


# ------------------------------------------------------------------------------------------
# Formatting and the report
# ------------------------------------------------------------------------------------------
def fmt(x, digits=3):
    """x with `digits` decimals, or n/a for a value that does not exist (None, NaN)."""
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def pm(s, digits=3):
    """'mean ± SE (n = …)' of a summary; 'mean (n = 1)' when the SE is undefined."""
    n = s.get("n")
    n_text = f" (n = {n[0]}, {n[1]})" if isinstance(n, (tuple, list)) else ""
    if s["stderr"] is None:
        return f"{fmt(s['mean'], digits)} (n = 1)"
    return f"{fmt(s['mean'], digits)} ± {fmt(s['stderr'], digits)}{n_text}"


def outcome(held):
    """An outcome's words: held, refuted, inconclusive, a calibrated test's per-env line, or
    cannot decide (None: one seed, or a test that cannot separate its hypotheses)."""
    return CANNOT_DECIDE if held is None else held


def markdown_table(header, rows):
    def line(cells):  # a literal | (as in |a − b|) would end the cell: escape it
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


FINDINGS_START = "<!-- findings: generated by `python3 experiments.py report docs --readme README.md` -->"
FINDINGS_END = "<!-- end of findings -->"


def findings_lines(sections, facts):
    """The README's short block of what a run found: every claim and its outcome, in the
    report's order, from the same verdicts as REPORT.md (so prose cannot drift from numbers)."""
    lines = [f"### What the committed run found (n = {facts['seeds']} seeds per agent)", "",
             "Each claim of [`docs/REPORT.md`](docs/REPORT.md) with its outcome; the criteria "
             "and numbers are there.", ""]
    for s in sections:
        lines += [f"- {s.title}:"] if s.verdicts else []
        lines += [f"  - {v.claim} **{outcome(v.held)}**" for v in s.verdicts]
    return lines


def replace_findings(readme, lines):
    """README text with the block between FINDINGS_START and FINDINGS_END replaced by lines;
    ValueError if the markers are not there once each, in order."""
    start, end = readme.find(FINDINGS_START), readme.find(FINDINGS_END)
    if readme.count(FINDINGS_START) != 1 or readme.count(FINDINGS_END) != 1 or end < start:
        raise ValueError(f"the README must hold the lines {FINDINGS_START} and {FINDINGS_END} "
                         "once each, in this order, around the findings block")
    return readme[:start + len(FINDINGS_START)] + "\n" + "\n".join(lines) + "\n" + readme[end:]


def rewrite_report(folder, readme=None):
    """`experiments.py report DIR`: REPORT.md and the figures again from DIR/results.json. A
    file that lacks what the report reads is refused (ValueError) and DIR is left as it was.
    readme: a README path whose findings block is rewritten from the same verdicts (after
    the report, atomically; its markers are checked before anything is written)."""
    results = load_results(folder)
    if readme is not None:
        with open(readme, encoding="utf-8") as f:
            text = f.read()
        replace_findings(text, [])   # the markers, before any work
    try:
        findings = write_report(results, folder)
    except (KeyError, IndexError, TypeError, StopIteration, ZeroDivisionError) as e:
        # what load_results cannot see: keys that must agree across sections
        raise ValueError(f"{os.path.join(folder, 'results.json')} lacks what the report reads "
                         f"({type(e).__name__}: {e}); is it from another version of "
                         "experiments.py?") from None
    if readme is not None:
        new = replace_findings(text, findings).encode("utf-8")
        atomic_write(readme, lambda f: f.write(new))


def write_report(results, out):
    """REPORT.md and its figures in `out`, from results alone (see the module docstring). All
    are drawn into a staging folder and moved into `out` only when every one succeeded
    (boundary.write_files_together), so a failure leaves an earlier report whole. Returns the
    findings block (findings_lines)."""
    return write_files_together(out, lambda stage: render_report(results, stage))


def render_report(results, out):
    """REPORT.md and its figures, written into `out`; returns the findings block."""
    sections = [near_optimal_section(results, out), belief_states_section(results, out),
                belief_tests_section(results, out), calibration_section(results, out),
                shift_section(results, out),
                two_step_section(results, out)]
    facts = results["facts"]
    lines = ["# RL² meta-RL lab: experiment report", ""]
    if facts["quick"]:
        lines += ["> **This is a `--quick` run: its budgets are far too small for verdicts.** It "
                  "checks that the pipeline runs; read the outcomes below as placeholders.", ""]
    lines += [f"`{facts['command']}`: wall time {facts['wall_seconds'] / 60:.1f} min on "
              f"{facts['machine']['cpu_count']} CPUs, {facts['workers']} workers, "
              f"n = {facts['seeds']} seeds (0–{facts['seeds'] - 1}) per agent. Every number "
              "below was measured in this run; every verdict applies the stated criterion, "
              f"with one-sided {LEVEL:.0%} limits from Student's t with n − 1 degrees of "
              "freedom.", "", "## Headline", "",
              markdown_table(["claim", "criterion", "measured (mean ± SE, n)", "outcome"],
                             [[v.claim, v.criterion, v.measured, f"**{outcome(v.held)}**"]
                              for s in sections for v in s.verdicts]), ""]
    for s in sections:
        lines += section_markdown(s)
    lines += run_markdown(facts)
    atomic_write(os.path.join(out, "REPORT.md"), lambda f: f.write("\n".join(lines).encode("utf-8")))
    return findings_lines(sections, facts)


def section_markdown(s):
    lines = [f"## {s.title}", ""]
    if s.verdicts:   # a descriptive section has tables only
        lines += [markdown_table(["claim", "criterion", "measured", "outcome"],
                                 [[v.claim, v.criterion, v.measured, f"**{outcome(v.held)}**"]
                                  for v in s.verdicts]), ""]
    for caption, header, rows in s.tables:
        lines += [caption, "", markdown_table(header, rows), ""]
    for name, caption in s.figures:
        lines += [f"![{name[:-len('.png')]}]({name})", "", f"*{caption}*", ""]
    return lines + [note + "\n" for note in s.notes]


def run_markdown(facts):
    """The training budgets (seed 0's Config of each agent), stage times and machine facts."""
    budgets = [[name, hp["env"], str(hp["horizon"] or envs.family(hp["env"]).default_horizon),
                f"Beta({hp['prior_a']:g}, {hp['prior_b']:g})"
                if "prior_a" in envs.family(hp["env"]).fields else "n/a",
                str(hp["hidden"]), str(hp["batch"]),
                str(hp["updates"]), f"{hp['lr']:g}", f"{hp['gamma']:g}", hp["dtype"],
                f"{hp['entropy_start']:g} → {hp['entropy_end']:g}",
                fmt(float(np.mean(facts["training_seconds"][name])), 1)]
               for name, hp in facts["configs"].items()]
    return ["## Training budgets", "",
            markdown_table(["agent", "env", "T", "prior", "hidden", "batch", "updates", "lr", "γ",
                            "dtype", "entropy β", "mean training time (s)"], budgets), "",
            "## How this run was made", "",
            markdown_table(["stage", "wall time (s)"],
                           [[stage, f"{seconds:.1f}"] for stage, seconds in facts["stages"]]),
            "", markdown_table(["fact", "value"],
                               [[k, str(v)] for k, v in facts["machine"].items()]), ""]
