"""The verified cache: what one cell builds (a quantized graph, a compiled program, a tuning
database, an engine) and a later cell loads, checked before it is loaded.

An entry is a folder `<cache>/<namespace>/<name>/`: its files plus `MANIFEST` (the sha256 and
size of every file). `name` is derived from everything that determines the content (it starts
with the artifact's key for entries of one artifact), so a changed input is another entry. An
entry is built in a temporary folder, its manifest written last, and renamed into place whole;
`lookup` loads an entry only when every file matches the manifest, and a mismatch (a truncated
file, a flipped byte, a file swapped for another) is rebuilt, never trusted.

Where cells run in containers, the cache is mounted read-only and each cell publishes into its
own staging folder (`DEPLOYBENCH_CACHE_STAGING`); the runner verifies what a cell staged and
moves into the shared cache only the entries of that cell's own artifact (`promote`). Without
staging (the local executor) entries are published into the cache directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.artifact import sha256_file
from bench.fsutil import cache_dir, fsync_dir

log = logging.getLogger(__name__)

MANIFEST = "deploybench-cache.json"
STAGING_ENV = "DEPLOYBENCH_CACHE_STAGING"
CACHE_FORMAT = 1


def digest(what: object, length: int = 12) -> str:
    """A short hash of a JSON-serialisable description of what determines an entry."""
    text = json.dumps(what, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _files(folder: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(folder)): p
        for p in sorted(folder.rglob("*"))
        if p.name != MANIFEST and (p.is_file() or p.is_symlink())
    }


def verify(folder: Path) -> bool:
    """Every file of the entry is the one its manifest lists: same set, sizes and sha256."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = _files(folder)
        if manifest.get("format") != CACHE_FORMAT or set(files) != set(manifest["files"]):
            return False
        for rel, path in files.items():
            want = manifest["files"][rel]
            if path.is_symlink() or path.stat().st_size != want["bytes"]:
                return False
            if sha256_file(path) != want["sha256"]:
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _write_manifest(folder: Path) -> None:
    files = {
        rel: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for rel, p in _files(folder).items()
    }
    text = json.dumps({"format": CACHE_FORMAT, "files": files}, indent=1)
    (folder / MANIFEST).write_text(text)


def _publish(tmp: Path, target: Path) -> None:
    """Rename a complete entry folder over `target` (a reader meanwhile finds the old entry,
    or none: a cache miss, never half an entry)."""
    for file in tmp.rglob("*"):
        if file.is_file():
            with open(file, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(file, file.stat().st_mode & 0o777 | 0o644)
        elif file.is_dir():
            os.chmod(file, 0o755)
    os.chmod(tmp, 0o755)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rename(target, old / "entry")
    os.rename(tmp, target)
    fsync_dir(target.parent)
    if old:
        shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class Entry:
    """One cache entry: `<namespace>/<name>`."""

    namespace: str
    name: str

    @property
    def relative(self) -> Path:
        return Path(self.namespace) / self.name

    @property
    def path(self) -> Path:
        """Where a new entry is published: the cell's staging folder, else the cache."""
        staging = os.environ.get(STAGING_ENV)
        return (Path(staging) if staging else cache_dir()) / self.relative

    def lookup(self) -> Path | None:
        """The entry's folder when it is there and verifies (what this cell staged first, then
        the shared cache); None when it must be built. A mismatch is said, then rebuilt."""
        for root in dict.fromkeys([self.path.parents[1], cache_dir()]):
            folder = root / self.relative
            if not folder.exists():
                continue
            if verify(folder):
                return folder
            log.warning("cache entry %s does not match its manifest: rebuilding it", folder)
        return None

    @contextlib.contextmanager
    def build(self, seed: Path | None = None) -> Iterator[Path]:
        """A new folder to build the entry in (a copy of `seed`'s files when given); when the
        block succeeds its manifest is written and it replaces the entry. A failure leaves
        nothing."""
        target = self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            if seed is not None:
                shutil.copytree(
                    seed, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MANIFEST)
                )
            yield tmp
            _write_manifest(tmp)
            _publish(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def get(self, make: Callable[[Path], None]) -> tuple[Path, bool]:
        """The verified entry, or one built by `make(folder)`: (its folder, reused?)."""
        if found := self.lookup():
            return found, True
        with self.build() as folder:
            make(folder)
        return self.path, False


def entry(namespace: str, *parts: str, what: object = None) -> Entry:
    """An entry named by `parts` (the artifact's key first, for an artifact's entries) and a
    digest of `what` else determines it."""
    name = "-".join([*parts, *([digest(what)] if what is not None else [])])
    return Entry(namespace, name)


def promote(staging: Path, cache: Path, prefix: str) -> tuple[list[str], list[str]]:
    """Runner side: move a cell's staged entries into the shared cache, as the runner's own
    files. Only entries whose name starts with `prefix` (the cell's artifact key) and that
    verify are taken: a cell cannot plant an entry that another model's cells would load.
    Returns (promoted, refused with why)."""
    promoted, refused = [], []
    for folder in sorted(p for p in staging.glob("*/*") if p.is_dir()):
        rel = folder.relative_to(staging)
        if folder.name.startswith("."):
            continue  # a build the cell did not finish
        if not folder.name.startswith(prefix):
            refused.append(f"{rel}: not an entry of this cell's artifact")
            continue
        if not verify(folder):
            refused.append(f"{rel}: does not match its manifest")
            continue
        target = cache / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            shutil.copytree(folder, tmp, dirs_exist_ok=True, symlinks=True)
            if not verify(tmp):  # changed while it was copied
                raise OSError(f"{rel} changed while it was copied")
            _publish(tmp, target)
            promoted.append(str(rel))
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            refused.append(f"{rel}: {exc}")
    return promoted, refused
