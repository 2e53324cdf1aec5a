"""Atomic file writes: a reader sees the old file or the whole new one, never half of it."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.errors import UsageError

# Below this much free space a folder that results or artifacts go to is refused up front: a
# cell's result with its samples and log is tens of KiB, an artifact tens of MiB.
MIN_FREE_BYTES = 64 << 20
FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to a temporary file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; when the block succeeds it is fsynced, made
    readable by everyone (mkstemp makes 0600; results and caches are shared) and renamed over
    `path`. A reader sees the old file or the whole new one, and a failure leaves nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in FULL_DISK_ERRNOS and not exc.filename:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc  # say which file
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """A temporary folder beside `path` to fill; when the block succeeds its files are fsynced
    and it is renamed to `path`, so a reader sees no folder or a complete one. When another
    writer got there first, its folder is kept and this one discarded. A failure leaves nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file():
                with open(file, "rb+") as f:
                    os.fsync(f.fileno())
                # readable by everyone, as atomic_path makes files; an executable stays one
                os.chmod(file, os.stat(file).st_mode & 0o777 | 0o644)
        os.chmod(tmp, 0o755)
        fsync_dir(tmp)
        try:
            os.rename(tmp, path)
        except OSError:
            if not path.is_dir():
                raise
            shutil.rmtree(tmp)  # a concurrent writer of the same content won
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cache_dir(*parts: str) -> Path:
    """Where compiled things (tuning databases, engines) are cached: `DEPLOYBENCH_CACHE`,
    by default ~/.cache/deploybench; the Docker executor mounts one cache into every cell."""
    base = Path(os.environ.get("DEPLOYBENCH_CACHE", Path.home() / ".cache" / "deploybench"))
    return base.joinpath(*parts)


def writable_folder(
    path: str | Path, what: str, min_free: int = MIN_FREE_BYTES, create: bool = True
) -> Path:
    """`path` as a folder this process can write, with `min_free` bytes free (created when
    `create`); else a usage error that names `what` it is and why not. Checked on the nearest
    folder that exists, so that a refusal creates nothing."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{what} {path} cannot be created: {existing} is not a folder")
    fs = os.statvfs(existing)
    if fs.f_blocks == 0:  # /proc, /sys: nothing can be stored there
        raise UsageError(f"{what} {path} cannot be created: {existing} stores no files")
    if fs.f_flag & os.ST_RDONLY or not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" in {existing}"
        raise UsageError(f"{what} {path} is not writable{where} by uid {os.getuid()}")
    free = shutil.disk_usage(existing).free
    if free < min_free:
        raise UsageError(
            f"{what} {path} is on a full disk ({free >> 20} MiB free, at least "
            f"{min_free >> 20} MiB needed); free some space there"
        )
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{what} {path} cannot be created: {exc.strerror or exc}") from exc
    return path


def full_disk_message(exc: OSError) -> str | None:
    """What to tell the user when `exc` is a write that failed on a full disk (else None)."""
    if exc.errno not in FULL_DISK_ERRNOS:
        return None
    where = f" writing {exc.filename}" if exc.filename else ""
    return f"no space left on the device{where} ({exc.strerror}); free some space there"
