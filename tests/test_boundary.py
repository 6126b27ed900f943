"""No input may crash, poison or corrupt a run: every class of bad input is refused at the
boundary with one line on stderr, exit status 2 (not a signal) and no file written or changed."""
import dataclasses
import hashlib
import json
import re
import subprocess
import sys
from fractions import Fraction
from functools import partial
from pathlib import Path

import numpy as np
import pytest

import belief
import envs
import machines
import metarl
import probe
import twostep

REPO = Path(__file__).resolve().parent.parent
HUGE = "1000000000000000"   # 1e15: more memory than any machine has, for any per-item size


def run(script, *args, cwd):
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


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


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real checkpoint of a tiny run, to corrupt one key at a time."""
    path = tmp_path_factory.mktemp("ckpt") / "good.npz"
    hp = metarl.Config(horizon=6, hidden=4, batch=4, updates=3, save_every=1, log_every=3)
    metarl.train(hp, str(path), log=lambda line: None)
    return path


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
def test_baselines_refuses_bad_flags(tmp_path, args, message):
    before = snapshot(tmp_path)
    done = run("belief.py", "baselines", "--horizon", "10", "--episodes", "50", *args,
               cwd=tmp_path)
    assert_refused(done, message, before, tmp_path)


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
def test_train_refuses_bad_flags_before_writing_anything(tmp_path, args, message):
    before = snapshot(tmp_path)
    done = run("metarl.py", "train", *args, "--out", "run.npz", cwd=tmp_path)
    assert_refused(done, message, before, tmp_path)


@pytest.mark.parametrize("command, args, message", [
    ("evaluate", ["--episodes", "0"], "--episodes must be an integer >= 1, got 0"),
    ("evaluate", ["--episodes", HUGE], "needs about"),
    ("evaluate", ["--seed", "-2"], "--seed must be an integer >= 0, got -2"),
    ("probe", ["--episodes", HUGE], "needs about"),
    ("probe", ["--folds", "1"], "--folds must be an integer in [2, 100], got 1"),
    ("probe", ["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
])
def test_evaluate_and_probe_refuse_bad_sizes(tmp_path, checkpoint, command, args, message):
    before = snapshot(tmp_path)
    if command == "probe":
        done = run("probe.py", checkpoint, *args, "--plot", "figures", cwd=tmp_path)
    else:
        done = run("metarl.py", command, checkpoint, *args, cwd=tmp_path)
    assert_refused(done, message, before, tmp_path)


# --- output paths: unwritable, a folder that cannot be made, a file where a folder must be ----

@pytest.fixture
def blocked(tmp_path):
    """A path whose folder cannot be made, even by root: its parent is a regular file."""
    (tmp_path / "a-file").write_text("not a folder")
    return tmp_path / "a-file" / "sub"


@pytest.mark.parametrize("cli", ["train", "curve", "probe", "experiments"])
def test_unwritable_outputs_are_refused_before_any_work(tmp_path, checkpoint, blocked, cli):
    before = snapshot(tmp_path)
    done = {"train": lambda: run("metarl.py", "train", "--updates", "2", "--out",
                                 blocked / "x.npz", cwd=tmp_path),
            "curve": lambda: run("metarl.py", "curve", checkpoint, "--out", blocked / "c.png",
                                 cwd=tmp_path),
            "probe": lambda: run("probe.py", checkpoint, "--episodes", "20", "--plot", blocked,
                                 cwd=tmp_path),
            "experiments": lambda: run("experiments.py", "--quick", "--out", blocked,
                                       cwd=tmp_path)}[cli]()
    assert_refused(done, "is a file, not a folder", before, tmp_path)


def test_an_output_under_proc_is_refused(tmp_path):
    before = snapshot(tmp_path)
    done = run("metarl.py", "train", "--updates", "2", "--out", "/proc/no-such/x.npz",
               cwd=tmp_path)
    assert_refused(done, "cannot write in /proc/no-such", before, tmp_path)


def test_train_refuses_a_folder_as_its_checkpoint(tmp_path):
    (tmp_path / "runs").mkdir()
    before = snapshot(tmp_path)
    done = run("metarl.py", "train", "--updates", "2", "--out", "runs", cwd=tmp_path)
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
        metarl.load_checkpoint(str(tmp_path / "bad.npz"))
    assert message in str(err.value)


@pytest.mark.parametrize("damage", ["nan-param", "config-type", "adam-count"])
def test_evaluate_refuses_a_damaged_checkpoint_through_the_cli(tmp_path, checkpoint, damage):
    with np.load(checkpoint, allow_pickle=False) as z:
        arrays, message = corrupt({k: z[k] for k in z.files}, damage)
    np.savez(tmp_path / "bad.npz", **arrays)
    before = snapshot(tmp_path)
    assert_refused(run("metarl.py", "evaluate", "bad.npz", cwd=tmp_path), message, before,
                   tmp_path)


@pytest.mark.parametrize("kind", ["truncated", "text", "folder", "npy", "pickle", "empty"])
def test_files_that_are_not_checkpoints_are_refused(tmp_path, checkpoint, kind):
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
    done = run("metarl.py", "evaluate", path, cwd=tmp_path)
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

    real_save = metarl.save_checkpoint
    monkeypatch.setattr(metarl, "loss_and_gradients", poisoned)
    monkeypatch.setattr(metarl, "save_checkpoint", recording_save)
    with pytest.raises(ValueError, match=r"update 5: the loss is nan, the grad norm is nan; "
                                         r"training stopped before this update changed the "
                                         r"parameters .*holds update 4"):
        metarl.train(hp, out, log=lambda line: None)
    assert hashlib.sha256(Path(out).read_bytes()).hexdigest() == saved[-1]
    assert metarl.load_checkpoint(out)["update"] == 4
    monkeypatch.undo()
    resumed = metarl.train(hp, out, resume=True, log=lambda line: None)
    straight = metarl.train(hp, None, log=lambda line: None)
    for k in straight:
        assert np.array_equal(resumed[k], straight[k])


def test_the_cli_reports_a_non_finite_update_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(metarl, "clip_by_global_norm", lambda grads, max_norm: float("inf"))
    code = metarl.main(["train", "--horizon", "4", "--hidden", "3", "--batch", "2",
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
        metarl.save_checkpoint(str(tmp_path / "x.npz"), hp, params, metarl.adam_init(params), 0,
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


def test_the_dp_error_names_a_state_count_beyond_float_range(tmp_path):
    before = snapshot(tmp_path)
    done = run("belief.py", "baselines", "--arms", "100", "--horizon", "10000",
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

def one_armed_step(env, actions, u):
    """Arm 0 pays 1 with the task's p, arm 1 pays 0.5 for sure (a one-armed bandit)."""
    return np.where(actions == 0, (u[:, 0] < env.tasks[:, 0]).astype(float), 0.5)


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
        sample_tasks=envs.beta_tasks, step=one_armed_step, check_outcomes=one_armed_outcomes))
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
    params = metarl.train(hp, None, log=lambda line: None)
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
    if-chains: `if cfg.name == "tiger"` and the like are gone from the modules."""
    for module in ("envs.py", "belief.py", "metarl.py", "probe.py", "machines.py", "report.py"):
        text = (REPO / module).read_text()
        for name in envs.FAMILIES:
            assert f'== "{name}"' not in text and f'in ("{name}"' not in text, (module, name)
        assert "cfg.name ==" not in text and "cfg.name in" not in text, module


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
