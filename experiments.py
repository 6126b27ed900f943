"""The paper's experiments, end to end: from a fresh clone to results.json and REPORT.md.

    python experiments.py --out results/              # the full run (its time: docs/REPORT.md)
    python experiments.py --quick --out results/      # tiny budgets: checks the pipeline only
    python experiments.py report results/             # REPORT.md and figures from results.json

One RL² agent is trained per (agent of AGENTS, seed), each with its task family's recipe
(metarl.recipe), and the paper's four experiments measure them, in the order of the paper:

    1. agents_act_near_bayes_optimally                   return against Bayes-optimal and baselines
    2. hidden_states_are_belief_states                   probes, simulation, minimality, splicing
    3. failures_are_belief_failures                      distribution shift: return, behaviour, belief
    4. model_based_behaviour_from_a_model_free_learner   two-step stays, hybrid fit, model-free grid
    5. predicting_the_next_outcome                       Kuo et al. (2025): the agents trained with
                                                         a predictive loss, and the bottleneck arm

This module only measures: every number goes, raw (per seed), into results.json, whose schema
(RESULTS, version SCHEMA) is stated here beside the code that writes it. The report reads that
file alone: claims.py states the criteria and decides the verdicts, report.py writes REPORT.md
and the figures, so the report can be rewritten (`report DIR`) without training anything.

Parallelism and reproducibility: each job (train one agent, probe one agent, ...) runs in a
worker process and depends only on its arguments; results are gathered in a fixed order, so
the same seeds give the same numbers for any --workers.
"""
import json
import multiprocessing
import os
import platform
import shlex
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields as dataclass_fields, replace

import numba
import numpy as np

import belief
import envs
import ladders
import machines
import metarl
import panel
import probe
import report
import ridge
import runs
import twostep
from boundary import (OneLineErrorParser, atomic_write, check_int, check_json, check_memory,
                      check_output_folder, one_writer, parse_json, prepare_output_folder, run_cli,
                      to_builtin)

# ------------------------------------------------------------------------------------------
# The agents: each trains with its family's recipe (metarl.RECIPES), plus these fields
# ------------------------------------------------------------------------------------------
SKEWED = "skewed-prior bandit"   # the bandit with arms p_i ~ Beta(2, 5): mean 2/7, not 1/2
AGENTS = {"bandit": ("bandit", {}), "dependent-bandit": ("dependent-bandit", {}),
          "tiger": ("tiger", {}), "two-step": ("two-step", {}),
          SKEWED: ("bandit", dict(prior_a=2.0, prior_b=5.0))}
PROBED = ("bandit", "dependent-bandit", "tiger", "two-step")   # §2: one agent per family
QUICK_BUDGET = dict(updates=300, batch=32, hidden=16)   # --quick: replaces these in every agent
PROGRESS_LINES = 5    # training progress lines per agent
CURVE_POINTS = 100    # points of each agent's learning curve in results.json
SEEDS, QUICK_SEEDS = 5, 2

# §5 (Kuo et al. 2025): each arm is an agent of AGENTS with these fields over its recipe, and
# is trained beside them. PREDICT_WEIGHT was chosen before the run on returns and training loss
# alone (the README's "The predictive weight": the largest of 0.1, 0.3, 1, 3 whose bandit and
# Tiger returns stay within 2 SE of the plain run's, seed 100); the bottleneck's state [h, c]
# has 12 numbers against the 4 counts of the bandit's exact belief (Kuo's latent: 3 means and
# 3 variances).
PREDICT_WEIGHT = 3.0
BOTTLENECK_HIDDEN = 6
PREDICTIVE = {"bandit predictive": ("bandit", dict(predict_weight=PREDICT_WEIGHT)),
              "dependent-bandit predictive": ("dependent-bandit",
                                              dict(predict_weight=PREDICT_WEIGHT)),
              "tiger predictive": ("tiger", dict(predict_weight=PREDICT_WEIGHT)),
              "two-step predictive": ("two-step", dict(predict_weight=PREDICT_WEIGHT)),
              "bandit bottleneck": ("bandit", dict(hidden=BOTTLENECK_HIDDEN)),
              "bandit bottleneck predictive": ("bandit", dict(hidden=BOTTLENECK_HIDDEN,
                                                              predict_weight=PREDICT_WEIGHT))}

# §3: (trained agent, the tasks it is tested on as envs.make_config fields, the control: the
# agent trained on those test tasks). Same horizon as the agent's own tasks.
SHIFTS = (("dependent-bandit", dict(name="bandit", arms=2), "bandit"),
          ("bandit", dict(name="dependent-bandit"), "dependent-bandit"),
          (SKEWED, dict(name="bandit", arms=2, prior_a=1.0, prior_b=1.0), "bandit"))


@dataclass(frozen=True)
class Scale:
    """How much each measurement uses (per agent, unless said otherwise)."""

    eval_steps: int          # agent steps of each evaluation: episodes = eval_steps / T (§1, §3)
    baseline_steps: int      # steps of each baseline or reference policy, once per env
    probe_episodes: int      # probe.probe_agent (§2) and the shift measurements (§3)
    simulation_episodes: int  # of those, the simulation and minimality analyses use (§2b)
    splice_episodes: int     # fresh episodes of the splicing test (§2b)
    snapshot_episodes: int   # replayed histories probed at every training snapshot (§2)
    snapshots: int           # log-spaced snapshots along training (§2)
    stay_episodes: int       # two-step stays and hybrid fit, per agent and reference policy (§4)
    grid_episodes: int       # each model-free learner of twostep.MF_GRID (§4)
    panel_seeds: int         # seeds of §3's known machines, ≥ 2
    ladder_seeds: int        # seeds of every ladder per family (§2c), ≥ 2
    map_steps: int = machines.MLP_STEPS   # Adam steps of each MLP map fit (§2b, §2c)
    folds: int = probe.FOLDS  # cross-validation folds of every probe


FULL_SCALE = Scale(eval_steps=2_000_000, baseline_steps=2_000_000, probe_episodes=500,
                   simulation_episodes=250, splice_episodes=300, snapshot_episodes=300,
                   snapshots=6, stay_episodes=1000, grid_episodes=500, panel_seeds=3,
                   ladder_seeds=2)
QUICK_SCALE = Scale(eval_steps=20_000, baseline_steps=20_000, probe_episodes=60,
                    simulation_episodes=40, splice_episodes=40, snapshot_episodes=40,
                    snapshots=4, stay_episodes=60, grid_episodes=40, panel_seeds=2,
                    ladder_seeds=2, map_steps=20)

# Fresh-episode streams metarl.stream(seed, key), clear of training (keys < 2³²),
# metarl.EVAL_STREAM (2³²) and probe.PROBE_STREAM (2³³).
SNAPSHOT_STREAM, SHIFT_STREAM, STAY_STREAM = 2 ** 34, 2 ** 34 + 1, 2 ** 34 + 2
REFERENCE_SEED = 0   # env seed of the classical baselines and reference policies
# Multi-threaded OpenBLAS spin-waits when threads outnumber free cores. Measured on the 2-core
# machine (bandit update, H = 48, B = 64, T = 100, float32, load ≈ 2.5 from other jobs): 15 ms
# with 1 thread, 200-250 ms with 2; two processes at once: 29 ms each with 1 thread, 600 ms
# each with 2. So each worker gets one thread, and parallelism comes from the workers.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
BLAS_THREADS_PER_WORKER = "1"
MAX_SEEDS, MAX_WORKERS = 100, 64
WORKER_BYTES = 2 ** 30   # a generous bound on one worker's peak: NumPy, Numba and its largest job


def episodes(steps, cfg):
    """Episodes of cfg that make up `steps` agent steps (at least 10)."""
    return max(10, steps // cfg.horizon)


# ------------------------------------------------------------------------------------------
# The run: worker pool, progress lines, jobs
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """What every stage needs: the worker pool, the measurement sizes, the start time."""

    pool: ProcessPoolExecutor
    scale: Scale
    start: float   # time.perf_counter() when the run began, for progress lines


@contextmanager
def worker_pool(workers):
    """W spawned worker processes with one BLAS thread each, as a context.

    The thread count must be in the environment before a worker imports NumPy: it is set in
    this process's environment for the pool's lifetime (the workers inherit it; the old values
    come back after), and the workers are spawned, not forked, since a fork would inherit this
    process's already-started BLAS threads. If the block ends by an exception (Ctrl-C
    included), the queued jobs are cancelled and the workers stopped at once, rather than
    left to finish jobs whose results nobody will read."""
    saved = {name: os.environ.get(name) for name in BLAS_THREAD_VARIABLES}
    os.environ.update({name: BLAS_THREADS_PER_WORKER for name in BLAS_THREAD_VARIABLES})
    try:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=worker_start, initargs=(os.getpid(),))
        try:
            yield pool
        except BaseException:
            stop_workers(pool)
            raise
        pool.shutdown(wait=True)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def worker_start(parent):
    """A worker's first act. Ctrl-C (sent to the whole process group) is the main process's
    to handle: it cancels the queue and stops the workers. And a worker whose main process is
    gone (killed) exits within a second instead of finishing a job for nobody."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=exit_with, args=(parent,), daemon=True).start()


def exit_with(parent):
    """Poll the parent's pid; once this process has been re-parented, end it."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def stop_workers(pool):
    """Cancel the pool's queued jobs and end its workers now. The executor offers no public
    way to end a running job, so its processes are terminated through its `_processes`."""
    processes = list((pool._processes or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        p.terminate()
    for p in processes:
        p.join(5)


def progress(run, message):
    print(f"[{time.perf_counter() - run.start:7.1f} s] {message}", flush=True)


def run_jobs(run, stage, jobs, cost=None):
    """Run jobs = [(label, function, *args)] on the pool; their results in the order given.

    cost (one number per job, optional): jobs are submitted the costliest first, so that a
    short job, not a long one, is what runs alone at the end of the stage. One progress line
    as each job finishes; the order of the results never depends on timing or cost."""
    progress(run, f"{stage}: {len(jobs)} jobs")
    order = range(len(jobs)) if cost is None else sorted(range(len(jobs)), key=lambda i: -cost[i])
    futures = {i: run.pool.submit(jobs[i][1], *jobs[i][2:]) for i in order}
    labels = {futures[i]: jobs[i][0] for i in order}
    for future in as_completed(labels):
        future.result()   # a worker's error is raised here, with its traceback
        progress(run, f"{stage}: {labels[future]} done")
    return [futures[i].result() for i in range(len(jobs))]


# ------------------------------------------------------------------------------------------
# Training: one agent per (AGENTS entry, seed), with parameter snapshots along the way
# ------------------------------------------------------------------------------------------
@dataclass
class Agent:
    """A trained agent: its settings, parameters at the end and along training."""

    name: str          # key of AGENTS
    hp: metarl.Config
    params: dict
    snapshots: dict    # number of updates done → the parameters then (0: the initial ones)
    returns: list      # mean training return per update, in CURVE_POINTS blocks of updates
    seconds: float     # training wall time (varies from run to run; reported, never compared)


def agent_configs(seeds, quick, arms=False):
    """name → [metarl.Config for seeds 0 … seeds − 1]: each agent's recipe (of AGENTS, or with
    arms the arms of PREDICTIVE: their agent's fields, then theirs); quick swaps in
    QUICK_BUDGET and its family's quick horizon (envs.Family.quick_horizon) first."""
    configs = {}
    for name, (base, arm) in (PREDICTIVE.items() if arms else
                              ((name, (name, {})) for name in AGENTS)):
        env, fields = AGENTS[base]
        fields = dict(fields)
        if quick:
            fields.update(QUICK_BUDGET, horizon=envs.family(env).quick_horizon)
        fields.update(arm)
        updates = fields.get("updates", metarl.recipe(env).updates)
        fields["log_every"] = max(1, updates // PROGRESS_LINES)
        configs[name] = [metarl.recipe(env, **fields, seed=seed) for seed in range(seeds)]
    return configs


def horizon(hp):
    """T of an agent's episodes: what an analysis job's cost grows with (Tiger's 20 against
    100 for the others), the order in which its stage submits the jobs."""
    return metarl.env_config(hp).horizon


def snapshot_points(updates, n):
    """About n log-spaced update counts from 1 to `updates` (both included), ascending."""
    return sorted({int(round(u)) for u in np.geomspace(1, updates, n)})


def train_agents(run, configs, arm_configs):
    """Every agent of `configs` and every arm of `arm_configs` (§5; no snapshots but the
    untrained one), the longest runs first so that the workers finish together. Returns
    (agents, arms), each name → [Agent, one per seed, in seed order]."""
    todo = sorted(((name, hp) for name, hps in {**configs, **arm_configs}.items() for hp in hps),
                  key=lambda job: -job[1].updates * job[1].batch * metarl.env_config(job[1]).horizon
                  * (job[1].hidden + 16))   # the cost of an update grows with H, not from 0
    jobs = [(f"{name} seed {hp.seed}", train_agent, name, hp,
             snapshot_points(hp.updates, run.scale.snapshots) if name in configs else [])
            for name, hp in todo]
    trained = {name: [] for name in {**configs, **arm_configs}}
    for agent in run_jobs(run, "train agents", jobs):
        trained[agent.name].append(agent)
    trained = {name: sorted(runs_, key=lambda a: a.hp.seed) for name, runs_ in trained.items()}
    return ({name: trained[name] for name in configs},
            {name: trained[name] for name in arm_configs})


def train_agent(name, hp, snapshot_updates):
    """Worker job: train one agent, copying its parameters after each of snapshot_updates and
    keeping its learning curve (the batch's mean return at every update, averaged over
    CURVE_POINTS equal blocks of updates)."""
    cfg = metarl.env_config(hp)
    snapshots = {0: metarl.initial_params(hp, cfg)}
    returns = np.empty(hp.updates)

    def keep_snapshot(u, params, stats):
        returns[u] = stats["return"]
        if u + 1 in snapshot_updates:
            snapshots[u + 1] = {k: v.copy() for k, v in params.items()}

    start = time.perf_counter()
    params = runs.train(hp, None, log=lambda line: print(f"    {name} seed {hp.seed}: {line}",
                                                           flush=True),
                          on_update=keep_snapshot)
    blocks = np.array_split(returns, min(CURVE_POINTS, hp.updates))
    return Agent(name, hp, params, snapshots, [float(b.mean()) for b in blocks],
                 time.perf_counter() - start)


# ------------------------------------------------------------------------------------------
# §1 Agents act near Bayes-optimally: each agent on fresh episodes, and the references
# ------------------------------------------------------------------------------------------
def agents_act_near_bayes_optimally(run, agents):
    """§1's raw numbers: per env, every seed's evaluation (runs.evaluate) and the exact
    values and baselines of the task distribution (belief.baselines_report)."""
    names = [name for name in AGENTS if name != SKEWED]
    jobs = [(f"{name} seed {a.hp.seed}", evaluate_agent, a, run.scale.eval_steps)
            for name in names for a in agents[name]]
    jobs += [(f"{name} baselines", reference_values, metarl.env_config(agents[name][0].hp),
              run.scale.baseline_steps) for name in names]
    results = iter(run_jobs(run, "1 agents act near Bayes-optimally", jobs))
    evaluations = {name: [next(results) for _ in agents[name]] for name in names}
    return {name: {"seeds": evaluations[name], "references": next(results)} for name in names}


def evaluate_agent(agent, steps):
    """Worker job: runs.evaluate on fresh episodes of the agent's own tasks."""
    cfg = metarl.env_config(agent.hp)
    return runs.evaluate(agent.params, cfg, episodes(steps, cfg), agent.hp.seed)


def reference_values(cfg, steps):
    """Worker job: the exact values and the baselines of one task distribution."""
    return belief.baselines_report(cfg, episodes(steps, cfg), REFERENCE_SEED)


# ------------------------------------------------------------------------------------------
# §2 Hidden states are belief states
# ------------------------------------------------------------------------------------------
def hidden_states_are_belief_states(run, agents):
    """§2's raw numbers: per probed env and seed, probe.probe_agent's summary (decoding with
    paired controls, simulation, minimality, splicing, value loss) and the probe along
    training on one fixed set of replayed histories."""
    jobs = [(f"{name} seed {a.hp.seed}", probe_job, a, run.scale)
            for name in PROBED for a in agents[name]]
    results = iter(run_jobs(run, "2 hidden states are belief states", jobs,
                            cost=[horizon(job[2].hp) for job in jobs]))
    return {name: [next(results) for _ in agents[name]] for name in PROBED}


def probe_job(agent, scale):
    return {"probe": probe_summary(agent, scale),
            "over_training": probe_over_training(agent, scale)}


def probe_summary(agent, scale):
    """probe.probe_agent's summary of an agent on scale's episodes, folds and maps."""
    return probe.probe_agent(agent.params, agent.hp, scale.probe_episodes, agent.hp.seed,
                             scale.folds, scale.simulation_episodes, scale.splice_episodes,
                             map_steps=scale.map_steps)[0]


def probe_over_training(agent, scale):
    """The posterior-mean features decoded from [h, c] at every training snapshot, all on the
    same histories: the final agent's fresh episodes, replayed (actions and all) through each
    snapshot's network, with the same folds. Snapshot 0 is the untrained network. Also each
    snapshot's own return on fresh episodes, for the figure."""
    cfg = metarl.env_config(agent.hp)
    histories = metarl.rollout(agent.params, cfg, scale.snapshot_episodes,
                               metarl.stream(agent.hp.seed, SNAPSHOT_STREAM))
    F, names = belief.belief_features(cfg, histories.a, histories.r, histories.obs)
    Y, groups = ridge.flatten_episodes(F[..., belief.posterior_mean_columns(names)])
    folds = ridge.episode_folds(groups, scale.folds, np.random.default_rng(agent.hp.seed))
    points = []
    for updates, params in sorted(agent.snapshots.items()):
        tr = metarl.rollout(params, cfg, scale.snapshot_episodes,
                            metarl.stream(agent.hp.seed, SNAPSHOT_STREAM), actions=histories.a)
        X = ridge.flatten_episodes(np.concatenate([tr.h[1:], tr.c[1:]], -1))[0]
        fit = ridge.cross_validated_r2(X, Y, groups, rng=np.random.default_rng(agent.hp.seed),
                                       k=scale.folds, folds=folds)
        own = runs.evaluate(params, cfg, scale.snapshot_episodes, agent.hp.seed)
        points.append({"updates": updates, "r2": float(fit.r2.mean()), "return": own["mean"]})
    return points


# ------------------------------------------------------------------------------------------
# §2c The agent on the ladders: each property graded by machines whose answer is known
# ------------------------------------------------------------------------------------------
LADDERED = ("bandit", "dependent-bandit", "tiger")   # the families whose ladders the main job
                            # builds: two-step's would add ≈ 250 s of 2 cores
AGENT_BASIS = ("bandit",)   # the families whose ladders include the agent's own basis (LSTMs
                            # distilled per grade, ladders.LSTM_GRADES): the budget's choice


def place_on_the_ladders(run, agents):
    """§2c's raw numbers: per probed env, a Bayes-distilled LSTM and the recent-events LSTM
    of the seed-0 agent's architecture (train_panel_lstms; the distilled one's evaluation is
    §1's capacity row), the LSTMs of the agent's basis (AGENT_BASIS families), and every
    ladder of the LADDERED families on scale.ladder_seeds seeds (one job per basis and one
    for the networks: ladder_job), with the reference networks measured beside them. Returns
    (the section, the distillations' training seconds, the distilled parameters: §3's known
    machines)."""
    lstm_jobs = [(f"{name} distilled", train_panel_lstms, agents[name][0].hp,
                  run.scale.eval_steps, name in LADDERED) for name in PROBED]
    grade_jobs = [(name, prop, grade) for name in AGENT_BASIS
                  for prop, grades in ladders.LSTM_GRADES.items() for grade in grades]
    lstm_jobs += [(f"{name} {prop} {grade:g} LSTM", ladders.grade_lstm, agents[name][0].hp, prop,
                   grade) for name, prop, grade in grade_jobs]
    laddered = [(name, seed) for name in LADDERED for seed in range(run.scale.ladder_seeds)]

    def ladder_task(name, seed, part, *networks):
        return (f"{name} seed {seed} {part}", ladder_job, agents[name][seed % len(agents[name])],
                seed, run.scale, part, *networks)

    # the fixed bases need no network: they run beside the networks' training
    basis_jobs = [ladder_task(name, seed, basis) for name, seed in laddered
                  for basis in ladders.BASES]
    done = iter(run_jobs(run, "2c train the reference and ladder LSTMs; the fixed bases",
                         lstm_jobs + basis_jobs, cost=[   # ≈ seconds per step of T (measured)
                             horizon(job[2]) * (1.2 if job[1] is train_panel_lstms else 0.15)
                             for job in lstm_jobs] + [horizon(job[2].hp) * 0.55
                                                      for job in basis_jobs]))
    distilled = {name: next(done) for name in PROBED}
    lstms = {name: {} for name in AGENT_BASIS}
    for name, prop, grade in grade_jobs:
        lstms[name].setdefault(prop, {})[grade] = next(done)
    parts = {key: {basis: next(done) for basis in ladders.BASES} for key in laddered}
    network_jobs = [ladder_task(name, seed, "networks", lstms.get(name),
                                {"untrained": None, "distilled": distilled[name]["params"],
                                 "recent events": distilled[name]["recent"]})
                    for name, seed in laddered]
    for key, networks in zip(laddered, run_jobs(run, "2c the networks on the ladders", network_jobs,
                                             cost=[horizon(job[2].hp) * (1 + bool(job[6]))
                                                   for job in network_jobs])):
        parts[key]["networks"] = networks
    section = {}
    for name in PROBED:
        seeds = []
        for seed in range(run.scale.ladder_seeds if name in LADDERED else 0):
            done = parts[(name, seed)]
            seeds.append({"ladders": {ladder.name: {**{b: done[b][ladder.name]
                                                       for b in ladders.BASES},
                                                    **done["networks"]["ladders"].get(
                                                        ladder.name, {})}
                                      for ladder in ladders.LADDERS},
                          "seed": seed, "episodes": run.scale.simulation_episodes,
                          "splice_episodes": run.scale.splice_episodes,
                          "references": done["networks"]["references"]})
        section[name] = {"seeds": seeds, "agent_basis": name in AGENT_BASIS,
                         "distilled": {"updates": distilled[name]["updates"],
                                       "batch": distilled[name]["batch"],
                                       "evaluation": distilled[name]["evaluation"]}}
    return (section, {name: distilled[name]["seconds"] for name in PROBED},
            {name: distilled[name]["params"] for name in PROBED})


def ladder_job(agent, seed, scale, part, lstms=None, references=None):
    """Worker job: one part of ladder seed `seed`, read along the agent's own probe episodes
    of that seed (for the agent of that seed, its §2 probe's episodes and folds): the
    ladders in one basis of ladders.BASES (ladders.ladder_part), or "networks": the ladders
    in the agent's basis where lstms are given (ladders.lstm_part) and the reference networks
    {name: params} (params None: the agent's architecture at seed `seed`'s initial weights,
    the untrained network)."""
    cfg = metarl.env_config(agent.hp)
    tr = metarl.rollout(agent.params, cfg, scale.probe_episodes,
                        metarl.stream(seed, probe.PROBE_STREAM))
    ep = ladders.episodes_along(cfg, tr, seed, scale.folds, scale.splice_episodes,
                                map_steps=scale.map_steps, episodes=scale.simulation_episodes)
    if part != "networks":
        return ladders.ladder_part(ep, part)
    untrained = metarl.initial_params(replace(agent.hp, seed=seed), cfg, np.float64)
    return {"ladders": {prop: {ladders.LSTM: rows}
                        for prop, rows in ladders.lstm_part(ep, lstms or {}).items()},
            "references": {name: ladders.network_values(untrained if params is None else params,
                                                        ep, name)
                           for name, params in references.items()}}


def train_panel_lstms(agent_hp, eval_steps, recent=True):
    """Worker job: the reference LSTMs of the agent's env, horizon and width: the
    distillation recipe (for --quick, the agent's budget if smaller), evaluated on fresh
    episodes, and if `recent` the recent-events LSTM (panel.train_recent_events_lstm,
    RECENT_UPDATES or the distillation's updates if fewer). Returns both parameter sets (None
    for one not trained), the distilled one's evaluation and the training seconds of both."""
    hp = panel.distill_recipe_for(agent_hp)
    start = time.perf_counter()
    params = distill_job(agent_hp)
    recent = panel.train_recent_events_lstm(
        panel.recent_events_recipe(hp),
        log=lambda line: print(f"    {hp.env} recent events: {line}", flush=True)) if recent else None
    seconds = time.perf_counter() - start
    cfg = metarl.env_config(hp)
    return {"params": params, "recent": recent, "seconds": seconds, "updates": hp.updates,
            "batch": hp.batch,
            "evaluation": runs.evaluate(params, cfg, episodes(eval_steps, cfg), hp.seed)}


# ------------------------------------------------------------------------------------------
# §3 Failures are belief failures: distribution shift
# ------------------------------------------------------------------------------------------
def failures_are_belief_failures(run, agents, distilled):
    """§3's raw numbers, per case of SHIFTS: each seed of the shifted agent on the test tasks
    (return, behaviour against the Bayes policies of both priors, crossed decoding), each seed
    of the control agent (the one trained on the test tasks) decoded the same way, the two
    Bayes-optimal policies run on the test tasks, and the known machines of the position and
    behaviour tests (shift_machines) through the same measurement on scale.panel_seeds
    evaluation seeds. distilled: {agent name: Bayes-distilled parameters} (§2c's); a training
    family without one is distilled here."""
    cases = [(name, shifted_config(metarl.env_config(agents[name][0].hp), fields), control)
             for name, fields, control in SHIFTS]
    missing = sorted({name for name, _, _ in SHIFTS} - set(distilled))
    distilled = {**distilled, **dict(zip(missing, run_jobs(
        run, "3 distil the training families", [(f"{name} distilled", distill_job,
                                                 agents[name][0].hp) for name in missing])))}
    jobs = []
    for name, test, control in cases:
        train = metarl.env_config(agents[name][0].hp)
        jobs += [(f"{name} on {test.name} seed {a.hp.seed}", shift_test, a, train, test,
                  run.scale) for a in agents[name]]
        jobs += [(f"control {control} seed {a.hp.seed}", crossed_decoding, a, train, test,
                  run.scale) for a in agents[control]]
        jobs.append((f"{name} on {test.name} references", shift_references, train, test,
                     run.scale.baseline_steps))
        jobs += [(f"{name} on {test.name}: {machine} seed {seed}", shift_behaviour,
                  distilled[source], train, test, run.scale, seed)
                 for machine, (source, _) in shift_machines(name, control).items()
                 for seed in range(run.scale.panel_seeds)]
    results = iter(run_jobs(run, "3 failures are belief failures", jobs))
    numbers = {}
    for name, test, control in cases:
        numbers[case_label(name, test)] = {
            "agent": name, "control": control, "test": asdict(test),
            "seeds": [next(results) for _ in agents[name]],
            "control_seeds": [next(results) for _ in agents[control]],
            "references": next(results),
            "known": {machine: {"expected": expected,
                                "seeds": [next(results) for _ in range(run.scale.panel_seeds)]}
                      for machine, (_, expected) in shift_machines(name, control).items()}}
    return numbers


def shifted_config(train_cfg, fields):
    """The test tasks of a shift case: make_config(**fields) at the agent's horizon."""
    return envs.make_config(horizon=train_cfg.horizon, **fields)


def case_label(name, test_cfg):
    prior = (f", Beta({test_cfg.prior_a:g}, {test_cfg.prior_b:g})"
             if AGENTS[name][1].get("prior_a") else "")
    return f"{name} agent on {test_cfg.name} tasks{prior}"


def shift_machines(name, control):
    """§3's known machines for the agent `name` tested on its control's tasks: {machine:
    (whose Bayes-distilled LSTM it is, the prior it acts on)}. Each is an LSTM of the agent's
    architecture that carries one prior's exact belief (metarl.py distill): the training
    prior's must pass the position and behaviour tests, the test prior's must fail them."""
    return {"distilled on the training prior": (name, "train"),
            "distilled on the test prior": (control, "test")}


def distill_job(agent_hp):
    """Worker job (and part of train_panel_lstms): the Bayes-distilled LSTM of the agent's
    family (panel.distill_recipe_for)."""
    hp = panel.distill_recipe_for(agent_hp)
    return runs.train(hp, None, log=lambda line: print(f"    {hp.env} distilled: {line}",
                                                         flush=True))


def shift_test(agent, train_cfg, test_cfg, scale):
    """Worker job: shift_behaviour of the shifted agent (its seed), and its crossed decoding."""
    return {**shift_behaviour(agent.params, train_cfg, test_cfg, scale, agent.hp.seed),
            "decoding": crossed_decoding(agent, train_cfg, test_cfg, scale)}


def shift_behaviour(params, train_cfg, test_cfg, scale, seed):
    """Worker job (and part of shift_test): a network on the training tasks and on the test
    tasks (return and pseudo-regret), its behaviour on the test tasks against the
    Bayes-optimal policy under each prior/model, and the noise-matched references at its own
    pseudo-regret on the training tasks; episodes from `seed`."""
    tr = metarl.rollout(params, test_cfg, scale.probe_episodes, metarl.stream(seed, SHIFT_STREAM))
    behaviour = {}
    for model, cfg in (("train", train_cfg), ("test", test_cfg)):
        q = belief.reference_q(cfg, tr.a, tr.r, tr.obs).reshape(-1, tr.pi.shape[-1])
        pi = tr.pi.reshape(-1, tr.pi.shape[-1])
        behaviour[model] = {"kl": belief.policy_kl(belief.tie_split_policy(q), pi),
                            "agreement": belief.agreement_rate(q, pi)}
    own = runs.evaluate(params, train_cfg, episodes(scale.eval_steps, train_cfg), seed)
    return {"own": own,
            "test": runs.evaluate(params, test_cfg, episodes(scale.eval_steps, test_cfg), seed),
            "behaviour": behaviour,
            "noise_matched": noise_matched_references(train_cfg, test_cfg, own["pseudo_regret"],
                                                      scale.baseline_steps)}


def noise_matched_references(train_cfg, test_cfg, own_regret, steps):
    """The two priors' Bayes policies made as noisy as the agent is on its own tasks: τ, the
    temperature at which the softmax policy of the training prior's Q* has the agent's own
    pseudo-regret on the training tasks (matched_temperature), and both priors' softmax
    policies at that τ run on the test tasks (bayes_with_model): references that degrade
    as the agent's own policy does, so that noise is not read as "which prior"."""
    dp = belief.bayes_dp(train_cfg)   # built once: the matching and the reference share it
    tau = matched_temperature(train_cfg, own_regret, episodes(steps, train_cfg) // MATCH_FRACTION,
                              dp)
    n = episodes(steps, test_cfg)
    return {"tau": tau,
            "train_model": bayes_with_model(train_cfg, test_cfg, n, REFERENCE_SEED, tau, dp),
            "test_model": bayes_with_model(test_cfg, test_cfg, n, REFERENCE_SEED, tau)}


TAU_RANGE = (1e-3, 1e2)   # temperatures searched, in units of reward (Q* is an expected return)
TAU_HALVINGS = 10         # bisections of log τ: the bracket ends 5 decades / 2¹⁰ ≈ 1 % wide
MATCH_FRACTION = 4        # the matching runs use 1/4 of the references' episodes


def matched_temperature(cfg, target_regret, n, dp=None):
    """τ at which the softmax policy of cfg's Bayes-optimal Q* (bayes_with_model, tau) has
    pseudo-regret target_regret on cfg's own tasks: bisection of log τ over TAU_RANGE, every
    run on the same n episodes (common random numbers, so the regret moves smoothly with τ).
    The regret grows with τ (from the Bayes-optimal one at τ → 0 towards the random policy's),
    so a target outside the range's regrets returns the nearer end. dp: cfg's DP, if built."""
    dp = belief.bayes_dp(cfg) if dp is None else dp
    low, high = np.log(TAU_RANGE[0]), np.log(TAU_RANGE[1])
    for _ in range(TAU_HALVINGS):
        mid = 0.5 * (low + high)
        regret = bayes_with_model(cfg, cfg, n, REFERENCE_SEED, float(np.exp(mid)), dp)
        if regret["pseudo_regret"]["mean"] < target_regret:
            low = mid
        else:
            high = mid
    return float(np.exp(0.5 * (low + high)))


def crossed_decoding(agent, train_cfg, test_cfg, scale):
    """Worker job (and part of shift_test): a probe of the posterior arm means, fitted on the
    agent's OWN tasks (its exact belief there), applied unchanged to its states on the test
    tasks, scored (R², mean over arms) against the posterior under the training model and
    under the test model of the same test histories; the same for the untrained network fed
    the same inputs (its initial weights, actions replayed), whose running sums give the part
    of the contrast that the probe's construction alone produces. Run on the control agent
    (trained on the test tasks) it gives how an in-distribution agent's state reads."""
    own_cfg, seed = metarl.env_config(agent.hp), agent.hp.seed
    initial = metarl.initial_params(agent.hp, own_cfg)
    own = metarl.rollout(agent.params, own_cfg, scale.probe_episodes,
                         metarl.stream(seed, probe.PROBE_STREAM))
    test = metarl.rollout(agent.params, test_cfg, scale.probe_episodes,
                          metarl.stream(seed, SHIFT_STREAM))
    targets = {"own": posterior_arm_means(own_cfg, own), "train": posterior_arm_means(train_cfg, test),
               "test": posterior_arm_means(test_cfg, test)}
    networks = {"trained": (own, test),   # the same streams, actions replayed: the same inputs
                "untrained": (metarl.rollout(initial, own_cfg, scale.probe_episodes,
                                             metarl.stream(seed, probe.PROBE_STREAM), actions=own.a),
                              metarl.rollout(initial, test_cfg, scale.probe_episodes,
                                             metarl.stream(seed, SHIFT_STREAM), actions=test.a))}
    result = {}
    for net, (on_own, on_test) in networks.items():
        fit = ridge.ridge_select_and_fit(ridge.flatten_episodes(hc_states(on_own))[0],
                                         ridge.flatten_episodes(targets["own"])[0],
                                         ridge.flatten_episodes(own.a)[1],
                                         rng=np.random.default_rng(seed), k=scale.folds)
        decoded = ridge.ridge_predict(fit, ridge.flatten_episodes(hc_states(on_test))[0])
        result[net] = {model: float(ridge.r2_score(ridge.flatten_episodes(targets[model])[0],
                                                   decoded).mean())
                       for model in ("train", "test")}
    return result


def hc_states(tr):
    """[h, c] of the state that chose each action, (T, B, 2H)."""
    return np.concatenate([tr.h[1:], tr.c[1:]], -1)


def posterior_arm_means(cfg, tr):
    """E[reward of arm i | history] before each step under cfg's prior and model, (T, B, 2)."""
    beliefs = belief.belief_trajectory(cfg, tr.a, tr.r, tr.obs)       # rows 0 … T
    return belief.posterior_arm_means(cfg, {k: v[:-1] for k, v in beliefs.items()})


def shift_references(train_cfg, test_cfg, steps):
    """Worker job: exact values of both task distributions, and the Bayes-optimal policy under
    each prior/model run on the test tasks (return and pseudo-regret, same episodes)."""
    n = episodes(steps, test_cfg)
    return {"own_exact": belief.exact_values(train_cfg), "test_exact": belief.exact_values(test_cfg),
            "bayes_train_model": bayes_with_model(train_cfg, test_cfg, n, REFERENCE_SEED),
            "bayes_test_model": bayes_with_model(test_cfg, test_cfg, n, REFERENCE_SEED)}


def bayes_with_model(model_cfg, test_cfg, n, seed, tau=0.0, dp=None):
    """Return and pseudo-regret of the policy that is Bayes-optimal under model_cfg's prior
    and model, acting on test_cfg's tasks: what an agent that learned model_cfg exactly does.
    With tau > 0, the softmax policy π_t(a) ∝ exp(Q*_t(b_t, a) / τ) of the same Q* instead
    (softmax_actions): the Bayes policy made noisy. dp: model_cfg's DP, if already built.

    run_policy keeps the test env's own belief; this policy folds the model's belief online
    (belief.belief_filter of model_cfg) and acts on it."""
    dp = belief.bayes_dp(model_cfg) if dp is None else dp
    prior, update = belief.belief_filter(model_cfg)
    state = {"belief": prior(model_cfg, n), "t": 0}

    def choose(past, rng):
        t = len(past["actions"])
        while state["t"] < t:   # fold in the step the runner took since the last call
            i = state["t"]
            state["belief"] = update(model_cfg, state["belief"], past["actions"][i],
                                     past["rewards"][i], past["obs"][i])
            state["t"] += 1
        if tau == 0:
            return belief.bayes_optimal(dp, model_cfg, {**past, "belief": state["belief"]}, rng)
        return softmax_actions(belief.bayes_q(dp, model_cfg, state["belief"], t) / tau, rng)

    a, r, _ = belief.run_policy(test_cfg, choose, n, seed)
    env = envs.make_env(test_cfg, n)
    env.reset(seed)   # the tasks run_policy met: they come from the seed alone (bandits: fixed)
    chosen = np.take_along_axis(env.means, a.T, axis=1).T                      # (T, B)
    regret = (env.means.max(axis=1) - chosen).sum(axis=0)
    return {"return": belief.mean_and_stderr(r.sum(axis=0)),
            "pseudo_regret": belief.mean_and_stderr(regret), "episodes": n}


def softmax_actions(z, rng):
    """a_e ~ softmax(z_e) for every row of z (B, A), by the inverse CDF at one uniform each."""
    p = np.exp(z - z.max(axis=1, keepdims=True))
    cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    return np.minimum((rng.random(len(z))[:, None] >= cdf[:, :-1]).sum(axis=1), z.shape[1] - 1)


# ------------------------------------------------------------------------------------------
# §4 "Model-based" behaviour from a model-free learner
# ------------------------------------------------------------------------------------------
def model_based_behaviour_from_a_model_free_learner(run, agents):
    """§4's raw numbers: per two-step agent seed, the stay analysis (SEs clustered by episode)
    and the hybrid model's fit; the same for belief-greedy and the default model-free TD
    learner; and the largest interaction over the grid of model-free learners."""
    cfg = metarl.env_config(agents["two-step"][0].hp)
    jobs = [(f"two-step seed {a.hp.seed}", stay_behaviour, a, run.scale.stay_episodes)
            for a in agents["two-step"]]
    jobs += [(f"{name}", reference_behaviour, cfg, name, run.scale.stay_episodes)
             for name in ("belief_greedy", "model_free_td")]
    jobs.append(("model-free grid", model_free_bound, cfg, run.scale.grid_episodes))
    *seeds, greedy, td, grid = run_jobs(run, "4 model-based behaviour", jobs)
    return {"horizon": cfg.horizon, "swap_prob": cfg.swap_prob, "seeds": seeds,
            "belief_greedy": greedy, "model_free_td": td, "grid": grid}


def stay_behaviour(agent, n):
    """Worker job: the agent's sampled policy on fresh episodes, described."""
    tr = metarl.rollout(agent.params, metarl.env_config(agent.hp), n,
                        metarl.stream(agent.hp.seed, STAY_STREAM))
    return describe_behaviour(metarl.env_config(agent.hp), tr.a, tr.r, tr.obs)


def reference_behaviour(cfg, name, n):
    """Worker job: a reference policy of belief.two_step_policies on one seed, described."""
    return describe_behaviour(cfg, *belief.run_policy(cfg, belief.two_step_policies(cfg)[name],
                                                      n, REFERENCE_SEED))


def describe_behaviour(cfg, actions, rewards, obs):
    """Stay analysis (clustered bootstrap SEs) and the hybrid model fitted by maximum
    likelihood (sandwich SEs clustered by episode), JSON-ready."""
    fit = twostep.fit_hybrid(cfg, actions, rewards, obs)
    return {"stay": twostep.stay_analysis(actions, rewards, obs), "episodes": actions.shape[1],
            "hybrid": {"estimates": fit.estimates, "se": fit.se, "at_bound": fit.at_bound,
                       "converged": fit.converged}}


def model_free_bound(cfg, n):
    """Worker job: the model-free grid (twostep.model_free_grid) on n episodes per learner."""
    return twostep.model_free_grid(cfg, n, REFERENCE_SEED, np.random.default_rng(REFERENCE_SEED))


# ------------------------------------------------------------------------------------------
# §5 Does predicting the next outcome make the state a belief state? (Kuo et al. 2025)
# ------------------------------------------------------------------------------------------
def predicting_the_next_outcome(run, arms):
    """§5's raw numbers: per arm of PREDICTIVE and seed, the evaluation on fresh episodes (as
    §1's) and, for the LADDERED families, the §2 probe (as probe_job's, without the snapshots),
    from which the report places it on its family's ladders; the arm's settings and learning
    curve beside them (its training seconds are in the run's facts). The plain agents are
    §1's and §2's."""
    jobs = [(f"{name} seed {a.hp.seed}", arm_job, a, run.scale)
            for name, trained in arms.items() for a in trained]
    results = iter(run_jobs(run, "5 predicting the next outcome", jobs, cost=[
        horizon(job[2].hp) * (1 if job[2].hp.env in LADDERED else 0.05) for job in jobs]))
    return {"weight": PREDICT_WEIGHT, "bottleneck_hidden": BOTTLENECK_HIDDEN,
            "arms": {name: {"agent": PREDICTIVE[name][0],
                            "predict_weight": trained[0].hp.predict_weight,
                            "hidden": trained[0].hp.hidden,
                            "seeds": [next(results) for _ in trained],
                            "curve": {"updates": trained[0].hp.updates,
                                      "seeds": [a.returns for a in trained]}}
                     for name, trained in arms.items()}}


def arm_job(agent, scale):
    """Worker job: one arm's seed, measured as the plain agent of its seed is in §1 and §2."""
    out = {"evaluation": evaluate_agent(agent, scale.eval_steps)}
    if agent.hp.env in LADDERED:
        out["probe"] = probe_summary(agent, scale)
    return out


# ------------------------------------------------------------------------------------------
# results.json: what it holds, in boundary.check_json's terms, with its version
# ------------------------------------------------------------------------------------------
SCHEMA = 4   # results.json's "schema": raised whenever what run_experiments writes changes, so
             # that `report DIR` refuses another version's file instead of reading it with
             # fallbacks (2: a value with none is a record of why, never null; 3: the ladders
             # replace the calibration panel; 4: §5, the predictive arms)
# Every key the report reads, of the type it uses it as; other keys are allowed, as nothing
# reads them. "key?": absent in some runs by design (a bandit's pseudo-regret, say). A string
# with a fixed vocabulary is a frozenset of its words. A null ("number?") is a value that the
# run leaves undefined by design (a standard error of one value, say); the ladders' values,
# which decide verdicts, are never null: a number, or a record of why there is none.
PAIR = {"trained": "number", "untrained": "number"}
MAPS = {net: {"linear": "number", "mlp": "number"} for net in ("trained", "untrained")}
MEASURES = ("state_dissimilarity", "output_kl", "output_kl_relative", "action_agreement",
            "action_agreement_baseline")
SPLICE = {"agreement_spliced": "number", "agreement_recipient": "number",
          "agreement_own": "number", "steps": "integer",
          "per_lag": {"agreement_spliced": ["number?"], "agreement_recipient": ["number?"],
                      "steps": ["integer"]}}
PROBE = {"features": ["string"], "decode": {"*": "number"},
         "controls_by_feature": {c: {"*": "number"} for c in ("untrained", "memoryless", "shuffled")},
         "policy_kl": "number", "agreement": "number", "encode_r2": "number",
         "simulation": {**{d: {**{m: MAPS for m in MEASURES}, "map_error": MAPS}
                           for d in machines.DIRECTION_LABEL},
                        "shuffled": {d: {m: {"trained": {"linear": "number", "mlp": "number"}}
                                         for m in MEASURES}
                                     for d in machines.DIRECTION_LABEL}},
         "simulation_episodes": "integer",
         "minimality": {"partial_r2": {"trained": {"*": "number"}, "untrained": {"*": "number"}},
                        "within_between_ratio": PAIR, "within_between_whitened": PAIR,
                        "belief_design": "string"},
         "interchange": {net: {"interchange": "number?", "interchange_random": "number?"}
                         for net in ("trained", "untrained")},
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
DTYPES = frozenset(next(f for f in dataclass_fields(metarl.Config) if f.name == "dtype")
                   .metadata["accepted"]["choices"])   # those a Config accepts


VALUES = {t.name: "number or record" for t in panel.TESTS}   # one machine's, on one seed
REFERENCES = ("untrained", "distilled", "recent events")     # ladder_job's reference networks


def ladder_spec(agent_basis):
    """A ladder seed's structure (ladder_job): every test's value at every grade of every
    ladder in every basis (the LSTM basis where ladders.LSTM_GRADES builds it), and the
    reference networks'."""
    def bases(ladder):
        lstm = agent_basis and ladder.name in ladders.LSTM_GRADES
        return {basis: (VALUES,) * len(ladder.grades)
                for basis in ladders.BASES + ((ladders.LSTM,) if lstm else ())}
    return {"ladders": {ladder.name: bases(ladder) for ladder in ladders.LADDERS},
            "seed": "integer", "episodes": "integer", "splice_episodes": "integer",
            "references": {name: VALUES for name in REFERENCES}}


SHIFT_BEHAVIOUR = {"own": {"pseudo_regret": "number"},   # shift_behaviour
                   "test": {"pseudo_regret": "number", "mean": "number"},
                   "noise_matched": {"tau": "number", **{m: {"pseudo_regret": {
                       "mean": "number", "stderr": "number"}} for m in ("train_model", "test_model")}},
                   "behaviour": {m: {"kl": "number", "agreement": "number"}
                                 for m in ("train", "test")}}
RESULTS = {
    "facts": {"command": "string", "quick": "boolean", "wall_seconds": "number",
              "workers": "integer", "seeds": "integer", "stages": [("string", "number")],
              "training_seconds": {"*": ["number"]},
              "learning_curves": {"*": {"updates": "integer", "seeds": [["number"]]}},
              "configs": {"*": {"env": frozenset(envs.FAMILIES), "horizon": "integer?",
                                "prior_a": "number",
                                "prior_b": "number", "hidden": "integer", "batch": "integer",
                                "updates": "integer", "lr": "number", "gamma": "number",
                                "dtype": DTYPES,
                                "entropy_start": "number",
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
    "ladders": {name: {"distilled": {"updates": "integer", "batch": "integer",
                                     "evaluation": {
                           "mean": "number", "stderr": "number?", "episodes": "integer",
                           "pseudo_regret?": "number"}},
                       "agent_basis": "boolean",
                       "seeds": [ladder_spec(name in AGENT_BASIS)] if name in LADDERED
                                else "strings"}   # [] where no ladder is built
                for name in PROBED},
    "shift": {"*": {
        "agent": frozenset(AGENTS),
        "seeds": [{**SHIFT_BEHAVIOUR,
                   "decoding": {"trained": TRAIN_TEST, "untrained": TRAIN_TEST}}],
        # both known machines, each on its prior (their names do not depend on the agents)
        "known": {machine: {"expected": frozenset({expected}), "seeds": [SHIFT_BEHAVIOUR]}
                  for machine, (_, expected) in shift_machines("agent", "control").items()},
        "control_seeds": [{"trained": TRAIN_TEST}],
        "references": {"own_exact": EXACT, "test_exact": EXACT,
                       "bayes_train_model": {"pseudo_regret": {"mean": "number"}},
                       "bayes_test_model": {"pseudo_regret": {"mean": "number"}}}}},
    "two_step": {"swap_prob": "number", "seeds": [BEHAVIOUR], "belief_greedy": BEHAVIOUR,
                 "model_free_td": BEHAVIOUR,
                 "grid": {"largest": GRID_POINT, "settings": [GRID_POINT]}},
    "predictive": {"weight": "number", "bottleneck_hidden": "integer", "arms": {"*": {
        "agent": frozenset(AGENTS), "predict_weight": "number", "hidden": "integer",
        "seeds": [{"evaluation": {"mean": "number", "stderr": "number?", "horizon": "integer",
                                  "episodes": "integer", "pseudo_regret?": "number"},
                   "probe?": PROBE}],
        "curve": {"updates": "integer", "seeds": [["number"]]}}}}}


def load_results(folder):
    """The results.json of a run's folder, its version and structure checked (SCHEMA,
    RESULTS); ValueError naming the file (and the key) if it is missing, not JSON, nested too
    deep, of another version, or lacks what the report reads."""
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
    if not isinstance(results, dict):
        raise ValueError(f"{path} is not an experiments.py results file: not a JSON object")
    check_schema(results, path, folder)
    missing = [k for k in RESULTS if k not in results]
    if missing:
        raise ValueError(f"{path} is not an experiments.py results file: missing "
                         f"{', '.join(missing)}")
    try:
        check_json(results, RESULTS, "results")
        check_arm_probes(results)
    except ValueError as e:
        raise ValueError(f"{path} lacks what the report reads: {e}") from None
    return results


def check_arm_probes(results):
    """ValueError unless every seed of every §5 arm of a laddered family has its probe (the
    schema lets two-step's arms go without): an arm without one would drop silently from the
    ladders' comparisons."""
    for name, arm in results["predictive"]["arms"].items():
        if results["ladders"].get(arm["agent"], {}).get("seeds"):
            for k, seed in enumerate(arm["seeds"]):
                if "probe" not in seed:
                    raise ValueError(f"key results.predictive.arms.{name}.seeds[{k}].probe is "
                                     f"missing (the {arm['agent']} agent has ladders)")


def check_schema(results, path, folder):
    """ValueError, saying how to make the file again, unless results is of schema SCHEMA."""
    version = results.get("schema")
    if type(version) is not int or version != SCHEMA:   # 1.0 or true are not 1
        found = ("has no schema version: it predates versioned results" if version is None
                 else f"is of schema {version!r}")
        raise ValueError(f"{path} {found}, and this experiments.py reads schema {SCHEMA}: "
                         f"make it again with python3 experiments.py --out {folder} (or "
                         f"python3 experiments.py --quick --out {folder}, a check of the "
                         "pipeline)")


# ------------------------------------------------------------------------------------------
# The whole run, results.json, and the command line
# ------------------------------------------------------------------------------------------
def run_experiments(configs, arm_configs, scale, workers, out, command, quick):
    """Train every agent of `configs` and every arm of `arm_configs` (name → [Config per
    seed]), run §1–§5, write
    results.json, then REPORT.md and the figures (report.write_report) into `out`, made from
    results.json as load_results reads it."""
    stages, start = [], time.perf_counter()
    with worker_pool(workers) as pool:
        run = Run(pool=pool, scale=scale, start=start)

        def stage(name, function, *args):
            t0 = time.perf_counter()
            result = function(run, *args)
            stages.append([name, time.perf_counter() - t0])
            progress(run, f"stage {name} finished in {stages[-1][1]:.1f} s")
            return result

        agents, arms = stage("train agents", train_agents, configs, arm_configs)
        sections = {
            "near_optimal": stage("1 agents act near Bayes-optimally",
                                  agents_act_near_bayes_optimally, agents),
            "belief_states": stage("2 hidden states are belief states",
                                   hidden_states_are_belief_states, agents)}
        sections["ladders"], distilled_seconds, distilled = stage(
            "2c the agent on the ladders", place_on_the_ladders, agents)
        sections |= {
            "shift": stage("3 failures are belief failures", failures_are_belief_failures,
                           agents, distilled),
            "two_step": stage("4 model-based behaviour",
                              model_based_behaviour_from_a_model_free_learner, agents),
            "predictive": stage("5 predicting the next outcome", predicting_the_next_outcome,
                                arms)}
    facts = {"command": command, "quick": quick, "wall_seconds": time.perf_counter() - start,
             "workers": workers, "seeds": len(next(iter(configs.values()))), "stages": stages,
             "training_seconds": {name: [a.seconds for a in trained]
                                  for name, trained in (agents | arms).items()},
             "distilled_seconds": distilled_seconds,
             "learning_curves": {name: {"updates": trained[0].hp.updates,
                                        "seeds": [a.returns for a in trained]}
                                 for name, trained in agents.items()},
             "configs": {name: asdict(hps[0]) for name, hps in configs.items()},
             "machine": machine_facts(), "scale": asdict(scale)}
    write_results({"schema": SCHEMA, "facts": facts, **sections}, out)
    results = load_results(out)   # the report reads the file, as `report DIR` does: one path
    report.write_report(results, out)
    print(f"wrote {os.path.join(out, 'REPORT.md')} in {facts['wall_seconds']:.1f} s", flush=True)
    return results


def write_results(results, out):
    """results.json in `out`: NumPy arrays and scalars as JSON lists and numbers, NaN and ±inf
    as null (to_builtin), which RESULTS accepts only where a value is undefined by design
    ("number?"): load_results refuses any other, naming its key."""
    text = json.dumps(to_builtin(results), indent=1)
    atomic_write(os.path.join(out, "results.json"), lambda f: f.write(text.encode("utf-8")))


def machine_facts():
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    return {"platform": platform.platform(), "processor": platform.processor() or "unknown",
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__,
            "blas": f"{blas.get('name', 'unknown')} {blas.get('version', '')}".strip(),
            "blas_threads_per_worker": BLAS_THREADS_PER_WORKER,
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)")}


def build_parser():
    parser = OneLineErrorParser(prog="experiments.py", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=("run", "report"), default="run",
                        help="run (default): train and measure, then write the report; "
                             "report DIR: rewrite DIR's REPORT.md and figures from its "
                             "results.json, without training")
    parser.add_argument("folder", nargs="?", help="report: the folder of results.json")
    parser.add_argument("--quick", action="store_true",
                        help="tiny budgets: a check of the pipeline, too small for verdicts")
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"agents per task distribution, seeds 0 … N−1 (default {SEEDS}; "
                             f"--quick {QUICK_SEEDS})")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: the number of CPUs)")
    parser.add_argument("--out", default=None, help="folder for results.json, REPORT.md "
                                                    "and the figures (default results)")
    parser.add_argument("--readme", default=None,
                        help="report: also rewrite this README's findings block from the same "
                             "verdicts (between its findings markers)")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)

    def command():
        if args.command == "report":
            if args.folder is None:
                raise ValueError("report needs the folder of a run: experiments.py report DIR")
            for flag, value in (("--quick", args.quick), ("--seeds", args.seeds),
                                ("--workers", args.workers), ("--out", args.out)):
                if value not in (None, False):
                    raise ValueError(f"{flag} does not apply to the report command, which "
                                     "rewrites DIR's report from its results.json alone")
            # check_output_folder creates nothing: a refusal leaves no folder behind
            check_output_folder(args.folder, "report")
            results = load_results(args.folder)   # a missing folder is refused here
            with one_writer(args.folder, "report"):
                report.rewrite_report(results, args.folder, args.readme)
            print(f"wrote {os.path.join(args.folder, 'REPORT.md')}"
                  + (f" and the findings of {args.readme}" if args.readme else ""), flush=True)
            return
        if args.readme is not None:
            raise ValueError("--readme is for the report command: experiments.py report DIR "
                             "--readme README.md")
        if args.folder is not None:
            raise ValueError(f"{args.folder}: a folder is for the report command; the run "
                             "writes to --out")
        seeds = args.seeds if args.seeds is not None else (QUICK_SEEDS if args.quick else SEEDS)
        workers = args.workers if args.workers is not None else os.cpu_count() or 1
        out = args.out if args.out is not None else "results"
        check_int("--seeds", seeds, 1, MAX_SEEDS)
        check_int("--workers", workers, 1, MAX_WORKERS)
        check_memory(workers * WORKER_BYTES, f"--workers {workers}")
        if os.path.exists(out) and not os.path.isdir(out):
            raise ValueError(f"--out {out} is a file; give a folder")
        configs = agent_configs(seeds, args.quick)
        arm_configs = agent_configs(seeds, args.quick, arms=True)
        for hps in (configs | arm_configs).values():
            metarl.check_hyperparameters(hps[0])
        prepare_output_folder(out, "--out")
        with one_writer(out, "--out"):
            run_experiments(configs, arm_configs, QUICK_SCALE if args.quick else FULL_SCALE,
                            workers, out,
                            " ".join(["python experiments.py", *map(shlex.quote, argv)]),
                            args.quick)

    return run_cli("experiments.py", command)


if __name__ == "__main__":
    import experiments   # as the module itself: workers and Numba caches never see __main__
    sys.exit(experiments.main())
