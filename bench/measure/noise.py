"""Noise telemetry of a measurement: what else the machine was doing while a cell was timed.

Read around the measurement phase (never inside the timed region), in the cell's own process:
/proc/stat is host-wide even in a container, so it shows CPU steal (a hypervisor giving the
vCPU to someone else) and the CPU time other processes took on the cell's CPUs (the cell's own
CPU time, from getrusage, subtracted). Also the load average, each CPU's frequency and governor
where the kernel exposes them, and the SMT siblings of the CPU set (a sibling's work slows a
core). A round measured under heavy steal or foreign load is flagged `noisy`, with the reason.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

# A round is noisy when more than this fraction of its CPUs' time was stolen by the hypervisor,
# or taken by other processes on the cell's CPUs.
NOISY_STEAL = 0.05
NOISY_FOREIGN = 0.10
# /proc/stat fields: user nice system idle iowait irq softirq steal (guest is inside user).
_BUSY = (0, 1, 2, 5, 6)
_STEAL = 7
_FIELDS = 8
SYS_CPU = Path("/sys/devices/system/cpu")


def parse_proc_stat(text: str) -> dict[int, tuple[int, ...]]:
    """Per-CPU jiffy counters (the first eight fields) from /proc/stat text."""
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit():
            values = tuple(int(v) for v in rest.split()[:_FIELDS])
            out[int(name[3:])] = values + (0,) * (_FIELDS - len(values))
    return out


@dataclass(frozen=True)
class Snapshot:
    """What the counters said at one moment."""

    cpus: dict[int, tuple[int, ...]]
    own_cpu_s: float  # this process and its waited-for children
    wall_s: float

    @classmethod
    def take(cls) -> Snapshot:
        try:
            text = Path("/proc/stat").read_text()
        except OSError:
            text = ""
        own = sum(
            r.ru_utime + r.ru_stime
            for r in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(-1))
        )
        return cls(parse_proc_stat(text), own, time.monotonic())


def usage_between(
    before: Snapshot, after: Snapshot, cpu_set: list[int], hz: int
) -> dict[str, float | None]:
    """Steal and foreign busy time on `cpu_set` between two snapshots, as fractions of the
    set's capacity over the interval (None where /proc/stat was unreadable)."""
    total = busy = steal = 0
    for cpu in cpu_set:
        a, b = before.cpus.get(cpu), after.cpus.get(cpu)
        if a is None or b is None:
            return {"steal_fraction": None, "foreign_fraction": None}
        delta = [y - x for x, y in zip(a, b, strict=True)]
        total += sum(delta)
        busy += sum(delta[i] for i in _BUSY)
        steal += delta[_STEAL]
    if total <= 0:
        return {"steal_fraction": None, "foreign_fraction": None}
    own_jiffies = (after.own_cpu_s - before.own_cpu_s) * hz
    return {
        "steal_fraction": steal / total,
        "foreign_fraction": max(0.0, busy - own_jiffies) / total,
    }


def noisy_reasons(usage: dict[str, float | None]) -> list[str]:
    """Why a round's measurement is not a clean one (empty: it is)."""
    reasons = []
    steal, foreign = usage.get("steal_fraction"), usage.get("foreign_fraction")
    if steal is not None and steal > NOISY_STEAL:
        reasons.append(f"CPU steal {steal:.0%} > {NOISY_STEAL:.0%}")
    if foreign is not None and foreign > NOISY_FOREIGN:
        reasons.append(
            f"other processes took {foreign:.0%} of the cell's CPUs > {NOISY_FOREIGN:.0%}"
        )
    return reasons


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_facts(cpu_set: list[int]) -> dict[str, object]:
    """Frequency (kHz) and governor of each CPU where readable, and its SMT siblings."""
    facts: dict[str, object] = {}
    for cpu in cpu_set:
        base = SYS_CPU / f"cpu{cpu}"
        freq = _read(base / "cpufreq" / "scaling_cur_freq")
        facts[str(cpu)] = {
            "freq_khz": int(freq) if freq and freq.isdigit() else None,
            "governor": _read(base / "cpufreq" / "scaling_governor"),
            "smt_siblings": _read(base / "topology" / "thread_siblings_list"),
        }
    return facts


class NoiseProbe:
    """Snapshots at the start and end of a measurement; `report()` afterwards."""

    def __init__(self) -> None:
        self.cpu_set = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.start = Snapshot.take()
        self.load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    def report(self) -> dict[str, object]:
        end = Snapshot.take()
        usage = usage_between(self.start, end, self.cpu_set, os.sysconf("SC_CLK_TCK"))
        reasons = noisy_reasons(usage)
        return {
            **usage,
            "interval_s": end.wall_s - self.start.wall_s,
            "cpus": self.cpu_set,
            "load_average_1m": [
                self.load_start,
                os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            ],
            "cpu_facts": cpu_facts(self.cpu_set),
            "noisy": bool(reasons),
            "noisy_reasons": reasons,
        }
