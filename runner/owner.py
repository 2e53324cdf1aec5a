"""Which runner process owns a container or a lock, and whether that process still lives.

A process is named by host name, boot id, pid and its start time (clock ticks since boot, from
/proc/<pid>/stat): a pid alone is reused after the process dies, and a boot id tells a pid
from before a reboot. Cleanup removes what belongs to a dead runner only; anything whose owner
is unknown (another host, an older runner that did not label it) is left alone.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return "unknown"


def start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (None: no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields after its last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None  # dead already, not yet reaped: its locks are released, it runs nothing
    return fields[19]


def this_process() -> dict[str, str]:
    """This process's identity, as labels and lock files record it."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "boot_id": boot_id(),
        "pid": str(pid),
        "start": start_ticks(pid) or "unknown",
    }


def is_dead(owner: dict[str, str]) -> bool:
    """True only when `owner` is surely gone: same host, and either another boot or no process
    with that pid and start time. Unknown owners count as alive (never removed)."""
    if not owner.get("pid") or owner.get("host") != socket.gethostname():
        return False
    if owner.get("boot_id") != boot_id():
        return owner.get("boot_id") not in (None, "", "unknown")
    try:
        pid = int(owner["pid"])
    except ValueError:
        return False
    return start_ticks(pid) != owner.get("start")
