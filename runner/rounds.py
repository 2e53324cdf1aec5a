"""Rounds: every cell of a matrix run several times, each time in a fresh container (or
process), the cells compared with each other in a random order within each round.

One process in one time slot is one sample of a cell's speed, not its speed (asv interleaves
the processes of the benchmarks it compares; pyperf runs many workers; Abedi & Brecht, ICPE
2017: randomized multiple interleaved trials). So a round runs each comparison group's cells
(same model, device and batch) back to back in an order drawn from a seeded generator, and
the statistics of bench.measure.rounds turn the rounds into run-level estimates and paired
ratios. This module plans the orders, merges a cell's round results into its result, and
decides when to stop (a fixed number of rounds, or until every compared ratio is known to a
target precision, within a budget).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, replace
from typing import Any, Protocol

from bench.cell import Cell
from bench.measure.rounds import DEFAULT_EQUIVALENCE_BAND, paired_ratio
from bench.measure.sections import merge_rounds, round_medians
from bench.result import CellResult

DEFAULT_MAX_ROUNDS = 20  # with target_ci and no max_rounds


class ProblemSink(Protocol):
    """Where a validation puts a problem with its key path (the matrix checker)."""

    def add(self, path: tuple, message: str) -> None: ...


def _number(doc: dict, key: str, check: ProblemSink, integer: bool, low: float, high: float) -> Any:
    """An optional number in [low, high] (an integer where asked); None when absent."""
    value = doc.get(key)
    if value is None:
        return None
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        what = "an integer" if integer else "a number"
        check.add((key,), f"must be {what} in [{low:g}, {high:g}], not {value!r}")
        return None
    return value


def check_rounds(doc: dict, check: ProblemSink) -> tuple[RoundPlan, float]:
    """The round plan and the equivalence band from a matrix document (or CLI overrides)."""
    rounds = _number(doc, "rounds", check, True, 1, 1000) or 1
    target = _number(doc, "target_ci", check, False, 1e-4, 0.5)
    max_rounds = _number(doc, "max_rounds", check, True, 2, 1000)
    if max_rounds is not None and max_rounds < rounds:
        check.add(("max_rounds",), f"must be at least rounds ({rounds}), not {max_rounds}")
    if target is not None and max_rounds is None:
        max_rounds = max(rounds, DEFAULT_MAX_ROUNDS)
    if target is None and (max_rounds is not None or "time_budget_s" in doc):
        check.add(("target_ci",), "max_rounds and time_budget_s apply with target_ci only")
    plan = RoundPlan(
        rounds=rounds,
        seed=_number(doc, "order_seed", check, True, 0, 2**63),
        target_ci=target,
        max_rounds=max_rounds,
        time_budget_s=_number(doc, "time_budget_s", check, False, 1, 10**7),
    )
    band = _number(doc, "equivalence_band", check, False, 0, 0.5)
    return plan, DEFAULT_EQUIVALENCE_BAND if band is None else float(band)


def group_key(cell: dict | Cell) -> tuple[str, str, int]:
    """The cells a report compares with each other: same model, device and batch."""
    c = cell.to_dict() if isinstance(cell, Cell) else cell
    return (c["model"], c["device"], c["batch_size"])


@dataclass(frozen=True)
class RoundPlan:
    """How many rounds, and in which order each round runs the cells."""

    rounds: int = 1
    seed: int | None = None  # None: drawn at the start of the run (and recorded)
    target_ci: float | None = None  # keep going until every ratio's half-width is within it
    max_rounds: int | None = None
    time_budget_s: float | None = None

    @property
    def multi(self) -> bool:
        return self.rounds > 1 or self.target_ci is not None

    @property
    def limit(self) -> int:
        """The last round that may run."""
        return max(self.rounds, self.max_rounds or self.rounds) if self.target_ci else self.rounds

    def order(self, cells: list[Cell], round_index: int) -> list[tuple[Cell, int]]:
        """The cells of one round, each with its position in its group: groups in matrix
        order, each group's cells shuffled by a generator seeded with (seed, round)."""
        rng = random.Random(f"{self.seed}:{round_index}")
        groups: dict[tuple, list[Cell]] = {}
        for cell in cells:
            groups.setdefault(group_key(cell), []).append(cell)
        ordered = []
        for members in groups.values():
            shuffled = list(members)
            rng.shuffle(shuffled)
            ordered += [(cell, position) for position, cell in enumerate(shuffled)]
        return ordered


def merge_cell_rounds(rounds: list[CellResult]) -> CellResult:
    """A cell's result from its rounds' results, in round order: the first round's parity,
    runtime and environment, timing merged over the rounds that were `ok`. A round that did
    not end `ok` ends the cell with its status and reason (the earlier rounds are kept)."""
    if not rounds:
        raise ValueError("no rounds to merge")
    ok = [r for r in rounds if r.status == "ok"]
    last = rounds[-1]
    if not ok:
        return last
    first = ok[0]
    batch = first.cell["batch_size"]
    flops = (first.artifact or {}).get("flops_per_sample")
    timing = merge_rounds([r.timing for r in ok], batch, flops)
    compute = None
    if all(r.compute_timing for r in ok):
        compute = merge_rounds([r.compute_timing for r in ok], batch, flops)
    merged = replace(first, timing=timing, compute_timing=compute)
    if last.status != "ok":
        index = len(rounds)
        merged = replace(
            merged,
            status=last.status,
            reason=f"round {index}: {last.reason}",
            log_tail=last.log_tail,
        )
    return merged


def compared_pairs(results: list[CellResult]) -> list[tuple[CellResult, CellResult]]:
    """Every pair of ok cells of one group: what a report ranks or puts side by side."""
    groups: dict[tuple, list[CellResult]] = {}
    for r in results:
        if r.status == "ok":
            groups.setdefault(group_key(r.cell), []).append(r)
    return [pair for members in groups.values() for pair in itertools.combinations(members, 2)]


def widest_ratio(results: list[CellResult]) -> float | None:
    """The largest relative half-width of any compared pair's paired ratio (None while a pair
    has fewer than two rounds in common)."""
    widths = []
    for a, b in compared_pairs(results):
        ma, mb = round_medians(a.timing), round_medians(b.timing)
        if len(set(ma) & set(mb)) < 2:
            return None
        widths.append(paired_ratio(mb, ma).relative_half_width)
    return max(widths)


def stop_reason(
    plan: RoundPlan, completed: int, results: list[CellResult], elapsed_s: float
) -> str | None:
    """Why the run stops after `completed` rounds, or None to run another."""
    if completed >= plan.limit:
        if plan.target_ci is None:
            return f"{completed} rounds, as asked"
        return f"max_rounds ({plan.limit}) reached"
    if plan.target_ci is None or completed < max(plan.rounds, 2):
        return None
    if not compared_pairs(results):
        return "target_ci: no two cells of a group to compare"
    width = widest_ratio(results)
    if width is not None and width <= plan.target_ci:
        return f"target_ci reached: every compared ratio within ±{width:.1%}"
    if plan.time_budget_s is not None and elapsed_s >= plan.time_budget_s:
        return f"time budget ({plan.time_budget_s:g} s) spent"
    return None
