"""No input may crash, poison or corrupt a run: every class of bad input is refused at the
boundary with one line on stderr, exit status 2 (not a signal) and no file written or changed.

The command lines run in this process, through their main(argv) (conftest.cli); the smoke
tests run belief.py and metarl.py as scripts, where a crash in a kernel would be a signal."""
import ast
import dataclasses
import hashlib
import json
import os
import re
from fractions import Fraction
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import belief
import envs
import experiments
import machines
import metarl
import probe
import ridge
import runs
import twostep
from conftest import project_imports, run_python, run_script

REPO = Path(__file__).resolve().parent.parent
HUGE = "1000000000000000"   # 1e15: more memory than any machine has, for any per-item size


def snapshot(folder):
    """Every file under folder with the hash of its bytes: what must not change."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def assert_refused(done, message, before, folder):
    """Exit status 2 (a signal would be negative), one line on stderr holding `message`, no
    traceback, nothing on stdout, and the folder exactly as it was."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert snapshot(folder) == before


@pytest.fixture
def checkpoint(tiny_checkpoint):
    """A real checkpoint of a tiny run (conftest's: bandit, T = 6, 4 units, 3 updates, saved
    at every update), to corrupt one key of a copy at a time."""
    return tiny_checkpoint


# --- float and integer flags: NaN, inf, negative, zero, huge, wrong type, wrong family -------

@pytest.mark.parametrize("args, message", [
    # the segmentation fault of the issue: a NaN prior reached a Numba kernel as an index
    (["--prior-a", "nan"], "--prior-a must be a finite number in [0.001, 1000], got nan"),
    (["--prior-b", "inf"], "--prior-b must be a finite number in [0.001, 1000], got inf"),
    (["--prior-a", "-1"], "--prior-a must be a finite number"),
    (["--prior-b", "0"], "--prior-b must be a finite number"),
    (["--prior-a", "1e308"], "--prior-a must be a finite number"),
    (["--arms", "1"], "--arms must be an integer in [2, 100], got 1"),
    (["--arms", "2.5"], "invalid int value"),
    (["--horizon", "0"], "--horizon must be an integer in [1, 10000], got 0"),
    (["--horizon", "-5"], "--horizon must be an integer in [1, 10000]"),
    (["--episodes", "0"], "--episodes must be an integer >= 1, got 0"),
    (["--episodes", HUGE], "needs about"),
    (["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    (["--env", "dependent-bandit", "--arms", "3"], "--arms does not apply to dependent-bandit"),
    (["--env", "tiger", "--prior-a", "2"], "--prior-a does not apply to tiger"),
    (["--env", "nope"], "unknown env 'nope'; accepted: bandit, dependent-bandit, tiger, two-step"),
])
def test_baselines_refuses_bad_flags(cli, tmp_path, args, message):
    before = snapshot(tmp_path)
    done = cli("belief.py", "baselines", "--horizon", "10", "--episodes", "50", *args,
               cwd=tmp_path)
    assert_refused(done, message, before, tmp_path)


@pytest.mark.parametrize("script, args, message", [
    ("belief.py", ["baselines", "--prior-a", "nan"],
     "--prior-a must be a finite number in [0.001, 1000], got nan"),
    ("metarl.py", ["train", "--lr", "nan", "--out", "run.npz"],
     "--lr must be a finite number in (0, 1], got nan"),
])
def test_the_scripts_refuse_a_nan_with_exit_status_2_not_a_signal(tmp_path, script, args,
                                                                  message):
    """The issue's segmentation fault, as a user met it: the script in a fresh interpreter,
    where a NaN that reached a kernel would end in a signal (a negative status)."""
    before = snapshot(tmp_path)
    assert_refused(run_script(script, *args, cwd=tmp_path), message, before, tmp_path)


@pytest.mark.parametrize("args, message", [
    (["--lr", "nan"], "--lr must be a finite number in (0, 1], got nan"),
    (["--lr", "inf"], "--lr must be a finite number in (0, 1], got inf"),
    (["--lr", "0"], "--lr must be a finite number in (0, 1]"),
    (["--entropy-start", "nan"], "--entropy-start must be a finite number in [0, 1000], got nan"),
    (["--entropy-start", "-1"], "--entropy-start must be a finite number in [0, 1000]"),
    (["--value-weight", "nan"], "--value-weight must be a finite number"),
    (["--max-grad-norm", "nan"], "--max-grad-norm must be a finite number"),
    (["--max-grad-norm", "0"], "--max-grad-norm must be a finite number in (0, 1e+06]"),
    (["--gamma", "1.5"], "--gamma must be a finite number in [0, 1], got 1.5"),
    (["--prior-b", "nan"], "--prior-b must be a finite number"),
    (["--hidden", "0"], "--hidden must be an integer in [1, 4096], got 0"),
    (["--batch", HUGE], "needs about"),
    (["--updates", HUGE], "needs about"),
    (["--seed", "-5"], "--seed must be an integer >= 0, got -5"),
    (["--dtype", "float16"], "--dtype must be one of float64, float32"),
    (["--anneal-lr", "maybe"], "expected true or false"),
    (["--env", "tiger", "--arms", "3"], "--arms does not apply to tiger"),
])
def test_train_refuses_bad_flags_before_writing_anything(cli, tmp_path, args, message):
    before = snapshot(tmp_path)
    done = cli("metarl.py", "train", *args, "--out", "run.npz", cwd=tmp_path)
    assert_refused(done, message, before, tmp_path)


@pytest.mark.parametrize("command, args, message", [
    ("evaluate", ["--episodes", "0"], "--episodes must be an integer >= 1, got 0"),
    ("evaluate", ["--episodes", HUGE], "needs about"),
    ("evaluate", ["--seed", "-2"], "--seed must be an integer >= 0, got -2"),
    ("probe", ["--episodes", HUGE], "needs about"),
    ("probe", ["--folds", "1"], "--folds must be an integer in [2, 100], got 1"),
    ("probe", ["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
])
def test_evaluate_and_probe_refuse_bad_sizes(cli, tmp_path, checkpoint, command, args, message):
    before = snapshot(tmp_path)
    if command == "probe":
        done = cli("probe.py", checkpoint, *args, "--plot", "figures", cwd=tmp_path)
    else:
        done = cli("metarl.py", command, checkpoint, *args, cwd=tmp_path)
    assert_refused(done, message, before, tmp_path)


# --- output paths: unwritable, a folder that cannot be made, a file where a folder must be ----

@pytest.fixture
def blocked(tmp_path):
    """A path whose folder cannot be made, even by root: its parent is a regular file."""
    (tmp_path / "a-file").write_text("not a folder")
    return tmp_path / "a-file" / "sub"


@pytest.mark.parametrize("command", ["train", "curve", "probe", "experiments"])
def test_unwritable_outputs_are_refused_before_any_work(cli, tmp_path, checkpoint, blocked, command):
    before = snapshot(tmp_path)
    done = {"train": lambda: cli("metarl.py", "train", "--updates", "2", "--out",
                                 blocked / "x.npz", cwd=tmp_path),
            "curve": lambda: cli("metarl.py", "curve", checkpoint, "--out", blocked / "c.png",
                                 cwd=tmp_path),
            "probe": lambda: cli("probe.py", checkpoint, "--episodes", "20", "--plot", blocked,
                                 cwd=tmp_path),
            "experiments": lambda: cli("experiments.py", "--quick", "--out", blocked,
                                       cwd=tmp_path)}[command]()
    assert_refused(done, "is a file, not a folder", before, tmp_path)


def test_an_output_under_proc_is_refused(cli, tmp_path):
    before = snapshot(tmp_path)
    done = cli("metarl.py", "train", "--updates", "2", "--out", "/proc/no-such/x.npz",
               cwd=tmp_path)
    assert_refused(done, "cannot write in /proc/no-such", before, tmp_path)


def test_train_refuses_a_folder_as_its_checkpoint(cli, tmp_path):
    (tmp_path / "runs").mkdir()
    before = snapshot(tmp_path)
    done = cli("metarl.py", "train", "--updates", "2", "--out", "runs", cwd=tmp_path)
    assert_refused(done, "--out runs is a folder", before, tmp_path)


# --- checkpoints: validated whole, each failure naming the file and the key ----------------

def corrupt(arrays, key):
    """A copy of a checkpoint's arrays with one kind of damage, and the words that name it."""
    a = dict(arrays)
    config = json.loads(str(a["config"]))
    if key == "nan-param":
        a["param/W"] = a["param/W"].copy()
        a["param/W"][0, 0] = np.nan
        return a, "key 'param/W' has NaN or infinite entries"
    if key == "moment-shape":
        a["adam_m/U"] = a["adam_m/U"][:, :-1]
        return a, "key 'adam_m/U' is float64"
    if key == "moment-dtype":
        a["adam_v/b"] = a["adam_v/b"].astype(np.float32)
        return a, "key 'adam_v/b' is float32"
    if key == "negative-second-moment":
        a["adam_v/w_V"] = -a["adam_v/w_V"] - 1.0
        return a, "key 'adam_v/w_V' has negative entries"
    if key == "short-history":
        a["history/return"] = a["history/return"][:-1]
        return a, "key 'history/return' is float64 (2,), expected float64 (3,)"
    if key == "update-beyond-updates":
        a["update"] = np.array(7)
        return a, "key 'update' must be one integer in [0, 3]"
    if key == "adam-count":
        a["adam_k"] = np.array(2)
        return a, "key 'adam_k' is 2 but 'update' is 3"
    if key == "config-type":
        config["hidden"] = 4.0
        a["config"] = np.array(json.dumps(config))
        return a, "key 'config': --hidden must be an integer"
    if key == "config-nan":
        config["lr"] = float("nan")
        a["config"] = np.array(json.dumps(config))
        return a, "key 'config': --lr must be a finite number"
    if key == "config-missing":
        del config["gamma"]
        a["config"] = np.array(json.dumps(config))
        return a, "key 'config' lacks gamma"
    if key == "config-not-json":
        a["config"] = np.array("{not json")
        return a, "key 'config' is not a JSON object"
    if key == "extra-key":
        a["notes"] = np.zeros(2)
        return a, "unexpected notes"
    if key == "missing-key":
        del a["adam_m/b_V"]
        return a, "missing adam_m/b_V"
    raise KeyError(key)


DAMAGE = ["nan-param", "moment-shape", "moment-dtype", "negative-second-moment",
          "short-history", "update-beyond-updates", "adam-count", "config-type", "config-nan",
          "config-missing", "config-not-json", "extra-key", "missing-key"]


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_checkpoint_is_refused_naming_the_file_and_the_key(tmp_path, checkpoint,
                                                                    damage):
    with np.load(checkpoint, allow_pickle=False) as z:
        arrays, message = corrupt({k: z[k] for k in z.files}, damage)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="bad.npz") as err:
        runs.load_checkpoint(str(tmp_path / "bad.npz"))
    assert message in str(err.value)


@pytest.mark.parametrize("damage", ["nan-param", "config-type", "adam-count"])
def test_evaluate_refuses_a_damaged_checkpoint_through_the_cli(cli, tmp_path, checkpoint, damage):
    with np.load(checkpoint, allow_pickle=False) as z:
        arrays, message = corrupt({k: z[k] for k in z.files}, damage)
    np.savez(tmp_path / "bad.npz", **arrays)
    before = snapshot(tmp_path)
    assert_refused(cli("metarl.py", "evaluate", "bad.npz", cwd=tmp_path), message, before,
                   tmp_path)


@pytest.mark.parametrize("kind", ["truncated", "text", "folder", "npy", "pickle", "empty"])
def test_files_that_are_not_checkpoints_are_refused(cli, tmp_path, checkpoint, kind):
    path = tmp_path / "foreign.npz"
    if kind == "truncated":
        path.write_bytes(checkpoint.read_bytes()[:3000])
    elif kind == "text":
        path.write_text("weights: lots\n")
    elif kind == "folder":
        path.mkdir()
    elif kind == "npy":
        np.save(tmp_path / "foreign.npy", np.zeros(3))
        (tmp_path / "foreign.npy").rename(path)
    elif kind == "pickle":   # unpickling this would run code; allow_pickle=False refuses it
        np.savez(path, config=np.array([{"lr": 1}], dtype=object))
    else:
        path.write_bytes(b"")
    before = snapshot(tmp_path)
    done = cli("metarl.py", "evaluate", path, cwd=tmp_path)
    assert_refused(done, str(path), before, tmp_path)


# --- training never saves poison -----------------------------------------------------------

def test_a_non_finite_update_stops_training_and_keeps_the_last_good_checkpoint(tmp_path,
                                                                               monkeypatch):
    hp = metarl.Config(horizon=6, hidden=5, batch=4, updates=8, save_every=2, log_every=8)
    out = str(tmp_path / "run.npz")
    real, calls, saved = metarl.loss_and_gradients, [], []

    def poisoned(*args, **kwargs):   # update 5 meets a NaN loss and NaN gradients
        stats, grads = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 5:
            stats["loss"] = float("nan")
            grads = {k: g * np.nan for k, g in grads.items()}
        return stats, grads

    def recording_save(path, *args):
        real_save(path, *args)
        saved.append(hashlib.sha256(Path(path).read_bytes()).hexdigest())

    real_save = runs.save_checkpoint
    monkeypatch.setattr(metarl, "loss_and_gradients", poisoned)
    monkeypatch.setattr(runs, "save_checkpoint", recording_save)
    with pytest.raises(ValueError, match=r"update 5: the loss is nan, the grad norm is nan; "
                                         r"training stopped before this update changed the "
                                         r"parameters .*holds update 4"):
        runs.train(hp, out, log=lambda line: None)
    assert hashlib.sha256(Path(out).read_bytes()).hexdigest() == saved[-1]
    assert runs.load_checkpoint(out)["update"] == 4
    monkeypatch.undo()
    resumed = runs.train(hp, out, resume=True, log=lambda line: None)
    straight = runs.train(hp, None, log=lambda line: None)
    for k in straight:
        assert np.array_equal(resumed[k], straight[k])


def test_the_cli_reports_a_non_finite_update_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(metarl, "clip_by_global_norm", lambda grads, max_norm: float("inf"))
    code = runs.main(["train", "--horizon", "4", "--hidden", "3", "--batch", "2",
                        "--updates", "3", "--out", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "update 1: the grad norm is inf" in err[0]
    assert not (tmp_path / "x.npz").exists()


def test_saving_non_finite_parameters_is_refused(tmp_path):
    hp = metarl.Config(horizon=4, hidden=3)
    cfg = metarl.env_config(hp)
    params = metarl.init_params(envs.n_inputs(cfg), 3, 2, metarl.stream(0))
    params["U"][1, 1] = np.inf
    with pytest.raises(ValueError, match="param/U is not finite"):
        runs.save_checkpoint(str(tmp_path / "x.npz"), hp, params, metarl.adam_init(params), 0,
                               {k: np.zeros(0) for k in metarl.HISTORY})
    assert not (tmp_path / "x.npz").exists()


# --- arrays handed to kernels: actions and recorded histories ------------------------------

@pytest.mark.parametrize("actions, message", [
    (np.array([0, 1, 0, 1, 0]), "actions must have shape (4,), got (5,)"),
    (np.array([0, 1, 0]), "actions must have shape (4,), got (3,)"),
    (np.array([0.0, 1.0, 0.0, 1.0]), "actions must be an array of integers, got dtype float64"),
    (np.array([True, False, True, False]), "actions must be an array of integers, got dtype bool"),
    (np.array([0, 3, 0, 1]), "actions must lie in [0, 3), got values from 0 to 3"),
    (np.array([[0, 1, 0, 1]]), "actions must have shape (4,), got (1, 4)"),
])
@pytest.mark.parametrize("name", ["tiger", "two-step"])
def test_env_step_refuses_actions_of_the_wrong_shape_type_or_range(name, actions, message):
    if name == "two-step" and "[0, 3)" in message:
        actions, message = np.array([0, 2, 0, 1]), "actions must lie in [0, 2)"
    env = envs.make_env(envs.make_config(name, horizon=3), batch=4)
    env.reset(0)
    state = (env.t, env.tasks.copy(), env.obs.copy())
    with pytest.raises(ValueError, match=re.escape(message)):
        env.step(actions)
    assert (env.t, env.tasks.tolist(), env.obs.tolist()) == (state[0], state[1].tolist(),
                                                             state[2].tolist())


def history(cfg, T=4, B=3, seed=0):
    actions, rewards, obs = belief.run_policy(
        cfg, lambda past, rng: rng.integers(envs.n_actions(cfg), size=B), B, seed)
    return actions[:T], rewards[:T], obs[:T]


@pytest.mark.parametrize("name, damage, message", [
    ("bandit", "float actions", "actions must be an array of integers"),
    ("bandit", "action out of range", "actions must lie in [0, 2)"),
    ("bandit", "reward nan", "rewards has 1 NaN or infinite entries"),
    ("bandit", "reward 0.5", "bandit rewards must be 0 or 1"),
    ("bandit", "too long", "more than the horizon 6"),
    ("bandit", "rewards shape", "rewards must have shape (4, 3)"),
    ("dependent-bandit", "reward 0.5", "dependent-bandit rewards must be 0 or 1"),
    ("tiger", "obs not one-hot", "tiger: obs must be one-hot"),
    ("tiger", "listen reward", "tiger: a listening step must have reward -1.0"),
    ("tiger", "obs width", "obs must have shape (4, 3, 2)"),
    ("two-step", "obs not one-hot", "two-step: obs must be one-hot"),
])
def test_recorded_histories_are_checked_before_the_belief_kernels_see_them(name, damage, message):
    cfg = envs.make_config(name, horizon=6)
    a, r, o = history(cfg)
    a, r, o = a.copy(), r.copy(), o.copy()
    if damage == "float actions":
        a = a.astype(float)
    elif damage == "action out of range":
        a[1, 2] = 2
    elif damage == "reward nan":
        r[0, 0] = np.nan
    elif damage == "reward 0.5":
        r[2, 1] = 0.5
    elif damage == "too long":
        a, r, o = (np.concatenate([x, x]) for x in (a, r, o))
    elif damage == "rewards shape":
        r = r[:, :2]
    elif damage == "obs not one-hot":
        o[0, 0] = [1.0, 1.0]
    elif damage == "listen reward":
        a[0, 0], r[0, 0], o[0, 0] = 0, 5.0, [1.0, 0.0]
    elif damage == "obs width":
        o = np.concatenate([o, o], axis=-1)
    for function in (belief.belief_trajectory, belief.belief_features, belief.reference_q):
        with pytest.raises(ValueError) as err:
            function(cfg, a, r, o)
        assert message in str(err.value)


def test_bayes_q_refuses_counts_that_are_not_a_state_of_the_dp():
    cfg = envs.make_config("bandit", horizon=5)
    dp = belief.bayes_dp(cfg)
    good = {"alpha": np.array([[2.0, 1.0]]), "beta": np.array([[1.0, 2.0]])}   # t = 2
    belief.bayes_q(dp, cfg, good, 2)
    with pytest.raises(ValueError, match="must be >= 0 and sum to 3"):
        belief.bayes_q(dp, cfg, good, 3)
    with pytest.raises(ValueError, match="step t of the Bayes-optimal Q must be an integer in"):
        belief.bayes_q(dp, cfg, good, 5)
    with pytest.raises(ValueError, match="must be >= 0"):
        belief.bayes_q(dp, cfg, {"alpha": np.array([[0.0, 3.0]]), "beta": np.ones((1, 2))}, 1)


def test_bayes_q_refuses_a_belief_or_a_dp_of_other_tasks():
    """Both used to reach the kernel, which then read past the end of its tables."""
    cfg = envs.make_config("bandit", horizon=5)
    dp = belief.bayes_dp(cfg)
    wide = {"alpha": np.ones((1, 10)), "beta": np.ones((1, 10))}
    with pytest.raises(ValueError, match=re.escape("must have shape (any, 4)")):
        belief.bayes_q(dp, cfg, wide, 0)
    for other in (envs.make_config("dependent-bandit", horizon=5),
                  envs.make_config("bandit", horizon=5, arms=3),
                  envs.make_config("bandit", horizon=5, prior_a=2.0),
                  envs.make_config("bandit", horizon=6)):
        with pytest.raises(ValueError, match="built for other tasks"):
            belief.bayes_q(dp, other, belief.belief_filter(other)[0](other, 1), 0)


@pytest.mark.parametrize("actions, message", [
    (np.array([-100000000, 0]), "actions must lie in [0, 2)"),
    (np.array([7, 0]), "actions must lie in [0, 2)"),
    (np.array([0.5, 1.0]), "actions must be an array of integers"),
])
def test_the_public_belief_update_checks_its_step(actions, message):
    cfg = envs.make_config("bandit", horizon=5)
    prior, update = belief.belief_filter(cfg)
    with pytest.raises(ValueError, match=re.escape(message)):
        update(cfg, prior(cfg, 2), actions, np.zeros(2), np.zeros((2, 0)))


def test_a_policy_that_returns_floats_is_refused_not_truncated():
    cfg = envs.make_config("bandit", horizon=3)
    with pytest.raises(ValueError, match="actions must be an array of integers"):
        belief.run_policy(cfg, lambda past, rng: np.array([0.9, 1.7]), 2, seed=0)


def test_configs_are_stored_as_python_numbers_and_envs_refuse_misuse():
    cfg = envs.make_config("tiger", horizon=np.int8(127), listen_accuracy=Fraction(17, 20))
    assert type(cfg.horizon) is int and type(cfg.listen_accuracy) is float
    assert envs.n_inputs(cfg) > 127                 # np.int8 arithmetic would have wrapped
    with pytest.raises(ValueError, match="--swap-prob must be a finite number in"):
        envs.make_config("two-step", swap_prob=0.0)
    with pytest.raises(ValueError, match="input dtype must be float64 or float32"):
        envs.make_env(cfg, 2, np.int64)
    env = envs.make_env(cfg, 2)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(2, dtype=np.int64))
    for seed in (None, 1.5, -1):
        with pytest.raises(ValueError, match="seed must be an integer >= 0"):
            env.reset(seed)


def test_the_dp_error_names_a_state_count_beyond_float_range(cli, tmp_path):
    before = snapshot(tmp_path)
    done = cli("belief.py", "baselines", "--arms", "100", "--horizon", "10000",
               "--episodes", "10", cwd=tmp_path)
    assert_refused(done, "states, more than the limit", before, tmp_path)


@pytest.mark.parametrize("damage, message", [
    ("float actions", "actions must be an array of integers"),
    ("one trial", "T >= 2 trials"),
    ("reward 7", "rewards"),
])
def test_two_step_behaviour_checks_its_episodes(damage, message):
    cfg = envs.make_config("two-step", horizon=6)
    a, r, o = history(cfg)
    if damage == "float actions":
        a = a.astype(float)
    elif damage == "one trial":
        a, r, o = a[:1], r[:1], o[:1]
    else:
        r = r + 7
    with pytest.raises(ValueError, match=message):
        twostep.stay_analysis(a, r, o)
    with pytest.raises(ValueError, match=message):
        twostep.fit_hybrid(cfg, a, r, o)


# --- one record per family: a fifth family plugs in by adding one record per module --------

def one_armed_step(actions, u, tasks, means, obs, par, r):
    """Arm 0 pays 1 with the task's p, arm 1 pays 0.5 for sure (a one-armed bandit): a step
    in plain NumPy, as a family without a Numba kernel may have it."""
    r[:] = np.where(actions == 0, (u[:, 0] < tasks[:, 0]).astype(float), 0.5)


def one_armed_outcomes(cfg, actions, rewards, obs):
    if not (np.isin(rewards[actions == 0], (0.0, 1.0)).all() and (rewards[actions == 1] == 0.5).all()):
        raise ValueError("one-armed: arm 0 pays 0 or 1, arm 1 pays 0.5")


def one_armed_prior(cfg, B):
    return {"alpha": np.full(B, cfg.prior_a), "beta": np.full(B, cfg.prior_b)}


def one_armed_update(cfg, b, actions, rewards, obs):
    pulled = actions == 0
    return {"alpha": b["alpha"] + pulled * rewards, "beta": b["beta"] + pulled * (1 - rewards)}


def one_armed_features(cfg, beliefs):
    mean, sd = belief.beta_mean_sd(beliefs["alpha"][:-1], beliefs["beta"][:-1])
    return np.stack([mean, sd], axis=-1), ["mean_p", "sd_p"]


def one_armed_q(cfg, ref, beliefs):   # the myopic reference: expected reward of each arm now
    mean = beliefs["alpha"][:-1] / (beliefs["alpha"][:-1] + beliefs["beta"][:-1])
    return np.stack([mean, np.full_like(mean, 0.5)], axis=-1)


def one_armed_mean(cfg, S):
    s, f = np.maximum(S[:, 0], 0.0), np.maximum(S[:, 1], 0.0)
    return (cfg.prior_a + s) / (cfg.prior_a + cfg.prior_b + s + f)


def one_armed_machine_q(cfg, ref, S, t):
    return np.stack([one_armed_mean(cfg, S), np.full(len(S), 0.5)], axis=1)


def one_armed_history(cfg, a, r, obs):
    """The reward two events back, which the counts of arm 0 do not determine."""
    lagged = np.full(r.shape, np.nan)
    lagged[2:] = r[:-2]
    return lagged[..., None], ["reward_t-2"]


@pytest.fixture
def one_armed(monkeypatch):
    monkeypatch.setitem(envs.FAMILIES, "one-armed", envs.Family(
        default_horizon=8, fields=("prior_a", "prior_b"), n_actions=envs.constant(2),
        n_observations=0, task_dim=envs.constant(1), reward_scale=envs.constant(1.0),
        sample_tasks=envs.beta_tasks, step=one_armed_step, step_params=envs.no_params,
        check_outcomes=one_armed_outcomes, outcomes=envs.reward_outcome,
        outcome_names=("reward",)))
    monkeypatch.setitem(belief.BELIEFS, "one-armed", belief.BeliefFamily(
        prior=one_armed_prior, update=one_armed_update, features=one_armed_features,
        reference=belief.no_reference, reference_q=one_armed_q,
        exact_values=lambda cfg, ref: {"bayes_optimal_exact": None,
                                       "oracle_exact": cfg.horizon * 0.625},
        policies=lambda cfg, ref: {"random": partial(belief.random_arm, cfg)}))
    monkeypatch.setitem(machines.FAMILIES, "one-armed", machines.Family(
        name="one-armed", coordinate_names=lambda cfg: ["successes", "failures"],
        reference=belief.no_reference,
        coordinates=lambda cfg, b: np.stack([b["alpha"] - cfg.prior_a, b["beta"] - cfg.prior_b], -1),
        prior=lambda cfg, B: np.zeros((B, 2)),
        step=lambda cfg, S, a, r, obs: S + (a == 0)[:, None] * np.stack([r, 1 - r], 1),
        features=lambda cfg, S, t: np.column_stack([S, one_armed_mean(cfg, S)]),
        feature_names=lambda cfg: ["successes", "failures", "mean"], q=one_armed_machine_q,
        value0=lambda cfg, ref: None, uncertainty=lambda cfg, S, t: one_armed_mean(cfg, S),
        uncertainty_name="posterior mean", control_q=one_armed_machine_q,
        history=one_armed_history))
    return envs.make_config("one-armed")


def test_a_fifth_family_runs_through_training_rollout_beliefs_baselines_and_the_probe(one_armed):
    """One record in envs, belief and machines, registered here and nowhere else."""
    hp = metarl.Config(env="one-armed", hidden=6, batch=8, updates=3, log_every=3)
    params = runs.train(hp, None, log=lambda line: None)
    tr = metarl.rollout(params, one_armed, 30, metarl.stream(0))
    F, names = belief.belief_features(one_armed, tr.a, tr.r, tr.obs)
    pulls = np.cumsum(np.vstack([np.zeros((1, 30)), tr.a[:-1] == 0]), axis=0)
    wins = np.cumsum(np.vstack([np.zeros((1, 30)), (tr.a[:-1] == 0) * tr.r[:-1]]), axis=0)
    assert names == ["mean_p", "sd_p"]
    assert np.allclose(F[..., 0], (1 + wins) / (2 + pulls))   # Beta(1 + s, 1 + f) posterior mean
    summary, _ = probe.probe_agent(params, hp, 30, seed=0, k=3, simulation_episodes=30,
                                   splice_episodes=30)
    assert summary["env"] == "one-armed" and set(summary["decode"]) == {"mean_p", "sd_p"}
    assert set(summary["minimality"]["partial_r2"]["trained"]) == {"reward_t-2"}
    assert summary["splice"]["steps"] >= 0 and summary["value_loss_per_step"] >= 0
    report = belief.baselines_report(one_armed, 200, seed=0)
    assert abs(report["policies"]["random"]["mean"] - 8 * (0.5 * 0.5 + 0.5 * 0.5)) < 0.5
    with pytest.raises(ValueError, match="--arms does not apply to one-armed"):
        envs.make_config("one-armed", arms=3)


def test_no_module_dispatches_on_a_family_name():
    """The names appear in the family records (and in experiments' choice of agents), not in
    if-chains: `if cfg.name == "tiger"` and the like are gone from the modules, and no module
    above the records keeps a table of its own keyed by family names (as report.py's
    {"bandit": "regret", …, "tiger": "gap"} was): a per-family fact is a field of a record."""
    for module in ("envs.py", "belief.py", "metarl.py", "ridge.py", "machines.py", "probe.py",
                   "panel.py", "ladders.py", "claims.py", "report.py", "experiments.py"):
        text = (REPO / module).read_text()
        for name in envs.FAMILIES:
            assert f'== "{name}"' not in text and f'in ("{name}"' not in text, (module, name)
        assert "cfg.name ==" not in text and "cfg.name in" not in text, module
        assert not family_name_comparisons(text), (module, family_name_comparisons(text))
    for module in ("probe.py", "panel.py", "ladders.py", "claims.py", "report.py",
                   "experiments.py"):
        # AGENTS, which agents the experiments train, is a choice of experiment
        lines = family_keyed_dicts((REPO / module).read_text(), allowed={"AGENTS"})
        assert not lines, f"{module} has dicts keyed by family names on lines {lines}"


def family_names_in(node):
    """The family names that node holds as string constants, itself or in a tuple, list or set."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [i.value for i in items if isinstance(i, ast.Constant) and i.value in envs.FAMILIES]


def family_name_comparisons(text):
    """Lines of `text` that compare anything with a family name (==, !=, in, not in)."""
    return [node.lineno for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Compare)
            and any(family_names_in(side) for side in (node.left, *node.comparators))]


def family_keyed_dicts(text, allowed):
    """Lines of `text` with a dict literal keyed by a family name, outside the module-level
    assignments to the names in `allowed`."""
    kept = [node for node in ast.parse(text).body
            if not (isinstance(node, ast.Assign)
                    and any(getattr(t, "id", None) in allowed for t in node.targets))]
    return [d.lineno for node in kept for d in ast.walk(node)
            if isinstance(d, ast.Dict) and any(family_names_in(k) for k in d.keys if k)]


def test_the_dispatch_check_catches_a_table_keyed_by_family_names():
    """The check above would have caught report.py's table of §1 measures and experiments.py's
    quick horizons, and reads experiments' AGENTS as the choice of experiment it is."""
    assert family_keyed_dicts('MEASURE = {"bandit": "regret", "tiger": "gap"}\n', set()) == [1]
    assert family_keyed_dicts('def f():\n    return {"two-step": 20}[env]\n', set()) == [2]
    assert family_keyed_dicts('AGENTS = {"tiger": ("tiger", {})}\n', {"AGENTS"}) == []
    assert family_name_comparisons('if env != "tiger":\n    pass\n') == [1]
    assert family_name_comparisons('x = env in ("bandit", "tiger")\n') == [1]
    assert family_name_comparisons('x = name in AGENTS\n') == []


def import_cycle(imports):
    """A chain of imports m → … → m in {module: modules it imports}, or None (depth-first:
    a module reached again while still open closes a cycle)."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(imports.get(m, ())):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(imports):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_the_modules_import_in_one_direction():
    """No two project modules import each other, directly or through others, at the top of
    a module or inside a function: each module's imports of the project's modules, followed,
    never lead back to it."""
    modules = {p.stem for p in REPO.glob("*.py")}
    imports = {m: project_imports((REPO / f"{m}.py").read_text(), modules) - {m}
               for m in modules}
    assert sum(map(len, imports.values())) > len(modules)   # the graph was read
    cycle = import_cycle(imports)
    assert cycle is None, " imports ".join(cycle)


def test_the_import_check_sees_deferred_imports_but_not_a_scripts_entry_point():
    modules = {"a", "b"}
    deferred = "import numpy\n\n\ndef f():\n    from b.c import g\n    return g()\n"
    assert project_imports(deferred, modules) == {"b"}
    assert project_imports("def f():\n    return importlib.import_module('a')\n",
                           modules) == {"a"}
    entry = 'import os\n\nif __name__ == "__main__":\n    import a\n    a.main()\nelse:\n    import b\n'
    assert project_imports(entry, modules) == {"b"}   # the else branch runs on import
    assert import_cycle({"a": {"b"}, "b": set()}) is None
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_config_fields_all_have_a_checked_range():
    for f in dataclasses.fields(metarl.Config):
        assert "accepted" in f.metadata, f.name
    metarl.check_hyperparameters(metarl.Config())
    with pytest.raises(ValueError, match="--lr must be a finite number"):
        metarl.check_hyperparameters(metarl.Config(lr=float("nan")))
    with pytest.raises(ValueError, match="--anneal-lr must be true or false"):
        metarl.check_hyperparameters(metarl.Config(anneal_lr="yes"))


def test_rollout_refuses_parameters_of_the_wrong_shape_before_a_kernel_reads_them():
    cfg = envs.make_config("tiger", horizon=3)
    params = metarl.init_params(envs.n_inputs(cfg), 4, 3, metarl.stream(0))
    params["W"] = params["W"][:-1]   # one input row short: the fused kernel would read past it
    with pytest.raises(ValueError, match=r"parameter W is float64 \(9, 16\); tiger needs "
                                         r"float64 \(10, 16\)"):
        metarl.rollout(params, cfg, 2, metarl.stream(1))


# === Second pass (issue 19): results files, the analyses' Python API, refusals before work ===

# --- results.json: every reader checks the structure of what it reads ----------------------

def deep(levels):
    """JSON nested `levels` deep: json.loads alone ends in RecursionError near 1000."""
    return "[" * levels + "]" * levels


def damage_results(results, damage):
    """results.json (docs/results.json, a real run's) with one kind of damage, and the words
    that must name it."""
    if damage == "section a list":
        results["near_optimal"] = list(results["near_optimal"].values())
        return "key results.near_optimal must be a non-empty object, got a list"
    if damage == "empty section":
        results["belief_states"] = {}
        return "key results.belief_states must be a non-empty object, got an empty object"
    if damage == "nan wall time":   # was accepted: a report saying "wall time nan min"
        results["facts"]["wall_seconds"] = float("nan")
        return "key results.facts.wall_seconds must be a finite number, got nan"
    if damage == "infinite curve point":
        results["facts"]["learning_curves"]["bandit"]["seeds"][0][3] = float("inf")
        return "key results.facts.learning_curves.bandit.seeds[0][3] must be a finite number"
    if damage == "empty seeds":
        results["near_optimal"]["tiger"]["seeds"] = []
        return "key results.near_optimal.tiger.seeds must be a non-empty list, got an empty list"
    if damage == "string for a number":
        results["near_optimal"]["tiger"]["seeds"][1]["mean"] = "12.5"
        return "key results.near_optimal.tiger.seeds[1].mean must be a finite number, got '12.5'"
    if damage == "bool for an integer":
        results["facts"]["workers"] = True
        return "key results.facts.workers must be an integer, got True"
    if damage == "missing deep key":
        del next(iter(results["shift"].values()))["references"]["own_exact"]
        return "references.own_exact is missing"
    if damage == "list for an object":
        results["two_step"]["seeds"][0]["stay"] = []
        return "key results.two_step.seeds[0].stay must be an object, got an empty list"
    if damage == "known machine on an unknown prior":   # was a KeyError while rendering
        label, case = next(iter(results["shift"].items()))
        case["known"]["distilled on the training prior"]["expected"] = "both"
        return (f"key results.shift.{label}.known.distilled on the training prior.expected "
                "must be 'train', got 'both'")
    if damage == "known machine on the other prior":   # would invert the test's validation
        label, case = next(iter(results["shift"].items()))
        case["known"]["distilled on the test prior"]["expected"] = "train"
        return (f"key results.shift.{label}.known.distilled on the test prior.expected "
                "must be 'test', got 'train'")
    if damage == "known machine deleted":   # was "validated: yes" on the other alone
        label, case = next(iter(results["shift"].items()))
        del case["known"]["distilled on the test prior"]
        return f"key results.shift.{label}.known.distilled on the test prior is missing"
    if damage == "shift of an unknown agent":
        label, case = next(iter(results["shift"].items()))
        case["agent"] = "bandits"
        return f"key results.shift.{label}.agent must be one of "
    seed_key = "results.ladders.bandit.seeds"
    sufficiency = results["ladders"]["bandit"]["seeds"][1]["ladders"]["sufficiency"]
    if damage == "ladder value null":   # a null could mean undefined or missing
        sufficiency["tanh"][2]["splice"] = None
        return (f"key {seed_key}[1].ladders.sufficiency.tanh[2].splice must be a finite number, "
                '{"undefined": "why"} or {"not measured": "why"}, got null')
    if damage == "ladder value NaN":
        sufficiency["tanh"][2]["splice"] = float("nan")
        return f"key {seed_key}[1].ladders.sufficiency.tanh[2].splice must be a finite number"
    if damage == "ladder value deleted":
        del sufficiency["identity"][0]["decode"]
        return f"key {seed_key}[1].ladders.sufficiency.identity[0].decode is missing"
    if damage == "ladder value an unknown record":
        sufficiency["identity"][0]["decode"] = {"unknown": "why"}
        return f"key {seed_key}[1].ladders.sufficiency.identity[0].decode must be a finite number"
    if damage == "ladder grade deleted":   # would shift every grade after it
        del sufficiency["linear"][1]
        return f"key {seed_key}[1].ladders.sufficiency.linear must be a list of 4 items"
    if damage == "ladder basis deleted":
        del sufficiency["LSTM"]
        return f"key {seed_key}[1].ladders.sufficiency.LSTM is missing"
    if damage == "reference network deleted":
        del results["ladders"]["bandit"]["seeds"][0]["references"]["recent events"]
        return f"key {seed_key}[0].references.recent events is missing"
    if damage == "unknown family of a config":
        results["facts"]["configs"]["tiger"]["env"] = "tigers"
        return "key results.facts.configs.tiger.env must be one of 'bandit', 'dependent-bandit'"
    if damage == "unknown dtype":
        results["facts"]["configs"]["tiger"]["dtype"] = "float16"
        return ("key results.facts.configs.tiger.dtype must be one of 'float32', 'float64', "
                "got 'float16'")
    if damage == "arm probe deleted":   # would drop the arm from the ladders silently
        del results["predictive"]["arms"]["tiger predictive"]["seeds"][2]["probe"]
        return ("key results.predictive.arms.tiger predictive.seeds[2].probe is missing (the "
                "tiger agent has ladders)")
    if damage == "arm of an unknown agent":
        results["predictive"]["arms"]["bandit bottleneck"]["agent"] = "bandits"
        return "key results.predictive.arms.bandit bottleneck.agent must be one of "
    if damage == "pair of the wrong length":
        results["facts"]["stages"][0] = ["train agents"]
        return "key results.facts.stages[0] must be a list of 2 items"
    raise KeyError(damage)


RESULTS_DAMAGE = ["section a list", "empty section", "nan wall time", "infinite curve point",
                  "empty seeds", "string for a number", "bool for an integer",
                  "missing deep key", "list for an object", "pair of the wrong length",
                  "known machine on an unknown prior", "known machine on the other prior",
                  "known machine deleted", "shift of an unknown agent", "ladder value null",
                  "ladder value NaN", "ladder value deleted", "ladder value an unknown record",
                  "ladder grade deleted", "ladder basis deleted", "reference network deleted",
                  "unknown family of a config", "unknown dtype", "arm probe deleted",
                  "arm of an unknown agent"]


@pytest.fixture
def run_folder(tmp_path):
    """A run's folder: the committed results.json and an earlier report to keep whole."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.json").write_bytes((REPO / "docs" / "results.json").read_bytes())
    (folder / "REPORT.md").write_text("the earlier report\n")
    (folder / "fig1_near_optimal.png").write_bytes(b"an earlier figure")
    return folder


@pytest.mark.parametrize("damage", RESULTS_DAMAGE)
def test_report_refuses_a_damaged_results_file_naming_the_file_and_the_key(cli, run_folder, damage):
    results = json.loads((run_folder / "results.json").read_text())
    message = damage_results(results, damage)
    (run_folder / "results.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match=re.escape(message)) as err:   # the Python API
        experiments.load_results(str(run_folder))
    assert str(run_folder / "results.json") in str(err.value)
    before = snapshot(run_folder.parent)
    done = cli("experiments.py", "report", run_folder, cwd=run_folder.parent)   # the CLI
    assert_refused(done, message, before, run_folder.parent)


@pytest.mark.parametrize("where", ["top", "inside a section"])
def test_deeply_nested_results_are_refused_by_a_depth_limit_not_a_recursion_error(cli, run_folder,
                                                                                   where):
    text = deep(100_000)
    if where == "inside a section":
        results = json.loads((run_folder / "results.json").read_text())
        results["facts"]["machine"]["cpu_count"] = "PLACEHOLDER"
        text = json.dumps(results).replace('"PLACEHOLDER"', deep(5000))
    (run_folder / "results.json").write_text(text)
    with pytest.raises(ValueError, match="nesting is deeper than 64 levels"):
        experiments.load_results(str(run_folder))
    before = snapshot(run_folder.parent)
    done = cli("experiments.py", "report", run_folder, cwd=run_folder.parent)
    assert_refused(done, "nesting is deeper than 64 levels", before, run_folder.parent)


@pytest.mark.parametrize("version", [None, 0, 3, 5, True, 4.0, "4"])
def test_a_results_file_of_another_schema_is_refused_saying_how_to_make_it_again(cli, run_folder,
                                                                                version):
    """A results file older than the schema's version (no "schema" key) or of another version
    is refused in one line naming the file and the command that makes it again: the report
    keeps no fallbacks for older files."""
    results = json.loads((run_folder / "results.json").read_text())
    if version is None:
        del results["schema"]
    else:
        results["schema"] = version
    (run_folder / "results.json").write_text(json.dumps(results))
    again = f"make it again with python3 experiments.py --out {run_folder}"
    with pytest.raises(ValueError, match=re.escape(again)) as err:
        experiments.load_results(str(run_folder))
    assert str(run_folder / "results.json") in str(err.value)
    assert ("no schema version" if version is None else f"of schema {version!r}") in str(err.value)
    before = snapshot(run_folder.parent)
    done = cli("experiments.py", "report", run_folder, cwd=run_folder.parent)
    assert_refused(done, again, before, run_folder.parent)


def test_the_committed_results_file_passes_the_check():
    """The check is not stricter than what experiments.py writes."""
    assert experiments.load_results(str(REPO / "docs"))["facts"]["seeds"] == 5


@pytest.mark.parametrize("command", ["evaluate", "train --resume"])
def test_a_deeply_nested_checkpoint_config_is_refused_in_one_line(cli, tmp_path, checkpoint,
                                                                  command):
    with np.load(checkpoint, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["config"] = np.array(deep(50_000))
    np.savez(tmp_path / "deep.npz", **arrays)
    before = snapshot(tmp_path)
    args = (["evaluate", "deep.npz"] if command == "evaluate" else
            ["train", "--resume", "--horizon", "6", "--out", "deep.npz"])
    done = cli("metarl.py", *args, cwd=tmp_path)
    assert_refused(done, "deep.npz: key 'config' is not a JSON object of settings: its nesting "
                         "is deeper than 64 levels", before, tmp_path)


# --- commands that write several files: all or nothing ---------------------------------------

@pytest.mark.slow
def test_a_report_whose_figure_cannot_be_written_leaves_the_earlier_report_whole(cli, run_folder):
    """fig3_shift.png is a folder: the figures drawn before it and REPORT.md used to be
    replaced already."""
    (run_folder / "fig3_shift.png").mkdir()
    before, listing = snapshot(run_folder.parent), sorted(p.name for p in run_folder.iterdir())
    done = cli("experiments.py", "report", run_folder, cwd=run_folder.parent)
    assert_refused(done, "fig3_shift.png: it is a folder; nothing was written", before,
                   run_folder.parent)
    assert sorted(p.name for p in run_folder.iterdir()) == listing   # no staging left behind
    (run_folder / "fig3_shift.png").rmdir()
    done = cli("experiments.py", "report", run_folder, cwd=run_folder.parent)
    assert done.returncode == 0, done.stderr
    assert (run_folder / "REPORT.md").read_bytes() == (REPO / "docs" / "REPORT.md").read_bytes()


def test_report_on_a_missing_folder_creates_nothing(cli, tmp_path):
    before = snapshot(tmp_path)
    done = cli("experiments.py", "report", tmp_path / "no-run" / "sub", cwd=tmp_path)
    assert_refused(done, "results.json does not exist", before, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("existing", [True, False])
def test_probe_plots_are_written_all_or_none(cli, tmp_path, checkpoint, existing, monkeypatch,
                                             capsys):
    """One figure cannot be written: the other figures used to be left behind, after the
    whole analysis. Into an existing folder whose bandit_splice.png is a folder (the CLI),
    and into a missing folder with a disk that fills at the splice figure (in process): the
    folders are as they were, the missing one still missing, no staging folder left."""
    plots = tmp_path / "plots"
    if existing:
        plots.mkdir()
        (plots / "bandit_splice.png").mkdir()
        (plots / "notes.txt").write_text("kept")
    before, listing = snapshot(tmp_path), sorted(str(p) for p in tmp_path.rglob("*"))
    if existing:
        done = cli("probe.py", checkpoint, "--episodes", "10", "--plot", plots, cwd=tmp_path)
        assert_refused(done, "bandit_splice.png: it is a folder; nothing was written", before,
                       tmp_path)
    else:
        def disk_full(*args):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(machines, "plot_splice", disk_full)
        code = probe.main([str(checkpoint), "--episodes", "10", "--plot",
                           str(plots / "a" / "b")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "No space left on device" in err[0], err
        assert snapshot(tmp_path) == before
    assert sorted(str(p) for p in tmp_path.rglob("*")) == listing


# --- refusals before the work -------------------------------------------------------------

def test_evaluate_refuses_a_bayes_dp_too_large_before_evaluating(cli, tmp_path, monkeypatch):
    """A 3-arm bandit at T = 100 trains, but its DP is too large: evaluate used to run its
    whole evaluation first (minutes, at 2,000,000 episodes). Now it never starts it."""
    hp = metarl.Config(arms=3, horizon=100, hidden=3, batch=2, updates=1, log_every=1)
    runs.train(hp, str(tmp_path / "b3.npz"), log=lambda line: None)
    before = snapshot(tmp_path)
    evaluations = []
    monkeypatch.setattr(runs, "evaluate", lambda *args, **kwargs: evaluations.append(args) or {})
    done = cli("metarl.py", "evaluate", "b3.npz", "--episodes", "2000000", cwd=tmp_path)
    assert evaluations == []   # refused before the evaluation, not after it
    assert_refused(done, "the Bayes-optimal DP for bandit with 3 arms and horizon 100 needs",
                   before, tmp_path)


@pytest.mark.parametrize("folds, episodes, fewest", [(2, 4, 6), (2, 5, 6), (4, 7, 8),
                                                     (5, 9, 10)])
def test_probe_refuses_episodes_and_folds_that_a_later_step_refuses(cli, tmp_path, checkpoint,
                                                                    folds, episodes, fewest):
    before = snapshot(tmp_path)
    done = cli("probe.py", checkpoint, "--episodes", episodes, "--folds", folds, "--plot",
               "figures", cwd=tmp_path)
    assert_refused(done, f"--episodes must be at least {fewest} with --folds {folds}", before,
                   tmp_path)


@pytest.mark.parametrize("env, horizon, shortest", [("bandit", 5, 6), ("dependent-bandit", 2, 6),
                                                    ("tiger", 2, 3), ("two-step", 3, 4)])
def test_probe_refuses_a_horizon_too_short_for_its_analyses(cli, tmp_path, env, horizon, shortest):
    """These used to fail after the decoding, in NumPy's words ("cannot reshape array of size
    0") or the inner folds'."""
    hp = metarl.recipe(env, horizon=horizon, hidden=3, batch=2, updates=1, log_every=1)
    runs.train(hp, str(tmp_path / "short.npz"), log=lambda line: None)
    before = snapshot(tmp_path)
    done = cli("probe.py", "short.npz", "--episodes", "20", "--json", cwd=tmp_path)
    assert_refused(done, f"the analyses need episodes of at least {shortest} steps on {env}",
                   before, tmp_path)
    with pytest.raises(ValueError, match=f"at least {shortest} steps"):
        probe.probe_agent(runs.load_checkpoint(str(tmp_path / "short.npz"))["params"], hp, 20, 0)


# --- internal wording no longer leaks ---------------------------------------------------------

def test_curve_of_a_run_with_no_update_says_so(cli, tmp_path, checkpoint):
    """It used to fail in np.convolve's words: "a cannot be empty"."""
    with np.load(checkpoint, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["update"], arrays["adam_k"] = np.array(0), np.array(0)
    arrays.update({f"history/{k}": np.zeros(0) for k in metarl.HISTORY})
    np.savez(tmp_path / "fresh.npz", **arrays)
    before = snapshot(tmp_path)
    done = cli("metarl.py", "curve", "fresh.npz", "--out", "out/c.png", cwd=tmp_path)
    assert_refused(done, "fresh.npz holds no update yet (saved at update 0)", before, tmp_path)
    assert not (tmp_path / "out").exists()


def test_an_infinite_loss_term_is_reported_as_infinite_not_as_nan(tmp_path, monkeypatch,
                                                                  capsys):
    """value_weight × L_V = 0 × inf makes the loss NaN: the message names the infinite term."""
    real = metarl.loss_and_gradients

    def infinite_value_loss(*args, **kwargs):
        stats, grads = real(*args, **kwargs)
        stats["value"], stats["loss"] = np.inf, 0.0 * np.inf
        return stats, grads

    monkeypatch.setattr(metarl, "loss_and_gradients", infinite_value_loss)
    code = runs.main(["train", "--horizon", "4", "--hidden", "3", "--batch", "2",
                        "--updates", "3", "--out", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "update 1: the value loss is inf, the loss is nan;" in err[0]
    assert not (tmp_path / "x.npz").exists()


# --- the analyses' Python API: checked before a kernel indexes (run again under
# NUMBA_BOUNDSCHECK=1 by test_bad_inputs_stay_refused_with_numba_bounds_checking) ------------

@pytest.fixture(scope="module")
def bandit_run():
    """A short bandit rollout and its parameters, for the machines' functions."""
    cfg = envs.make_config("bandit", horizon=6)
    params = metarl.init_params(envs.n_inputs(cfg), 4, 2, metarl.stream(0))
    return cfg, params, metarl.rollout(params, cfg, 5, metarl.stream(1))


@pytest.mark.parametrize("damage, message", [
    ("short bias", "params['b'] must have shape (16,), got (15,)"),
    ("long policy bias", "params['b_pi'] must have shape (2,), got (3,)"),
    ("nan weight", "params['U'] has 1 NaN or infinite entries"),
    ("missing array", "params must be a dict of the arrays W, U, b, W_pi, b_pi, w_V, b_V"),
    ("wide inputs", "params['W'] must have shape (5, 16), got (4, 16)"),
])
def test_kernel_inputs_agent_machine_checks_its_parameters(bandit_run, damage, message):
    """A bias of the wrong length reached the LSTM kernel, which read past its end."""
    cfg, params, tr = bandit_run
    params = {k: v.copy() for k, v in params.items()}
    x = tr.x
    if damage == "short bias":
        params["b"] = params["b"][:-1]
    elif damage == "long policy bias":
        params["b_pi"] = np.zeros(3)
    elif damage == "nan weight":
        params["U"][0, 0] = np.nan
    elif damage == "missing array":
        del params["w_V"]
    else:
        x = np.concatenate([x, x[..., :1]], axis=-1)
    with pytest.raises(ValueError, match=re.escape(message)):
        machines.agent_machine(params, SimpleNamespace(x=x))


@pytest.mark.parametrize("name, change, message", [
    ("bandit", "negative action", "actions must lie in [0, 2), got values from -1"),
    ("bandit", "action too large", "actions must lie in [0, 2), got values from 0 to 2"),
    ("bandit", "reward 0.5", "bandit rewards must be 0 or 1"),
    ("bandit", "nan state", "S has 1 NaN or infinite entries"),
    ("bandit", "state width", "S must have shape (any, 4), got (4, 3)"),
    ("tiger", "negative action", "actions must lie in [0, 3), got values from -1"),
    ("two-step", "obs width", "obs must have shape (1, 4, 2), got (1, 4, 3)"),
    ("two-step", "obs rows", "obs must have shape (1, 4, 2), got (1, 3, 2)"),
    ("two-step", "nan reward", "rewards has 1 NaN or infinite entries"),
    ("two-step", "float actions", "actions must be an array of integers"),
])
def test_kernel_inputs_machine_steps_check_states_and_events(name, change, message):
    cfg = envs.make_config(name, horizon=6)
    fam = machines.family(cfg)
    a, r, obs = history(cfg, T=1, B=4)
    a, r, obs = a[0].copy(), r[0].copy(), obs[0].copy()
    S = fam.prior(cfg, 4)
    if change == "negative action":
        a[1] = -1
    elif change == "action too large":
        a[1] = 2
    elif change == "reward 0.5":
        r[0] = 0.5
    elif change == "nan state":
        S[2, 0] = np.nan
    elif change == "state width":
        S = S[:, :3]
    elif change == "obs width":
        obs = np.concatenate([obs, obs[:, :1]], axis=1)
    elif change == "obs rows":
        obs = obs[:3]
    elif change == "nan reward":
        r[3] = np.nan
    elif change == "float actions":
        a = a.astype(float)
    with pytest.raises(ValueError, match=re.escape(message)):
        fam.step(cfg, S, a, r, obs)


@pytest.mark.parametrize("name", ["bandit", "tiger", "two-step"])
@pytest.mark.parametrize("t, S, message", [
    (-1, None, "t must be an integer in [0, 5], got -1"),
    (6, None, "t must be an integer in [0, 5], got 6"),
    (float("nan"), None, "t must be an integer in [0, 5], got nan"),
    (2.0, None, "t must be an integer in [0, 5], got 2.0"),
    (2, "nan", "S has 1 NaN or infinite entries"),
    (2, "-inf", "S has 1 NaN or infinite entries"),
])
def test_kernel_inputs_q_lookups_refuse_times_and_states_that_would_wrap(name, t, S, message):
    """A negative or NaN t and NaN states used to wrap around the tables (a count of −2⁶³)."""
    cfg = envs.make_config(name, horizon=6)
    fam = machines.family(cfg)
    states = fam.prior(cfg, 3)
    if S is not None:
        states[1, 0] = float(S)
    with pytest.raises(ValueError, match=re.escape(message)):
        fam.q(cfg, machines.reference(cfg), states, t)


@pytest.mark.parametrize("S, t, message", [
    (np.array([[np.nan, 1.0]]), 1, "S has 1 NaN or infinite entries"),
    (np.array([1.0, 1.0]), 2, "S must have shape (any, any), got (2,)"),
    (np.zeros((1, 2)), -3, "t must be an integer >= 0, got -3"),
    (np.zeros((1, 2)), 1.5, "t must be an integer >= 0, got 1.5"),
])
def test_kernel_inputs_nearest_counts_checks_its_state_and_step(S, t, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        machines.nearest_counts(S, t)


@pytest.mark.parametrize("function, args, message", [
    (belief.tie_split_policy, (np.array([[0.5, np.nan], [0.2, 0.1]]),),
     "q has 1 NaN or infinite entries"),
    (belief.tie_split_policy, (np.array([0.5, 0.2]),), "q must have shape (any, any), got (2,)"),
    (belief.agreement_rate, (np.array([[np.nan, 0.0]]), np.array([[0.5, 0.5]])),
     "q has 1 NaN or infinite entries"),
    (belief.agreement_rate, (np.zeros((2, 2)), np.ones((2, 3)) / 3),
     "p_agent must have shape (2, 2), got (2, 3)"),
    (belief.policy_kl, (np.array([[1.0, 0.0]]), np.array([[np.nan, 1.0]])),
     "p_agent has 1 NaN or infinite entries"),
    (belief.policy_kl, (np.array([[1.5, -0.5]]), np.array([[0.5, 0.5]])),
     "p_ref must hold probabilities in [0, 1], got values from -0.5 to 1.5"),
    (ridge.cross_validated_r2, (np.zeros((20, 2)), np.zeros((20, 1)), np.arange(20) % 10),
     "k must be an integer >= 2, got 1.5"),
])
def test_kernel_inputs_probe_behaviour_functions_check_their_arrays(function, args, message):
    """NaN action values used to give the tie-split policy a row of 0/0."""
    kwargs = {"rng": np.random.default_rng(0), "k": 1.5} if function is ridge.cross_validated_r2 else {}
    with pytest.raises(ValueError, match=re.escape(message)):
        function(*args, **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(episodes=9, k=5), "episodes must be at least 10 with k 5"),
    (dict(episodes=20, k=1), "k must be an integer in [2, 100], got 1"),
    (dict(episodes=20, k=5, simulation_episodes=6), "simulation_episodes must be at least 10"),
    (dict(episodes=20, k=5, splice_episodes=1), "splice_episodes must be an integer >= 2"),
    (dict(episodes=20, k=5, seed=-1), "seed must be an integer >= 0, got -1"),
])
def test_kernel_inputs_probe_agent_refuses_sizes_before_any_rollout(bandit_run, monkeypatch,
                                                                    kwargs, message):
    cfg, params, _ = bandit_run
    monkeypatch.setattr(metarl, "rollout", None)   # reached only if a check let the input by
    hp = metarl.Config(horizon=6, hidden=4)
    kwargs.setdefault("seed", 0)
    with pytest.raises(ValueError, match=re.escape(message)):
        probe.probe_agent(params, hp, **kwargs)


def test_kernel_inputs_that_are_valid_still_run(bandit_run):
    """Under NUMBA_BOUNDSCHECK=1 too: the checks refuse the bad inputs above, not good ones."""
    cfg, params, tr = bandit_run
    agent = machines.agent_machine(params, tr)
    assert np.allclose(agent.step(agent.states[2], 2), agent.states[3])
    bayes = machines.bayes_machine(cfg, tr, machines.reference(cfg))
    assert np.allclose(bayes.step(bayes.states[2], 2), bayes.states[3])
    q = machines.family(cfg).q(cfg, machines.reference(cfg), bayes.states[3], 3)
    assert q.shape == (5, 2) and np.isfinite(q).all()
    cfg2 = envs.make_config("two-step", horizon=6)
    a, r, obs = history(cfg2, T=6, B=4)
    two = machines.bayes_machine(cfg2, SimpleNamespace(a=a, r=r, obs=obs), None)
    assert np.allclose(two.step(two.states[1], 1), two.states[2])


@pytest.mark.slow
def test_bad_inputs_stay_refused_with_numba_bounds_checking(tmp_path):
    """The kernel-facing bad-input tests, and the env and belief ones, again with Numba's
    bounds checks on (set before Numba is imported, in a fresh interpreter; its own cache
    folder, so that the project's cached kernels are not recompiled): an input that reached
    a kernel and read out of bounds would fail there with an IndexError."""
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    done = run_python(  # -m "": by -k alone, whatever pytest.ini's default selection
        "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "", str(Path(__file__)),
        "-k", "kernel_inputs or env_step_refuses or recorded_histories or bayes_q_refuses "
              "or public_belief_update or rollout_refuses", cwd=REPO, env=env)
    assert done.returncode == 0, done.stdout[-3000:]
    assert re.search(r"\d+ passed", done.stdout) and "failed" not in done.stdout
