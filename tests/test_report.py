"""report.py renders what claims.py decides: each claim's outcome appears under that claim and
changes when its numbers do, a test registered in panel.TESTS reaches every table and claim,
and the README's findings are the committed run's."""
import copy
import re
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

import belief
import claims
import experiments
import panel
import report

ROOT = Path(__file__).resolve().parent.parent
CELL_SEPARATOR = re.compile(r"(?<!\\)\|")   # an escaped \| is text inside a cell
HELD, REFUTED, CANNOT = "held", "refuted", "cannot decide"
FLIP = {HELD: REFUTED, REFUTED: HELD, CANNOT: CANNOT}


@pytest.fixture(scope="module")
def committed():
    """docs/results.json, the committed run: every key the report reads, real numbers."""
    return experiments.load_results(str(ROOT / "docs"))


def render(results, folder, monkeypatch):
    """REPORT.md of `results` as text; the figures are drawn but not saved (they take half
    the time and say nothing of the verdicts)."""
    monkeypatch.setattr(report, "save_png", lambda fig, path, **kwargs: plt.close(fig))
    report.write_report(results, str(folder))
    return (folder / "REPORT.md").read_text(encoding="utf-8")


def headline(text):
    """{claim: outcome} of the headline table, and the number of its rows."""
    table = text.split("## Headline")[1].split("\n## ")[0]
    lines = [line for line in table.splitlines() if line.startswith("|")][2:]   # no header
    rows = [[c.strip() for c in CELL_SEPARATOR.split(line)[1:-1]] for line in lines]
    return {row[0]: row[3].strip("*") for row in rows}, len(rows)


def per_env(outcomes):
    """The line of a claim decided env by env: "held (bandit); cannot decide (tiger)"."""
    order = [HELD, REFUTED, "inconclusive", CANNOT]
    groups = [(o, [env for env, v in outcomes.items() if v == o]) for o in order]
    return "; ".join(f"{o} ({', '.join(envs_)})" for o, envs_ in groups if envs_)


# ------------------------------------------------------------------------------------------
# Setting the numbers that decide each claim, in results.json's own terms
# ------------------------------------------------------------------------------------------
def spread(k, n):
    """A small spread around 0 for seed k of n, so that every limit exists and is tight."""
    return 0.002 * (k - (n - 1) / 2)


def set_near_optimal(results, outcome):
    """§1: the agents earn what the reference earns (held) or what the random policy earns
    (refuted)."""
    for env, r in results["near_optimal"].items():
        refs = r["references"]
        bayes, oracle = refs["bayes_optimal_exact"], refs["oracle_exact"]
        reference = bayes if bayes is not None else refs["policies"]["belief_greedy"]["mean"]
        earned = reference if outcome == HELD else refs["policies"]["random"]["mean"]
        if belief.BELIEFS[results["facts"]["configs"][env]["env"]].near_optimal == "gap":
            earned = reference if outcome == HELD else refs["policies"]["always_listen"]["mean"]
        for k, s in enumerate(r["seeds"]):
            s["mean"] = earned * (1 + spread(k, len(r["seeds"])))
            if "pseudo_regret" in s:
                s["pseudo_regret"] = (oracle - earned) * (1 + spread(k, len(r["seeds"])))


def set_decoding(results, env, decodable, learned, growth):
    """§2 in one env: the posterior means decoded well above the controls (decodable held)
    or poorly (refuted); the untrained network below (learned held) or above; the last
    snapshot's gain above the first update's (growth held) or below."""
    for k, seed in enumerate(results["belief_states"][env]):
        p, e = seed["probe"], spread(k, 5)
        for f in (f for f in p["features"] if f.startswith(("mean_", "p_"))):
            p["decode"][f] = (0.95 if decodable == HELD else 0.3) + e
            p["controls_by_feature"]["untrained"][f] = p["decode"][f] + (
                -0.2 if learned == HELD else 0.05)
            p["controls_by_feature"]["memoryless"][f] = 0.1
            p["controls_by_feature"]["shuffled"][f] = 0.1
        for point in seed["over_training"]:
            point["r2"] = 0.5
        seed["over_training"][-1]["r2"] = 0.5 + (0.3 if growth == HELD else -0.3) + e


def agent_value(p, test, value):
    """Where probe summary p holds the agent's value of each test of the panel, set to value."""
    sim, mini = p["simulation"], p["minimality"]
    direction = {"a2b": "agent_to_bayes", "b2a": "bayes_to_agent"}.get(test.name[:3])
    if test.name in ("a2b_state", "b2a_state"):
        sim[direction]["state_dissimilarity"]["trained"]["mlp"] = value
    elif test.name in ("a2b_output", "b2a_output"):
        sim[direction]["output_kl_relative"]["trained"]["mlp"] = value
    elif test.name in ("a2b_agreement", "b2a_agreement"):   # beyond a baseline of 1/2
        sim[direction]["action_agreement_baseline"]["trained"]["mlp"] = 0.5
        sim[direction]["action_agreement"]["trained"]["mlp"] = 0.5 + 0.5 * value
    elif test.name == "partial_r2":
        mini["partial_r2"]["trained"] = dict.fromkeys(mini["partial_r2"]["trained"], value)
    elif test.name == "within_between":
        mini["within_between_ratio"]["trained"] = value
    elif test.name == "within_between_whitened":
        mini["within_between_whitened"]["trained"] = value
    elif test.name == "splice":   # the same contrast at every lag
        lags = len(p["splice"]["per_lag"]["steps"])
        p["splice"]["per_lag"].update(agreement_spliced=[value] * lags,
                                      agreement_recipient=[0.0] * lags, steps=[10] * lags)
    elif test.name == "value_loss":
        p["value_loss"]["value_loss_relative"] = value
    else:
        raise KeyError(test.name)


def near(test, side, k):
    """A value of `test` near its perfect or its null value (5 % of the way to the other)."""
    start, end = (test.perfect, test.null) if side == "perfect" else (test.null, test.perfect)
    return start + (0.05 + 0.005 * k) * (end - start)


def set_calibrated(results, env, test, outcome):
    """§2c, one test in one env: the panel separates (every known belief state near perfect,
    every known non-belief near the null) and the agent is near perfect (held) or near the
    null (refuted); or the panel does not separate (every machine near perfect)."""
    for k, seed in enumerate(results["calibration"][env]["seeds"]):
        for machine in seed["machines"].values():
            if panel.record_of(machine["values"][test.name]) != panel.NOT_MEASURED:
                belief_state = machine["known"] == panel.BELIEF
                side = "perfect" if belief_state or outcome == CANNOT else "null"
                machine["values"][test.name] = near(test, side, k)
    if test.name != "decode":   # the agent's decoding is §2's (set_decoding)
        for k, seed in enumerate(results["belief_states"][env]):
            agent_value(seed["probe"], test, near(test, "null" if outcome == REFUTED
                                                  else "perfect", k))


def set_shift(results, position, kl, crossed):
    """§3, every case: the agent's pseudo-regret on the test tasks at the training prior's
    noise-matched reference (position held) or the test prior's (refuted), its KL to the
    training prior's Bayes policy below the test prior's (kl held) or above, its crossed
    decoding above the untrained network's (crossed held) or below. The known machines
    separate, except the position test where position is cannot decide."""
    def behave(s, k, on_train, kl_held):
        s["noise_matched"]["train_model"]["pseudo_regret"] = {"mean": 3.0, "stderr": 0.01}
        s["noise_matched"]["test_model"]["pseudo_regret"] = {"mean": 2.0, "stderr": 0.01}
        s["test"]["pseudo_regret"] = (3.0 if on_train else 2.0) + spread(k, 5)
        s["behaviour"]["train"]["kl"] = (0.1 if kl_held else 0.5) + spread(k, 5)
        s["behaviour"]["test"]["kl"] = 0.5 if kl_held else 0.1

    for case in results["shift"].values():
        for k, s in enumerate(case["seeds"]):
            behave(s, k, position == HELD, kl == HELD)
            s["decoding"]["trained"] = {"train": 0.9 if crossed == HELD else 0.5, "test": 0.6}
            s["decoding"]["untrained"] = {"train": 0.6 + spread(k, 5), "test": 0.6}
        for machine in case["known"].values():
            on_train = machine["expected"] == "train" or position == CANNOT
            for k, s in enumerate(machine["seeds"]):
                behave(s, k, on_train, machine["expected"] == "train")


def set_two_step(results, interaction, w):
    """§4: the agent's interaction above the model-free grid's largest (held) or below; its
    hybrid weight w well above 0.5 (held) or well below."""
    r = results["two_step"]
    for k, s in enumerate(r["seeds"]):
        s["stay"]["interaction"]["mean"] = r["grid"]["largest"]["interaction"] + (
            0.3 if interaction == HELD else -0.3) + spread(k, 5)
        s["hybrid"]["estimates"]["w"] = (0.9 if w == HELD else 0.1) + spread(k, 5)


def scenario(committed, flip):
    """Results with every claim's outcome set, and the headline outcome each claim must show.
    The panel does not validate decoding in one env (the last; with flip, the first, whose
    bandit agents' §3 cases then cannot decide either); each §2c test has its own pattern of
    outcomes over the envs. flip swaps held and refuted, turns §3's position test to cannot
    decide and rotates every §2c outcome (held → refuted → cannot decide → held), so that
    every claim's line changes."""
    results = copy.deepcopy(committed)
    f = FLIP if flip else {o: o for o in FLIP}
    envs_ = list(results["belief_states"])
    expected = {}
    set_near_optimal(results, f[HELD])
    expected["act near Bayes-optimally on every task distribution"] = f[HELD]
    gate = envs_[0] if flip else envs_[-1]   # the panel does not validate decoding there
    numbers = {"decodable": (HELD, REFUTED, HELD, REFUTED), "learned": (HELD,) * 4,
               "growth": (REFUTED,) * 4}
    numbers = {claim: dict(zip(envs_, (f[o] for o in outcomes)))
               for claim, outcomes in numbers.items()}
    for env in envs_:
        set_decoding(results, env, *(numbers[claim][env] for claim in numbers))
    plan = {claim: {env: CANNOT if env == gate else o for env, o in by_env.items()}
            for claim, by_env in numbers.items()}
    for claim, words in (("decodable", "linearly decodable from the trained agent's state"),
                         ("learned", "Training makes the state more belief-like"),
                         ("growth", "Along training the state becomes more belief-like")):
        expected[words] = per_env(plan[claim])
    # the decoding test's panel is §2's gate and the agent's decoding §2's; each other test
    # takes its own pattern: the base-3 digits of 7 i, distinct for the first 11 tests
    calibrated = {"decode": plan["decodable"]}
    for i, test in enumerate(panel.TESTS[1:], start=1):
        calibrated[test.name] = {env: (HELD, REFUTED, CANNOT)[(7 * i // 3 ** j + flip) % 3]
                                 for j, env in enumerate(envs_)}
    tests = {t.name: t for t in panel.TESTS}
    for name, outcomes in calibrated.items():
        for env, o in outcomes.items():
            set_calibrated(results, env, tests[name], o)
        expected[f"passes the test of {tests[name].label}."] = per_env(outcomes)
    set_shift(results, position=CANNOT if flip else HELD, kl=f[REFUTED], crossed=f[HELD])
    families = {results["facts"]["configs"][case["agent"]]["env"]
                for case in results["shift"].values()}
    expected["earns what the Bayes-optimal policy of its TRAINING prior earns"] = \
        CANNOT if flip else HELD
    expected["the agent acts like the training-prior Bayes policy"] = f[REFUTED]
    expected["state holds the training-prior posterior"] = CANNOT if gate in families else f[HELD]
    set_two_step(results, f[HELD], f[REFUTED])
    expected["larger reward × transition interaction"] = f[HELD]
    expected["weigh model-based values more than model-free ones"] = f[REFUTED]
    return results, expected


def rendered_outcomes(text, expected):
    """{words of a claim: the outcome shown in the row of the one claim holding them}."""
    rows, count = headline(text)
    assert count == len(rows) == len(expected), "a claim is missing or shown twice"
    found = {}
    for words in expected:
        claims_ = [claim for claim in rows if words in claim]
        assert len(claims_) == 1, (words, claims_)
        found[words] = rows[claims_[0]]
    return found


def test_each_claim_shows_the_outcome_its_numbers_give(committed, tmp_path, monkeypatch):
    """Numbers set so that each claim's outcome is known (held, refuted, cannot decide; per
    env where a claim is decided env by env): the headline shows each under its own claim."""
    results, expected = scenario(committed, flip=False)
    text = render(results, tmp_path, monkeypatch)
    assert rendered_outcomes(text, expected) == expected
    assert all(any(o in line for line in expected.values()) for o in (HELD, REFUTED, CANNOT))


@pytest.mark.slow
def test_flipping_the_numbers_flips_every_claim_on_the_page(committed, tmp_path, monkeypatch):
    """The same claims with held and refuted swapped (and cannot decide moved): every line of
    the headline changes, and to what the new numbers give."""
    before, expected_before = scenario(committed, flip=False)
    after, expected_after = scenario(committed, flip=True)
    (tmp_path / "before").mkdir()
    (tmp_path / "after").mkdir()
    shown_before = rendered_outcomes(render(before, tmp_path / "before", monkeypatch),
                                     expected_before)
    shown_after = rendered_outcomes(render(after, tmp_path / "after", monkeypatch),
                                    expected_after)
    assert shown_after == expected_after
    assert all(shown_after[words] != shown_before[words] for words in expected_before)


# ------------------------------------------------------------------------------------------
# The registry of tests: one record, read by the panel, the probe's reading and the report
# ------------------------------------------------------------------------------------------
def test_a_registered_test_reaches_the_panel_table_and_every_part_of_the_report(
        committed, tmp_path, monkeypatch):
    """A test added to panel.TESTS alone (here a copy of the per-unit spread under another
    name) appears in the panel's table, in the agent's values, in §2b's paired table, in
    §2c's tables and as a claim of the headline, with the copied test's outcome."""
    extra = replace(next(t for t in panel.TESTS if t.name == "within_between"),
                    name="spread_again", label="the spread again, registered by a test",
                    paired_label="the spread again (registered by a test)")
    monkeypatch.setattr(panel, "TESTS", panel.TESTS + (extra,))
    results = copy.deepcopy(committed)
    for cal in results["calibration"].values():
        for seed in cal["seeds"]:
            for machine in seed["machines"].values():
                machine["values"]["spread_again"] = machine["values"]["within_between"]
    seeds = results["calibration"]["bandit"]["seeds"]
    table = panel.calibration_table(seeds)
    assert table["spread_again"]["machines"] == table["within_between"]["machines"]
    probe = results["belief_states"]["bandit"][0]["probe"]
    values = panel.agent_values(probe)
    assert values["spread_again"] == values["within_between"]
    assert panel.agent_beside_panel(values, seeds)["spread_again"]["label"] == extra.label
    text = render(results, tmp_path, monkeypatch)
    rows, _ = headline(text)
    assert rows[f"The agent's state passes the test of {extra.label}."] == \
        rows["The agent's state passes the test of within/between spread (per-unit standardised)."]
    cells = {line.split(" | ")[1]: line.split(" | ", 2)[2] for line in text.splitlines()
             if line.startswith("| bandit | ")}
    assert cells[extra.paired_label] == cells["within/between spread ratio (per-unit standardised)"]

    def calibration_rows(label):   # the test's row in each env's §2c table, after its label
        return [line.split(" | ", 1)[1] for line in text.splitlines()
                if line.startswith(f"| {label} | ")]

    again = calibration_rows(extra.label)
    assert len(again) == len(results["calibration"])
    assert again == calibration_rows("within/between spread (per-unit standardised)")


# ------------------------------------------------------------------------------------------
# One meaning for a value that is not there: in memory and in results.json alike
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("undefined", [pytest.param(False, marks=pytest.mark.slow), True])
def test_the_panel_decides_alike_in_memory_and_read_back_from_results_json(
        committed, tmp_path, monkeypatch, undefined):
    """The committed run with its panel held as calibrate holds it (NumPy numbers, a NaN
    recorded by panel.recorded), and the same written by experiments.write_results and read
    back by experiments.load_results (the schema's check): every §2c table, verdict,
    outcome and placement is the same, and so is the whole report. With the distilled
    machine's splice value undefined on one bandit seed (the tester's null), the distilled
    LSTM is unclear in both, and the bandit's splice test, held with it, cannot decide."""
    results = copy.deepcopy(committed)
    for cal in results["calibration"].values():
        for seed in cal["seeds"]:
            for machine in seed["machines"].values():
                machine["values"] = {name: np.float64(v) if isinstance(v, float) else v
                                     for name, v in machine["values"].items()}
    splice = next(t for t in panel.TESTS if t.name == "splice")
    if undefined:
        distilled = results["calibration"]["bandit"]["seeds"][1]["machines"]["distilled"]
        distilled["values"]["splice"] = panel.recorded(splice, np.nan)
    in_memory = claims.calibration_numbers(results)
    experiments.write_results(results, tmp_path)
    read_back = experiments.load_results(str(tmp_path))
    np.testing.assert_equal(claims.calibration_numbers(read_back), in_memory)
    assert render(read_back, tmp_path / "file", monkeypatch) == \
        render(results, tmp_path / "memory", monkeypatch)
    bandit = in_memory["bandit"]
    assert bandit["outcome"]["splice"] == (CANNOT if undefined else HELD)
    assert bandit["table"]["splice"]["machines"]["distilled"]["verdict"] == \
        ("unclear" if undefined else "passes")
    assert ("distilled" in bandit["table"]["splice"]["wrong"]) == undefined
    # the committed Tiger panel: value learners undefined on the maps' relative KL stop it
    tiger = in_memory["tiger"]["table"]["a2b_output"]
    assert {"value learner α = 0.01", "value learner α = 0.05"} <= set(tiger["wrong"])


def test_a_null_in_memory_or_in_results_json_is_refused_not_read_as_not_measured(
        committed, tmp_path):
    """A bare NaN (in memory) and a null (in the file) could mean "undefined" or "missing":
    both are refused, naming where it is, before any verdict."""
    results = copy.deepcopy(committed)
    results["calibration"]["bandit"]["seeds"][1]["machines"]["distilled"]["values"]["splice"] = \
        float("nan")
    with pytest.raises(ValueError, match="test 'splice' of 'distilled' on panel seed 1 must be "
                                         "a finite number"):
        claims.calibration_numbers(results)
    experiments.write_results(results, tmp_path)   # the NaN is written as null
    with pytest.raises(ValueError, match=re.escape(
            "key results.calibration.bandit.seeds[1].machines.distilled.values.splice must be "
            'a finite number or {"undefined": "why"}, got null')):
        experiments.load_results(str(tmp_path))


# ------------------------------------------------------------------------------------------
# The README's findings
# ------------------------------------------------------------------------------------------
def test_the_readme_findings_are_generated_from_the_committed_results(committed, tmp_path):
    """The README's block between the findings markers is exactly what the report code makes
    of docs/results.json, so its prose cannot drift from the committed numbers."""
    lines = report.write_report(committed, str(tmp_path))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert report.replace_findings(readme, lines) == readme


def test_a_readme_without_the_markers_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="findings markers|once each"):
        report.replace_findings("# a README\\n", ["- a finding"])


def test_a_case_whose_known_machines_do_not_separate_names_them():
    calibration = {"validated": {"position": False}, "wrong": {"position": ["test machine"]}}
    assert "wrong side: test machine" in report.shift_caveat(calibration, "position")
    assert report.shift_caveat({"validated": {"kl": True}}, "kl") == ""
