"""Atomic file writes: a reader sees the old file or the whole new one, never half of it."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
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
