"""The busy-thread counter: /proc/<pid>/task/<tid>/stat parsing by hand, and a workload with a
known number of working threads (torch's intra-op pool at 1 and 2 threads)."""

from __future__ import annotations

import os

import pytest

from bench.measure.threads import ThreadProbe, busy_between, parse_task_stat


def test_parse_task_stat_counts_user_and_system_ticks_after_a_spaced_name():
    # pid (comm) state ppid ... : field 14 utime = 250, field 15 stime = 50
    line = "4242 (python worker 1) R 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0 100 0 0\n"
    assert parse_task_stat(line) == 300


def test_busy_threads_are_those_above_a_quarter_of_the_interval():
    before = {1: 0, 2: 0, 3: 100}
    after = {1: 90, 2: 20, 3: 110, 4: 50}  # ticks at 100 Hz over 2 s: 0.9, 0.2, 0.1, 0.5 s
    assert busy_between(before, after, 2.0, 100) == [0.9, 0.5]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
@pytest.mark.parametrize("threads", [1, 2])
def test_a_torch_matmul_keeps_as_many_threads_busy_as_it_is_given(threads):
    import time

    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(768, 768)
        probe = ThreadProbe()
        until = time.monotonic() + 1.5
        while time.monotonic() < until:
            a @ a
        report = probe.report(threads)
    finally:
        torch.set_num_threads(before)
    assert report["busy"] == threads and report["asked"] == threads
