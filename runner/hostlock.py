"""One run measures on a host at a time: `runner run` holds an exclusive lock on one file.

The lock is an flock(2) on `DEPLOYBENCH_LOCK` (default /run/lock/deploybench.lock, else in the
temporary folder), so the kernel releases it when its holder dies however it dies: a SIGKILLed
runner's lock is taken over by the next run. The file also says who holds it (run id, pid,
since when) for the message a second run prints while it waits, or when it refuses (--no-wait).
Cells inherit no lock descriptor (it is close-on-exec), so a cell cannot keep it alive.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from runner.manifest import now
from runner.owner import this_process

LOCK_ENV = "DEPLOYBENCH_LOCK"
DEFAULT_DIR = Path("/run/lock")
HOST_BUSY_EXIT_CODE = 75  # sysexits' EX_TEMPFAIL: try again later


class HostBusy(Exception):
    """Another run holds the host lock and the caller would not wait."""


def lock_path() -> Path:
    if env := os.environ.get(LOCK_ENV):
        return Path(env)
    folder = DEFAULT_DIR if os.access(DEFAULT_DIR, os.W_OK) else Path(tempfile.gettempdir())
    return folder / "deploybench.lock"


def _holder(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        return json.loads(os.read(fd, 4096) or b"{}")
    except ValueError:
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another run"
    return f"run {holder.get('run_id')!r} (pid {holder.get('pid')}, since {holder.get('since')})"


@contextlib.contextmanager
def host_lock(run_id: str, wait: bool = True, log: Callable[[str], None] = print) -> Iterator[Path]:
    """Hold the host lock for the block; wait for it (saying for whom) or raise `HostBusy`."""
    path = lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        with contextlib.suppress(OSError):  # runners of other users take the same lock
            os.fchmod(fd, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_holder(fd))
            if not wait:
                raise HostBusy(
                    f"{holder} is measuring on this host (lock {path}); run again when it has "
                    "finished, or without --no-wait to wait for it"
                ) from None
            log(f"waiting for {holder} to finish: one run measures on a host at a time ({path})")
            fcntl.flock(fd, fcntl.LOCK_EX)  # a signal's handler may still interrupt the wait
        # A holder that ends cleanly empties the file: what is left was written by one that died
        # holding the lock (the kernel released it as the process went, still exiting maybe).
        if previous := _holder(fd):
            log(f"took over the host lock of {_describe(previous)}, whose runner is gone")
        me = this_process()
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"run_id": run_id, "since": now(), **me}).encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock
