"""What a cell container may do, and how its files cross back to the host.

A cell runs other people's models through framework binaries: it gets no more than it needs.
The image's non-root user `bench` (a fixed uid, whatever the host's), no capabilities, no
privilege gain through setuid binaries, a pids limit (a fork bomb stays inside), a read-only
root file system with a tmpfs for /tmp, no network, and a capped log. It sees its one artifact
read-only and writes only into a folder of its own, which the runner creates for it; what it
wrote there is taken over by the runner (a regular file, read without following links, of a
bounded size) and written again as the runner's own file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path

from bench.fsutil import atomic_path

# The user `bench` of every image (images/*/Dockerfile: useradd --uid 10001): cells run as it.
CELL_UID = CELL_GID = 10001
PIDS_LIMIT = 4096  # processes and threads: frameworks start a thread per core, compilers more
# HOME, Inductor's and TVM's scratch. `exec`: Docker's tmpfs is noexec unless told, and
# Inductor loads the libraries it compiles there (torch int8 and compile=* cells).
TMPFS = {"/tmp": "rw,exec,nosuid,nodev,size=2g,mode=1777"}
LOG_MAX_BYTES = 8 << 20  # kept by the engine per log file (two files), and read back at most
LOG_FILES = 2
RESULT_MAX_BYTES = 256 << 20  # a result holds every sample: megabytes, never hundreds


def container_settings() -> dict[str, object]:
    """The Docker SDK arguments every cell and export container gets."""
    from docker.types import LogConfig

    return {
        "user": f"{CELL_UID}:{CELL_GID}",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": PIDS_LIMIT,
        "read_only": True,
        "tmpfs": dict(TMPFS),
        "network_disabled": True,
        "network_mode": "none",
        "init": True,  # tini as PID 1: signals forwarded, children reaped
        "log_config": LogConfig(
            type=LogConfig.types.JSON,
            config={"max-size": str(LOG_MAX_BYTES), "max-file": str(LOG_FILES)},
        ),
    }


def cell_folder(path: Path) -> Path:
    """A new empty folder the cell's user can write: owned by it when the runner is root (it
    can give files away), else open to every user (it cannot)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    if os.geteuid() == 0:
        os.chown(path, CELL_UID, CELL_GID)
        os.chmod(path, 0o700)
    else:
        os.chmod(path, 0o777)
    return path


def take_file(source: Path, dest: Path, max_bytes: int = RESULT_MAX_BYTES) -> bool:
    """Copy what a cell left at `source` to `dest` as the runner's own file, atomically: only
    a regular file (a symlink could point anywhere on the host), at most `max_bytes`. Returns
    whether there was such a file."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return False
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        return False
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return True


def adopt_tree(source: Path, dest: Path) -> None:
    """Copy a folder a container wrote (an artifact) to `dest` as the runner's own files,
    links not followed; it appears whole or not at all."""
    from bench.fsutil import atomic_dir

    with atomic_dir(dest) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True, symlinks=True)


def remove_folder(path: Path) -> None:
    """Remove a cell's folder; files a non-root runner cannot delete (the cell's user made
    sub-folders) are left, and said nothing about: they hold nothing the run reads."""
    with contextlib.suppress(OSError):
        shutil.rmtree(path)


def save_logs(
    container: object, path: Path, max_bytes: int = 2 * LOG_FILES * LOG_MAX_BYTES
) -> None:
    """The container's output into `path`, streamed (never whole in memory), at most
    `max_bytes` of it (the engine keeps no more than its log files anyway)."""
    written = 0
    with path.open("wb") as log:
        for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=False):
            if written + len(chunk) > max_bytes:
                log.write(chunk[: max_bytes - written])
                log.write(b"\n[log cut at the cap of the runner]\n")
                break
            log.write(chunk)
            written += len(chunk)
