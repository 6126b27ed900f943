"""What several test files share: command lines called in this process (a fresh Python costs
seconds; a refusal is one function call), one real script run per command line, one tiny
checkpoint and one tiny pipeline run, each made once per session."""
import ast
import contextlib
import importlib
import io
import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

# One BLAS thread, as metarl.py's command line and experiments.py's workers have (README,
# "Speed"): with two on 2 cores, OpenBLAS spin-waits for a core whenever another process is
# busy, and a panel seed's small eigendecompositions took 22 s instead of 0.3 s (measured).
# Set before NumPy loads (pytest reads this file before any test module); a value set wins.
for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# the module whose main(argv) is each script's command line (metarl.py's lives in runs.py)
MAINS = {"belief.py": "belief", "experiments.py": "experiments", "metarl.py": "runs",
         "probe.py": "probe"}


# ------------------------------------------------------------------------------------------
# The slow tests: marked @pytest.mark.slow, and any test that reads the pipeline run
# ------------------------------------------------------------------------------------------
SLOW_FIXTURES = {"tiny_pipeline"}   # minutes of set-up, whichever test asks first


@pytest.hookimpl(tryfirst=True)   # before pytest's own -m selection reads the marks
def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


# ------------------------------------------------------------------------------------------
# Command lines
# ------------------------------------------------------------------------------------------
@pytest.fixture
def cli(capsys, monkeypatch):
    """cli(script, *args, cwd=None): the script's main(argv) run in this process, in folder
    cwd, with what subprocess.run would return: returncode (2 for a refusal, also argparse's
    own), stdout and stderr."""
    def run(script, *args, cwd=None):
        main = importlib.import_module(MAINS[script]).main
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()   # only this command's output
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit:   # argparse refuses a flag by exiting
            code = exit.code
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)
    return run


def run_python(*args, cwd=REPO, env=None):
    """`python3 args…` in a fresh interpreter, with no time limit. It runs in a process group
    of its own, killed on the way out, so that nothing it started (experiments.py's worker
    processes) outlives the test, even an interrupted one."""
    command = [sys.executable, *map(str, args)]
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def run_script(script, *args, cwd=REPO):
    """`python3 script args…` as a user runs it: the smoke test of a command line."""
    return run_python(REPO / script, *args, cwd=cwd)


# ------------------------------------------------------------------------------------------
# One tiny checkpoint
# ------------------------------------------------------------------------------------------
TINY_CHECKPOINT = dict(env="bandit", horizon=6, hidden=4, batch=4, updates=3, save_every=1,
                       log_every=3)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A real checkpoint of a 3-update bandit run (T = 6, 4 units): a file to read, corrupt a
    copy of, or hand to a command line; never to change (every test shares it)."""
    import metarl
    import runs
    path = tmp_path_factory.mktemp("tiny-checkpoint") / "good.npz"
    runs.train(metarl.Config(**TINY_CHECKPOINT), str(path), log=lambda line: None)
    written = path.read_bytes()
    yield path
    assert path.read_bytes() == written, "a test changed the shared checkpoint"


# ------------------------------------------------------------------------------------------
# One tiny pipeline run
# ------------------------------------------------------------------------------------------
def tiny_configs(seeds, arms=False):
    """experiments.py --quick's agents (or §5's arms) cut to a few updates and tiny networks
    (8 units; the bottleneck arm keeps its 6): seconds, not minutes."""
    import experiments
    return {name: [replace(hp, updates=12, batch=8, hidden=min(hp.hidden, 8), log_every=12)
                   for hp in hps]
            for name, hps in experiments.agent_configs(seeds, True, arms).items()}


def tiny_scale():
    import experiments
    return experiments.Scale(eval_steps=800, baseline_steps=1200, probe_episodes=20,
                             simulation_episodes=20, splice_episodes=20, snapshot_episodes=20,
                             snapshots=3, stay_episodes=30, grid_episodes=20, panel_seeds=2,
                             ladder_seeds=2, map_steps=20)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """`experiments.py --quick --seeds 2 --workers 2 --out DIR` run through experiments.main in
    this process, its agents and measurements cut to tiny sizes: every stage, results.json,
    REPORT.md and its figures. out, stdout (the progress lines), stderr, the exit code,
    results (results.json read back), and the configs, scale and workers, to run the same
    pipeline again."""
    import experiments
    out = tmp_path_factory.mktemp("tiny-pipeline")
    configs, arm_configs, scale, workers = tiny_configs(2), tiny_configs(2, True), tiny_scale(), 2
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout), \
            contextlib.redirect_stderr(stderr):
        # the workers receive each job's config and scale as arguments: the cut reaches them
        patch.setattr(experiments, "agent_configs",
                      lambda seeds, quick, arms=False: arm_configs if arms else configs)
        patch.setattr(experiments, "QUICK_SCALE", scale)
        code = experiments.main(["--quick", "--seeds", "2", "--workers", str(workers),
                                 "--out", str(out)])
    return SimpleNamespace(out=out, stdout=stdout.getvalue(), stderr=stderr.getvalue(),
                           returncode=code,
                           results=json.loads((out / "results.json").read_text()) if code == 0
                           else None, configs=configs, arm_configs=arm_configs, scale=scale,
                           workers=workers)


# ------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------
@pytest.fixture
def drawn(monkeypatch):
    """Every figure the code under test writes, in order, as (figure, dpi it was written at):
    what was plotted, to be read back beside the file."""
    from matplotlib.figure import Figure
    figures, savefig = [], Figure.savefig

    def recording_savefig(fig, *args, **kwargs):
        dpi = kwargs.get("dpi", "figure")
        figures.append(SimpleNamespace(figure=fig, dpi=fig.dpi if dpi == "figure" else dpi))
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording_savefig)
    return figures


def assert_png_shows_the_figure(path, drawing):
    """The file decodes as a PNG of the drawn figure's size, and is not one flat colour: it
    holds a drawing, not only a valid header."""
    from matplotlib.image import imread
    image = imread(str(path))   # reads PNG bytes, whatever the file's name
    width, height = drawing.figure.get_size_inches() * drawing.dpi
    assert image.ndim == 3 and image.shape[2] in (3, 4), image.shape
    assert abs(image.shape[0] - height) <= 1 and abs(image.shape[1] - width) <= 1, (
        image.shape, width, height)
    rgba = np.round(image * 255).astype(np.uint8)   # imread gives floats in [0, 1]
    if rgba.shape[2] == 3:
        rgba = np.concatenate([rgba, np.full(rgba.shape[:2] + (1,), 255, np.uint8)], axis=2)
    pixels = np.ascontiguousarray(rgba).view(np.uint32).ravel()   # one number per colour
    colours, counts = np.unique(pixels, return_counts=True)
    assert len(colours) > 20, f"{path}: {len(colours)} colours"
    # a plot leaves 6-35 % of its pixels off the background colour (measured on probe's four)
    assert counts.max() < 0.98 * len(pixels), f"{path}: almost all one colour"


def plot_axes(fig):
    """The figure's axes that hold plots (not its colour bars)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


# ------------------------------------------------------------------------------------------
# Imports between the project's modules (the import-direction and module-map tests)
# ------------------------------------------------------------------------------------------
def is_main_guard(node):
    """`if __name__ == "__main__":`"""
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__" and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)
            and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


def imported_names(node):
    """The top-level modules that one node imports: import x.y, from x import y, and the
    dynamic importlib.import_module("x") and __import__("x")."""
    if isinstance(node, ast.Import):
        return {alias.name.split(".")[0] for alias in node.names}
    if isinstance(node, ast.ImportFrom):
        return {node.module.split(".")[0]} if node.level == 0 and node.module else set()
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        name = getattr(node.func, "attr", getattr(node.func, "id", None))
        if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
            return {node.args[0].value.split(".")[0]}
    return set()


def project_imports(source, modules):
    """The modules of `modules` that `source` imports anywhere, inside functions too (a
    deferred import closes a cycle as surely as one at the top), but in the body of
    `if __name__ == "__main__":`, where a script may import the module that holds its
    command line."""
    found, todo = set(), [ast.parse(source)]
    while todo:
        node = todo.pop()
        found |= imported_names(node)
        if is_main_guard(node):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))
    return found & modules
