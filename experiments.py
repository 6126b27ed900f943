"""The paper's experiments, end to end: from a fresh clone to REPORT.md in one command.

    python experiments.py --quick --out results/    # small horizons and budgets, < 2 min on 2 cores
    python experiments.py --out results/            # the full run, < 30 min on 2 cores

One RL² agent is trained per (agent in BUDGETS, seed) with metarl.train; then the paper's four
experiments run, one function each, in the order of the paper:

    1. agents_act_near_bayes_optimally                   return vs Bayes-optimal and baselines
    2. hidden_states_are_belief_states                   linear probes, controls, over training
    3. failures_are_belief_failures                      distribution shift: return and belief
    4. model_based_behaviour_from_a_model_free_learner   two-step stay probabilities

write_report then writes REPORT.md, its PNG figures and results.json into --out. Every number
is measured in the run that writes it, and every verdict is a numeric criterion (the constants
under "Criteria") applied to those numbers: a claim that fails is reported as failed.

Parallelism and reproducibility: each job (train one agent, probe one agent, ...) runs in a
worker process and depends only on its arguments; results are gathered in a fixed order, so
the same seeds give the same numbers for any --workers.
"""
import json
import multiprocessing
import os
import platform
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numba
import numpy as np

import belief
import envs
import metarl
import probe
import twostep
from boundary import OneLineErrorParser, check_int, check_memory, prepare_output_folder, run_cli

# ------------------------------------------------------------------------------------------
# Budgets: what each agent trains on and for how long (full run). Each entry is the fields of
# one metarl.Config; any Config field may be set, the others keep Config's defaults
# (hidden = 48, entropy 0.02 → 0.001, γ = 0.95, ...). Agents are named after their tasks.
# ------------------------------------------------------------------------------------------
SKEWED = "skewed-prior bandit"   # the bandit with arms p_i ~ Beta(2, 5): mean 2/7, not 1/2
BUDGETS = {  # calibrated on this 2-core machine: ~12 core-minutes per seed in all
    "bandit": dict(env="bandit", arms=2, horizon=100, updates=30000, batch=64,
                   dtype="float32"),
    "dependent-bandit": dict(env="dependent-bandit", horizon=100, updates=16000, batch=64,
                             dtype="float32"),
    # Tiger's −100 door makes a policy-gradient learner collapse onto "always listen" (return
    # −20) within ~1000 updates at β = 0.02 (measured); a near-uniform start (β = 1 → 0.001)
    # and a smaller rate let it find "listen, then open away from the louder side" first.
    "tiger": dict(env="tiger", horizon=20, updates=40000, batch=64, lr=1e-3, entropy_start=1.0,
                  dtype="float32"),
    "two-step": dict(env="two-step", horizon=100, updates=16000, batch=64, dtype="float32"),
    SKEWED: dict(env="bandit", arms=2, horizon=100, prior_a=2.0, prior_b=5.0, updates=12000,
                 batch=64, dtype="float32"),
}
QUICK_BUDGET = dict(updates=300, batch=32, hidden=16)   # --quick: replaces these in every agent
QUICK_HORIZONS = {"bandit": 20, "dependent-bandit": 20, "tiger": 10, "two-step": 20}
PROGRESS_LINES = 5    # training progress lines per agent


@dataclass(frozen=True)
class Scale:
    """How many fresh episodes each measurement uses (per agent, unless said otherwise)."""

    eval_episodes: int       # agent return (§1, §3)
    baseline_episodes: int   # each classical baseline or reference policy, once per env
    probe_episodes: int      # probe.probe_agent (§2) and the decoding under shift (§3)
    snapshot_episodes: int   # decodability and return at each training snapshot (§2)
    snapshots: int           # log-spaced snapshots along training (§2)
    stay_episodes: int       # two-step stay analysis, agent and each reference policy (§4)
    folds: int = probe.FOLDS  # cross-validation folds of every probe


FULL_SCALE = Scale(eval_episodes=5000, baseline_episodes=20000, probe_episodes=500,
                   snapshot_episodes=300, snapshots=6, stay_episodes=1000)
QUICK_SCALE = Scale(eval_episodes=500, baseline_episodes=1000, probe_episodes=200,
                    snapshot_episodes=100, snapshots=6, stay_episodes=200)

# §3: (trained agent, the tasks it is tested on as envs.make_config fields); same horizon.
SHIFTS = (("dependent-bandit", dict(name="bandit", arms=2)),
          ("bandit", dict(name="dependent-bandit")),
          (SKEWED, dict(name="bandit", arms=2, prior_a=1.0, prior_b=1.0)))

# ------------------------------------------------------------------------------------------
# Criteria: the numbers that decide each verdict (see each section's docstring)
# ------------------------------------------------------------------------------------------
Z = 2.0                     # "significantly": by more than 2 standard errors (≈ 95 %, two-sided)
NEAR_OPTIMAL_SHARE = 0.9    # §1: the agent closes ≥ 90 % of the gap from random to Bayes-optimal
DECODE_R2_MIN = 0.8         # §2: "linearly decodable": held-out R² ≥ 0.8 per posterior mean
CONTROL_MARGIN = 0.1        # §2: ... and ≥ 0.1 above the memoryless and shuffled controls
TRAINING_CORRELATION = 0.5  # §2: R² and return rise together: Pearson r ≥ 0.5 over snapshots

# Fresh-episode streams metarl.stream(seed, key), clear of training (keys < 2³²),
# metarl.EVAL_STREAM (2³²) and probe.PROBE_STREAM (2³³).
SNAPSHOT_STREAM, SHIFT_STREAM, STAY_STREAM = 2 ** 34, 2 ** 34 + 1, 2 ** 34 + 2
REFERENCE_SEED = 0   # env seed of the classical baselines and reference policies
REFERENCE_POLICIES = ("bayes_optimal", "belief_greedy", "oracle", "random")  # not "classical"
# Multi-threaded OpenBLAS spin-waits when threads outnumber free cores. Measured on the 2-core
# machine (bandit update, H = 48, B = 64, T = 100, float32, load ≈ 2.5 from other jobs): 15 ms
# with 1 thread, 200-250 ms with 2; two processes at once: 29 ms each with 1 thread, 600 ms
# each with 2. So each worker gets one thread, and parallelism comes from the workers.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
BLAS_THREADS_PER_WORKER = "1"
MAX_SEEDS, MAX_WORKERS = 100, 64
WORKER_BYTES = 2 ** 30   # a generous bound on one worker's peak: NumPy, Numba and its largest job


# ------------------------------------------------------------------------------------------
# The run: worker pool, progress lines, jobs
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """What every stage needs: the worker pool, the measurement sizes, where to write."""

    pool: ProcessPoolExecutor
    scale: Scale
    out: str
    start: float   # time.perf_counter() when the run began, for progress lines


@contextmanager
def worker_pool(workers):
    """W spawned worker processes with one BLAS thread each, as a context.

    The thread count must be in the environment before a worker imports NumPy: it is set in
    this process's environment for the pool's lifetime (the workers inherit it; the old values
    come back after), and the workers are spawned, not forked, since a fork would inherit this
    process's already-started BLAS threads."""
    saved = {name: os.environ.get(name) for name in BLAS_THREAD_VARIABLES}
    os.environ.update({name: BLAS_THREADS_PER_WORKER for name in BLAS_THREAD_VARIABLES})
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            yield pool
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def progress(run, message):
    print(f"[{time.perf_counter() - run.start:7.1f} s] {message}", flush=True)


def run_jobs(run, stage, jobs):
    """Run jobs = [(label, function, *args)] on the pool; their results in the order given.

    One progress line as each job finishes; the order of the results never depends on timing."""
    progress(run, f"{stage}: {len(jobs)} jobs")
    futures = {run.pool.submit(function, *args): label for label, function, *args in jobs}
    for future in as_completed(futures):
        future.result()   # a worker's error is raised here, with its traceback
        progress(run, f"{stage}: {futures[future]} done")
    return [future.result() for future in futures]


# ------------------------------------------------------------------------------------------
# Training: one agent per (BUDGETS entry, seed), with parameter snapshots along the way
# ------------------------------------------------------------------------------------------
@dataclass
class Agent:
    """A trained agent: its settings, final parameters, and parameter copies along training."""

    name: str          # key of BUDGETS
    hp: metarl.Config
    params: dict
    snapshots: dict    # number of updates done → the parameters then
    seconds: float     # training wall time (varies from run to run; reported, never compared)


def agent_configs(budgets, seeds, quick):
    """name → [metarl.Config for seeds 0 … seeds − 1]; quick swaps in QUICK_BUDGET and
    QUICK_HORIZONS."""
    configs = {}
    for name, budget in budgets.items():
        fields = dict(budget)
        if quick:
            fields.update(QUICK_BUDGET, horizon=QUICK_HORIZONS[fields["env"]])
        fields["log_every"] = max(1, fields["updates"] // PROGRESS_LINES)
        configs[name] = [metarl.Config(**fields, seed=seed) for seed in range(seeds)]
    return configs


def snapshot_points(updates, n):
    """About n log-spaced update counts from 1 to `updates` (both included), ascending."""
    return sorted({int(round(u)) for u in np.geomspace(1, updates, n)})


def train_agents(run, configs):
    """Every agent of `configs`, the longest runs first so that the workers finish together.
    Returns name → [Agent, one per seed, in seed order]."""
    todo = sorted(((name, hp) for name, hps in configs.items() for hp in hps),
                  key=lambda job: -job[1].updates * job[1].batch * job[1].horizon)
    jobs = [(f"{name} seed {hp.seed}", train_agent, name, hp,
             snapshot_points(hp.updates, run.scale.snapshots)) for name, hp in todo]
    agents = {name: [] for name in configs}
    for agent in run_jobs(run, "train agents", jobs):
        agents[agent.name].append(agent)
    return {name: sorted(trained, key=lambda a: a.hp.seed) for name, trained in agents.items()}


def train_agent(name, hp, snapshot_updates):
    """Worker job: train one agent, copying its parameters after each of snapshot_updates."""
    snapshots = {}

    def keep_snapshot(u, params, stats):
        if u + 1 in snapshot_updates:
            snapshots[u + 1] = {k: v.copy() for k, v in params.items()}

    start = time.perf_counter()
    params = metarl.train(hp, None, log=lambda line: print(f"    {name} seed {hp.seed}: {line}",
                                                           flush=True),
                          on_update=keep_snapshot)
    return Agent(name, hp, params, snapshots, time.perf_counter() - start)


# ------------------------------------------------------------------------------------------
# Verdicts and sections: what each experiment hands to the report
# ------------------------------------------------------------------------------------------
@dataclass
class Verdict:
    """One claim, the numeric criterion that decides it, the numbers, and the outcome."""

    claim: str
    criterion: str
    measured: str
    held: object    # True, False, or None: undecided (a standard error needs ≥ 2 seeds)


@dataclass
class Section:
    """One experiment as the report shows it."""

    title: str
    verdicts: list
    tables: list    # (caption, header, rows), cells already formatted
    figures: list   # (file name in the output folder, caption)
    notes: list     # paragraphs a reader needs to judge the numbers
    numbers: dict   # everything measured, for results.json


def all_held(outcomes):
    """False if any outcome failed, else None if any is undecided, else True."""
    outcomes = list(outcomes)
    if False in outcomes:
        return False
    return None if None in outcomes else True


def seed_stats(values):
    """Mean and standard error over seeds (SE None for one seed), and the values."""
    values = [float(v) for v in values]
    return {**belief.mean_and_stderr(values), "values": values}


def exceeds(difference, se):
    """difference > Z·se, or None when se is undefined (one seed)."""
    return None if se is None else bool(difference > Z * se)


def combined_se(*ses):
    """SE of a sum or difference of independent estimates; None if any SE is undefined."""
    return None if any(se is None for se in ses) else float(np.sqrt(sum(se * se for se in ses)))


# ------------------------------------------------------------------------------------------
# §1 Agents act near Bayes-optimally
# ------------------------------------------------------------------------------------------
def agents_act_near_bayes_optimally(run, agents):
    """§1. Each env's agents (one per seed) on fresh episodes, against the Bayes-optimal value
    (exact; two-step: the belief-greedy policy, by Monte Carlo) and the classical baselines.

    Criterion, per env: the agent closes ≥ NEAR_OPTIMAL_SHARE of the gap from the random
    policy to the reference, (G_agent − G_random) / (G_ref − G_random) ≥ 0.9, and its return
    is no lower than the best classical baseline's by more than Z combined standard errors.
    For the bandits also the regret ratios against the oracle, (oracle − G_agent) /
    (oracle − G_Bayes), from returns and from the lower-variance pseudo-regret."""
    names = tuple(envs.FAMILIES)
    jobs = [(f"{name} seed {a.hp.seed}", evaluate_agent, a, run.scale.eval_episodes)
            for name in names for a in agents[name]]
    jobs += [(f"{name} baselines", reference_values, metarl.env_config(agents[name][0].hp),
              run.scale.baseline_episodes) for name in names]
    results = iter(run_jobs(run, "1 agents act near Bayes-optimally", jobs))
    evaluations = {name: [next(results) for _ in agents[name]] for name in names}
    numbers = {name: bayes_comparison(evaluations[name], next(results)) for name in names}
    returns_figure(numbers, os.path.join(run.out, "fig1_returns.png"))
    return Section(
        title="1. Agents act near Bayes-optimally",
        verdicts=[near_optimal_verdict(numbers)],
        tables=near_optimal_tables(numbers, run.scale),
        figures=[("fig1_returns.png", "Mean total reward per episode: the RL² agents (mean ± SE "
                  "over seeds, seeds as dots) and the baselines (± SE); dashed: the reference. "
                  "The random policy is left out of the figure (see the table).")],
        notes=[], numbers=numbers)


def evaluate_agent(agent, episodes):
    """Worker job: metarl.evaluate on fresh episodes of the agent's own tasks."""
    return metarl.evaluate(agent.params, metarl.env_config(agent.hp), episodes, agent.hp.seed)


def reference_values(cfg, episodes):
    """Worker job: the exact values and the baselines of one task distribution."""
    report = belief.baselines_report(cfg, episodes, REFERENCE_SEED)   # one DP for both
    return {"exact": {k: report[k] for k in ("bayes_optimal_exact", "oracle_exact")},
            "baselines": report["policies"]}


def bayes_comparison(evaluations, references):
    """§1's numbers for one env from the agents' evaluations and the reference values."""
    exact, baselines = references["exact"], references["baselines"]
    agent = seed_stats(e["mean"] for e in evaluations)
    if exact["bayes_optimal_exact"] is not None:
        reference = {"label": "Bayes-optimal (exact)", "mean": exact["bayes_optimal_exact"],
                     "stderr": 0.0}
    else:
        reference = {"label": "belief-greedy (Monte Carlo)", **baselines["belief_greedy"]}
    classical = {k: v for k, v in baselines.items() if k not in REFERENCE_POLICIES}
    best = max(classical, key=lambda k: classical[k]["mean"])
    random = baselines["random"]["mean"]
    share = (agent["mean"] - random) / (reference["mean"] - random)
    numbers = {"horizon": evaluations[0]["horizon"], "agent": agent,
               "per_seed": [{"mean": e["mean"], "stderr": e["stderr"],
                             "pseudo_regret": e.get("pseudo_regret"),
                             "pseudo_regret_stderr": e.get("pseudo_regret_stderr")}
                            for e in evaluations],
               "reference": reference, "baselines": baselines, "exact": exact,
               "best_classical": best, "share_of_gap": share,
               "lead_over_best_classical": agent["mean"] - classical[best]["mean"],
               "lead_se": combined_se(agent["stderr"], classical[best]["stderr"])}
    if "pseudo_regret" in evaluations[0]:
        bayes_regret = exact["oracle_exact"] - exact["bayes_optimal_exact"]
        pseudo = seed_stats(e["pseudo_regret"] for e in evaluations)
        numbers.update(bayes_regret=bayes_regret, pseudo_regret=pseudo,
                       regret_ratio=(exact["oracle_exact"] - agent["mean"]) / bayes_regret,
                       pseudo_regret_ratio=pseudo["mean"] / bayes_regret)
    lead, lead_se = numbers["lead_over_best_classical"], numbers["lead_se"]
    numbers["near_optimal"] = all_held([share >= NEAR_OPTIMAL_SHARE,
                                        None if lead_se is None else lead >= -Z * lead_se])
    return numbers


def near_optimal_verdict(numbers):
    measured = "; ".join(
        f"{name}: share {n['share_of_gap']:.3f}, lead over {n['best_classical']} "
        f"{pm(n['lead_over_best_classical'], n['lead_se'])} → {outcome(n['near_optimal'])}"
        for name, n in numbers.items())
    return Verdict(
        claim="The meta-trained LSTM agents act near Bayes-optimally on every task distribution.",
        criterion=f"In every env: (G_agent − G_random) / (G_reference − G_random) ≥ "
                  f"{NEAR_OPTIMAL_SHARE} (seed mean), and G_agent ≥ G_best classical − "
                  f"{Z:g} SE (SE over seeds combined with the baseline's SE).",
        measured=measured, held=all_held(n["near_optimal"] for n in numbers.values()))


def near_optimal_tables(numbers, scale):
    main = []
    for name, n in numbers.items():
        best = n["baselines"][n["best_classical"]]
        main.append([name, str(n["horizon"]), pm_stats(n["agent"]), n["reference"]["label"],
                     pm(n["reference"]["mean"], n["reference"]["stderr"]),
                     f"{n['best_classical']} {pm(best['mean'], best['stderr'])}",
                     fmt(n["baselines"]["random"]["mean"]), fmt(n["share_of_gap"]),
                     fmt(n.get("regret_ratio")), fmt(n.get("pseudo_regret_ratio")),
                     outcome(n["near_optimal"])])
    per_seed = [[name, str(seed), pm(s["mean"], s["stderr"]),
                 pm(s["pseudo_regret"], s["pseudo_regret_stderr"])]
                for name, n in numbers.items() for seed, s in enumerate(n["per_seed"])]
    baselines = [[name, policy, pm(b["mean"], b["stderr"])]
                 for name, n in numbers.items() for policy, b in n["baselines"].items()]
    return [
        ("Agent return (mean ± SE over seeds) against the reference and the baselines. Regret "
         "ratio = (oracle − G_agent) / (oracle − G_Bayes), exact oracle and Bayes values; the "
         "pseudo-regret ratio uses the agent's Σ_t (max_i p_i − p_a_t) instead (bandits only).",
         ["env", "T", "agent return", "reference", "reference return", "best classical",
          "random", "share of gap closed", "regret ratio", "pseudo-regret ratio", "near-optimal"],
         main),
        (f"Per seed: return ± evaluation SE ({scale.eval_episodes} fresh episodes each), "
         "and the pseudo-regret (bandits).",
         ["env", "seed", "return", "pseudo-regret"], per_seed),
        (f"Baselines (belief.run_baselines, {scale.baseline_episodes} episodes, seed "
         f"{REFERENCE_SEED}): return ± SE.", ["env", "policy", "return"], baselines)]


# ------------------------------------------------------------------------------------------
# §2 Hidden states are belief states
# ------------------------------------------------------------------------------------------
CONDITIONS = ("trained [h, c]", "untrained", "memoryless", "shuffled")


def hidden_states_are_belief_states(run, agents):
    """§2. probe.probe_agent on every env's agents, and the probe along training.

    Three criteria, each in every env, on the posterior-mean features (posterior_means):
      decodable  held-out R² from the trained [h, c] ≥ DECODE_R2_MIN, and ≥ CONTROL_MARGIN
                 above the memoryless (x_t alone) and shuffled (other episodes' beliefs) controls;
      learned    trained − untrained R² (mean over the features, per seed) > Z SE over seeds:
                 training makes the state more belief-like than the same network untrained;
      together   Pearson r between probe R² and return across the training snapshots
                 (seed means) ≥ TRAINING_CORRELATION."""
    names = tuple(envs.FAMILIES)
    jobs = [(f"{name} seed {a.hp.seed}", probe_over_training, a, run.scale)
            for name in names for a in agents[name]]
    results = iter(run_jobs(run, "2 hidden states are belief states", jobs))
    per_env = {name: [next(results) for _ in agents[name]] for name in names}
    numbers = {name: probe_numbers(per_env[name]) for name in names}
    decoding_figure(numbers, os.path.join(run.out, "fig2_decoding.png"))
    over_training_figure(numbers, os.path.join(run.out, "fig2_over_training.png"))
    return Section(
        title="2. Hidden states are belief states",
        verdicts=probe_verdicts(numbers),
        tables=probe_tables(numbers, run.scale),
        figures=[("fig2_decoding.png", "Held-out R² of each exact belief feature decoded "
                  "linearly from the trained agent's [h, c] and from the three controls "
                  "(mean ± SE over seeds)."),
                 ("fig2_over_training.png", "Along training: probe R² (mean over the "
                  "posterior-mean features, left axis) and return (right axis), mean ± SE "
                  "over seeds, on the same fresh episodes at every snapshot.")],
        notes=["Controls: *untrained* is the same architecture with its initial weights, "
               "driven by the trained agent's own inputs; *memoryless* decodes from the "
               "current input x_t alone; *shuffled* pairs each episode's [h, c] with another "
               "episode's beliefs. A random LSTM is a reservoir that already holds much of "
               "the input history, which is why *learned* compares with it separately."],
        numbers=numbers)


def posterior_means(names):
    """The belief features that are a posterior mean: bandit mean_i, dependent-bandit mean_p,
    tiger p_left, two-step p_A_good. The sd, count, log-odds and hearing-difference features
    are other coordinates of the same belief."""
    return [f for f in names if f.startswith(("mean_", "p_"))]


def probe_over_training(agent, scale):
    """Worker job: probe.probe_agent on the trained agent, and at every snapshot the probe R²
    (mean over the posterior-mean features, decoded from [h, c]) and the return, all
    snapshots on the same fresh episodes."""
    summary, _ = probe.probe_agent(agent.params, agent.hp, scale.probe_episodes, agent.hp.seed,
                                   scale.folds)
    cfg = metarl.env_config(agent.hp)
    snapshots = []
    for updates, params in sorted(agent.snapshots.items()):
        tr = metarl.rollout(params, cfg, scale.snapshot_episodes,
                            metarl.stream(agent.hp.seed, SNAPSHOT_STREAM))
        F, names = belief.belief_features(cfg, tr.a, tr.r, tr.obs)
        Y, groups = probe.flatten_episodes(F[..., [names.index(f) for f in posterior_means(names)]])
        X = probe.flatten_episodes(np.concatenate([tr.h[1:], tr.c[1:]], -1))[0]
        fit = probe.decode(X, Y, groups, rng=np.random.default_rng(agent.hp.seed), k=scale.folds)
        snapshots.append({"updates": updates, "r2": float(fit.r2.mean()),
                          **belief.mean_and_stderr(tr.r.sum(axis=0))})
    return {"probe": summary, "snapshots": snapshots}


def probe_numbers(results):
    """§2's numbers for one env from its seeds' probe_over_training results."""
    summaries = [r["probe"] for r in results]
    features = summaries[0]["features"]
    means = posterior_means(features)

    def r2(summary, condition, feature):
        if condition == CONDITIONS[0]:
            return summary["decode"][feature]
        return summary["controls_by_feature"][condition][feature]

    decode = {f: {c: seed_stats(r2(s, c, f) for s in summaries) for c in CONDITIONS}
              for f in features}
    learned = seed_stats(np.mean([r2(s, CONDITIONS[0], f) - r2(s, "untrained", f) for f in means])
                         for s in summaries)
    points = [[r["snapshots"][i] for r in results] for i in range(len(results[0]["snapshots"]))]
    over_training = [{"updates": p[0]["updates"], "r2": seed_stats(q["r2"] for q in p),
                      "return": seed_stats(q["mean"] for q in p)} for p in points]
    r2_curve = [p["r2"]["mean"] for p in over_training]
    return_curve = [p["return"]["mean"] for p in over_training]
    correlation = (float(np.corrcoef(r2_curve, return_curve)[0, 1])
                   if np.std(r2_curve) > 0 and np.std(return_curve) > 0 else None)
    decodable = all(
        decode[f][CONDITIONS[0]]["mean"] >= DECODE_R2_MIN
        and all(decode[f][CONDITIONS[0]]["mean"] - decode[f][c]["mean"] >= CONTROL_MARGIN
                for c in ("memoryless", "shuffled")) for f in means)
    return {"features": features, "posterior_means": means, "decode": decode,
            "encode_r2": seed_stats(s["encode_r2"] for s in summaries),
            "policy_kl": seed_stats(s["policy_kl"] for s in summaries),
            "agreement": seed_stats(s["agreement"] for s in summaries),
            "learned": learned, "over_training": over_training, "correlation": correlation,
            "decodable": decodable, "learned_held": exceeds(learned["mean"], learned["stderr"]),
            "together": None if correlation is None else correlation >= TRAINING_CORRELATION}


def probe_verdicts(numbers):
    def measured(describe, key):
        return "; ".join(f"{name}: {describe(n)} → {outcome(n[key])}"
                         for name, n in numbers.items())

    def worst(n):
        return min((n["decode"][f][CONDITIONS[0]]["mean"], f) for f in n["posterior_means"])

    return [
        Verdict(claim="The exact posterior is linearly decodable from the trained agent's state, "
                      "and not from the current input or from other episodes' states.",
                criterion=f"In every env, for each posterior-mean feature: held-out R² from "
                          f"[h, c] ≥ {DECODE_R2_MIN}, and ≥ {CONTROL_MARGIN} above the "
                          "memoryless and the shuffled controls (seed means).",
                measured=measured(lambda n: f"lowest R² {worst(n)[0]:.3f} ({worst(n)[1]})",
                                  "decodable"),
                held=all_held(n["decodable"] for n in numbers.values())),
        Verdict(claim="Training makes the state more belief-like than the same network untrained.",
                criterion=f"In every env: trained − untrained R² (mean over the posterior-mean "
                          f"features) > {Z:g} SE over seeds.",
                measured=measured(lambda n: f"{pm_stats(n['learned'])}", "learned_held"),
                held=all_held(n["learned_held"] for n in numbers.values())),
        Verdict(claim="Decodability of the belief rises with the return along training.",
                criterion=f"In every env: Pearson r between probe R² and return across the "
                          f"training snapshots (seed means) ≥ {TRAINING_CORRELATION}.",
                measured=measured(lambda n: f"r = {fmt(n['correlation'])}", "together"),
                held=all_held(n["together"] for n in numbers.values()))]


def probe_tables(numbers, scale):
    decode = [[name, f + (" *" if f in n["posterior_means"] else ""),
               *(pm_stats(n["decode"][f][c]) for c in CONDITIONS)]
              for name, n in numbers.items() for f in n["features"]]
    other = [[name, pm_stats(n["encode_r2"]), pm_stats(n["policy_kl"]), pm_stats(n["agreement"]),
              pm_stats(n["learned"])] for name, n in numbers.items()]
    training = [[name, str(p["updates"]), pm_stats(p["r2"]), pm_stats(p["return"])]
                for name, n in numbers.items() for p in n["over_training"]]
    return [
        (f"Held-out R² ({scale.folds}-fold CV over episodes, {scale.probe_episodes} fresh "
         "episodes per agent), mean ± SE over seeds; * marks the posterior-mean features.",
         ["env", "feature", *CONDITIONS], decode),
        ("Encoding (belief → [h, c], mean R² over units), behaviour against the Bayes-optimal "
         "(belief-greedy for two-step) policy, and the gain over the untrained network.",
         ["env", "encode R²", "policy KL (nats/step)", "agreement", "trained − untrained R²"],
         other),
        (f"Along training ({scale.snapshot_episodes} fresh episodes per snapshot): probe R² of "
         "the posterior-mean features from [h, c], and the return.",
         ["env", "updates", "probe R²", "return"], training)]


# ------------------------------------------------------------------------------------------
# §3 Failures are belief failures
# ------------------------------------------------------------------------------------------
def failures_are_belief_failures(run, agents):
    """§3. Distribution shift: each agent of SHIFTS tested on tasks it was not trained on.

    Return: the excess pseudo-regret over the Bayes-optimal policy of the tasks at hand,
    pseudo-regret − (oracle − Bayes-optimal) (exact values, belief.exact_values of the test
    cfg), on the training tasks and on the test tasks. Criterion (drop): test − training
    excess > Z SE over seeds, in every case. For comparison, the excess of the policy that is
    Bayes-optimal under the *training* prior/model, run on the test tasks.
    Belief: on the same test episodes and folds, the posterior mean reward of each arm under
    the training model and under the test model, decoded from [h, c]. Criterion (belief):
    R²(training model) − R²(test model) > Z SE over seeds, in every case."""
    cases = [(name, shifted_config(metarl.env_config(agents[name][0].hp), fields))
             for name, fields in SHIFTS]
    jobs = [(f"{name} on {test.name} seed {a.hp.seed}", shift_test, a, test, run.scale)
            for name, test in cases for a in agents[name]]
    jobs += [(f"{name} on {test.name} references", shift_references,
              metarl.env_config(agents[name][0].hp), test, run.scale.baseline_episodes)
             for name, test in cases]
    results = iter(run_jobs(run, "3 failures are belief failures", jobs))
    per_case = [[next(results) for _ in agents[name]] for name, _ in cases]
    numbers = {case_label(name, test): shift_numbers(seeds, next(results))
               for (name, test), seeds in zip(cases, per_case)}
    shift_figure(numbers, os.path.join(run.out, "fig3_shift.png"))
    return Section(
        title="3. Failures are belief failures (distribution shift)",
        verdicts=shift_verdicts(numbers), tables=shift_tables(numbers, run.scale),
        figures=[("fig3_shift.png", "Left: excess pseudo-regret over the Bayes-optimal policy "
                  "of the tasks at hand, on the training tasks and on the shifted test tasks "
                  "(× : Bayes-optimal under the training prior/model, run on the test tasks). "
                  "Right: on the test episodes, held-out R² of the posterior arm means under "
                  "the training model vs under the test model, decoded from [h, c]. "
                  "Mean ± SE over seeds.")],
        notes=["Arm means compared like with like: bandit E[p_i | history] for each arm; "
               "dependent-bandit (E[p], 1 − E[p]); both computed by belief.belief_features on "
               "the same test trajectories with the training cfg and with the test cfg."],
        numbers=numbers)


def shifted_config(train_cfg, fields):
    """The test tasks of a shift case: make_config(**fields) at the agent's horizon."""
    return envs.make_config(horizon=train_cfg.horizon, **fields)


def case_label(name, test_cfg):
    prior = f", Beta({test_cfg.prior_a:g}, {test_cfg.prior_b:g})" if name == SKEWED else ""
    return f"{name} agent on {test_cfg.name} tasks{prior}"


def shift_test(agent, test_cfg, scale):
    """Worker job: the agent's return on its training tasks and on test_cfg's, and the R² of
    the posterior arm means under each model, decoded from [h, c] on the same test episodes
    with the same folds (identically seeded rngs)."""
    train_cfg, seed = metarl.env_config(agent.hp), agent.hp.seed
    own = metarl.evaluate(agent.params, train_cfg, scale.eval_episodes, seed)
    test = metarl.evaluate(agent.params, test_cfg, scale.eval_episodes, seed)
    tr = metarl.rollout(agent.params, test_cfg, scale.probe_episodes,
                        metarl.stream(seed, SHIFT_STREAM))
    X, groups = probe.flatten_episodes(np.concatenate([tr.h[1:], tr.c[1:]], -1))
    r2 = {}
    for model, cfg in (("train", train_cfg), ("test", test_cfg)):
        Y = probe.flatten_episodes(posterior_arm_means(cfg, tr))[0]
        fit = probe.cross_validated_r2(X, Y, groups, rng=np.random.default_rng(seed), k=scale.folds)
        r2[model] = float(fit.r2.mean())
    return {"own": own, "test": test, "r2": r2}


def posterior_arm_means(cfg, tr):
    """E[p_i | history] before each step under cfg's prior and model, (T, B, 2)."""
    beliefs = belief.belief_trajectory(cfg, tr.a, tr.r, tr.obs)       # rows 0 … T
    return belief.posterior_arm_means(cfg, {k: v[:-1] for k, v in beliefs.items()})


def shift_references(train_cfg, test_cfg, episodes):
    """Worker job: exact values of both task distributions, and the Bayes-optimal policy of
    the training prior/model run on the test tasks."""
    return {"own_exact": belief.exact_values(train_cfg),
            "test_exact": belief.exact_values(test_cfg),
            "bayes_of_training_model": bayes_with_model(train_cfg, test_cfg, episodes,
                                                        REFERENCE_SEED)}


def bayes_with_model(model_cfg, test_cfg, episodes, seed):
    """Return and pseudo-regret of the policy that is Bayes-optimal under model_cfg's prior
    and model, acting on test_cfg's tasks: what an agent that learned model_cfg exactly does.

    run_policy keeps the test env's own belief; this policy refolds the model's belief from
    the history at every step (O(T²), cheap at these horizons)."""
    dp = belief.bayes_dp(model_cfg)

    def choose(past, rng):
        beliefs = belief.belief_trajectory(model_cfg, past["actions"], past["rewards"], past["obs"])
        return belief.bayes_optimal(dp, model_cfg, {**past, "belief": {k: v[-1] for k, v in
                                                                       beliefs.items()}}, rng)

    a, r, _ = belief.run_policy(test_cfg, choose, episodes, seed)
    env = envs.make_env(test_cfg, episodes)
    env.reset(seed)   # the tasks run_policy met: they come from the seed alone (bandits: fixed)
    chosen = np.take_along_axis(env.means, a.T, axis=1).T                      # (T, B)
    regret = (env.means.max(axis=1) - chosen).sum(axis=0)
    return {"return": belief.mean_and_stderr(r.sum(axis=0)),
            "pseudo_regret": belief.mean_and_stderr(regret)}


def shift_numbers(seeds, references):
    """§3's numbers for one case from its seeds' shift_test results and the references."""
    def bayes_regret(exact):
        return exact["oracle_exact"] - exact["bayes_optimal_exact"]

    own_regret = bayes_regret(references["own_exact"])
    test_regret = bayes_regret(references["test_exact"])
    excess_own = [s["own"]["pseudo_regret"] - own_regret for s in seeds]
    excess_test = [s["test"]["pseudo_regret"] - test_regret for s in seeds]
    drop = seed_stats(np.subtract(excess_test, excess_own))
    r2_gap = seed_stats(s["r2"]["train"] - s["r2"]["test"] for s in seeds)
    model = references["bayes_of_training_model"]
    return {"own_return": seed_stats(s["own"]["mean"] for s in seeds),
            "own_bayes": references["own_exact"]["bayes_optimal_exact"],
            "test_return": seed_stats(s["test"]["mean"] for s in seeds),
            "test_bayes": references["test_exact"]["bayes_optimal_exact"],
            "excess_own": seed_stats(excess_own), "excess_test": seed_stats(excess_test),
            "drop": drop, "drop_held": exceeds(drop["mean"], drop["stderr"]),
            "training_model_bayes_return": model["return"],
            "training_model_bayes_excess": {"mean": model["pseudo_regret"]["mean"] - test_regret,
                                            "stderr": model["pseudo_regret"]["stderr"]},
            "r2_training_model": seed_stats(s["r2"]["train"] for s in seeds),
            "r2_test_model": seed_stats(s["r2"]["test"] for s in seeds),
            "r2_gap": r2_gap, "belief_held": exceeds(r2_gap["mean"], r2_gap["stderr"])}


def shift_verdicts(numbers):
    def measured(stat, key):
        return "; ".join(f"{case}: {pm_stats(n[stat])} → {outcome(n[key])}"
                         for case, n in numbers.items())

    return [
        Verdict(claim="Out of distribution the agents fall short of the test tasks' "
                      "Bayes-optimal value by more than in distribution.",
                criterion=f"In every case: excess pseudo-regret on the test tasks − on the "
                          f"training tasks > {Z:g} SE over seeds (excess = pseudo-regret − "
                          "(oracle − Bayes-optimal), exact values of the tasks at hand).",
                measured=measured("drop", "drop_held"),
                held=all_held(n["drop_held"] for n in numbers.values())),
        Verdict(claim="On shifted tasks the hidden state holds the posterior under the training "
                      "prior/model better than the true posterior under the test prior/model.",
                criterion=f"In every case: R²(training-model arm means) − R²(test-model arm "
                          f"means), decoded from [h, c] on the same episodes and folds, > {Z:g} "
                          "SE over seeds.",
                measured=measured("r2_gap", "belief_held"),
                held=all_held(n["belief_held"] for n in numbers.values()))]


def shift_tables(numbers, scale):
    returns = [[case, pm_stats(n["own_return"]), fmt(n["own_bayes"]), pm_stats(n["test_return"]),
                fmt(n["test_bayes"]), pm_stats(n["excess_own"]), pm_stats(n["excess_test"]),
                pm_stats(n["drop"]), pm_stats(n["training_model_bayes_excess"]),
                outcome(n["drop_held"])] for case, n in numbers.items()]
    decoding = [[case, pm_stats(n["r2_training_model"]), pm_stats(n["r2_test_model"]),
                 pm_stats(n["r2_gap"]), outcome(n["belief_held"])] for case, n in numbers.items()]
    return [
        (f"Returns ({scale.eval_episodes} fresh episodes per agent and task distribution; mean "
         "± SE over seeds) and excess pseudo-regret over the Bayes-optimal policy of the tasks at "
         "hand. Last value column: Bayes-optimal under the training prior/model, on the test "
         f"tasks ({scale.baseline_episodes} episodes).",
         ["case", "return (training tasks)", "Bayes-optimal (training)", "return (test tasks)",
          "Bayes-optimal (test)", "excess (training)", "excess (test)", "drop",
          "excess of Bayes with training model (test)", "drop held"], returns),
        (f"Held-out R² ({scale.folds}-fold CV, {scale.probe_episodes} test episodes per agent) "
         "of the posterior arm means decoded from [h, c]: under the training model vs the test "
         "model.", ["case", "R² training model", "R² test model", "difference",
                    "prediction held"], decoding)]


# ------------------------------------------------------------------------------------------
# §4 "Model-based" behaviour from a model-free learner
# ------------------------------------------------------------------------------------------
POLICY_LABELS = {"belief_greedy": "belief-greedy", "model_free_td": "model-free TD"}


def model_based_behaviour_from_a_model_free_learner(run, agents, belief_r2):
    """§4. Two-step stay probabilities of the RL² agent (trained by policy gradient, a
    model-free learner), the belief-greedy policy (uses the transition model) and a
    model-free TD learner (belief.two_step_policies, run with belief.run_policy).

    Criterion: the agent's reward × transition interaction (difference of differences)
    exceeds the model-free TD learner's by more than Z combined SEs (agent: over seeds; TD:
    over trials), and lies nearer belief-greedy's than TD's. Magnitudes, not signs: the TD
    learner's interaction is itself positive (see the note). belief_r2: §2's decoded R² of
    P(A good) (seed stats), reported here."""
    hps = [a.hp for a in agents["two-step"]]
    cfg = metarl.env_config(hps[0])
    jobs = [(f"two-step seed {a.hp.seed}", stay_behaviour, a, run.scale.stay_episodes)
            for a in agents["two-step"]]
    jobs.append(("reference policies", reference_behaviour, cfg, run.scale.stay_episodes))
    *seeds, references = run_jobs(run, "4 model-based behaviour", jobs)
    pooled = [np.concatenate([s[i] for s in seeds], axis=1) for i in range(3)]  # seeds as episodes
    analyses = {f"RL² agent ({len(seeds)} seeds pooled)": twostep.stay_analysis(*pooled),
                **{POLICY_LABELS[k]: twostep.stay_analysis(*v) for k, v in references.items()}}
    agent_interaction = seed_stats(twostep.stay_analysis(*s)["interaction"]["mean"] for s in seeds)
    numbers = stay_numbers(analyses, agent_interaction, belief_r2)
    twostep.stay_probability_plot(analyses, os.path.join(run.out, "fig4_two_step_stay.png"))
    td, bg = analyses["model-free TD"]["interaction"], analyses["belief-greedy"]["interaction"]
    return Section(
        title="4. \"Model-based\" behaviour from a model-free learner",
        verdicts=[stay_verdict(numbers)], tables=stay_tables(numbers, run.scale, cfg),
        figures=[("fig4_two_step_stay.png", "Two-step task: P(stay with the previous first-stage "
                  "choice) after each (transition, outcome) of the previous trial, ± binomial "
                  "SE.")],
        notes=[f"A positive interaction alone does not show model-based behaviour here: in this "
               f"task (swap {cfg.swap_prob}, rewards {cfg.reward_good}/{cfg.reward_bad}) the "
               f"model-free TD learner also shows one, {td['mean']:+.3f} ± {td['se']:.3f}, by a "
               "selection confound (Akam, Costa & Dayan 2015: after a rare transition the "
               "learner is more often in a state whose value it has just learned is poor), "
               f"while belief-greedy shows {bg['mean']:+.3f} ± {bg['se']:.3f}. The criterion "
               "therefore compares magnitudes with both references, not signs."],
        numbers=numbers)


def stay_behaviour(agent, episodes):
    """Worker job: (actions, rewards, obs) of the agent's sampled policy on fresh episodes."""
    tr = metarl.rollout(agent.params, metarl.env_config(agent.hp), episodes,
                        metarl.stream(agent.hp.seed, STAY_STREAM))
    return tr.a, tr.r, tr.obs


def reference_behaviour(cfg, episodes):
    """Worker job: (actions, rewards, obs) of belief-greedy and model-free TD on one seed."""
    policies = belief.two_step_policies(cfg)
    return {name: belief.run_policy(cfg, policies[name], episodes, REFERENCE_SEED)
            for name in POLICY_LABELS}


def stay_numbers(analyses, agent_interaction, belief_r2):
    agent_label = next(iter(analyses))
    td, bg = analyses["model-free TD"]["interaction"], analyses["belief-greedy"]["interaction"]
    lead = agent_interaction["mean"] - td["mean"]
    lead_se = combined_se(agent_interaction["stderr"], td["se"])
    agent = agent_interaction["mean"]
    nearer_bg = abs(agent - bg["mean"]) < abs(agent - td["mean"])
    return {"analyses": analyses, "agent_label": agent_label,
            "agent_interaction": agent_interaction,
            "lead_over_td": lead, "lead_se": lead_se, "nearer_belief_greedy": bool(nearer_bg),
            "held": all_held([exceeds(lead, lead_se), nearer_bg]), "belief_r2": belief_r2}


def stay_verdict(n):
    bg = n["analyses"]["belief-greedy"]["interaction"]["mean"]
    td = n["analyses"]["model-free TD"]["interaction"]["mean"]
    return Verdict(
        claim="The RL² agent, trained by a model-free learner, shows the model-based stay "
              "pattern beyond what the selection confound gives a model-free TD learner.",
        criterion=f"Agent interaction − TD interaction > {Z:g} SE (agent: over seeds; TD: over "
                  "trials), and |agent − belief-greedy| < |agent − TD|.",
        measured=f"agent {pm_stats(n['agent_interaction'])}, TD {td:+.3f}, belief-greedy "
                 f"{bg:+.3f}; agent − TD {pm(n['lead_over_td'], n['lead_se'])}; nearer "
                 f"belief-greedy: {'yes' if n['nearer_belief_greedy'] else 'no'}",
        held=n["held"])


def stay_tables(n, scale, cfg):
    rows = []
    for label, a in n["analyses"].items():
        beta_rc, beta_r = a["logit"]["reward x transition"], a["logit"]["reward"]
        rows.append([label, *(pm(a["stay"][c]["p"], a["stay"][c]["se"]) for c in twostep.CELLS),
                     pm(a["interaction"]["mean"], a["interaction"]["se"]),
                     pm(beta_rc["mean"], beta_rc["se"]), pm(beta_r["mean"], beta_r["se"])])
    per_seed = [[str(seed), fmt(v)] for seed, v in enumerate(n["agent_interaction"]["values"])]
    return [
        (f"Stay probabilities ± binomial SE and the interaction coefficients "
         f"({scale.stay_episodes} episodes of {cfg.horizon} trials per agent or policy; SEs over "
         "trials). Logistic: logit P(stay) = β0 + β_r x_r + β_c x_c + β_rc x_r x_c, n/a "
         "where a cell stays always or never (the MLE does not exist).",
         ["policy", *twostep.CELLS, "interaction (diff. of diff.)", "logistic β_rc",
          "logistic β_r"], rows),
        (f"The agent's interaction per seed (mean ± SE over seeds: "
         f"{pm_stats(n['agent_interaction'])}); decoded belief R² of P(A good) from [h, c] (§2): "
         f"{pm_stats(n['belief_r2'])}.",
         ["seed", "interaction"], per_seed)]


# ------------------------------------------------------------------------------------------
# Figures (matplotlib Agg, written atomically)
# ------------------------------------------------------------------------------------------
def new_figure(columns, width=4.2, height=3.6):
    import matplotlib
    matplotlib.use("Agg")   # no display needed; imported here so workers never load it
    import matplotlib.pyplot as plt
    return plt.subplots(1, columns, figsize=(width * columns, height), squeeze=False,
                        layout="constrained")


def save_figure(fig, path):
    import matplotlib.pyplot as plt
    metarl.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def returns_figure(numbers, path):
    fig, axes = new_figure(len(numbers))
    for ax, (name, n) in zip(axes[0], numbers.items()):
        entries = [("RL² agent", n["agent"]["mean"], n["agent"]["stderr"])]
        entries += [(k.replace("_", " "), b["mean"], b["stderr"]) for k, b in n["baselines"].items()
                    if k != "random"]
        y = np.arange(len(entries))[::-1]
        ax.errorbar([e[1] for e in entries], y, xerr=[e[2] or 0.0 for e in entries], fmt="o",
                    capsize=3)
        ax.scatter(n["agent"]["values"], np.full(len(n["agent"]["values"]), y[0]), s=12,
                   color="C3", zorder=3, label="agent seeds")
        ax.axvline(n["reference"]["mean"], color="k", ls="--", lw=1, label=n["reference"]["label"])
        ax.set_yticks(y, [e[0] for e in entries])
        ax.set(xlabel=f"mean total reward per episode (T = {n['horizon']})", title=name)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("§1 Agents vs the Bayes-optimal reference and classical baselines")
    save_figure(fig, path)


def decoding_figure(numbers, path):
    fig, axes = new_figure(len(numbers))
    width = 0.8 / len(CONDITIONS)
    for ax, (name, n) in zip(axes[0], numbers.items()):
        x = np.arange(len(n["features"]))
        for i, condition in enumerate(CONDITIONS):
            stats = [n["decode"][f][condition] for f in n["features"]]
            ax.bar(x + (i - (len(CONDITIONS) - 1) / 2) * width, [s["mean"] for s in stats], width,
                   yerr=[s["stderr"] or 0.0 for s in stats], capsize=2, label=condition)
        ax.axhline(DECODE_R2_MIN, color="k", ls=":", lw=1)
        ax.set_xticks(x, n["features"], rotation=30, ha="right")
        lowest = min(n["decode"][f][c]["mean"] for f in n["features"] for c in CONDITIONS)
        ax.set(xlabel="belief feature", ylabel="held-out R²", title=name,
               ylim=(max(-0.5, min(0.0, lowest - 0.05)), 1.02))
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center",
               ncols=len(CONDITIONS))
    fig.suptitle(f"§2 Linear decoding of the exact belief (dotted: R² = {DECODE_R2_MIN})")
    save_figure(fig, path)


def over_training_figure(numbers, path):
    fig, axes = new_figure(len(numbers))
    for ax, (name, n) in zip(axes[0], numbers.items()):
        points = n["over_training"]
        u = [p["updates"] for p in points]
        ax.errorbar(u, [p["r2"]["mean"] for p in points],
                    yerr=[p["r2"]["stderr"] or 0.0 for p in points], fmt="o-", color="C0",
                    capsize=3, label="probe R² (posterior means)")
        ax.set(xscale="log", xlabel="updates", title=f"{name} (r = {fmt(n['correlation'], 2)})")
        ax.set_ylabel("held-out R²", color="C0")
        twin = ax.twinx()
        twin.errorbar(u, [p["return"]["mean"] for p in points],
                      yerr=[p["return"]["stderr"] or 0.0 for p in points], fmt="s--",
                      color="C1", capsize=3, label="return")
        twin.set_ylabel("mean total reward per episode", color="C1")
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    fig.legend(handles=handles, loc="outside lower center", ncols=2)
    fig.suptitle("§2 Decodability of the belief and return along training")
    save_figure(fig, path)


def shift_figure(numbers, path):
    fig, axes = new_figure(2, width=6.0, height=4.8)
    cases = list(numbers)
    x = np.arange(len(cases))
    panels = ((axes[0, 0], ("excess_own", "excess_test"), ("training tasks", "test tasks"),
               "excess pseudo-regret over Bayes-optimal"),
              (axes[0, 1], ("r2_training_model", "r2_test_model"),
               ("posterior under training model", "posterior under test model"),
               "held-out R² of posterior arm means"))
    for ax, keys, labels, ylabel in panels:
        for i, (key, label) in enumerate(zip(keys, labels)):
            stats = [numbers[c][key] for c in cases]
            ax.bar(x + (i - 0.5) * 0.38, [s["mean"] for s in stats], 0.38,
                   yerr=[s["stderr"] or 0.0 for s in stats], capsize=3, label=label)
        ax.set_xticks(x, [c.replace(" agent on ", " agent\non ") for c in cases], fontsize=7)
        ax.set(ylabel=ylabel)
    axes[0, 0].scatter(x + 0.19, [numbers[c]["training_model_bayes_excess"]["mean"] for c in cases],
                       marker="x", color="k", zorder=3, label="Bayes with training model (test)")
    axes[0, 0].set_title("Return under shift")
    axes[0, 1].set_title("What the hidden state encodes")
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.2), ncols=3)
    axes[0, 1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.2), ncols=2)
    fig.suptitle("§3 Distribution shift")
    save_figure(fig, path)


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------
def fmt(x, digits=3):
    """x with `digits` decimals, or n/a for a value that does not exist (None, NaN)."""
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def pm(mean, se, digits=3):
    """'mean ± se'; 'mean (1 seed)' when the SE is undefined; n/a when the mean is."""
    if mean is None or not np.isfinite(mean):
        return "n/a"
    if se is None:
        return f"{fmt(mean, digits)} (1 seed)"
    return f"{fmt(mean, digits)} ± {fmt(se, digits)}"


def pm_stats(stats, digits=3):
    return pm(stats["mean"], stats["stderr"], digits)


def outcome(held):
    return {True: "held", False: "did not hold", None: "undecided (needs ≥ 2 seeds)"}[held]


def markdown_table(header, rows):
    def line(cells):  # a literal | (as in |a − b|) would end the cell: escape it
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def machine_facts():
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    return {"platform": platform.platform(), "processor": platform.processor() or "unknown",
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__,
            "blas": f"{blas.get('name', 'unknown')} {blas.get('version', '')}".strip(),
            "blas_threads_per_worker": BLAS_THREADS_PER_WORKER}


def write_report(out, sections, facts, configs):
    """REPORT.md: the headline table, then each section's verdicts, tables, figures and notes,
    then the training budgets and how the run was made."""
    lines = ["# RL² meta-RL lab: experiment report", "",
             f"`{facts['command']}` — wall time {facts['wall_seconds']:.1f} s on "
             f"{facts['machine']['cpu_count']} CPUs, {facts['workers']} workers, "
             f"seeds 0–{facts['seeds'] - 1}. Every number below was measured in this run; every "
             "verdict applies the stated criterion to those numbers.", "",
             "## Headline", "",
             markdown_table(["experiment", "claim", "measured", "outcome"],
                            [[s.title, v.claim, v.measured, f"**{outcome(v.held)}**"]
                             for s in sections for v in s.verdicts]), ""]
    for s in sections:
        lines += section_markdown(s)
    lines += run_markdown(facts, configs)
    metarl.atomic_write(os.path.join(out, "REPORT.md"),
                        lambda f: f.write("\n".join(lines).encode("utf-8")))


def section_markdown(s):
    lines = [f"## {s.title}", "",
             markdown_table(["claim", "criterion", "measured", "outcome"],
                            [[v.claim, v.criterion, v.measured, f"**{outcome(v.held)}**"]
                             for v in s.verdicts]), ""]
    for caption, header, rows in s.tables:
        lines += [caption, "", markdown_table(header, rows), ""]
    for name, caption in s.figures:
        lines += [f"![{name[:-len('.png')]}]({name})", "", f"*{caption}*", ""]
    return lines + [note + "\n" for note in s.notes]


def run_markdown(facts, configs):
    """The training budgets (seed 0's Config of each agent), stage times and machine facts."""
    budgets = [[name, hp.env, str(hp.horizon), f"Beta({hp.prior_a:g}, {hp.prior_b:g})",
                str(hp.hidden), str(hp.batch), str(hp.updates), f"{hp.lr:g}", hp.dtype,
                f"{hp.entropy_start:g} → {hp.entropy_end:g}",
                f"{facts['training_seconds'][name]:.1f}"]
               for name, hp in ((name, hps[0]) for name, hps in configs.items())]
    return ["## Training budgets", "",
            markdown_table(["agent", "env", "T", "prior", "hidden", "batch", "updates", "lr",
                            "dtype", "entropy β", "mean training time (s)"], budgets), "",
            "## How this run was made", "",
            markdown_table(["stage", "wall time (s)"],
                           [[stage, f"{seconds:.1f}"] for stage, seconds in facts["stages"]]),
            "", markdown_table(["fact", "value"],
                               [[k, str(v)] for k, v in facts["machine"].items()]), ""]


def write_numbers(out, sections, facts):
    """results.json: every measured number, by section, and the facts of the run."""
    def builtin(x):  # NumPy scalars and arrays → JSON
        return x.item() if isinstance(x, np.generic) else x.tolist()

    document = {"facts": facts, "sections": {s.title: s.numbers for s in sections}}
    text = json.dumps(document, indent=1, default=builtin)
    metarl.atomic_write(os.path.join(out, "results.json"), lambda f: f.write(text.encode("utf-8")))


# ------------------------------------------------------------------------------------------
# The whole run, and the command line
# ------------------------------------------------------------------------------------------
def run_experiments(configs, scale, workers, out, command):
    """Train every agent of `configs` (name → [Config per seed]) and run §1–§4; write
    REPORT.md, the figures and results.json into `out`. Returns the sections."""
    os.makedirs(out, exist_ok=True)
    stages, start = [], time.perf_counter()
    with worker_pool(workers) as pool:
        run = Run(pool=pool, scale=scale, out=out, start=start)

        def stage(name, function, *args):
            t0 = time.perf_counter()
            result = function(run, *args)
            stages.append((name, time.perf_counter() - t0))
            progress(run, f"stage {name} finished in {stages[-1][1]:.1f} s")
            return result

        agents = stage("train agents", train_agents, configs)
        near_optimal = stage("1 agents act near Bayes-optimally",
                             agents_act_near_bayes_optimally, agents)
        belief_states = stage("2 hidden states are belief states",
                              hidden_states_are_belief_states, agents)
        shift = stage("3 failures are belief failures", failures_are_belief_failures, agents)
        decoded = belief_states.numbers["two-step"]["decode"]["p_A_good"][CONDITIONS[0]]
        two_step = stage("4 model-based behaviour",
                         model_based_behaviour_from_a_model_free_learner, agents, decoded)
    sections = [near_optimal, belief_states, shift, two_step]
    facts = {"command": command, "wall_seconds": time.perf_counter() - start, "workers": workers,
             "seeds": len(next(iter(configs.values()))), "stages": stages,
             "training_seconds": {name: float(np.mean([a.seconds for a in trained]))
                                  for name, trained in agents.items()},
             "machine": machine_facts(), "scale": asdict(scale)}
    write_report(out, sections, facts, configs)
    write_numbers(out, sections, facts)
    print(f"wrote {os.path.join(out, 'REPORT.md')} in {facts['wall_seconds']:.1f} s", flush=True)
    return sections


def build_parser():
    parser = OneLineErrorParser(prog="experiments.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small horizons and budgets, a check of the pipeline "
                             "(< 2 min on 2 cores)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="agents per task distribution, seeds 0 … N−1 "
                             "(default 3; --quick 2)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="worker processes (default: the number of CPUs)")
    parser.add_argument("--out", default="results", help="folder for REPORT.md and the figures")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    seeds = args.seeds if args.seeds is not None else (2 if args.quick else 3)

    def command():
        check_int("--seeds", seeds, 1, MAX_SEEDS)
        check_int("--workers", args.workers, 1, MAX_WORKERS)
        check_memory(args.workers * WORKER_BYTES, f"--workers {args.workers}")
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise ValueError(f"--out {args.out} is a file; give a folder")
        configs = agent_configs(BUDGETS, seeds, args.quick)
        for hps in configs.values():
            metarl.check_hyperparameters(hps[0])
        prepare_output_folder(args.out, "--out")
        run_experiments(configs, QUICK_SCALE if args.quick else FULL_SCALE, args.workers,
                        args.out, " ".join(["python experiments.py", *map(shlex.quote, argv)]))

    return run_cli("experiments.py", command)


if __name__ == "__main__":
    sys.exit(main())
