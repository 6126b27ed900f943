"""experiments.py: the quick run writes a complete report, bad arguments fail cleanly, and the
numbers depend on the seeds alone, not on the number of worker processes."""
import json
import math
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import experiments

REPO = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
NOT_A_NUMBER = re.compile(r"\b(?:nan|inf|infinity)\b", re.IGNORECASE)
CELL_SEPARATOR = re.compile(r"(?<!\\)\|")   # an escaped \| is text inside a cell
OUTCOMES = ("held", "did not hold", "undecided (needs ≥ 2 seeds)")


def run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "experiments.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


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


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick")
    done = run_cli("--quick", "--out", str(out), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


def test_quick_run_writes_the_report_and_every_figure_it_references(quick_run):
    out, done = quick_run
    report = (out / "REPORT.md").read_text(encoding="utf-8")
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(figures) >= 5          # §1, §2 (two), §3, §4
    for name in figures:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, name
    for stage in ("train agents", "1 agents act", "2 hidden states", "3 failures", "4 model-based"):
        assert f"stage {stage}" in done.stdout   # one progress line per stage


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


def test_quick_report_headline_gives_a_computed_outcome_for_every_section(quick_run):
    out, _ = quick_run
    headline = markdown_tables((out / "REPORT.md").read_text(encoding="utf-8"))[0]
    assert headline[0] == ["experiment", "claim", "measured", "outcome"]
    sections = {row[0][:2] for row in headline[1:]}
    assert sections == {"1.", "2.", "3.", "4."}
    assert all(row[3].strip("*") in OUTCOMES for row in headline[1:])
    json.loads((out / "results.json").read_text())   # the numbers, machine-readable


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0"], "--seeds must be an integer in [1, 100], got 0"),
    (["--workers", "0"], "--workers must be an integer in [1, 64], got 0"),
    (["--quick", "--workers", "-3"], "--workers must be an integer in [1, 64], got -3"),
    (["--seeds", "two"], "invalid int value"),
])
def test_bad_arguments_give_one_clear_error_and_no_traceback(tmp_path, args, message):
    done = run_cli(*args, "--out", str(tmp_path / "out"))
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_an_output_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "report").write_text("not a folder")
    done = run_cli("--quick", "--out", str(tmp_path / "report"))
    assert done.returncode != 0 and "is a file" in done.stderr and "Traceback" not in done.stderr


def tiny_configs(seeds):
    """The quick configs cut to a few updates and tiny networks: seconds, not minutes."""
    return {name: [replace(hp, updates=12, batch=8, hidden=6, log_every=12) for hp in hps]
            for name, hps in experiments.agent_configs(experiments.BUDGETS, seeds, True).items()}


TINY_SCALE = experiments.Scale(eval_episodes=40, baseline_episodes=60, probe_episodes=20,
                               snapshot_episodes=20, snapshots=3, stay_episodes=30)


def test_same_seeds_give_the_same_numbers_whatever_the_number_of_workers(tmp_path):
    numbers = []
    for workers in (1, 2):
        out = tmp_path / str(workers)
        experiments.run_experiments(tiny_configs(2), TINY_SCALE, workers, str(out), command="test")
        text = (out / "results.json").read_text()
        numbers.append(json.loads(text, parse_constant=str)["sections"])   # NaN == NaN as text
    assert numbers[0] == numbers[1]


def test_snapshots_are_log_spaced_from_the_first_to_the_last_update():
    assert experiments.snapshot_points(20000, 6) == [1, 7, 53, 381, 2759, 20000]
    assert experiments.snapshot_points(3, 6) == [1, 2, 3]


def test_a_verdict_that_needs_a_standard_error_is_undecided_with_one_seed():
    assert experiments.exceeds(0.5, None) is None
    assert experiments.exceeds(0.5, 0.2) is True and experiments.exceeds(0.3, 0.2) is False
    assert experiments.all_held([True, None]) is None
    assert experiments.all_held([None, False, True]) is False
    assert experiments.all_held([True, True]) is True
