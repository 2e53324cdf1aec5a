"""What a run on a pool adds to a run on one engine: placing cells on hosts, recording where,
and placing a lost host's queued cells again.

The manifest's `pool` section: `hosts` (each host's address, labels, engine, image ids and state:
up, down with why), `placement` ({cell id without host: host}: a resumed run keeps it for every
host still up), `requeued` (cells moved off a lost host: from, to, when) and `unplaceable`
(cells no host can run, with the reason per host).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.cell import Cell
from runner.executors.pool import PoolExecutor
from runner.manifest import now
from runner.placement import HostsSpec, Placement, place, unplaced


@dataclass
class PoolPlan:
    executor: PoolExecutor
    spec: HostsSpec
    record: dict  # the manifest's `pool` section, updated in place
    log: Callable[[str], None] = print
    load: Counter = field(default_factory=Counter)

    def place(self, cells: list[Cell]) -> Placement:
        """Every matrix cell on its host(s), keeping an earlier attempt's placement."""
        # One host per cell (an `each` attempt recorded lists: nothing to keep from it).
        previous = {k: v for k, v in self.record.get("placement", {}).items() if isinstance(v, str)}
        placement = place(cells, self.executor.host_infos(), self.spec, previous, self.load)
        if self.spec.each:  # every cell on every eligible host: {cell: [hosts]}
            where: dict[str, list[str | None]] = {}
            for c in placement.cells:
                where.setdefault(unplaced(c).id, []).append(c.host)
            self.record["placement"] = where
        else:
            self.record["placement"] = {
                **previous,
                **{unplaced(c).id: c.host for c in placement.cells},
            }
        self.record["unplaceable"] = {c.id: why for c, why in placement.unplaceable.items()}
        self.record.setdefault("requeued", [])
        self.record["each"] = self.spec.each
        self.refresh()
        per_host = Counter(c.host for c in placement.cells)
        self.log(
            "placement: "
            + ", ".join(f"{h} {n} cells" for h, n in per_host.items())
            + (
                f"; {len(placement.unplaceable)} cells no host can run"
                if placement.unplaceable
                else ""
            )
        )
        return placement

    def refresh(self) -> None:
        self.record["hosts"] = self.executor.describe()

    def requeue(self, lost: str, cells: list[Cell]) -> tuple[list[tuple[Cell, Cell]], list[Cell]]:
        """`cells` of the lost host that have not run: ((old, new) pairs placed again on the
        hosts still up, those that stay: bound to the lost host by `each`, or no other host
        can run them)."""
        self.refresh()
        if self.spec.each:
            return [], cells
        self.load.subtract({(lost, c.device): 1 for c in cells})
        again = place(
            [unplaced(c) for c in cells], self.executor.host_infos(), self.spec, None, self.load
        )
        moved = {unplaced(c).id: c for c in again.cells}
        stay = [c for c in cells if unplaced(c).id not in moved]
        for old in cells:
            if (new := moved.get(unplaced(old).id)) is not None:
                self.record["placement"][unplaced(old).id] = new.host
                self.record["requeued"].append(
                    {"cell": unplaced(old).id, "from": lost, "to": new.host, "at": now()}
                )
                self.log(f"host {lost} lost: {unplaced(old).id} placed again on {new.host}")
        return [(c, moved[unplaced(c).id]) for c in cells if c not in stay], stay
