"""Each command accepts only what applies, and one command writes an output at a time.

metarl.py: --resume refuses a run of another objective; a flag the run's objective does not
read is refused, naming it; curve refuses runs of different recipes; a checkpoint member not
stored as an array is refused in one line. experiments.py: report refuses the run's flags;
--readme that cannot be written is refused before REPORT.md is touched. Outputs: a second
writer of a checkpoint is refused while the first holds it, and a crashed writer leaves no
lock behind.
"""
import fcntl
import os
import shutil
import zipfile

import pytest

from boundary import one_writer

TINY = ["--horizon", "6", "--hidden", "3", "--batch", "2", "--updates", "2", "--log-every", "2"]


@pytest.mark.parametrize("command, args, message", [
    ("distill", ["--resume"], "is a run of objective rl2, this command continues distill runs"),
    ("train", ["--resume", "--objective", "distill"], "is a run of objective rl2"),
])
def test_resume_refuses_a_run_of_another_objective(cli, tmp_path, tiny_checkpoint, command,
                                                   args, message):
    run = tmp_path / "run.npz"
    shutil.copy(tiny_checkpoint, run)
    before = run.read_bytes()
    done = cli("metarl.py", command, *args, "--out", run)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert run.read_bytes() == before


@pytest.mark.parametrize("command, flag, value, objective", [
    ("train", "--belief-weight", "2", "distill"),
    ("distill", "--gamma", "0.9", "rl2"),
    ("distill", "--entropy-start", "0.1", "rl2"),
    ("distill", "--adv-norm", "true", "rl2"),
    ("train", "--objective distill --value-weight", "1", "rl2"),
])
def test_a_flag_the_objective_does_not_read_is_refused_naming_it(cli, tmp_path, command, flag,
                                                                  value, objective):
    *extra, flag = flag.split()
    done = cli("metarl.py", command, *TINY, *extra, flag, value, "--out", tmp_path / "x.npz")
    assert done.returncode == 2, done.stderr
    assert f"{flag} applies to --objective {objective} only" in done.stderr
    assert not (tmp_path / "x.npz").exists()


def test_curve_refuses_runs_of_different_recipes(cli, tmp_path, tiny_checkpoint):
    other = tmp_path / "other.npz"
    assert cli("metarl.py", "train", *TINY, "--lr", "0.001", "--out", other).returncode == 0
    done = cli("metarl.py", "curve", tiny_checkpoint, other, "--out", tmp_path / "c.png")
    assert done.returncode == 2 and "a learning curve averages the seeds of one recipe" in done.stderr
    assert not (tmp_path / "c.png").exists()


def test_curve_accepts_seeds_of_one_recipe(cli, tmp_path):
    paths = [tmp_path / f"s{seed}.npz" for seed in (0, 1)]
    for seed, path in enumerate(paths):
        assert cli("metarl.py", "train", *TINY, "--seed", seed, "--out", path).returncode == 0
    done = cli("metarl.py", "curve", *paths, "--out", tmp_path / "c.png", "--episodes", "20")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_checkpoint_member_that_is_not_an_array_is_refused_in_one_line(cli, tmp_path,
                                                                         tiny_checkpoint):
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(tiny_checkpoint) as z, zipfile.ZipFile(bad, "w") as out:
        for name in z.namelist():   # param/U stored empty and without .npy: raw bytes
            out.writestr("param/U" if name == "param/U.npy" else name,
                         b"" if name == "param/U.npy" else z.read(name))
    done = cli("metarl.py", "evaluate", bad, "--episodes", "5")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "key 'param/U' is not a stored array" in done.stderr


def test_a_second_writer_of_a_checkpoint_is_refused_while_the_first_holds_it(cli, tmp_path):
    out = tmp_path / "run.npz"
    with one_writer(str(out), "--out"):   # the first command, mid-run
        done = cli("metarl.py", "train", *TINY, "--out", out)
        assert done.returncode == 2 and "is being written by another command" in done.stderr
        assert not out.exists()
    assert not (tmp_path / "run.npz.lock").exists()
    assert cli("metarl.py", "train", *TINY, "--out", out).returncode == 0   # then it may


def test_a_lock_file_left_by_a_crash_holds_no_lock(cli, tmp_path):
    """A killed writer leaves its .lock file, but not its flock (the OS drops it with the
    process): the next writer goes ahead and removes the file."""
    out = tmp_path / "run.npz"
    (tmp_path / "run.npz.lock").write_text("")
    assert cli("metarl.py", "train", *TINY, "--out", out).returncode == 0
    assert out.exists() and not (tmp_path / "run.npz.lock").exists()


def test_the_lock_is_an_flock_other_processes_see(tmp_path):
    path = str(tmp_path / "folder")
    with one_writer(path, "--out"):
        fd = os.open(path + ".lock", os.O_RDWR)
        with pytest.raises(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)


@pytest.mark.parametrize("flag", [["--seeds", "3"], ["--quick"], ["--workers", "1"],
                                  ["--out", "elsewhere"]])
def test_report_refuses_the_flags_of_a_run(cli, tmp_path, flag):
    done = cli("experiments.py", "report", tmp_path, *flag)
    assert done.returncode == 2
    assert f"{flag[0]} does not apply to the report command" in done.stderr


def test_report_refuses_an_unwritable_readme_before_replacing_report_md(cli, tiny_pipeline,
                                                                        tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(tiny_pipeline.out, folder)
    before = (folder / "REPORT.md").read_bytes()
    readme = tmp_path / "README.md"
    readme.write_text("<!-- findings: generated by `python3 experiments.py report docs --readme "
                      "README.md` -->\n<!-- end of findings -->\n")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the README's folder should be")
    for target, named in ((blocked / "README.md", "README.md"), (tmp_path / "adir", "adir")):
        if target.name == "adir":
            target.mkdir()
        done = cli("experiments.py", "report", folder, "--readme", target)
        assert done.returncode == 2 and named in done.stderr and ".tmp-" not in done.stderr
        assert (folder / "REPORT.md").read_bytes() == before


@pytest.mark.slow
def test_numba_caches_written_by_any_command_load_in_every_later_one(tmp_path):
    """The order that once broke a checkout: a module's CLI (belief.py, whose kernels live in
    the script itself), a training run, the quick pipeline (spawned workers, whose __main__ is
    the parent's script), then the probe, all in one fresh copy sharing one __pycache__.
    Every command runs its module as the module itself, so no cache entry names __main__ or
    __mp_main__, and each later command loads what the earlier ones cached."""
    from conftest import REPO, run_python
    copy = tmp_path / "checkout"
    copy.mkdir()
    for path in REPO.glob("*.py"):
        shutil.copy(path, copy / path.name)
    steps = [["belief.py", "baselines", "--episodes", "50"],   # kernels of the script itself
             ["metarl.py", "train", *TINY, "--out", "run.npz"],
             ["experiments.py", "--quick", "--out", "quick"],
             ["probe.py", "run.npz", "--episodes", "40", "--json"]]
    for step in steps:
        done = run_python(*step, cwd=copy)
        assert done.returncode == 0, (step, done.stderr[-2000:])
    caches = list((copy / "__pycache__").glob("*.nbi")) + list((copy / "__pycache__").glob("*.nbc"))
    assert caches
    naming_main = [p.name for p in caches if b"__main__" in p.read_bytes()
                   or b"__mp_main__" in p.read_bytes()]
    assert naming_main == []


def test_a_second_main_job_or_report_on_one_folder_is_refused_while_the_first_runs(cli, tmp_path):
    out = tmp_path / "run"
    with one_writer(str(out), "--out"):   # the first command, mid-run
        done = cli("experiments.py", "--quick", "--out", out)
        assert done.returncode == 2 and "is being written by another command" in done.stderr
    assert not (tmp_path / "run.lock").exists()


def test_report_holds_its_folder_while_it_writes(cli, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(os.path.join(os.path.dirname(__file__), "..", "docs"), folder)
    with one_writer(str(folder), "report"):
        done = cli("experiments.py", "report", folder)
        assert done.returncode == 2 and "is being written by another command" in done.stderr
