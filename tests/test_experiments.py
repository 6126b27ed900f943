"""experiments.py: the quick run writes a complete report, `report DIR` rewrites it byte for
byte from results.json, bad arguments fail cleanly, and the numbers depend on the seeds
alone, not on the number of worker processes.

The pipeline is the session's one tiny run (conftest.tiny_pipeline: the --quick command line
on cut budgets); its tests are slow. The command line is called in this process, but for the
smoke tests that run experiments.py as a script."""
import json
import math
import re
import shutil

import numpy as np
import pytest

import envs
import experiments
import ladders
from conftest import run_script

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
NOT_A_NUMBER = re.compile(r"\b(?:nan|inf|infinity)\b", re.IGNORECASE)
CELL_SEPARATOR = re.compile(r"(?<!\\)\|")   # an escaped \| is text inside a cell
OUTCOMES = ("held", "refuted", "inconclusive", "cannot decide")
# a calibrated test's outcome per env (report.across_envs): "held (bandit); cannot decide (tiger)"
CALIBRATED_OUTCOME = re.compile(r"^(?:(?:held|refuted|inconclusive|cannot decide) \([a-z, -]+\)(?:; |$))+$")


def markdown_tables(text):
    """Every markdown table of `text` as a list of rows (lists of cell strings), header first."""
    tables, rows = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            if not re.fullmatch(r"\|(?:-+\|)+", line):   # the header separator row
                rows.append([c.strip() for c in CELL_SEPARATOR.split(line)[1:-1]])
        elif rows:
            tables.append(rows)
            rows = []
    return tables


@pytest.fixture
def quick_run(tiny_pipeline):
    assert tiny_pipeline.returncode == 0, tiny_pipeline.stderr[-3000:]
    return tiny_pipeline.out, tiny_pipeline


@pytest.mark.slow
def test_quick_run_writes_the_report_and_every_figure_it_references(quick_run):
    out, done = quick_run
    report = (out / "REPORT.md").read_text(encoding="utf-8")
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(figures) >= 5          # §1, §2 (two or more), §3, §4
    for name in figures:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, name
    for stage in ("train agents", "1 agents act", "2 hidden states", "3 failures", "4 model-based"):
        assert f"stage {stage}" in done.stdout   # one progress line per stage


@pytest.mark.slow
def test_quick_report_tables_hold_only_finite_numbers(quick_run):
    out, _ = quick_run
    tables = markdown_tables((out / "REPORT.md").read_text(encoding="utf-8"))
    assert len(tables) >= 12
    numbers = 0
    for table in tables:
        width = len(table[0])
        for row in table:
            assert len(row) == width, row   # an unescaped | would split a cell
            for cell in row:
                assert not NOT_A_NUMBER.search(cell), cell
                for token in NUMBER.findall(cell):
                    assert math.isfinite(float(token)), cell
                    numbers += 1
    assert numbers > 200


@pytest.mark.slow
def test_quick_report_headline_has_the_profile_and_every_outcome_and_says_it_is_quick(quick_run):
    """The headline: the agent's profile per laddered family (a position and an outcome per
    property, and the seed paper's claim), then every other claim's outcome; the sections
    give each claim's criterion and its measurement with its n."""
    out, _ = quick_run
    text = (out / "REPORT.md").read_text(encoding="utf-8")
    profile, outcomes = markdown_tables(text)[:2]
    assert profile[0][0] == "env" and len(profile[0]) == 2 + len(ladders.LADDERS)
    results = json.loads((out / "results.json").read_text())
    laddered = [env for env, lad in results["ladders"].items() if lad["seeds"]]
    assert [row[0] for row in profile[1:]] == laddered
    for row in profile[1:]:
        assert all(cell.rsplit("→ ", 1)[1] in OUTCOMES for cell in row[1:-1]), row
        assert row[-1].strip("*") in OUTCOMES
    assert outcomes[0] == ["claim", "outcome"] and len(outcomes) >= 1 + 4
    assert all(row[1].strip("*") in OUTCOMES or CALIBRATED_OUTCOME.match(row[1].strip("*"))
               for row in outcomes[1:])
    claim_rows = [row for table in markdown_tables(text)[2:] if table[0][:2] == ["claim",
                                                                                 "criterion"]
                  for row in table[1:]]
    assert len(claim_rows) >= len(outcomes) - 1 + len(ladders.LADDERS)
    assert all("n = 2" in row[2] for row in claim_rows)   # every measurement states its n
    assert "budgets are far too small for verdicts" in text.split("## Headline")[0]
    assert results["facts"]["quick"] is True and results["facts"]["seeds"] == 2


@pytest.mark.slow
def test_report_rewrites_report_md_byte_for_byte_from_results_json(quick_run, tmp_path):
    """As a user runs it: experiments.py as a script, in a fresh interpreter."""
    out, _ = quick_run
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "results.json").write_bytes((out / "results.json").read_bytes())
    done = run_script("experiments.py", "report", str(copy))
    assert done.returncode == 0, done.stderr
    assert (copy / "REPORT.md").read_bytes() == (out / "REPORT.md").read_bytes()
    for name in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (copy / "REPORT.md").read_text()):
        assert (copy / name).read_bytes().startswith(PNG_SIGNATURE), name


@pytest.mark.parametrize("content, message", [
    (None, "results.json does not exist"),
    ("{not json", "is not a readable results file"),
    ('{"facts": {}}', "has no schema version"),
    ('{"schema": %d, "facts": {}}' % experiments.SCHEMA,
     "missing near_optimal, belief_states, ladders, shift, two_step"),
])
def test_report_refuses_a_folder_without_a_valid_results_file(cli, tmp_path, content, message):
    if content is not None:
        (tmp_path / "results.json").write_text(content)
    before = sorted(p.name for p in tmp_path.iterdir())
    done = cli("experiments.py", "report", str(tmp_path))
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.slow
def test_report_refuses_an_incomplete_results_file_and_leaves_the_earlier_report_whole(
        cli, quick_run, tmp_path):
    """A results.json that lacks a key deep inside (another version's) fails while the figures
    are being drawn: the earlier REPORT.md and figures must stay as they were."""
    out, _ = quick_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    results = json.loads((copy / "results.json").read_text())
    del results["facts"]["learning_curves"]
    (copy / "results.json").write_text(json.dumps(results))
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    done = cli("experiments.py", "report", str(copy))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "lacks what the report reads" in done.stderr and "learning_curves" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0"], "--seeds must be an integer in [1, 100], got 0"),
    (["--workers", "0"], "--workers must be an integer in [1, 64], got 0"),
    (["--quick", "--workers", "-3"], "--workers must be an integer in [1, 64], got -3"),
    (["--seeds", "two"], "invalid int value"),
])
def test_bad_arguments_give_one_clear_error_and_no_traceback(cli, tmp_path, args, message):
    done = cli("experiments.py", *args, "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_the_script_refuses_bad_arguments_in_one_line(tmp_path):
    """The smoke test of experiments.py as a user runs it: a fresh interpreter, exit status 2
    and one line, nothing written."""
    done = run_script("experiments.py", "--seeds", "0", "--out", tmp_path / "out")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "experiments.py: error: --seeds must be an integer in [1, 100], got 0"]
    assert done.stdout == "" and not (tmp_path / "out").exists()


def test_an_output_path_that_is_a_file_is_refused(cli, tmp_path):
    (tmp_path / "report").write_text("not a folder")
    done = cli("experiments.py", "--quick", "--out", str(tmp_path / "report"))
    assert done.returncode == 2 and "is a file" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_same_seeds_give_the_same_numbers_whatever_the_number_of_workers(tiny_pipeline,
                                                                         tmp_path):
    """The session's tiny run (2 workers) and the same run on 1 worker: every number of
    results.json equal, bit for bit (JSON keeps a float's every bit), but the run's facts
    (wall times, the command)."""
    assert tiny_pipeline.workers == 2 and tiny_pipeline.returncode == 0
    experiments.run_experiments(tiny_pipeline.configs, tiny_pipeline.arm_configs,
                                tiny_pipeline.scale, 1, str(tmp_path),
                                command="test", quick=True)
    one = json.loads((tmp_path / "results.json").read_text())
    numbers = [{k: v for k, v in results.items() if k != "facts"}
               for results in (one, tiny_pipeline.results)]
    assert numbers[0] == numbers[1]


def test_snapshots_are_log_spaced_from_the_first_to_the_last_update():
    assert experiments.snapshot_points(20000, 6) == [1, 7, 53, 381, 2759, 20000]
    assert experiments.snapshot_points(3, 6) == [1, 2, 3]




def test_softmax_actions_are_drawn_with_the_softmax_probabilities():
    z = np.log(np.array([[0.2, 0.5, 0.3]]).repeat(40000, axis=0))
    a = experiments.softmax_actions(z, np.random.default_rng(0))
    freq = np.bincount(a, minlength=3) / len(a)
    assert np.abs(freq - [0.2, 0.5, 0.3]).max() < 0.01   # tolerance: > 4 SE at n = 40,000


def test_the_matched_temperature_reproduces_the_target_regret_and_orders_the_policies():
    """On a short bandit: the Bayes-optimal regret at τ → 0, the matched τ's regret equals the
    target within the matching runs' noise, and a larger target needs a larger τ."""
    cfg = envs.make_config("bandit", horizon=10)
    n = 4000
    bayes = experiments.bayes_with_model(cfg, cfg, n, 0)["pseudo_regret"]["mean"]
    taus = [experiments.matched_temperature(cfg, bayes + extra, n) for extra in (0.1, 0.3)]
    assert taus[0] < taus[1]
    for tau, extra in zip(taus, (0.1, 0.3)):
        r = experiments.bayes_with_model(cfg, cfg, n, 0, tau)["pseudo_regret"]["mean"]
        assert abs(r - (bayes + extra)) < 0.02   # the bisection's bracket (≈ 1 % in τ), same episodes
    assert experiments.matched_temperature(cfg, 0.0, n) == pytest.approx(
        experiments.TAU_RANGE[0], rel=0.02)   # below the Bayes regret: the low end
