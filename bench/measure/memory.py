"""A cell's memory and size: the process's peak resident memory at load and in the timed loop
apart, the container's peak from its cgroup, and the model's size on disk.

- Process: Linux keeps the resident high-water mark (VmHWM in /proc/self/status). It is read
  after load (everything the framework needed to get ready: its import, the session, an engine
  build), then reset (`5` to /proc/self/clear_refs, Linux 4.0+) when the timed loop starts and
  read when it ends: the steady state's peak, which is what a deployment provisions for. Where
  the reset is refused the steady figure is left out, with the reason.
- Container: the cgroup's own peak (v2 `memory.peak`, v1 `memory.max_usage_in_bytes`), the
  figure the memory limit is enforced against; only in a cell's own container (elsewhere the
  cgroup holds other processes too).
- Size: the artifact's ONNX file (and external data) plus what the framework built from it and
  left on disk (a converted or quantized graph, an engine, a compiled library), from the paths
  the backend's runtime record names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

IMAGE_ENV = "DEPLOYBENCH_IMAGE"  # set by runner/executors/docker.py in each cell's container
STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
CGROUP_PEAKS = (
    (Path("/sys/fs/cgroup/memory.peak"), "cgroup v2 memory.peak"),
    (Path("/sys/fs/cgroup/memory/memory.max_usage_in_bytes"), "cgroup v1 max_usage_in_bytes"),
)
# Runtime record keys whose value is a file or folder the framework built from the artifact.
BUILT_KEYS = ("model_file", "engine_cache", "quantized_program", "native_build")


def status_kib(field: str, text: str | None = None) -> int | None:
    """A `VmXxx:  1234 kB` field of /proc/self/status (or of `text`), in KiB."""
    try:
        text = STATUS.read_text() if text is None else text
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            number = value.strip().split()[0] if value.strip() else ""
            return int(number) if number.isdigit() else None
    return None


def _mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


class ProcessMemory:
    """The process's peaks: `loaded()` after load, `loop_started()` / `loop_ended()` around
    the timed loop, `section()` for the result."""

    def __init__(self) -> None:
        self.load_peak_kib: int | None = None
        self.steady_peak_kib: int | None = None
        self.steady_reason: str | None = "no timed loop ran"
        self._reset = False

    def loaded(self) -> None:
        self.load_peak_kib = status_kib("VmHWM")

    def loop_started(self) -> None:
        try:
            CLEAR_REFS.write_text("5")  # the high-water mark back to the current RSS
            self._reset, self.steady_reason = True, None
        except OSError as exc:
            self._reset = False
            self.steady_reason = f"the peak could not be reset ({CLEAR_REFS}: {exc.strerror})"

    def loop_ended(self) -> None:
        if self._reset:
            self.steady_peak_kib = status_kib("VmHWM")

    def section(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "peak_rss_load_mib": _mib(self.load_peak_kib),
            "peak_rss_steady_mib": _mib(self.steady_peak_kib),
            "method": "VmHWM of /proc/self/status after load; reset at the timed loop's start "
            "(clear_refs 5) and read at its end",
        }
        if self.steady_peak_kib is None and self.steady_reason:
            out["steady_reason"] = self.steady_reason
        return out


def in_container() -> bool:
    """Whether this process is a cell in its own container: the Docker executor names the
    image in every cell's environment (a local cell may run inside some other container,
    whose cgroup holds more than the cell)."""
    return bool(os.environ.get(IMAGE_ENV))


def container_peak() -> dict[str, Any] | None:
    """The container's peak memory from its cgroup; None outside a container."""
    if not in_container():
        return None
    for path, source in CGROUP_PEAKS:
        try:
            value = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        return {"peak_mib": round(value / 2**20, 1), "source": source}
    return {"peak_mib": None, "source": None, "reason": "no cgroup memory peak file readable"}


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def sizes(artifact_files: list[Path], runtime: dict[str, Any] | None) -> dict[str, Any]:
    """The model's size on disk: the artifact's files and what the framework built."""
    artifact_bytes = sum(size_of(p) for p in artifact_files)
    built: dict[str, int] = {}
    seen = {p.resolve() for p in artifact_files if p.exists()}
    for key in BUILT_KEYS:
        value = (runtime or {}).get(key)
        if not isinstance(value, str) or not value:
            continue
        path = Path(value)
        if path.exists() and path.resolve() not in seen:
            built[key] = size_of(path)
    return {
        "artifact_bytes": artifact_bytes,
        "built": built,
        "total_bytes": artifact_bytes + sum(built.values()),
    }
