"""compare on round-level data, from hand-made rounds: identical code reads no change, a 10%
slowdown is a regression, one round says its interval covers one time slot."""

from __future__ import annotations

from pathlib import Path

from helpers import result_with_rounds

from runner.report.compare import compare_runs
from runner.report.runs import Run

A_MEDIANS = [10.0, 10.3, 9.8, 10.1]


def _run(name: str, medians: list[float]) -> Run:
    results = [result_with_rounds("onnxruntime", "fp32", medians, "pass", run_id=name)]
    return Run(Path(name), {"run_id": name, "host": {}}, results)


def test_a_rerun_with_round_to_round_noise_is_no_change():
    (change,) = compare_runs(_run("a", A_MEDIANS), _run("b", [10.1, 9.9, 10.2, 10.0]))
    assert change.verdict == "no significant change" and not change.regression
    assert change.low < 1 < change.high and not change.one_slot


def test_a_ten_percent_slowdown_is_found_and_is_a_regression():
    # Welch on the logs: difference log(1.1) = 0.0953, spread ~0.021 per round, 4 rounds a side.
    (change,) = compare_runs(_run("a", A_MEDIANS), _run("b", [m * 1.1 for m in A_MEDIANS]))
    assert change.verdict == "slower" and change.regression
    assert 1.05 < change.low < 1.1 < change.high


def test_a_change_inside_the_band_is_no_change_even_when_certain():
    # No spread between rounds, exactly 1% slower: certain, but inside the ±2% band.
    steady, one_percent = _run("a", [10.0] * 4), _run("b", [10.1] * 4)
    (change,) = compare_runs(steady, one_percent)
    assert change.verdict == "no significant change" and change.low == change.high
    (strict,) = compare_runs(steady, one_percent, band=0)
    assert strict.verdict == "slower" and not strict.regression  # not beyond the 5% threshold


def test_one_round_on_a_side_says_it_covers_one_time_slot():
    (change,) = compare_runs(_run("a", [10.0]), _run("b", A_MEDIANS))
    assert change.one_slot
