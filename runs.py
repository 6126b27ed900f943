"""A training run on disk, and metarl.py's command line.

    train        metarl.train with checkpoints: atomic, validated, resumed bit for bit
    checkpoints  save_checkpoint / load_checkpoint (.npz, never unpickled, checked whole)
    evaluate     mean total reward (and the bandits' pseudo-regret) on fresh tasks
    bench        the full update, timed against its matrix-product floor (never in a test)
    curve        the learning-curve figure of one recipe's seeds
    CLI          `python3 metarl.py train | distill | evaluate | bench | curve`

The learner itself is metarl.py; distillation's loss and update are distill.py.
"""
import argparse
import dataclasses
import json
import os
import time
from contextlib import nullcontext

import numpy as np

import belief
import distill
import envs
import kernels
import metarl
from boundary import (OneLineErrorParser, atomic_write, check_int, check_memory, focus_on_plateau,
                      new_figure, one_line, one_writer, parse_json, prepare_output_file, run_cli,
                      save_png)
from metarl import (EVAL_STREAM, HISTORY, PARAM_NAMES, Config, env_config, n_outcomes,
                    param_names, param_shapes, print_now, recipe, stream)


# ------------------------------------------------------------------------------------------
# Training with checkpoints
# ------------------------------------------------------------------------------------------
def train(hp, out, resume=False, log=print_now, on_update=None, targets=None, fused=True):
    """metarl.train for hp's objective, checkpointing to `out` (.npz; None: don't).

    objective rl2 steps by metarl.update, distill by distill.distill_update. With
    resume=True and an existing `out`, training continues from it bit-identically.
    on_update(u, params, stats), if given, is called after update u (e.g. to keep snapshots).
    targets(tr) → (π*, F), for objective distill only: what to distil instead of the exact
    reference's policy and belief (the recent-events LSTM, a ladder grade's LSTM).
    Returns the trained parameters."""
    metarl.check_hyperparameters(hp)
    cfg = env_config(hp)
    check_memory(training_bytes(hp, cfg), f"training with --batch {hp.batch}, --hidden "
                 f"{hp.hidden}, T = {cfg.horizon} and --updates {hp.updates}")
    if out is not None:
        prepare_output_file(out, "--out")   # now, not after minutes of training
    start = None
    if resume and out is not None and os.path.exists(out):
        ckpt = load_checkpoint(out)
        if ckpt["hp"] != hp:
            raise ValueError(f"--resume: the settings differ from those stored in {out}")
        start = (ckpt["params"], ckpt["opt"], ckpt["update"], ckpt["history"])
        log(f"resuming {out} at update {start[2]}")
    if targets is not None and hp.objective != "distill":
        raise ValueError("targets are for objective distill")
    step, labels = None, ("pi", "V")   # metarl.train's defaults: the RL² update
    if hp.objective == "distill":
        step, labels = distill.training_step(hp, cfg, targets, fused), ("CE", "B")
    saved = [start[2] if start is not None else 0]

    def save(done, params, opt, history):
        save_checkpoint(out, hp, params, opt, done, history)
        saved[0] = done

    try:
        with one_writer(out, "--out") if out is not None else nullcontext():
            return metarl.train(hp, start, step, labels, save if out is not None else None,
                                log, on_update, fused)
    except metarl.NonFiniteUpdate as e:
        kept = (f"{out} still holds update {saved[0]}" if out is not None and saved[0] > 0
                else "nothing was saved")
        raise ValueError(f"{e}; training stopped before this update changed the parameters "
                         f"({kept}); try a smaller --lr or --max-grad-norm") from None


def training_bytes(hp, cfg):
    """Bytes a training run holds: one rollout with its gradients, the parameters with their
    gradients and Adam moments, and the history (6 numbers per update); ×1.5 for temporaries."""
    I, A, H = envs.n_inputs(cfg), envs.n_actions(cfg), hp.hidden
    n_params = (I + H + 1) * 4 * H + (H + 1) * (A + 1)
    return int(1.5 * (kernels.rollout_bytes(cfg, hp.batch, H, hp.dtype)
                      + 4 * n_params * np.dtype(hp.dtype).itemsize + 6 * 8 * hp.updates))


# ------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------

def save_checkpoint(path, hp, params, opt, update_count, history):
    """Write everything a run needs to continue into one .npz, atomically (temp + rename).

    The RNG state is not stored because it is not needed: update u always uses stream(seed, u).
    Parameters or Adam moments that are not finite are refused: a checkpoint never holds poison."""
    arrays = {"config": np.array(json.dumps(dataclasses.asdict(hp))),
              "update": np.array(update_count), "adam_k": np.array(opt["k"])}
    for k in params:
        arrays[f"param/{k}"], arrays[f"adam_m/{k}"], arrays[f"adam_v/{k}"] = (
            params[k], opt["m"][k], opt["v"][k])
    for k, v in history.items():
        arrays[f"history/{k}"] = v
    for key, value in arrays.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ValueError(f"update {update_count}: {key} is not finite; {path} was not written")
    atomic_write(path, lambda f: np.savez(f, **arrays))



def checkpoint_keys(hp=None):
    """Every key of a checkpoint of hp's run (its parameter arrays: metarl.param_names; None:
    the plain learner's), in save_checkpoint's order."""
    names = PARAM_NAMES if hp is None else param_names(hp)
    return (["config", "update", "adam_k"]
            + [f"{group}/{k}" for k in names for group in ("param", "adam_m", "adam_v")]
            + [f"history/{k}" for k in HISTORY])


def load_checkpoint(path):
    """Read a checkpoint written by save_checkpoint and check all of it; never unpickles
    (allow_pickle=False).

    Raises ValueError naming the file and the key for a missing, truncated, foreign or pickled
    file, a config of the wrong types or out of range, parameters or Adam moments of the wrong
    shape or dtype or not finite (second moments also ≥ 0), an update count outside [0,
    updates] or unequal to Adam's step count, and a history not one finite number per update."""
    data = read_npz(path)
    # the config says which parameter arrays the file holds (a predictive head or not)
    hp = config_from_json(data["config"], path) if "config" in data else None
    keys = checkpoint_keys(hp)
    missing = [k for k in keys if k not in data]
    unexpected = [k for k in data if k not in keys]
    if missing or unexpected:   # a file without a config is refused here
        raise ValueError(f"{path} is not a metarl checkpoint: "
                         + "; ".join(f"{what} {', '.join(keys)}" for what, keys in
                                     (("missing", missing), ("unexpected", unexpected)) if keys))
    update = checkpoint_scalar(data, "update", path, hp.updates)
    if checkpoint_scalar(data, "adam_k", path, hp.updates) != update:
        raise ValueError(f"{path}: key 'adam_k' is {int(data['adam_k'])} but 'update' is {update} "
                         "(one Adam step per update)")
    cfg = env_config(hp)
    names = param_names(hp)
    shapes = param_shapes(envs.n_inputs(cfg), hp.hidden, envs.n_actions(cfg), n_outcomes(hp, cfg))
    for k in names:
        for group in ("param", "adam_m", "adam_v"):
            check_checkpoint_array(data, f"{group}/{k}", path, shapes[k], np.dtype(hp.dtype))
        if (data[f"adam_v/{k}"] < 0).any():
            raise ValueError(f"{path}: key 'adam_v/{k}' has negative entries (a second moment)")
    for k in HISTORY:
        check_checkpoint_array(data, f"history/{k}", path, (update,), np.dtype(np.float64))
    opt = {"m": {k: data[f"adam_m/{k}"] for k in names},
           "v": {k: data[f"adam_v/{k}"] for k in names}, "k": update}
    return {"hp": hp, "params": {k: data[f"param/{k}"] for k in names}, "opt": opt,
            "update": update, "history": {k: data[f"history/{k}"] for k in HISTORY}}


def read_npz(path):
    """Every array of an .npz file, as a dict; ValueError for anything that is not one."""
    if os.path.isdir(path):
        raise ValueError(f"checkpoint {path} is a folder, not a file")
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ValueError("a single .npy array, not an .npz archive")
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ValueError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # zipfile.BadZipFile, EOFError, pickled arrays (ValueError), ...
        raise ValueError(f"{path} is not a readable checkpoint (.npz without pickles): "
                         f"{one_line(e)}") from None
    for k, v in arrays.items():   # a member not stored as .npy is read as raw bytes
        if not isinstance(v, np.ndarray):
            raise ValueError(f"{path}: key {k!r} is not a stored array (its member is "
                             f"{len(v)} raw bytes)")
    return arrays


def config_from_json(array, path):
    """The Config stored under key 'config' (a JSON string), every field checked."""
    try:
        stored = parse_json(str(array[()])) if array.ndim == 0 and array.dtype.kind == "U" else None
    except ValueError as e:   # not JSON, or nested so deep that parsing it would recurse
        raise ValueError(f"{path}: key 'config' is not a JSON object of settings: {e}") from None
    if not isinstance(stored, dict):
        raise ValueError(f"{path}: key 'config' is not a JSON object of settings")
    names = [f.name for f in dataclasses.fields(Config)]
    missing = [n for n in names if n not in stored]
    unexpected = [n for n in stored if n not in names]
    if missing or unexpected:
        raise ValueError(f"{path}: key 'config' " + "; ".join(
            f"{what} {', '.join(keys)}" for what, keys in
            (("lacks", missing), ("has unknown settings", unexpected)) if keys))
    try:
        for f in dataclasses.fields(Config):
            metarl.check_field(f, stored[f.name])
        hp = Config(**stored)
        env_config(hp)
    except ValueError as e:
        raise ValueError(f"{path}: key 'config': {e}") from None
    return hp


def checkpoint_scalar(data, key, path, high):
    """The integer stored under `key`, in [0, high]."""
    a = data[key]
    if a.ndim != 0 or a.dtype.kind not in "iu" or not 0 <= a <= high:
        raise ValueError(f"{path}: key {key!r} must be one integer in [0, {high}], got "
                         f"{a.dtype} {a.shape} {a if a.size == 1 else ''}".rstrip())
    return int(a)


def check_checkpoint_array(data, key, path, shape, dtype):
    """ValueError unless data[key] has this shape and dtype and is all finite."""
    a = data[key]
    if a.shape != tuple(shape) or a.dtype != dtype:
        raise ValueError(f"{path}: key {key!r} is {a.dtype} {a.shape}, expected {dtype} "
                         f"{tuple(shape)}")
    if not np.isfinite(a).all():
        raise ValueError(f"{path}: key {key!r} has NaN or infinite entries")


# ------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------
EVAL_CHUNK = 1000  # episodes per rollout during evaluation (bounds memory, not results)


def evaluate(params, cfg, episodes, seed, greedy=False):
    """Undiscounted total reward of `episodes` fresh episodes: mean and standard error.

    For bandits also the pseudo-regret Σ_t (max_i p_i − p_{a_t}) against the oracle, whose
    standard error is several times smaller than the reward's (no Bernoulli noise)."""
    check_int("--episodes", episodes, 1)
    check_int("--seed", seed, 0)
    check_finite_params(params)
    H = params["U"].shape[0]
    check_memory(kernels.rollout_bytes(cfg, min(EVAL_CHUNK, episodes), H, params["U"].dtype)
                 + 2 * 8 * episodes, f"evaluating {episodes} episodes")
    bandit = envs.family(cfg.name).loadings is not None
    totals, pseudo = [], []
    for j, start in enumerate(range(0, episodes, EVAL_CHUNK)):
        tr = metarl.rollout(params, cfg, min(EVAL_CHUNK, episodes - start), stream(seed, EVAL_STREAM, j),
                     greedy=greedy)
        totals.append(tr.r.sum(axis=0))
        if bandit:
            pseudo.append(pseudo_regret(cfg, tr))
    result = {"env": cfg.name, "horizon": cfg.horizon, "episodes": episodes,
              "policy": "greedy" if greedy else "sampled", **belief.mean_and_stderr(np.concatenate(totals))}
    if pseudo:
        p = belief.mean_and_stderr(np.concatenate(pseudo))
        result["pseudo_regret"], result["pseudo_regret_stderr"] = p["mean"], p["stderr"]
    return result


def check_finite_params(params):
    """ValueError naming the first parameter array with a NaN or infinite entry."""
    for k, v in params.items():
        if not np.isfinite(v).all():
            raise ValueError(f"parameter {k} has NaN or infinite entries")


def pseudo_regret(cfg, tr):
    """Σ_t (max_i m_i − m_{a_t}) per episode, m the arm means of the tasks (bandits)."""
    means = envs.arm_means(cfg, tr.tasks)
    chosen = np.take_along_axis(means, tr.a[..., None], axis=2)[..., 0]
    return (means.max(axis=2) - chosen).sum(axis=0)


# ------------------------------------------------------------------------------------------
# Benchmark: the full update, timed (never in a test)
# ------------------------------------------------------------------------------------------
def update_flops(B, T, I, H, A):
    """Floating-point operations of the matrix products of one update (2 per multiply-add):
    forward x W, h U and the heads; backward dz Uᵀ; and dW, dU, the heads' gradients over
    all T·B rows. Element-wise work is left out, so this is what a GEMM-bound update does."""
    forward = 2 * B * (I + H) * 4 * H + 2 * B * H * (A + 1)
    backward = 2 * B * 4 * H * H + 2 * B * (I + H) * 4 * H + 2 * 2 * B * H * (A + 1)
    return T * (forward + backward)


def gemm_flops_per_second(dtype, n=2048, repeats=5):
    """The machine's large-matmul speed: best of `repeats` n×n products, in FLOP/s."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    a @ b
    best = min(timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best


def floor_seconds(B, T, I, H, A, dtype, repeats):
    """Median seconds per update of what no fusing removes, at the update's shapes on random
    numbers: its matrix products (per step h U and dz Uᵀ as rollout and BPTT make them; over
    all steps lstm_param_grads and the heads' two products) and its two NumPy tanh per step
    (gate_activations). The rest of an update's time is element-wise work and calls."""
    rng = stream(0)

    def draw(*shape):
        return (0.1 * rng.standard_normal(shape)).astype(dtype)

    U, W_heads = draw(H, 4 * H), draw(H, A + 1)
    h, x, dz, dY, c = draw(T + 1, B, H), draw(T, B, I), draw(T, B, 4 * H), draw(T * B, A + 1), \
        draw(T, B, H)
    gates, dh = np.empty((T, B, 4 * H), dtype), np.empty((B, H), dtype)

    def products_and_tanh():
        for t in range(T):
            np.matmul(h[t], U, out=gates[t])
            np.tanh(gates[t], out=gates[t])
            np.tanh(c[t], out=c[t])
            np.matmul(dz[t], U.T, out=dh)
        metarl.lstm_param_grads(x, h[:T], dz)
        dY @ W_heads.T, h[:T].reshape(-1, H).T @ dY

    products_and_tanh()
    return float(np.median([timed(products_and_tanh) for _ in range(repeats)]))


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(batches=(16, 64, 256), dtypes=("float64", "float32"), hidden=48, horizon=100,
          repeats=20):
    """Median seconds per full update (rollout + BPTT + Adam) on the 2-arm bandit, per
    (dtype, B), with updates/s, agent-steps/s, the fraction of the GEMM peak reached, and the
    floor (floor_seconds: the same update's matrix products and tanh alone)."""
    rows = []
    for dtype in dtypes:
        peak = gemm_flops_per_second(np.dtype(dtype))
        for B in batches:
            hp = Config(env="bandit", arms=2, horizon=horizon, hidden=hidden, batch=B, dtype=dtype)
            cfg = env_config(hp)
            params = metarl.init_params(envs.n_inputs(cfg), hidden, 2, stream(0),
                                        np.dtype(dtype))
            opt, tr = metarl.adam_init(params), None
            runs = []
            for u in range(repeats + 3):       # the first 3 include JIT loading: not counted
                t0 = time.perf_counter()
                tr, _ = metarl.update(params, opt, hp, cfg, stream(0, u), 0.01, hp.lr,
                                      buffers=tr)
                runs.append(time.perf_counter() - t0)
            runs = runs[3:]
            sec = float(np.median(runs))
            flops = update_flops(B, horizon, envs.n_inputs(cfg), hidden, 2)
            floor = floor_seconds(B, horizon, envs.n_inputs(cfg), hidden, 2, np.dtype(dtype),
                                  repeats)
            rows.append({"dtype": dtype, "batch": B, "ms_per_update": 1e3 * sec,
                         "floor_ms": 1e3 * floor,
                         "updates_per_s": 1 / sec, "steps_per_s": B * horizon / sec,
                         "gemm_peak_gflops": peak / 1e9, "fraction_of_gemm_peak": flops / sec / peak})
    return {"hidden": hidden, "horizon": horizon, "arms": 2, "repeats": repeats,
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "(unset)"), "rows": rows}


# ------------------------------------------------------------------------------------------
# Learning-curve figure
# ------------------------------------------------------------------------------------------
def plot_curve(returns, cfg, references, path, title, window=200):
    """Learning curve of one or more runs (seeds) of the same recipe: the mean over runs of
    each run's return per update, averaged over `window` updates, with a band of ± one
    standard error over runs (when there are ≥ 2), and horizontal reference lines
    {label: value} (the exact Bayes-optimal value, the best classical baseline). PNG."""
    n = min(len(r) for r in returns)
    w = max(1, min(window, n))
    smooth = np.array([np.convolve(r[:n], np.ones(w) / w, mode="valid") for r in returns])
    u = np.arange(w, n + 1)
    fig, axes = new_figure(width=7, height=4)
    ax = axes[0, 0]
    mean = smooth.mean(axis=0)
    ax.plot(u, mean, color="C0", label=f"agent, mean of {len(returns)} seed(s) "
                                        f"({w}-update moving average)")
    if len(returns) > 1:
        se = smooth.std(axis=0, ddof=1) / np.sqrt(len(returns))
        ax.fill_between(u, mean - se, mean + se, color="C0", alpha=0.3, label="± 1 SE over seeds")
    for k, (label, value) in enumerate(references.items()):
        ax.axhline(value, linestyle=("--", ":", "-.")[k % 3], color=f"C{k + 1}", label=label)
    focus_on_plateau(ax, mean)
    ax.set_xlabel("update")
    ax.set_ylabel(f"total reward per episode (T = {cfg.horizon})")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    save_png(fig, path, dpi=120)


# ------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------
def build_parser():
    parser = OneLineErrorParser(prog="metarl.py", description=metarl.__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train_p = sub.add_parser("train", help="meta-train an LSTM agent, checkpointing to --out")
    distill_p = sub.add_parser("distill", help="train an LSTM of the agent's architecture to act "
                                               "as the exact reference and carry the belief")
    for p, make in ((train_p, recipe), (distill_p, distill.distill_recipe)):
        for f in dataclasses.fields(Config):
            only = f.metadata["objectives"]
            p.add_argument(envs.flag(f.name), default=argparse.SUPPRESS,
                           type=parse_bool if f.type is bool else f.type,
                           help=f"{f.metadata['help']} ({recipe_defaults(f.name, make)})"
                                + (f" [--objective {' or '.join(only)} only]"
                                   if only != metarl.OBJECTIVES else ""))
        p.add_argument("--out", required=True, help="checkpoint path (.npz)")
        p.add_argument("--resume", action="store_true", help="continue the run stored in --out")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
        p.add_argument("--textbook", action="store_true",
                       help="run the NumPy textbook path instead of the fused kernels "
                            "(slower; learns the same)")
    eval_p = sub.add_parser("evaluate", help="mean total reward of a checkpoint on fresh tasks")
    eval_p.add_argument("checkpoint")
    eval_p.add_argument("--episodes", type=int, default=10000)
    eval_p.add_argument("--seed", type=int, default=1, help="evaluation seed (fresh tasks)")
    eval_p.add_argument("--greedy", action="store_true", help="act by the most likely action")
    eval_p.add_argument("--json", action="store_true")
    bench_p = sub.add_parser("bench", help="time the full update at B = 16, 64, 256")
    bench_p.add_argument("--repeats", type=int, default=20)
    bench_p.add_argument("--json", action="store_true")
    curve_p = sub.add_parser("curve", help="learning-curve PNG of one or more seeds, with the "
                                           "Bayes-optimal value and the best classical baseline")
    curve_p.add_argument("checkpoint", nargs="+", help="checkpoints of one recipe (seeds)")
    curve_p.add_argument("--out", required=True, help="PNG path")
    curve_p.add_argument("--episodes", type=int, default=20000, help="for the baselines")
    curve_p.add_argument("--seed", type=int, default=0)
    return parser


def recipe_defaults(name, make=recipe):
    """The default of a field as --help shows it: one value, or one per family's recipe."""
    values = {env: getattr(make(env), name) for env in envs.FAMILIES}
    if name == "env" or len(set(values.values())) == 1:
        return f"default {getattr(make(), name)}"
    return "default: " + ", ".join(f"{env} {value}" for env, value in values.items())


def parse_bool(text):
    """argparse type for yes/no flags: true/false, yes/no, 1/0."""
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def command_train(args, make=recipe):
    """train, or with --resume continue, the run in --out; the command's objective is
    make's unless --objective is given (train only)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if hasattr(args, f.name)}
    if os.path.isdir(args.out):
        raise ValueError(f"--out {args.out} is a folder; give a checkpoint file path (.npz)")
    objective = given.get("objective", make().objective)
    if args.resume and os.path.exists(args.out):
        stored = load_checkpoint(args.out)["hp"]
        if stored.objective != objective:
            raise ValueError(f"--resume: {args.out} is a run of objective {stored.objective}, "
                             f"this command continues {objective} runs")
        differ = [k for k, v in given.items() if getattr(stored, k) != v]
        if differ:
            raise ValueError(f"--resume: {', '.join('--' + k.replace('_', '-') for k in differ)} "
                             f"differ from the values stored in {args.out}")
        hp = stored
    elif os.path.exists(args.out) and not args.overwrite:
        raise ValueError(f"{args.out} exists; pass --resume to continue it or --overwrite to replace it")
    else:
        hp = make(**given)
    check_flags_apply(given, objective)
    train(hp, args.out, resume=args.resume, fused=not args.textbook)


def check_flags_apply(given, objective):
    """ValueError naming the first given Config flag that `objective` does not read (as the
    entropy weight for distill, or the belief weight for rl2): it would be ignored silently."""
    for f in dataclasses.fields(Config):
        if f.name in given and objective not in f.metadata["objectives"]:
            raise ValueError(f"{envs.flag(f.name)} applies to --objective "
                             f"{' or '.join(f.metadata['objectives'])} only; this run's "
                             f"objective is {objective}")


def command_distill(args):
    """train with the distillation recipe, then the agreement with the reference's actions
    on 2,000 fresh episodes (evaluation seed 1, as `evaluate`'s default)."""
    if getattr(args, "objective", "distill") != "distill":
        raise ValueError("metarl.py distill trains with --objective distill; use train for rl2")
    command_train(args, make=distill.distill_recipe)
    ckpt = load_checkpoint(args.out)
    agreement = distill.agreement_with_reference(ckpt["params"], env_config(ckpt["hp"]), 2000, seed=1)
    print_now(f"agreement with the reference's best actions on 2000 fresh episodes: "
              f"{agreement:.4f}")


def command_evaluate(args):
    check_int("--episodes", args.episodes, 1)
    ckpt = load_checkpoint(args.checkpoint)
    cfg = env_config(ckpt["hp"])
    ref = belief.reference(cfg)   # first: a DP too large is refused before the evaluation
    result = evaluate(ckpt["params"], cfg, args.episodes, args.seed, greedy=args.greedy)
    result.update(belief.exact_values(cfg, ref))
    if args.json:
        print(json.dumps(result))
        return
    for k, v in result.items():
        print(f"{k:22s} {v:.4f}" if isinstance(v, float) else f"{k:22s} {v}")


def command_bench(args):
    result = bench(repeats=check_int("--repeats", args.repeats, 1))
    if args.json:
        print(json.dumps(result))
        return
    print(f"full update (rollout + BPTT + Adam), bandit k=2, H={result['hidden']}, "
          f"T={result['horizon']}, OPENBLAS_CORETYPE={result['OPENBLAS_CORETYPE']}, "
          f"OPENBLAS_NUM_THREADS={result['OPENBLAS_NUM_THREADS']}")
    print(f"{'dtype':8s} {'B':>4s} {'ms/update':>10s} {'updates/s':>10s} {'steps/s':>11s} "
          f"{'GEMM peak':>10s} {'floor ms':>9s}")
    for r in result["rows"]:
        print(f"{r['dtype']:8s} {r['batch']:4d} {r['ms_per_update']:10.2f} {r['updates_per_s']:10.1f} "
              f"{r['steps_per_s']:11.0f} {100 * r['fraction_of_gemm_peak']:9.1f}% "
              f"{r['floor_ms']:9.2f}")
    print("floor: the update's matrix products and NumPy tanh alone (runs.floor_seconds)")


def command_curve(args):
    runs = [load_checkpoint(path) for path in args.checkpoint]
    cfg = env_config(runs[0]["hp"])
    differ = [path for path, run in zip(args.checkpoint, runs) if env_config(run["hp"]) != cfg]
    if differ:
        raise ValueError(f"{', '.join(differ)} trained on other tasks than {args.checkpoint[0]}")
    for path, run in zip(args.checkpoint[1:], runs[1:]):
        differ = recipe_difference(runs[0]["hp"], run["hp"])
        if differ:
            raise ValueError(f"{path} differs from {args.checkpoint[0]} in {differ}: a learning "
                             "curve averages the seeds of one recipe")
    untrained = [path for path, run in zip(args.checkpoint, runs) if run["update"] == 0]
    if untrained:
        raise ValueError(f"{', '.join(untrained)} holds no update yet (saved at update 0): "
                         "a learning curve needs at least one")
    check_int("--seed", args.seed, 0)
    prepare_output_file(args.out, "--out")
    report = belief.baselines_report(cfg, args.episodes, args.seed)  # builds the DP once
    refs = {}
    if report["bayes_optimal_exact"] is not None:
        refs["Bayes-optimal (exact)"] = report["bayes_optimal_exact"]
    for name, stats in belief.reference_policies(report["policies"]).items():
        refs[f"{name.replace('_', ' ')} ({args.episodes} episodes)"] = stats["mean"]
    hp = runs[0]["hp"]
    plot_curve([run["history"]["return"] for run in runs], cfg, refs, args.out,
               f"RL² LSTM on {cfg.name} (H = {hp.hidden}, B = {hp.batch})")
    print(f"wrote {args.out}")


def recipe_difference(hp, other):
    """The Config flags (with both values) in which two runs differ, other than those that do
    not change what is learned (the seed, and how often it logs and saves); '' if none."""
    same = ("seed", "log_every", "save_every")
    return ", ".join(f"{envs.flag(f.name)} ({getattr(hp, f.name)} vs {getattr(other, f.name)})"
                     for f in dataclasses.fields(Config) if f.name not in same
                     and getattr(hp, f.name) != getattr(other, f.name))


def main(argv=None):
    args = build_parser().parse_args(argv)
    commands = {"train": command_train, "distill": command_distill, "evaluate": command_evaluate,
                "bench": command_bench,
                "curve": command_curve}
    return run_cli(f"metarl.py {args.command}", lambda: commands[args.command](args))
