"""Run-level statistics from rounds: hand-computed intervals, paired and unpaired ratios, the
tie rule, and simulated measurements with a known truth (drift plus noise) where interleaved
rounds recover the true ratio and cells measured one after the other do not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.measure import rounds as r


def test_t_quantiles_from_the_table_and_the_expansion():
    assert r.t975(1) == pytest.approx(12.706204736)
    assert r.t975(4) == pytest.approx(2.776445105)
    assert r.t975(30) == pytest.approx(2.042272456)
    assert r.t975(2.7) == r.t975(2)  # a fractional (Welch) df rounds down: wider
    assert r.t975(60) == pytest.approx(2.000298, abs=2e-6)
    assert r.t975(1000) == pytest.approx(1.962339, abs=2e-6)
    with pytest.raises(ValueError):
        r.t975(0.5)


def test_log_t_interval_by_hand():
    # logs 0.1, 0.2, 0.3, 0.4: mean 0.25, sd sqrt(0.05 / 3) = 0.129099, n = 4, t(3) = 3.182446
    # half width 3.182446 * 0.129099 / 2 = 0.205425
    values = [math.exp(v) for v in (0.1, 0.2, 0.3, 0.4)]
    est = r.latency_estimate(values)
    assert est.value == pytest.approx(math.exp(0.25))
    assert est.low == pytest.approx(math.exp(0.25 - 0.205425), rel=1e-5)
    assert est.high == pytest.approx(math.exp(0.25 + 0.205425), rel=1e-5)
    assert est.rounds == 4 and est.relative_half_width == pytest.approx(0.205425, rel=1e-5)
    with pytest.raises(ValueError, match="two rounds"):
        r.latency_estimate([5.0])


def test_a_paired_ratio_cancels_drift_that_moves_both_cells():
    # The machine halves its speed every round; B stays exactly half of A's time.
    a = {1: 10.0, 2: 20.0, 3: 40.0}
    b = {1: 5.0, 2: 10.0, 3: 20.0, 4: 1.0}  # round 4: A did not run, not paired
    est = r.paired_ratio(b, a)
    assert (est.value, est.low, est.high, est.rounds) == pytest.approx((0.5, 0.5, 0.5, 3))
    with pytest.raises(ValueError, match="two rounds in common"):
        r.paired_ratio({1: 1.0}, {1: 2.0, 2: 2.0})


def test_unpaired_ratio_by_hand():
    # logs a: 0, 0.2; b: 1, 1.2. diff 1.0; variances of the means 0.01 each; se = 0.141421;
    # Welch df = 0.02^2 / (0.01^2 + 0.01^2) = 2; t(2) = 4.302653; half = 0.608490.
    a = [1.0, math.exp(0.2)]
    b = [math.e, math.exp(1.2)]
    est = r.unpaired_ratio(a, b)
    assert est.value == pytest.approx(math.e)
    assert est.low == pytest.approx(math.exp(1 - 0.608490), rel=1e-5)
    assert est.high == pytest.approx(math.exp(1 + 0.608490), rel=1e-5)


def test_one_round_ratio_of_a_known_shift():
    a = np.random.default_rng(1).normal(10.0, 0.1, 400)
    est = r.samples_ratio(a, a * 1.5)
    assert est.value == pytest.approx(1.5)
    assert 1.45 < est.low < 1.5 < est.high < 1.55
    same = r.samples_ratio(a, a)
    assert same.value == 1.0 and same.low <= 1.0 <= same.high


def test_one_round_ratio_is_a_bootstrap_of_iterations_and_says_so():
    est = r.samples_ratio([10.0] * 50, [15.0] * 50)
    assert (est.value, est.low, est.high, est.rounds) == (1.5, 1.5, 1.5, 1)
    assert "one time slot" in est.method


@pytest.mark.parametrize(
    ("low", "high", "word", "resolved"),
    [
        (0.90, 0.95, "faster", True),  # wholly below 1/1.02 = 0.9804
        (1.03, 1.10, "slower", True),  # wholly above 1.02
        (0.985, 1.015, "tie", True),  # inside the band: equivalent
        (0.97, 1.01, "tie", False),  # straddles the band's lower edge: undecided
        (0.5, 2.0, "tie", False),
    ],
)
def test_the_tie_rule(low, high, word, resolved):
    ratio = r.Estimate(math.sqrt(low * high), low, high, 5, "test")
    assert r.compare_ratio(ratio, 0.02) == r.Verdict(word, resolved)


def _simulate(order: str, rounds: int, seed: int = 3) -> tuple[dict, dict]:
    """Round medians of cells A (10 ms) and B (13 ms: true ratio 1.3) on a machine that slows
    down steadily by half over the session, with 3% noise between time slots and iteration
    noise within them. `interleaved`: each round runs A and B back to back in a random order;
    `sequential`: every round of A, then every round of B."""
    rng = np.random.default_rng(seed)
    slots = [("A", k) for k in range(rounds)] + [("B", k) for k in range(rounds)]
    if order == "interleaved":
        slots = []
        for k in range(rounds):
            pair = [("A", k), ("B", k)]
            rng.shuffle(pair)
            slots += pair
    true = {"A": 10.0, "B": 13.0}
    medians: dict[str, dict[int, float]] = {"A": {}, "B": {}}
    for t, (cell, k) in enumerate(slots):
        drift = 1.0 + 0.5 * t / len(slots)
        slot_noise = rng.lognormal(0.0, 0.03)
        samples = true[cell] * drift * slot_noise * rng.lognormal(0.0, 0.05, 200)
        medians[cell][k + 1] = float(np.median(samples))
    return medians["A"], medians["B"]


def test_interleaved_rounds_recover_the_true_ratio_under_drift():
    a, b = _simulate("interleaved", rounds=8)
    est = r.paired_ratio(b, a)
    assert est.low <= 1.3 <= est.high
    assert est.relative_half_width < 0.05


def test_cells_measured_one_after_the_other_do_not():
    a, b = _simulate("sequential", rounds=8)
    est = r.unpaired_ratio(list(a.values()), list(b.values()))
    assert est.low > 1.3  # the drift between the two blocks is taken for B's slowness
