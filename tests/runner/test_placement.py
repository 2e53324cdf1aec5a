"""Placement on a pool's hosts and dispatch on their slots: pure logic, by hand."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from bench.cell import Cell
from runner.dispatch import Dispatch
from runner.matrix import MatrixError, parse_matrix
from runner.placement import HostInfo, HostsSpec, Slot, fits, place, slots, unplaced, why_not

A = HostInfo("a", (("cpu", "zen4"),), cpusets=((0,), (1,)))  # two CPU slots of one CPU
B = HostInfo("b", (("cpu", "zen3"),), cpusets=((0, 1),))  # one slot of two CPUs
G = HostInfo("g", (("gpu", "h100"),), cpusets=((0, 1, 2, 3),), gpus=("0", "1"))


def _cell(batch=1, framework="onnxruntime", device="cpu", threads=1, model="mobilenet_v3_small"):
    return Cell(model, framework, device=device, batch_size=batch, threads=threads)


def test_slots_are_the_cpu_sets_and_the_gpus():
    assert slots(G) == [
        Slot("g", "cpu", cpus=(0, 1, 2, 3)),
        Slot("g", "cuda", gpu="0"),
        Slot("g", "cuda", gpu="1"),
    ]
    assert Slot("a", "cpu", cpus=(0, 1, 2)).name == "a/cpus 0-2"
    assert Slot("g", "cuda", gpu="1").name == "g/gpu:1"
    assert Slot("g", "cuda").name == "g/gpu"


def test_a_cell_fits_a_slot_of_its_device_with_enough_cpus():
    assert fits(_cell(), Slot("a", "cpu", cpus=(0,)))
    assert not fits(_cell(threads=2), Slot("a", "cpu", cpus=(0,)))
    assert not fits(_cell(), Slot("g", "cuda", gpu="0"))
    assert fits(_cell(device="cuda", framework="torch"), Slot("g", "cuda", gpu="0"))


def test_why_a_host_cannot_run_a_cell():
    gpu_cell = _cell(device="cuda", framework="torch")
    assert why_not(gpu_cell, A, HostsSpec()).startswith("no GPU")
    assert why_not(gpu_cell, G, HostsSpec()) is None
    assert "largest CPU set has 1 CPUs" in why_not(_cell(threads=2), A, HostsSpec())
    assert why_not(_cell(), A, HostsSpec(labels=(("cpu", "zen3"),))) == (
        "label cpu='zen4', the matrix asks for 'zen3'"
    )
    assert why_not(_cell(), A, HostsSpec(names=("b",))) == "not among the matrix's hosts"


def test_each_puts_every_cell_on_every_eligible_host():
    cells = [_cell(1), _cell(2)]
    placed = place(cells, [A, B], HostsSpec(each=True))
    assert [(c.batch_size, c.host) for c in placed.cells] == [
        (1, "a"),
        (1, "b"),
        (2, "a"),
        (2, "b"),
    ]
    assert placed.cells[0].id.endswith("-b1-on-a")
    assert unplaced(placed.cells[1]) == cells[0]


def test_groups_go_whole_to_the_least_loaded_host_per_slot():
    """Groups (model, device, batch) of two cells each; a has two slots, b one: loads per slot
    after each group: a 2/2=1 (ties go to a), b 2/1, a 4/2=2 vs b 2 -> a... by hand below."""
    cells = [_cell(b, framework=f) for b in (1, 2, 3, 4) for f in ("onnxruntime", "openvino")]
    placed = place(cells, [A, B], HostsSpec())
    by_batch = {c.batch_size: c.host for c in placed.cells}
    # batch 1: a (2/2=1.0) vs b (2/1=2.0) -> a; batch 2: a (4/2=2.0) vs b (2.0) -> a (order);
    # batch 3: a (6/2=3.0) vs b (2.0) -> b; batch 4: a (3.0) vs b (4/1=4.0) -> a.
    assert by_batch == {1: "a", 2: "a", 3: "b", 4: "a"}
    # Both frameworks of a batch on the same host: the speed-up is computed within one machine.
    assert Counter((c.batch_size, c.host) for c in placed.cells) == Counter(
        {(1, "a"): 2, (2, "a"): 2, (3, "b"): 2, (4, "a"): 2}
    )


def test_a_cell_no_host_can_run_is_unplaceable_with_the_reason_per_host():
    gpu_cell = _cell(device="cuda", framework="torch")
    placed = place([gpu_cell, _cell()], [A, B], HostsSpec())
    assert [c.host for c in placed.cells] == ["a"]
    why = placed.unplaceable[gpu_cell]
    assert why.startswith("no host of the pool can run it (a: no GPU")
    assert "; b: no GPU" in why


def test_a_previous_placement_is_kept_where_its_host_is_still_up():
    cells = [_cell(1), _cell(2)]
    previous = {cells[0].id: "b", cells[1].id: "gone"}
    placed = place(cells, [A, B], HostsSpec(), previous)
    assert [c.host for c in placed.cells] == ["b", "a"]


def test_load_carries_over_between_placements():
    load = Counter({("a", "cpu"): 10})
    placed = place([_cell()], [A, B], HostsSpec(), load=load)
    assert placed.cells[0].host == "b"
    assert load[("b", "cpu")] == 1


def test_the_matrix_hosts_key_is_validated():
    base = (
        "models: [mobilenet_v3_small]\nframeworks: [onnxruntime]\ndevices: [cpu]\n"
        "batch_sizes: [1]\nprecisions: [fp32]\nthreads: 1\n"
    )
    matrix = parse_matrix(base + "hosts: {each: true, labels: {gpu: h100}, names: [g]}\n")
    assert matrix.hosts == HostsSpec(each=True, names=("g",), labels=(("gpu", "h100"),))
    with pytest.raises(MatrixError) as err:
        parse_matrix(base + "hosts: {each: 3, names: g, lables: {}}\n")
    text = str(err.value)
    assert "hosts.each (line 7): must be true" in text
    assert "hosts.names (line 7): must be a list" in text
    assert "hosts.lables (line 7): unknown key; did you mean 'labels'?" in text


def test_dispatch_runs_slots_in_parallel_never_two_cells_on_one_slot():
    """Four slots, twelve items of 50 ms: each slot one at a time, several slots at once, every
    item on a slot that fits it."""
    slots_ = ["a0", "a1", "b0", "b1"]
    items = [f"{'ab'[i % 2]}{i}" for i in range(12)]
    running: Counter = Counter()
    peak = Counter()
    lock = threading.Lock()
    seen: list[tuple[str, str]] = []

    def work(item: str, slot: str) -> list[str]:
        with lock:
            running[slot] += 1
            peak["slot"] = max(peak["slot"], running[slot])
            peak["all"] = max(peak["all"], sum(running.values()))
            seen.append((item, slot))
        time.sleep(0.05)
        with lock:
            running[slot] -= 1
        return []

    left = Dispatch(slots_, fits=lambda item, slot: item[0] == slot[0], work=work).run(items)
    assert left == []
    assert sorted(i for i, _ in seen) == sorted(items)
    assert all(item[0] == slot[0] for item, slot in seen)
    assert peak["slot"] == 1
    assert peak["all"] >= 2


def test_dispatch_queues_what_work_returns_and_leaves_what_no_slot_fits():
    done: list[str] = []

    def work(item: str, slot: str) -> list[str]:
        done.append(item)
        return ["b-moved"] if item == "a-lost" else []

    left = Dispatch(["a", "b"], fits=lambda i, s: i[0] == s, work=work).run(
        ["a-lost", "c-nobody", "b-1"]
    )
    assert sorted(done) == ["a-lost", "b-1", "b-moved"]
    assert left == ["c-nobody"]


def test_a_bug_in_work_ends_the_dispatch_with_it():
    def work(item: str, slot: str) -> list[str]:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        Dispatch(["a", "b"], fits=lambda i, s: True, work=work).run(["x", "y", "z"])


def test_on_a_pool_threads_are_bounded_by_the_hosts_not_this_machine():
    """A laptop orchestrating big hosts: 64 threads are refused here, unless the cells go to
    a pool, where placement checks them against each host's CPU sets."""
    from bench.cell import check_local_threads, default_threads

    doc = (
        "models: [mobilenet_v3_small]\nframeworks: [onnxruntime]\ndevices: [cpu]\n"
        f"batch_sizes: [1]\nprecisions: [fp32]\nthreads: {default_threads() + 62}\n"
    )
    with pytest.raises(MatrixError, match="CPUs this runner may use"):
        parse_matrix(doc)
    check_local_threads(False)
    try:
        cells = parse_matrix(doc).cells
        big = HostInfo("big", cpusets=(tuple(range(default_threads() + 62)),))
        placed = place(cells, [A, big], HostsSpec())
        assert [c.host for c in placed.cells] == ["big"]
    finally:
        check_local_threads(True)
