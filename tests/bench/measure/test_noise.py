"""Noise telemetry: /proc/stat parsing and the steal / foreign-load fractions (hand-computed),
and a real probe around real work."""

from __future__ import annotations

from bench.measure.noise import NoiseProbe, Snapshot, noisy_reasons, parse_proc_stat, usage_between

STAT = """cpu  1 2 3 4 5 6 7 8 9 10
cpu0 100 0 50 800 10 0 0 40 0 0
cpu1 5 0 5 990 0 0 0 0 0 0
intr 123
"""


def test_parse_proc_stat_reads_every_cpu_line():
    cpus = parse_proc_stat(STAT)
    assert cpus == {0: (100, 0, 50, 800, 10, 0, 0, 40), 1: (5, 0, 5, 990, 0, 0, 0, 0)}


def test_steal_and_foreign_fractions_by_hand():
    before = Snapshot(parse_proc_stat(STAT), own_cpu_s=1.0, wall_s=0.0)
    after_text = "cpu0 160 0 70 850 10 0 0 60 0 0\ncpu1 5 0 5 1140 0 0 0 0 0 0\n"
    after = Snapshot(parse_proc_stat(after_text), own_cpu_s=1.3, wall_s=1.5)
    # cpu0: user +60, system +20, idle +50, steal +20 -> 150 jiffies, 80 busy, 20 stolen.
    # Own CPU time 0.3 s at 100 Hz = 30 jiffies: 50 busy jiffies were other processes'.
    usage = usage_between(before, after, [0], hz=100)
    assert usage["steal_fraction"] == 20 / 150
    assert usage["foreign_fraction"] == 50 / 150
    assert noisy_reasons(usage) == [
        "CPU steal 13% > 5%",
        "other processes took 33% of the cell's CPUs > 10%",
    ]
    # Both CPUs: cpu1 idled 150 jiffies, so the same work is a smaller share of the set.
    both = usage_between(before, after, [0, 1], hz=100)
    assert both["foreign_fraction"] == 50 / 300
    assert usage_between(before, after, [7], hz=100)["steal_fraction"] is None


def test_a_quiet_interval_is_not_noisy():
    assert noisy_reasons({"steal_fraction": 0.01, "foreign_fraction": 0.02}) == []
    assert noisy_reasons({"steal_fraction": None, "foreign_fraction": None}) == []


def test_a_real_probe_around_real_work():
    probe = NoiseProbe()
    sum(i * i for i in range(2_000_000))
    report = probe.report()
    assert report["cpus"] and report["interval_s"] > 0
    assert 0 <= report["steal_fraction"] <= 1 and 0 <= report["foreign_fraction"] <= 1
    assert set(report["cpu_facts"]) == {str(c) for c in report["cpus"]}
    assert report["noisy"] is bool(report["noisy_reasons"])
