"""REPORT.md and its figures, from results.json alone: it formats and draws, claims.py decides.

experiments.py measures and writes every raw number (per seed) into results.json, and checks a
file against its schema before a report is made from it (experiments.load_results). For each
claim, claims.py holds the statement, the criterion (stated before the numbers), its constants
and the function that decides it, over the statistics it computes (stats.py: Student-t limits
with n − 1 degrees of freedom, paired where the design is paired). This module puts criteria,
numbers and outcomes into tables and draws the figures. `python experiments.py report DIR`
calls rewrite_report on DIR's results.json, so a report can be rewritten, byte for byte,
without training anything.
"""
import os
import textwrap
from dataclasses import dataclass, field

import numpy as np

import claims
import envs
import ladders
import machines
import panel
import twostep
from boundary import (atomic_write, check_writable_file, focus_on_plateau, new_figure, save_png,
                      write_files_together)
from claims import outcome, summary
from stats import LEVEL

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


def verdict(claim, numbers, measured, **facts):
    """The row of a claims.Claim: its statement, its criterion with the run's facts filled
    in, the measured text, and the outcome claim.decide gives on the section's numbers."""
    return Verdict(claim=claim.statement, criterion=claim.criterion_text(**facts),
                   measured=measured, held=claim.decide(numbers))


@dataclass
class Section:
    """One experiment as the report shows it."""

    title: str
    verdicts: list
    tables: list    # (caption, header, rows), cells already formatted
    figures: list   # (file name in the output folder, caption)
    notes: list     # paragraphs a reader needs to judge the numbers
    appendix: list = field(default_factory=list)   # tables shown in APPENDIX.md instead
    caveats: list = field(default_factory=list)    # notes the README's findings repeat


# ------------------------------------------------------------------------------------------
# §1 Agents act near Bayes-optimally
# ------------------------------------------------------------------------------------------
def near_optimal_section(results, out):
    numbers = claims.near_optimal_numbers(results)
    returns = {env: summary(s["mean"] for s in r["seeds"])
               for env, r in results["near_optimal"].items()}
    near_optimal_figure(results["near_optimal"], numbers, os.path.join(out, "fig1_near_optimal.png"))
    learning_curves_figure(results, os.path.join(out, "fig1_learning_curves.png"))
    n = next(iter(numbers.values()))["n"]
    verdicts = [verdict(claims.NEAR_OPTIMAL, numbers,
                        "; ".join(f"{env}: {pm(m)} (upper limit {fmt(m['ucl'])}) → "
                                  f"{outcome(m['held'])}" for env, m in numbers.items())
                        + f"; n = {n}")]
    main = []
    for env, r in results["near_optimal"].items():
        refs, m = r["references"], numbers[env]
        best = best_classical(refs["policies"])
        reference = (refs["bayes_optimal_exact"] if refs["bayes_optimal_exact"] is not None
                     else refs["policies"]["belief_greedy"]["mean"])
        main.append([env, str(r["seeds"][0]["horizon"]), str(m["n"]),
                     str(r["seeds"][0]["episodes"]), pm(returns[env]), fmt(reference),
                     f"{best} {fmt(refs['policies'][best]['mean'])}",
                     {"regret": "regret ratio", "gap": "gap ratio"}[m["kind"]],
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
                capacity_table(results, numbers)]
    return Section(
        title="1. Agents act near Bayes-optimally",
        verdicts=verdicts, tables=tables,
        appendix=[("Per seed: return ± its evaluation SE, pseudo-regret (bandits), and the "
                   "measure.", ["env", "seed", "return", "pseudo-regret", "measure"], per_seed),
                  ("Baselines (belief.run_baselines on one seed): return ± SE over the episodes.",
                   ["env", "policy", "return", "episodes"], baselines)],
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
               "run (SE in the baselines table of the appendix), whose error is not carried "
               "into the limits: it shifts every seed's ratio alike. Per-seed returns and "
               f"every baseline are in [{APPENDIX}]({APPENDIX})."])


def capacity_table(results, numbers):
    """Capacity against optimisation: the Bayes-distilled LSTM (§2c; the agent's inputs,
    width and heads, trained by cross-entropy to the reference's actions) on the same
    measure. If it is near the reference, a network of this size can represent the policy,
    and the agent's excess is the policy-gradient training's."""
    rows = []
    for env, cal in results["ladders"].items():
        r = results["near_optimal"][env]
        evaluation = cal["distilled"]["evaluation"]
        distilled = claims.near_optimal_measure(numbers[env]["kind"], [evaluation],
                                                r["references"])
        rows.append([env, pm(numbers[env]), fmt(distilled["values"][0], 4),
                     fmt(evaluation["mean"]) + " ± " + fmt(evaluation["stderr"]),
                     fmt(evaluation.get("pseudo_regret")), str(evaluation["episodes"]),
                     f"{cal['distilled']['updates']} of B = {cal['distilled']['batch']}"])
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
    groups = (("regret", "regret ratio (1 = Bayes-optimal)"),
              ("gap", "gap ratio (0 = Bayes-optimal)"))
    for ax, (kind, label) in zip(axes[0], groups):
        envs_ = [env for env in numbers if numbers[env]["kind"] == kind]
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
            classical = claims.near_optimal_measure(kind, [best], refs)["mean"]
            ax.scatter(x - 0.3, classical, marker="x", color="C2",
                       label="best classical" if x == 0 else None)
        ax.axhline(claims.MARGINS[kind], color="C3", ls="--", lw=1, label="margin")
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
def decoding_caveat(validated, where="here"):
    """What a decoding claim's measured text adds where decoding does not grade sufficiency."""
    return ("" if validated else
            f", but decoding does not grade sufficiency on the ladder {where} → cannot decide")


def belief_states_section(results, out):
    numbers = claims.belief_states_numbers(results)
    n = next(iter(numbers.values()))["learned"]["n"]
    scale = results["facts"]["scale"]
    decoding_figure(numbers, os.path.join(out, "fig2_decoding.png"))
    over_training_figure(numbers, os.path.join(out, "fig2_over_training.png"))

    def measured(describe, key):
        return "; ".join(f"{env}: {describe(m)} → {outcome(m[key])}"
                         + decoding_caveat(m["validated"])
                         for env, m in numbers.items()) + f"; n = {n}"

    def worst(m):
        return min((m["decode"][f]["trained"]["lcl"] or -np.inf, f) for f in m["means"])

    verdicts = [
        verdict(claims.DECODABLE, numbers,
                measured(lambda m: f"lowest limit {fmt(worst(m)[0])} ({worst(m)[1]})",
                         "decodable")),
        verdict(claims.LEARNED, numbers, measured(lambda m: f"{pm(m['learned'])}", "learned_held")),
        verdict(claims.GROWTH, numbers, measured(lambda m: f"{pm(m['growth'])}", "growth_held"))]
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
        appendix=[(f"Held-out R² ({scale['folds']}-fold CV over episodes, "
                   f"{scale['probe_episodes']} fresh episodes per agent), mean ± SE over n = {n} "
                   "seeds; * marks the posterior means.",
                   ["env", "feature", "trained [h, c]", "untrained", "input x_t only",
                    "shuffled targets"], decode_rows)],
        tables=[(f"Margins of the trained state's R² over each control, paired by seed (mean ± SE, "
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
        notes=[f"Every feature's held-out R² is in [{APPENDIX}]({APPENDIX}). "
               "Controls, on the same episodes and folds: *untrained* is the same architecture "
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
    by seed of each test of panel.TESTS with a paired_label, the trained network's own value
    where the test shows it (trained_alone), the splice contrasts."""
    probes = [s["probe"] for s in seeds]

    def read(test):   # test's value for network net of probe p
        return lambda p, net: test.value(panel.probe_measures(p, net))

    shown = [t for t in panel.TESTS if t.paired_label is not None]
    tests = {t.name: paired(probes, read(t)) for t in shown}
    alone = {t.name: summary(read(t)(p, "trained") for p in probes)
             for t in shown if t.trained_alone}
    splice = summary(p["splice"]["agreement_spliced"] - p["splice"]["agreement_recipient"]
                     for p in probes)
    splice_vs_control = summary(machines.splice_contrast(p["splice"])
                                - machines.splice_contrast(p["splice"]["control"]) for p in probes)
    value = {k: [p["value_loss"].get(k) for p in probes]
             for k in ("value_loss_per_step", "identity_gap", "value_loss_per_episode")}
    return {"tests": tests, "alone": alone, "splice": splice,
            "splice_vs_control": splice_vs_control,
            "probes": probes, "value_loss": {k: summary(v) if None not in v else None
                                             for k, v in value.items()}}


def belief_tests_section(results, out):
    numbers = {env: belief_test_numbers(seeds) for env, seeds in results["belief_states"].items()}
    n = len(next(iter(numbers.values()))["probes"])
    simulation_figure(numbers, os.path.join(out, "fig2_simulation.png"))
    splice_figure(numbers, os.path.join(out, "fig2_splice.png"))
    value_loss_figure(numbers, os.path.join(out, "fig2_value_loss.png"))

    paired_rows = [[env, t.paired_label, pm(m["tests"][t.name]), fmt(m["tests"][t.name]["ucl"]),
                    pm(m["alone"][t.name]) if t.trained_alone else "n/a"]
                   for env, m in numbers.items() for t in panel.TESTS if t.paired_label]
    paired_rows += [[env, "splice contrast, all lags (spliced − recipient)", pm(m["splice"]),
                     "n/a", "n/a"] for env, m in numbers.items()]
    paired_rows += [[env, f"splice contrast at lags ≥ {machines.SPLICE_LAG_MIN}, agent − "
                          "recent-events control", pm(m["splice_vs_control"]), "n/a", "n/a"]
                    for env, m in numbers.items()]
    sim_rows = []
    for env, m in numbers.items():
        for direction, label in machines.DIRECTION_LABEL.items():
            for measure in ("state_dissimilarity", "output_kl", "output_kl_relative",
                            "action_agreement"):
                cells = [pm(summary(p["simulation"][direction][measure][net][kind]
                                    for p in m["probes"]))
                         for net in ("trained", "untrained") for kind in ("linear", "mlp")]
                nulls = [pm(summary(p["simulation"]["shuffled"][direction][measure]["trained"][kind]
                                    for p in m["probes"])) for kind in ("linear", "mlp")]
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
    map_table = (
        f"Map check: held-out error of each map in the units it is fitted in (per coordinate, "
        f"the sd of the target's one-step change), mean ± SE over n = {n} seeds, and the "
        f"MLP map's excess over the linear map, paired by seed; a map fails the check if "
        f"that excess is more than {claims.MAP_CHECK_SE:g} SE above 0.",
        ["env", "direction", "network", "linear", "MLP", "MLP − linear", "check"],
        map_check_rows(numbers))
    return Section(
        title="2b. Beyond decoding: simulation, minimality, splicing, value loss",
        verdicts=[],
        tables=[(f"Trained − untrained, paired by seed (mean ± SE and the upper {LEVEL:.0%} "
                 "limit, t with n − 1 df; same episodes and folds) and the trained network's own "
                 f"value (null 1), n = {n}. Descriptive: an untrained network is one reference "
                 "point, not a scale (§2c places the agent on the ladders).",
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
                 value_rows), map_table],
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
    "fails" by claims.map_check."""
    rows = []
    for env, m in numbers.items():
        for direction, label in machines.DIRECTION_LABEL.items():
            for net in ("trained", "untrained"):
                error = {kind: [p["simulation"][direction]["map_error"][net][kind]
                                for p in m["probes"]] for kind in ("linear", "mlp")}
                excess, worse = claims.map_check(error["linear"], error["mlp"])
                rows.append([env, label, net, pm(summary(error["linear"])),
                             pm(summary(error["mlp"])), pm(excess),
                             "fails" if worse else "passes"])
    return rows


# ------------------------------------------------------------------------------------------
# §2c The agent on the ladders
# ------------------------------------------------------------------------------------------
def ladders_section(results, out, numbers):
    """§2c from claims.ladder_numbers(results) (computed once by render_report)."""
    n_agent = len(next(iter(results["belief_states"].values())))
    missing = [env for env, lad in results["ladders"].items() if not lad["seeds"]]
    ladders_figure(numbers, os.path.join(out, "fig2_ladders.png"))

    def measured(ladder):
        return "; ".join(f"{env}: {position_words(ladder, m['profile'][ladder.name])}"
                         for env, m in numbers.items()) + f"; agent n = {n_agent}"

    verdicts = [verdict(claim, numbers, measured(ladder))
                for ladder, claim in zip(ladders.LADDERS, claims.PROPERTY_CLAIMS)]
    verdicts.append(verdict(claims.BELIEF_STATE, numbers, "; ".join(
        f"{env}: sufficiency {m['profile']['sufficiency']['verdict']}, causal use "
        f"{m['profile']['causal use']['verdict']} (minimality "
        f"{m['profile']['minimality']['verdict']})" for env, m in numbers.items())
        + f"; agent n = {n_agent}"))
    tables = [(f"{env}: positions on each ladder (the test that places it; position and "
               f"interval in the ladder's units; ≤/≥: the interval runs on past the qualified "
               f"range). Agent: n = {n_agent} seeds; reference networks: n = "
               f"{m['ladder_seeds']} ladder seeds, measured along the same episodes.",
               ["machine", *(f"{ladder.name} ({ladder.unit})" for ladder in ladders.LADDERS)],
               [[name, *(position_cell(ladder, prof[ladder.name]) for ladder in ladders.LADDERS)]
                for name, prof in (("agent", m["profile"]),
                                   *((ref, r["profile"]) for ref, r in m["references"].items()))])
              for env, m in numbers.items()]
    tables.append((
        "Which test grades which property: the grades between which it qualifies on the ladder "
        "of each property it is meant to measure (panel.Test.measures), or why it does not "
        "(its most frequent reason over that ladder's pairs: basis spread ≥ step = "
        "basis-dependent; not monotone in a basis; flat = blind to what the ladder varies).",
        ["test", "meant for", *numbers], qualification_rows(numbers)))
    return Section(
        title="2c. The agent on the ladders: sufficiency, minimality, policy, causal use",
        verdicts=verdicts, tables=tables,
        figures=[("fig2_ladders.png",
                  "Each property's ladder (columns) per family (rows): the value of the test "
                  "that places machines on it, per basis (lines; mean over ladder seeds) against "
                  "the grade; the agent's mean and one-sided limits over seeds (band) and the "
                  "reference networks (dashed).")],
        notes=[ladder_note(numbers, missing), APPENDIX_LINK],
        caveats=list(filter(None, [known_belief_caveat(numbers)])))


def qualification_rows(numbers):
    """Per test: the properties it is meant for, and per env where it qualifies on them."""
    rows = []
    for t in panel.TESTS:
        cells = []
        for m in numbers.values():
            parts = []
            for prop in t.measures:
                q = m["calibration"][prop][t.name]
                if q["qualified"]:
                    parts.append(f"{prop} {', '.join(f'{a:g}–{b:g}' for a, b in q['range'])}")
                else:
                    reasons = [r for r in q["reason"] if r]
                    # the most frequent reason, ties to the first (no set: its order varies)
                    parts.append(f"{prop}: no ({max(reasons, key=reasons.count)})")
            cells.append("; ".join(parts))
        rows.append([t.name, ", ".join(t.measures), *cells])
    return rows


APPENDIX = "APPENDIX.md"
APPENDIX_LINK = (f"Every ladder's table (each test's value per grade and basis, whether it is "
                 f"monotone, its basis spread, where it qualifies) and §2b's tests are in "
                 f"[{APPENDIX}]({APPENDIX}).")


def ladder_note(numbers, missing):
    """What the ladders are, and where they were not built."""
    words = ["The ladders hold every property but one at the exact filter's: *sufficiency* "
             "forgetful filters x' = κ · step(x) acting by Q*(x) (the evidence of an event k steps "
             "back counts κᵏ); *minimality* the exact filter plus its last k events; *policy* the "
             "exact filter acting by softmax(Q*/τR) (R the family's reward scale); *causal use* "
             "the exact filter acting by λ π*(x) + (1 − λ) π*(prior): the belief moves only the λ "
             "part of its actions. Each is built in the identity basis, a random linear basis "
             "and a random tanh basis, and on the bandit in the agent's own basis (LSTMs of its "
             "architecture distilled from the grade's machine, ladders.LSTM_GRADES). A test "
             "qualifies between two grades when it moves the same way in every basis and the "
             "spread of the fixed bases (the same machine in other coordinates) is below that "
             "move; only a test meant to measure the property (panel.Test.measures) places a "
             "machine on its ladder. A machine's position is the grade at which that test's curve "
             "takes the machine's mean over its seeds, within the test's widest qualified "
             f"range; its interval, the grades at which the curve's one-sided {LEVEL:.0%} band "
             "(t over ladder seeds × bases) meets the machine's one-sided limits (t, n − 1 df "
             "over its seeds), so that both the agent's seeds and the ladder's noise count. A "
             "network (the agent, a reference) is read on the LSTM basis's curve where the "
             "ladder has one (\"LSTM curve\", its band over ladder seeds), so that the cost of "
             "being an LSTM is not read as lost belief; elsewhere on the fixed bases' pooled "
             "curve."]
    if missing:
        words.append(f"No ladders were built for {', '.join(missing)} (the main job's budget): "
                     "its claims that rest on decoding cannot be decided.")
    return " ".join(words)


def known_belief_caveat(numbers):
    """Where the Bayes-distilled LSTM, a known belief state, is itself refuted on a ladder:
    that scale reads something of being an LSTM (the agent's basis was not built there), so
    the agent's refutation on it says no more than that it is as far from the scripted
    machines as a known belief-state network is, or further. Empty if nowhere."""
    refuted = []
    for env, m in numbers.items():
        for ladder in ladders.LADDERS:
            prop = m["references"]["distilled"]["profile"][ladder.name]
            if ladder.distilled_has_it and prop["verdict"] == "refuted":
                placed = prop["tests"][prop["chosen"]]
                refuted.append(f"{env} {ladder.name} ({ladder.unit} {placed['position']:.3g})")
    if not refuted:
        return ""
    return ("The Bayes-distilled LSTM, a known belief state of the agent's architecture, is "
            f"itself refuted on: {', '.join(refuted)}. On those ladders (no grades in the "
            "agent's basis) the scale reads a cost of being an LSTM too: there an agent's "
            "refutation says that its state is as far from the scripted machines as a "
            "known belief-state network's is, or further, not that it lacks the property.")


def bound(value, is_open, sign):
    return ("≤" if sign < 0 else "≥") * bool(is_open) + f"{value:.3g}"


def position_cell(ladder, prop):
    """A machine's position on one ladder: "0.95 [0.93, ≥0.99] (test) → held"."""
    placed = prop["tests"].get(prop["chosen"]) if prop["chosen"] else None
    if placed is None:
        return "no test qualifies → cannot decide"
    if "outside" in placed:
        return f"{placed['outside']} ({prop['chosen']}) → {prop['verdict']}"
    curve = ", LSTM curve" if prop["basis"] else ""
    if placed["beyond"]:
        side = "≤" if placed["open_low"] else "≥"
        return (f"beyond the graded range: {side}{placed['position']:.3g} "
                f"({prop['chosen']}{curve}) → {prop['verdict']}")
    return (f"{placed['position']:.3g} [{bound(placed['low'], placed['open_low'], -1)}, "
            f"{bound(placed['high'], placed['open_high'], 1)}] ({prop['chosen']}{curve}) → "
            f"{prop['verdict']}")


def position_words(ladder, prop):
    return f"{ladder.unit} " + position_cell(ladder, prop)


def ladders_figure(numbers, path):
    """Rows: families; columns: ladders. The chosen test's curve per basis, the agent's mean
    with its limits, the reference networks' means."""
    envs_ = list(numbers)
    fig, axes = new_figure(max(1, len(envs_)), len(ladders.LADDERS), 4.0, 3.0)
    axes = np.atleast_2d(axes)
    for i, env in enumerate(envs_):
        m = numbers[env]
        for j, ladder in enumerate(ladders.LADDERS):
            ax = axes[i, j]
            test = m["profile"][ladder.name]["chosen"]
            ax.set(xlabel=f"grade ({ladder.unit})", title=f"{env}: {ladder.name}")
            if test is None:
                ax.text(0.5, 0.5, "no test qualifies", ha="center", transform=ax.transAxes)
                ax.set(ylabel="value")
                continue
            values = m["calibration"][ladder.name][test]["values"]
            for basis, v in values.items():
                v = np.asarray(v, np.float64)
                keep = np.isfinite(v).all(1)
                ax.plot(np.asarray(ladder.grades)[keep], v[keep].mean(1), "o-", ms=3, label=basis)
            agent = [ladders.number_or_nan(a[test]) for a in m["agent"]]
            if np.all(np.isfinite(agent)):
                s = summary(agent)
                ax.axhline(s["mean"], color="k", lw=1.2, label="agent")
                if s["lcl"] is not None:
                    ax.axhspan(s["lcl"], s["ucl"], color="k", alpha=0.12)
            for k, (ref, r) in enumerate(m["references"].items()):
                vals = [ladders.number_or_nan(v[test]) for v in r["values"]]
                if np.all(np.isfinite(vals)):
                    ax.axhline(np.mean(vals), color=f"C{5 + k}", ls="--", lw=1, label=ref)
            ax.set(ylabel=test.replace("_", " "))
    shown = {}   # one legend for the figure: every basis, the agent, every reference network
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            shown.setdefault(label, handle)
    fig.legend(list(shown.values()), list(shown), loc="outside lower center", ncol=len(shown),
               fontsize=8)
    fig.suptitle("The agent on the ladders of known machines")
    save_png(fig, path)


def appendix_markdown(results, numbers, sections):
    """APPENDIX.md: every ladder's table per family and property (numbers:
    claims.ladder_numbers), then §2b's section (sections[0]), then the tables the other
    sections send there (Section.appendix)."""
    lines = ["# Appendix to the experiment report", "",
             "Back to [REPORT.md](REPORT.md).", "",
             "## A. The ladders, test by test", "",
             "Per family and property: each test's curve (mean over ladder seeds × fixed bases) "
             "per grade with the spread of the fixed bases' means in brackets, the bases in which it is "
             "strictly monotone along the whole ladder, and the grades between which it "
             "qualifies (or why it does not, pair by pair). Then, for each test meant to "
             "measure the property, its value per basis and grade (mean ± SE over ladder "
             "seeds).", ""]
    for env, m in numbers.items():
        for ladder in ladders.LADDERS:
            cal = m["calibration"][ladder.name]
            known = [known_value(ladder, g, results, env) for g in ladder.grades]
            rows = [[t.name, *(f"{fmt(c)} ({fmt(sp)})" for c, sp in zip(q["curve"], q["spread"])),
                     ", ".join(b for b, ok in q["monotone"].items() if ok) or "none",
                     "; ".join(f"{a:g}–{b:g}" for a, b in q["range"]) or
                     "no: " + ", ".join(sorted({r for r in q["reason"] if r}))]
                    for t in panel.TESTS for q in [cal[t.name]]]
            lines += [f"### {env}: {ladder.name} ({ladder.unit}; n = {m['ladder_seeds']} ladder "
                      "seeds)", "",
                      markdown_table(["test", *(f"{ladder.unit} = {k}" for k in known),
                                      "monotone in", "qualifies"], rows), ""]
            for t in panel.TESTS:
                if ladder.name not in t.measures:
                    continue
                q = cal[t.name]
                bases = list(q["values"])
                rows = []
                for g, grade in enumerate(ladder.grades):
                    cells = []
                    for basis in bases:
                        v = np.asarray(q["values"][basis][g], np.float64)
                        cells.append(pm(summary(v)) if np.isfinite(v).all() else "n/a")
                    pair = ("" if g == len(ladder.grades) - 1 else
                            "yes" if q["pairs"][g] else q["reason"][g])
                    rows.append([known[g], *cells, fmt(q["spread"][g]), pair])
                lines += [f"{env}, {ladder.name}, {t.label}:", "",
                          markdown_table([f"{ladder.unit} (known)", *bases, "basis spread",
                                          "qualifies to the next grade"], rows), ""]
    lines += ["## B. " + sections[0].title[len("2b. "):], ""] + section_markdown(sections[0])[2:]
    for letter, s in zip("CDEFG", [s for s in sections[1:] if s.appendix]):
        lines += [f"## {letter}. {s.title}", ""]
        for caption, header, rows in s.appendix:
            lines += [caption, "", markdown_table(header, rows), ""]
    return lines


def known_value(ladder, grade, results, env):
    """A grade as the table shows it: sufficiency adds the fraction of the evidence a filter
    of forgetting κ keeps over the episode (ladders.evidence_kept)."""
    if ladder.name != "sufficiency":
        return f"{grade:g}"
    horizon = results["facts"]["configs"][env]["horizon"] or envs.family(
        results["facts"]["configs"][env]["env"]).default_horizon
    return f"{grade:g} (keeps {ladders.evidence_kept(grade, horizon):.2f})"


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
def shift_caveat(calibration, test):
    """The words a §3 case's measured value gets where its known machines do not validate
    the test (empty where they do)."""
    if calibration["validated"][test]:
        return ""
    return (", but the known machines do not separate here (wrong side: "
            f"{', '.join(calibration['wrong'][test])}) → cannot decide")


def shift_section(results, out):
    numbers = claims.shift_section_numbers(results)
    n = next(iter(numbers.values()))["position"]["n"]
    band = claims.SHIFT_POSITION_MAX
    shift_figure(numbers, os.path.join(out, "fig3_shift.png"))

    def measured(describe, key, test=None):
        return "; ".join(f"{label}: {describe(m)} → {outcome(m[key])}"
                         + (shift_caveat(m["calibration"], test)
                            if test and m[key] is not None else "")
                         for label, m in numbers.items()) + f"; n = {n}"

    verdicts = [
        verdict(claims.POSITION, numbers, measured(lambda m: (
            f"u_τ = {pm(m['matched']['position'])}" if m["matched"]["apart"] else
            "the noise-matched references are not apart: the test cannot tell the priors apart")
            + f" at τ = {pm(m['matched']['tau'])} (exact references: u = {pm(m['position'])})",
            "position_measured", "position")),
        verdict(claims.BEHAVIOUR, numbers,
                measured(lambda m: f"{pm(m['kl'])} nats/step", "kl_measured", "kl")),
        verdict(claims.CROSSED, numbers, "; ".join(
            f"{label}: {pm(m['shifted'])} vs untrained {pm(m['untrained'])} → "
            f"{outcome(m['crossed_held'])}" + decoding_caveat(m["decoding_validated"], "there")
            for label, m in numbers.items()) + f"; n = {n}")]
    returns = [[label, pm(m["return_test"]), fmt(m["r_train"]), fmt(m["r_test"]),
                pm(m["excess_own"]), pm(m["excess_test"]), pm(m["position"]),
                f"{fmt(m['position']['lcl'])} to {fmt(m['position']['ucl'])}",
                outcome(m["position_exact_held"])]
               for label, m in numbers.items()]
    behaviour = [[label, pm(m["kl"]), pm(m["agreement"]), outcome(m["kl_measured"])]
                 for label, m in numbers.items()]
    known_rows = [[label, machine, {"train": "the training prior",
                                    "test": "the test prior"}[row["expected"]],
                   pm(row["matched"]["tau"]), pm(row["matched"]["position"])
                   if row["matched"]["position"] is not None else "not apart",
                   outcome(row["outcomes"]["position"]), pm(row["kl"]),
                   outcome(row["outcomes"]["kl"]),
                   *("yes" if m["calibration"]["validated"][t] else "no"
                     for t in ("position", "kl"))]
                  for label, m in numbers.items()
                  for machine, row in m["calibration"]["machines"].items()]
    known_n = next(row["kl"]["n"] for m in numbers.values()
                   for row in m["calibration"]["machines"].values())
    known_table = (
        "Known machines of the position and behaviour tests: an LSTM of the agent's "
        "architecture distilled on each prior (metarl.py distill; one network each, mean ± SE "
        f"over n = {known_n} evaluation seeds, so the SE is over episodes only), measured "
        "exactly as the agent is. A test decides a case only where the training prior's "
        "machine holds it and the test prior's is refuted.",
        ["case", "machine", "acts on", "τ", "position u_τ", f"|u_τ| < {band}",
         "KL difference (nats/step)", "KL difference < 0", "position test separates",
         "behaviour test separates"], known_rows)
    matched_table = (
        f"Noise-matched references (n = {n} seeds, each with its own τ): the softmax policies of "
        "the two priors' Q* at the temperature τ at which the training prior's has the agent's "
        "own pseudo-regret on its own tasks, run on the test tasks; mean ± SE over seeds.",
        ["case", "τ", "R_train(τ)", "R_test(τ)", "references apart", "position u_τ",
         f"one-sided {LEVEL:.0%} limits", f"|u_τ| < {band}"],
        [[label, pm(m["matched"]["tau"]), pm(m["matched"]["r_train"]),
          pm(m["matched"]["r_test"]), "yes" if m["matched"]["apart"] else "no",
          *((pm(p), f"{fmt(p['lcl'])} to {fmt(p['ucl'])}") if p is not None else ("n/a", "n/a")),
          outcome(m["position_held"])]
         for label, m in numbers.items() for p in [m["matched"]["position"]]])
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
                  f"|u| < {band} (exact references)"], returns),
                (f"Behaviour on the test tasks ({scale['probe_episodes']} episodes per seed), "
                 "paired by seed: KL(training-prior Bayes ‖ agent) − KL(test-prior Bayes ‖ "
                 "agent), and agreement with the training-prior − with the test-prior Bayes "
                 f"action (mean ± SE, n = {n}).", ["case", "KL difference (nats/step)", "agreement difference",
                             "nearer the training prior"], behaviour),
                matched_table,
                known_table,
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
                  f"(dots, n = {n}) with mean ± SE; squares: u_τ against the noise-matched "
                  "references. Right: the crossed decoding, Δ for the shifted agent and for "
                  "the same network untrained (bars: mean ± SE; dots: seeds).")],
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
        if m["matched"]["position"] is not None:
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
    for bound in (-claims.SHIFT_POSITION_MAX, claims.SHIFT_POSITION_MAX):
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
def two_step_section(results, out):
    r = results["two_step"]
    m = claims.two_step_numbers(r)
    n, scale = m["interaction"]["n"], results["facts"]["scale"]
    stay_figure(r, os.path.join(out, "fig4_two_step_stay.png"))
    bound = m["bound"]
    verdicts = [
        verdict(claims.INTERACTION, numbers=m, settings=len(r["grid"]["settings"]),
                measured=f"agent {pm(m['interaction'])} (lower limit "
                         f"{fmt(m['interaction']['lcl'])}); largest model-free "
                         f"{fmt(bound['interaction'])} ± {fmt(bound['se'])} at α {bound['alpha']:g}, "
                         f"β {bound['beta']:g}, λ {bound['lam']:g}; n = {n}"),
        verdict(claims.HYBRID, numbers=m,
                measured=f"agent w = {pm(m['w'])} (lower limit {fmt(m['w']['lcl'])}); "
                         f"belief-greedy {hybrid_w(r['belief_greedy'])}; model-free TD "
                         f"{hybrid_w(r['model_free_td'])}; n = {n}")]
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
# §5 Does predicting the next outcome make the state a belief state? (Kuo et al. 2025)
# ------------------------------------------------------------------------------------------
KUO_NOTE = (
    "Kuo, Hou, Dabney & Walker (NeurIPS 2025) report that RL² agents reach near-Bayes-optimal "
    "returns without belief-like states, and that a self-supervised loss predicting the next "
    "observation or reward makes the state markedly closer to a Bayes belief state. Their "
    "predictive agent differs from their RL² agent in more than the objective: a "
    "VariBAD-style encoder with a 3-dimensional Gaussian latent trained by the predictive loss "
    "alone, against a 64-unit recurrent state. Here one architecture, the agent's own LSTM, "
    "is trained by the same recipe and budget, seed for seed, with and without the predictive "
    "loss; a bottleneck arm ({hidden} units, [h, c] = {state} numbers against the bandit "
    "belief's 4) separates \"a small state\" from \"prediction\". Every machine is placed on "
    "§2c's calibrated ladders by the test and curve that place the plain agent, and compared "
    "with the untrained and Bayes-distilled networks on the same axis.")
PREDICTIVE_LOSS_NOTE = (
    "The predictive head reads the state that chose a_t, h_{{t+1}}, and predicts the outcome of "
    "a_t (bandits: the reward; Tiger: the side the tiger shows itself on, heard or found; "
    "two-step: the second-stage state and the reward) by cross-entropy, weight c_P = {weight:g} "
    "in the loss, its gradient through BPTT into the LSTM (metarl.prediction_loss). The minimiser "
    "of that loss is the posterior predictive P(outcome | history, a_t): on the bandits, the "
    "posterior mean of the chosen arm. c_P was fixed before this run by a sweep on returns and "
    "training loss alone (README, \"The predictive weight\"), never on a ladder measure.")


def predictive_section(results, out, ladder_nums):
    """§5 from claims.predictive_numbers (its criteria are stated in claims.py, before any
    number)."""
    numbers = claims.predictive_numbers(results, ladder_nums)
    rows = numbers["comparisons"]
    machines_ = numbers["machines"]
    predictive_figure(numbers, ladder_nums, os.path.join(out, "fig5_predictive.png"))

    def n_of(name):
        return machines_[name]["returns"]["n"]

    def returns_measured():
        return "; ".join(f"{r['env']}: {pm(machines_[r['arm']]['returns'])} (upper limit "
                         f"{fmt(machines_[r['arm']]['returns']['ucl'])})"
                         for r in rows if r["label"] == "prediction")

    def difference_words(test, digits=3):
        d = test.get("difference")
        if d is None:
            return test.get("why", "n/a")
        return (f"{fmt(d['mean'], digits)} ± {fmt(d['stderr'], digits)} (df {fmt(d['df'], 1)}, "
                f"p {fmt(test['p_better'])})")

    def ladder_measured(label, prop):
        return "; ".join(f"{r['env']}: {difference_words(r['ladders'][prop])}"
                         for r in rows if r["label"] == label and prop in r["ladders"])

    verdicts = [verdict(claims.PREDICTIVE_NEAR_OPTIMAL, numbers, returns_measured()),
                verdict(claims.PREDICTION_RETURNS, numbers, "; ".join(
                    f"{r['env']}: predictive − plain {difference_words(r['returns'])}"
                    for r in rows if r["label"] == "prediction")),
                verdict(claims.PREDICTION_REACH, numbers, "; ".join(
                    f"{r['env']}: predictive − plain {difference_words(r['reach'], 0)}"
                    for r in rows if r["label"] == "prediction"))]
    verdicts += [verdict(claim, numbers, "predictive − plain, position: "
                         + ladder_measured("prediction", ladder.name))
                 for ladder, claim in zip(ladders.LADDERS, claims.PREDICTION_MOVES)]
    verdicts.append(verdict(claims.PREDICTIVE_BELIEF_STATE, numbers, "; ".join(
        f"{r['env']}: sufficiency {machines_[r['arm']]['profile']['sufficiency']['verdict']}, "
        f"causal use {machines_[r['arm']]['profile']['causal use']['verdict']}"
        for r in rows if r["label"] == "prediction" and "profile" in machines_[r["arm"]])))
    for label, claim in (("small state", claims.SMALL_STATE),
                         ("prediction in the small state", claims.PREDICTION_IN_SMALL_STATE)):
        verdicts.append(verdict(claim, numbers, "; ".join(
            f"{ladder.name}: {ladder_measured(label, ladder.name)}" for ladder in ladders.LADDERS)))
    n = sorted({m["returns"]["n"] for m in machines_.values()})
    for v in verdicts:   # every measurement states its n
        v.measured += f"; n = {', '.join(map(str, n))} seeds per network"
    arms = results["predictive"]["arms"]
    machine_rows = []
    for name, m in machines_.items():
        arm = arms.get(name)
        reach = m["reach"]
        reached = [u for u in reach if u is not None]
        seconds = results["facts"]["training_seconds"][name]
        hp = results["facts"]["configs"][arm["agent"] if arm else name]
        machine_rows.append([
            name, str(arm["hidden"] if arm else hp["hidden"]),
            f"{arm['predict_weight']:g}" if arm else "0", str(m["returns"]["n"]),
            {"regret": "regret ratio", "gap": "gap ratio"}[m["returns"]["kind"]],
            pm(m["returns"]), fmt(max(m["returns"]["values"])), fmt(m["returns"]["ucl"]),
            outcome(m["returns"]["held"]),
            f"{len(reached)}/{len(reach)}" + (f": {', '.join(str(u) for u in reach if u)}"
                                              if reached else ""),
            fmt(float(np.mean(seconds)), 1)])
    comparison_rows = [[r["label"], r["arm"], r["control"],
                        f"{difference_words(r['returns'])} → {outcome(r['returns']['held'])}",
                        f"{difference_words(r['reach'], 0)} → {outcome(r['reach']['held'])}",
                        *(f"{difference_words(r['ladders'][ladder.name])} → "
                          f"{outcome(r['ladders'][ladder.name]['held'])}"
                          if ladder.name in r["ladders"] else "no ladder"
                          for ladder in ladders.LADDERS)] for r in rows]
    tables = [
        ("Returns by §1's measure (mean ± SE over n seeds, each on §1's fresh episodes; worst "
         "seed; upper one-sided limit; near-optimal as §1), and the updates after which each "
         "seed's learning curve (block means of the training batch's return) first meets §1's "
         "margin (seeds that reach it / n, and when). Plain agents are §1's.",
         ["machine", "H", "c_P", "n", "measure", "mean ± SE", "worst seed",
          f"upper {LEVEL:.0%} limit", "near-optimal", "reach the margin (updates)",
          "mean training time (s)"], machine_rows),
        ("Each comparison: arm − control, mean ± SE of the difference (Welch df, one-sided p "
         "of an improvement), in §1's measure (lower is better), in the updates to §1's margin "
         "(fewer is better) and in each ladder's position "
         "(ladder units; the belief's direction: κ and λ higher, k and τ lower). n = the seeds "
         "of each arm.",
         ["comparison", "arm", "control", "returns (§1 measure)", "updates to the margin",
          *(f"{ladder.name} ({ladder.unit})" for ladder in ladders.LADDERS)], comparison_rows)]
    for env, refs in numbers["references"].items():
        on_env = [name for name in machines_ if name == env or
                  (name in arms and arms[name]["agent"] == env)]
        tables.append((
            f"{env}: positions on each ladder, as §2c reads them (the test that places the plain "
            f"agent; interval over seeds). Arms: n = {n_of(env)} seeds; reference networks: "
            f"n = {ladder_nums[env]['ladder_seeds']} ladder seeds.",
            ["machine", *(f"{ladder.name} ({ladder.unit})" for ladder in ladders.LADDERS),
             "a belief state"],
            [[name, *(position_cell(ladder, machines_[name]["profile"][ladder.name])
                      for ladder in ladders.LADDERS), machines_[name]["belief_state"]]
             for name in on_env if "profile" in machines_[name]]
            + [[ref, *(position_cell(ladder, ladder_nums[env]["references"][ref]["profile"][
                ladder.name]) for ladder in ladders.LADDERS), ladders.belief_state(
                ladder_nums[env]["references"][ref]["profile"])] for ref in refs]))
    hidden = numbers["bottleneck_hidden"]
    return Section(
        title="5. Does predicting the next outcome make the state a belief state?",
        verdicts=verdicts, tables=tables,
        figures=[("fig5_predictive.png",
                  "Each ladder (columns) per laddered family (rows): every seed's position "
                  "(dots) of the untrained network, plain RL², the predictive agent, the "
                  "Bayes-distilled network and the bottleneck arms, with their means (bars); "
                  "the dotted line is the tolerance of §2c's verdict. Positions at an end of "
                  "the graded range are censored there.")],
        notes=[KUO_NOTE.format(hidden=hidden, state=2 * hidden),
               PREDICTIVE_LOSS_NOTE.format(weight=numbers["weight"]),
               "The bottleneck arms are read on the same curves as the plain agent (on the "
               "bandit's sufficiency ladder, the curve of LSTMs of the plain agent's width), so "
               "that every comparison is on one scale. Two-step has no ladders (§2c): its arms "
               "are compared in returns only.",
               "Seed s of every arm starts from the plain agent's initial LSTM weights of seed s "
               "(the predictive head starts at zero and draws nothing) and its first update "
               "draws the same tasks; the networks then part. The comparisons treat the arms "
               "as independent samples (Welch), which is conservative if that shared start "
               "correlates them. A per-seed position at an end of the graded range is "
               "censored there: differences near that end are understated."])


NETWORK_COLOURS = {"untrained": "C7", "RL²": "C0", "predictive": "C2", "bottleneck": "C1",
                   "bottleneck predictive": "C4", "distilled": "C3"}   # one per kind, every panel


def predictive_figure(numbers, ladder_nums, path):
    """Rows: laddered families; columns: ladders. Per machine, its per-seed positions (dots)
    and their mean (bar), the tolerance (dotted)."""
    envs_ = list(numbers["references"])
    fig, axes = new_figure(max(1, len(envs_)), len(ladders.LADDERS), 4.2, 3.2)
    machines_ = numbers["machines"]
    for i, env in enumerate(envs_):
        names = [n for n in machines_ if "positions" in machines_[n]
                 and (n == env or n.startswith(f"{env} "))]
        shown = [("untrained", numbers["references"][env].get("untrained"))] + [
            (n, machines_[n]) for n in names] + [
            ("distilled", numbers["references"][env].get("distilled"))]
        shown = [(n, m) for n, m in shown if m is not None]
        for j, ladder in enumerate(ladders.LADDERS):
            ax = axes[i, j]
            labels = [n.replace(f"{env} ", "").replace(env, "RL²") for n, _ in shown]
            for k, ((name, m), label) in enumerate(zip(shown, labels)):
                p = m["positions"][ladder.name]
                if p is None:
                    continue
                p = np.asarray(p, np.float64)
                p = p[np.isfinite(p)]
                colour = NETWORK_COLOURS.get(label, "k")
                ax.plot(np.full(len(p), k), p, "o", ms=4, alpha=0.7, color=colour)
                if len(p):
                    ax.plot([k - 0.3, k + 0.3], [p.mean()] * 2, "-", color=colour, lw=2)
            ax.axhline(ladders.TOLERANCE[ladder.name][0], color="k", ls=":", lw=1)
            ax.set_xticks(range(len(shown)), labels, rotation=30, ha="right", fontsize=7)
            ax.set(xlabel="network", ylabel=f"position ({ladder.unit})",
                   title=f"{env}: {ladder.name}")
    fig.suptitle("Predicting the next outcome: each network's position on the ladders")
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
        lines += [f"  - *Caveat:* {caveat}" for caveat in s.caveats]
    return lines


def replace_findings(readme, lines):
    """README text with the block between FINDINGS_START and FINDINGS_END replaced by lines;
    ValueError if the markers are not there once each, in order."""
    start, end = readme.find(FINDINGS_START), readme.find(FINDINGS_END)
    if readme.count(FINDINGS_START) != 1 or readme.count(FINDINGS_END) != 1 or end < start:
        raise ValueError(f"the README must hold the lines {FINDINGS_START} and {FINDINGS_END} "
                         "once each, in this order, around the findings block")
    return readme[:start + len(FINDINGS_START)] + "\n" + "\n".join(lines) + "\n" + readme[end:]


def rewrite_report(results, folder, readme=None):
    """`experiments.py report DIR`: REPORT.md and the figures again in DIR from its
    results.json, as experiments.load_results read and checked it. Results that lack what
    the report reads are refused (ValueError) and DIR is left as it was. readme: a README
    path whose findings block is rewritten from the same verdicts (after the report,
    atomically; its markers are checked before anything is written)."""
    if readme is not None:
        with open(readme, encoding="utf-8") as f:
            text = f.read()
        replace_findings(text, [])   # the markers, before any work
        check_writable_file(readme, "--readme")   # and its folder, before REPORT.md is replaced
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
    """REPORT.md, APPENDIX.md and their figures, written into `out`; returns the findings
    block. §2b's tables go to the appendix, so that the report stays readable."""
    appendix = belief_tests_section(results, out)
    ladder_numbers = claims.ladder_numbers(results)   # §2c, the headline and the appendix read it
    sections = [near_optimal_section(results, out), belief_states_section(results, out),
                ladders_section(results, out, ladder_numbers), shift_section(results, out),
                two_step_section(results, out), predictive_section(results, out, ladder_numbers)]
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
              "freedom.", "", *headline(ladder_numbers, sections)]
    for s in sections:
        lines += section_markdown(s)
    lines += run_markdown(facts)
    atomic_write(os.path.join(out, "REPORT.md"), lambda f: f.write("\n".join(lines).encode("utf-8")))
    text = "\n".join(appendix_markdown(results, ladder_numbers, [appendix, *sections]))
    atomic_write(os.path.join(out, APPENDIX), lambda f: f.write(text.encode("utf-8")))
    return findings_lines(sections, facts)


def headline(numbers, sections):
    """One screen: the agent's profile per family (a position with its interval and outcome
    per property, and the seed paper's claim; numbers: claims.ladder_numbers), then every
    other claim's outcome; criteria and numbers are in the sections."""
    profile = [[env, *(position_cell(ladder, m["profile"][ladder.name])
                       for ladder in ladders.LADDERS), f"**{m['belief_state']}**"]
               for env, m in numbers.items()]
    properties = {c.statement for c in (*claims.PROPERTY_CLAIMS, claims.BELIEF_STATE)}
    others = [[v.claim, f"**{outcome(v.held)}**"] for s in sections for v in s.verdicts
              if v.claim not in properties]
    return ["## Headline", "",
            "The agent's state on each property's ladder of known machines (§2c): its position "
            "in the ladder's units, the interval, the test that places it, the outcome.", "",
            markdown_table(["env", *(f"{ladder.name} ({ladder.unit})"
                                     for ladder in ladders.LADDERS),
                            "a belief state (sufficiency ∧ causal use)"], profile), "",
            *([known_belief_caveat(numbers), ""] if known_belief_caveat(numbers) else []),
            markdown_table(["claim", "outcome"], others), ""]


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
    return lines + [note + "\n" for note in s.caveats + s.notes]


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
