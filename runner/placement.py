"""Which pool host runs which cell, and on which of its exclusive resources: pure functions.

A host offers *slots*, each an exclusive resource a cell holds while it runs: a CPU set (the
inventory's `cpusets`, else the engine's CPUs as one set) for CPU cells, a GPU (the inventory's
`gpus`, else every GPU of an engine with the NVIDIA runtime as one) for GPU cells. One cell at
a time per slot, so measurements never share CPUs or a GPU; slots of one host, and hosts, work
in parallel.

Placement, by a matrix's `hosts:` constraints (`HostsSpec`):
- `each: true`: every cell on every eligible host — the cross-host comparison; such a cell is
  bound to its host (a lost host's cells wait for `--resume`);
- otherwise each *comparison group* (model, device, batch: the cells a speed-up compares)
  goes whole to one eligible host, the least loaded per slot — so every speed-up is computed
  within one host — and the groups of a lost host are placed again on the others.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace

from bench.cell import Cell


@dataclass(frozen=True)
class HostsSpec:
    """A matrix's `hosts:` key: which hosts may run its cells, and whether each runs all."""

    each: bool = False
    names: tuple[str, ...] = ()  # empty: any host of the inventory
    labels: tuple[tuple[str, str], ...] = ()  # every one must match the host's


@dataclass(frozen=True)
class HostInfo:
    """What placement needs to know of a host: the inventory's entry and what its engine said."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()
    cpusets: tuple[tuple[int, ...], ...] = ()  # the slots of CPU cells
    gpus: tuple[str | None, ...] = ()  # the slots of GPU cells (None: all of the engine's)


@dataclass(frozen=True)
class Slot:
    """One exclusive resource of one host."""

    host: str
    device: str  # "cpu" or "cuda"
    cpus: tuple[int, ...] = ()  # a CPU cell's set (its first `threads` CPUs are pinned)
    gpu: str | None = None  # a GPU cell's device (None: every GPU of the engine)

    @property
    def name(self) -> str:
        if self.device == "cuda":
            return f"{self.host}/gpu{'' if self.gpu is None else ':' + self.gpu}"
        return f"{self.host}/cpus {_cpu_text(self.cpus)}"


def _cpu_text(cpus: tuple[int, ...]) -> str:
    if cpus and list(cpus) == list(range(cpus[0], cpus[-1] + 1)):
        return f"{cpus[0]}-{cpus[-1]}" if len(cpus) > 1 else str(cpus[0])
    return ",".join(map(str, cpus))


def slots(host: HostInfo) -> list[Slot]:
    return [Slot(host.name, "cpu", cpus=s) for s in host.cpusets] + [
        Slot(host.name, "cuda", gpu=g) for g in host.gpus
    ]


def fits(cell: Cell, slot: Slot) -> bool:
    """Whether `slot` can run `cell` (its host aside)."""
    if cell.device != slot.device:
        return False
    return cell.device == "cuda" or len(slot.cpus) >= cell.threads


def why_not(cell: Cell, host: HostInfo, spec: HostsSpec) -> str | None:
    """Why `host` cannot run `cell` (None: it can)."""
    if spec.names and host.name not in spec.names:
        return "not among the matrix's hosts"
    labels = dict(host.labels)
    for key, value in spec.labels:
        if labels.get(key) != value:
            return f"label {key}={labels.get(key)!r}, the matrix asks for {value!r}"
    if not any(fits(cell, s) for s in slots(host)):
        if cell.device == "cuda":
            return (
                "no GPU (the inventory lists none and its engine gives none: no NVIDIA "
                "runtime, no CDI)"
            )
        biggest = max((len(c) for c in host.cpusets), default=0)
        return f"its largest CPU set has {biggest} CPUs, the cell asks for {cell.threads} threads"
    return None


def group_key(cell: Cell) -> tuple[str, str, int]:
    """The cells one speed-up table compares: they go to one host together."""
    return (cell.model, cell.device, cell.batch_size)


def unplaced(cell: Cell) -> Cell:
    """The cell without its host: what a matrix lists and a placement is keyed by."""
    return replace(cell, host=None)


@dataclass
class Placement:
    """Cells with their hosts, and the cells no host can run with the reason per host."""

    cells: list[Cell]
    unplaceable: dict[Cell, str]


def place(
    cells: Iterable[Cell],
    hosts: list[HostInfo],
    spec: HostsSpec,
    previous: dict[str, str] | None = None,
    load: Counter | None = None,
) -> Placement:
    """Place matrix cells (without hosts) on `hosts`, in matrix order.

    `previous` ({unplaced cell id: host}): where an earlier attempt of this run placed them,
    kept where that host is still among `hosts` and can run them (a resumed run continues
    where it was). `load` ({(host, device): cells}): what is already placed (a re-placement
    after a host was lost adds to the others' queues); updated in place."""
    cells = list(cells)
    load = Counter() if load is None else load
    previous = previous or {}
    by_name = {h.name: h for h in hosts}
    out: list[Cell] = []
    unplaceable: dict[Cell, str] = {}

    def eligible(cell: Cell) -> list[HostInfo]:
        return [h for h in hosts if why_not(cell, h, spec) is None]

    def refuse(cell: Cell) -> None:
        reasons = "; ".join(f"{h.name}: {why_not(cell, h, spec)}" for h in hosts)
        unplaceable[cell] = f"no host of the pool can run it ({reasons or 'no host answers'})"

    if spec.each:
        for cell in cells:
            chosen = eligible(cell)
            out += [replace(cell, host=h.name) for h in chosen]
            for h in chosen:
                load[(h.name, cell.device)] += 1
            if not chosen:
                refuse(cell)
        return Placement(out, unplaceable)

    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(group_key(cell), []).append(cell)
    chosen_for: dict[Cell, str] = {}
    for group in groups.values():
        common = [h for h in hosts if all(why_not(c, h, spec) is None for c in group)]
        # A group whose cells no one host can all run is placed cell by cell (its speed-ups
        # then exist only where its reference landed with it).
        for part in [group] if common else [[c] for c in group]:
            options = common or eligible(part[0])
            if not options:
                refuse(part[0])
                continue
            earlier = {previous.get(unplaced(c).id) for c in part} - {None}
            kept = [by_name[n] for n in earlier if n in by_name and by_name[n] in options]
            device = part[0].device
            host = kept[0] if len(kept) == 1 else _least_loaded(options, device, len(part), load)
            load[(host.name, device)] += len(part)
            chosen_for.update({c: host.name for c in part})
    out = [replace(c, host=chosen_for[c]) for c in cells if c in chosen_for]
    return Placement(out, unplaceable)


def _least_loaded(options: list[HostInfo], device: str, size: int, load: Counter) -> HostInfo:
    """The host whose slots of `device` would be least loaded with `size` more cells (ties:
    the inventory's order)."""

    def per_slot(h: HostInfo) -> float:
        count = len(h.cpusets) if device == "cpu" else len(h.gpus)
        return (load[(h.name, device)] + size) / max(count, 1)

    return min(options, key=per_slot)
