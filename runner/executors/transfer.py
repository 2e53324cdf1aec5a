"""Files to and from an engine on another machine, through the Engine API only.

A remote engine (`tcp://`, `ssh://`) shares no file system with the runner, so what a local
cell gets as bind mounts travels as tar archives instead:
- an artifact (and the committed TVM databases) goes once per engine into a named volume,
  `deploybench-data-<content hash>`, filled through a container that is created and never
  started, and marked complete by a last file, so a copy cut short is filled again;
- the cell's document goes into a volume of the cell's own (`/out`, world-writable subfolder:
  the cell runs as the image's user, a fresh volume belongs to root), put before the container
  starts, and its result is read from there after it ended (the API reads the volumes of a
  stopped container), at most RESULT_LIMIT bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import docker.errors

from bench.fsutil import atomic_write_text

COMPLETE = ".deploybench-complete"
RESULT_LIMIT = 64 << 20
VOLUME_LABEL = "ai.deploybench.data"


def tree_hash(root: Path) -> str:
    """A content hash of a folder's files (names and bytes), for a volume's name."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def tar_of(entries: Iterable[tuple[str, bytes | None, int]]) -> bytes:
    """A tar of (name, data or None for a folder, mode) entries, owned by root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tar_folder(root: Path) -> bytes:
    """A folder's files, readable by everyone (the cell's user reads them), links refused."""
    entries: list[tuple[str, bytes | None, int]] = []
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            raise ValueError(f"{path}: a link is not copied to another engine")
        entries.append((name, None, 0o755) if path.is_dir() else (name, path.read_bytes(), 0o644))
    entries.append((COMPLETE, b"", 0o644))  # last: a volume without it was cut short
    return tar_of(entries)


def _has(container: Any, path: str) -> bool:
    try:
        container.get_archive(path)
        return True
    except docker.errors.NotFound:
        return False


def data_volume(client: Any, source: Path, image: str, labels: dict[str, str]) -> str:
    """The name of a volume on `client`'s engine holding `source`'s files: reused when a
    complete one exists, else (re)filled. `image`: any image on that engine (the holder
    container is created from it and never started)."""
    name = f"deploybench-data-{tree_hash(source)[:24]}"
    with contextlib.suppress(docker.errors.NotFound):
        client.volumes.get(name)
        holder = _holder(client, name, image, labels)
        try:
            if _has(holder, f"/data/{COMPLETE}"):
                return name
        finally:
            holder.remove(force=True)
        client.volumes.get(name).remove(force=True)
    client.volumes.create(name, labels={VOLUME_LABEL: source.name})
    holder = _holder(client, name, image, labels)
    try:
        if not holder.put_archive("/data", tar_folder(source)):
            raise RuntimeError(f"the engine refused the copy of {source} into volume {name}")
    finally:
        holder.remove(force=True)
    return name


def _holder(client: Any, volume: str, image: str, labels: dict[str, str]) -> Any:
    return client.containers.create(
        image,
        ["true"],
        entrypoint=[],
        volumes={volume: {"bind": "/data", "mode": "rw"}},
        network_mode="none",
        labels=labels,
    )


def put_cell_document(container: Any, document: str) -> None:
    """`/out/cell/cell.json` of a created cell container (its /out a fresh volume)."""
    archive = tar_of([("cell", None, 0o777), ("cell/cell.json", document.encode(), 0o644)])
    if not container.put_archive("/out", archive):
        raise RuntimeError("the engine refused the cell's document")


def fetch_file(container: Any, path: str, dest: Path) -> bool:
    """Copy one regular file of a (stopped) container to `dest`, atomically; False when the
    file is absent, not a regular file, or larger than RESULT_LIMIT."""
    try:
        stream, stat = container.get_archive(path)
    except docker.errors.NotFound:
        return False
    if stat.get("size", 0) > RESULT_LIMIT or stat.get("linkTarget"):
        return False
    data = bytearray()
    for chunk in stream:
        data += chunk
        if len(data) > RESULT_LIMIT + (1 << 20):  # the tar's headers on top of the file
            return False
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as tar:
        member = tar.next()
        if member is None or not member.isfile():
            return False
        extracted = tar.extractfile(member)
        if extracted is None:
            return False
        atomic_write_text(dest, extracted.read().decode())
    return True
