"""The run's ETA from hand-fed cell durations."""

from __future__ import annotations

from runner.progress import Eta


def test_eta_is_the_median_cell_times_the_cells_left_over_the_slots():
    eta = Eta(total=10)
    assert eta.remaining_s() is None and "unknown" in eta.text()
    eta.ran(30.0)
    eta.ran(10.0)
    eta.ran(20.0)  # median 20 s, 7 cells left
    assert eta.remaining_s() == 140.0 and eta.text() == "ETA 2 min 20 s"
    eta.done()  # a cell kept from an earlier attempt: one fewer left, no time
    assert eta.remaining_s() == 120.0
    pool = Eta(total=10, slots=4)
    pool.ran(20.0)  # 9 left over 4 slots: 45 s
    assert pool.text() == "ETA 45 s"


def test_eta_over_an_hour_and_at_the_end():
    eta = Eta(total=200)
    eta.ran(40.0)  # 199 cells of 40 s: 7960 s = 2 h 12 min 40 s
    assert eta.text() == "ETA 2 h 12 min"
    last = Eta(total=1)
    last.ran(5.0)
    assert last.remaining_s() == 0.0 and last.text() == "last cell"
