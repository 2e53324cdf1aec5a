"""The GPU's side of a cell: clocks when measurement starts and ends, and peak memory.

A GPU that heats up or hits its power cap lowers its clocks in the middle of a measurement,
and the numbers then describe the cooling, not the runtime: the cell records the SM clock and
NVML's throttle reasons at both ends of each timed loop (after its warm-up, not before) and is
flagged when the clock fell or a slowdown reason appeared. Peak memory is the device's used
memory, sampled through the cell, minus what was used before it started: the same method for
every framework, in every container (NVML's per-process view sees host PIDs, which a container
does not know).

The sampling thread makes five NVML calls every 10 ms and holds the GIL while it does: it is
paused for the whole of each timed loop, so that it never competes with the calls being
timed. It samples load, cold call, parity and warm-up, where memory grows; within a timed loop
memory is read at the loop's two ends (a steady loop allocates nothing new).

NVML comes from `nvidia-ml-py` (`import pynvml`) when installed, else `nvidia-smi`, which the
NVIDIA container runtime mounts into every GPU container. Without either the section says so.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from dataclasses import asdict, dataclass
from typing import Any

# NVML's clocks-event (throttle) reason bits, as nvml.h defines them.
THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# The reasons that mean the GPU ran slower than it could.
SLOWDOWNS = frozenset(
    {
        "sw_power_cap",
        "hw_slowdown",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
    }
)
CLOCK_DROP_TOLERANCE = 0.05  # an SM clock 5% lower at the end than at the start is a drop
MEMORY_METHOD = (
    "device memory used (NVML), peak sampled every 10 ms outside the timed loops and at each "
    "loop's ends, minus the use before the cell"
)
SMI_MEMORY_METHOD = (
    "device memory used (nvidia-smi), read before the cell and at each timed loop's ends, minus "
    "the use before the cell"
)


@dataclass(frozen=True)
class GpuSample:
    """One reading of the GPU's state."""

    sm_clock_mhz: int | None
    memory_clock_mhz: int | None
    temperature_c: int | None
    power_w: float | None
    memory_used_mib: float | None
    throttle_reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["throttle_reasons"] = list(self.throttle_reasons)
        return d


def decode_throttle_reasons(mask: int) -> tuple[str, ...]:
    """NVML's reason bit mask -> names, lowest bit first; unknown bits as hex."""
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASONS)
    if unknown:
        names.append(hex(unknown))
    return tuple(names)


def clock_drop(
    start: GpuSample, end: GpuSample, tolerance: float = CLOCK_DROP_TOLERANCE
) -> str | None:
    """Why the GPU ran slower at the end of the measurement than at its start, or None."""
    notes = []
    sm_start, sm_end = start.sm_clock_mhz, end.sm_clock_mhz
    if sm_start and sm_end is not None and sm_end < sm_start * (1 - tolerance):
        notes.append(f"SM clock fell from {start.sm_clock_mhz} to {end.sm_clock_mhz} MHz")
    slowdowns = [r for r in end.throttle_reasons if r in SLOWDOWNS]
    if slowdowns:
        notes.append("throttled at the end: " + ", ".join(slowdowns))
    return "; ".join(notes) or None


def _number(text: str) -> float | None:
    text = text.strip().split(" ")[0]
    try:
        return float(text)
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def parse_smi_sample(line: str) -> GpuSample:
    """One line of `nvidia-smi --query-gpu=<SMI_FIELDS> --format=csv,noheader,nounits`."""
    sm, mem, temp, power, used, reasons = (v.strip() for v in line.split(","))
    mask = int(reasons, 16) if reasons.startswith("0x") else 0

    def integer(text: str) -> int | None:
        value = _number(text)
        return None if value is None else int(value)

    return GpuSample(
        sm_clock_mhz=integer(sm),
        memory_clock_mhz=integer(mem),
        temperature_c=integer(temp),
        power_w=_number(power),
        memory_used_mib=_number(used),
        throttle_reasons=decode_throttle_reasons(mask),
    )


SMI_FIELDS = (
    "clocks.sm,clocks.mem,temperature.gpu,power.draw,memory.used,clocks_event_reasons.active"
)


class _Nvml:
    """Readings through NVML (nvidia-ml-py)."""

    source = "nvml"

    def __init__(self, index: int) -> None:
        import pynvml

        pynvml.nvmlInit()
        self.nvml = pynvml
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)

    def sample(self) -> GpuSample:
        n, h = self.nvml, self.handle

        def read(name: str, *args: Any) -> Any:
            # A function an older nvidia-ml-py lacks (AttributeError) reads as unknown, as one
            # the driver refuses (NVMLError) does.
            fn = getattr(n, name, None)
            if fn is None:
                return None
            try:
                return fn(h, *args)
            except (getattr(n, "NVMLError", AttributeError), AttributeError, TypeError):
                return None

        def constant(name: str) -> Any:
            return getattr(n, name, None)

        power_mw = read("nvmlDeviceGetPowerUsage")
        memory = read("nvmlDeviceGetMemoryInfo")
        reasons = read("nvmlDeviceGetCurrentClocksEventReasons")
        if reasons is None:  # the name before nvidia-ml-py 12.535
            reasons = read("nvmlDeviceGetCurrentClocksThrottleReasons")
        return GpuSample(
            sm_clock_mhz=read("nvmlDeviceGetClockInfo", constant("NVML_CLOCK_SM")),
            memory_clock_mhz=read("nvmlDeviceGetClockInfo", constant("NVML_CLOCK_MEM")),
            temperature_c=self._temperature(read, constant("NVML_TEMPERATURE_GPU")),
            power_w=None if power_mw is None else power_mw / 1000,
            memory_used_mib=None if memory is None else getattr(memory, "used", 0) / 2**20,
            throttle_reasons=decode_throttle_reasons(reasons or 0),
        )

    @staticmethod
    def _temperature(read: Any, sensor: Any) -> int | None:
        # nvmlDeviceGetTemperature is deprecated since CUDA 13 (NVML 13): its successor first.
        value = read("nvmlDeviceGetTemperatureV", sensor if sensor is not None else 0)
        if value is None:
            value = read("nvmlDeviceGetTemperature", sensor)
        return value if isinstance(value, int) else getattr(value, "temperature", None)

    def close(self) -> None:
        self.nvml.nvmlShutdown()


class _Smi:
    """Readings through nvidia-smi: slower (a process per reading), so no sampling thread."""

    source = "nvidia-smi"

    def __init__(self, index: int) -> None:
        self.index = index
        self.sample()  # fail now, not mid-cell

    def sample(self) -> GpuSample:
        out = subprocess.run(
            [
                "nvidia-smi",
                f"--id={self.index}",
                f"--query-gpu={SMI_FIELDS}",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return parse_smi_sample(out.strip().splitlines()[0])

    def close(self) -> None:
        pass


class GpuMonitor:
    """Watches one GPU through a cell: `start()` before load, `loop_started(scope)` and
    `loop_ended(scope)` around each timed loop (after its warm-up), `finish()` for the
    result's `gpu` section."""

    def __init__(self, index: int = 0, interval_s: float = 0.01) -> None:
        self.index, self.interval_s = index, interval_s
        self.reader: _Nvml | _Smi | None = None
        self.error: str | None = None
        self.before: GpuSample | None = None
        self.start_sample: GpuSample | None = None
        self.end_sample: GpuSample | None = None
        self.peak_used_mib: float | None = None
        self.loops: dict[str, dict[str, GpuSample | None]] = {}
        self._stop = threading.Event()
        self._polling = threading.Event()  # cleared: the thread waits, without waking
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            self.reader = _Nvml(self.index)
        except Exception as exc:  # pynvml absent, or NVML without a driver
            nvml_error = f"NVML: {exc}"
            try:
                self.reader = _Smi(self.index) if shutil.which("nvidia-smi") else None
            except Exception as smi_exc:  # a tool that fails any way: the cell goes on
                self.reader, self.error = None, f"{nvml_error}; nvidia-smi: {smi_exc}"
            if self.reader is None and self.error is None:
                self.error = f"{nvml_error}; nvidia-smi not found"
        if self.reader is None:
            return
        # From here on nothing the monitor meets may end the cell: a reading that fails is
        # recorded in the section's `error`, and the cell goes on without it.
        try:
            self.before = self.reader.sample()
            self.peak_used_mib = self.before.memory_used_mib
            if isinstance(self.reader, _Nvml):
                self._polling.set()
                self._thread = threading.Thread(target=self._poll, daemon=True)
                self._thread.start()
        except Exception as exc:
            self._failed("at the start", exc)

    def _failed(self, when: str, exc: BaseException) -> None:
        if self.error is None:
            self.error = f"the GPU monitor failed {when}: {type(exc).__name__}: {exc}"[:500]

    def _poll(self) -> None:
        while self._polling.wait() and not self._stop.wait(self.interval_s):
            if not self._polling.is_set():  # a timed loop began while this one waited
                continue
            try:
                self._note(self.reader.sample())
            except Exception as exc:
                self._failed("while sampling (peak memory stops there)", exc)
                return

    def _note(self, sample: GpuSample) -> None:
        used = sample.memory_used_mib
        if used is not None and (self.peak_used_mib is None or used > self.peak_used_mib):
            self.peak_used_mib = used

    def _read(self, when: str) -> GpuSample | None:
        if not self.reader:
            return None
        try:
            sample = self.reader.sample()
        except Exception as exc:
            self._failed(when, exc)
            return None
        self._note(sample)
        return sample

    def loop_started(self, scope: str) -> None:
        """A timed loop's measurement begins: the poller stops, the clocks are read."""
        self._polling.clear()
        sample = self._read(f"at the start of the {scope} measurement")
        self.loops[scope] = {"start": sample, "end": None}
        if self.start_sample is None:
            self.start_sample = sample

    def loop_ended(self, scope: str) -> None:
        """A timed loop's measurement ended: the clocks are read, the poller goes on."""
        sample = self._read(f"at the end of the {scope} measurement")
        self.loops.setdefault(scope, {"start": None})["end"] = sample
        self.end_sample = sample
        if not self._stop.is_set():
            self._polling.set()

    def finish(self) -> dict[str, Any]:
        """The `gpu` section: how it was read, the two samples, the verdict, peak memory."""
        self._stop.set()
        self._polling.set()  # a paused thread wakes to see the stop
        if self._thread:
            self._thread.join(timeout=1)
        if self.reader is None:
            return {"source": None, "error": self.error}
        try:
            self.reader.close()
        except Exception as exc:
            self._failed("at its shutdown", exc)
        drop = (
            clock_drop(self.start_sample, self.end_sample)
            if self.start_sample and self.end_sample
            else None
        )
        loops = {scope: _loop_section(ends) for scope, ends in self.loops.items()}
        loop_notes = [v["clock_note"] for v in loops.values() if v["clock_note"]]
        note = drop or (loop_notes[0] if loop_notes else None)
        peak = None
        used_before = self.before.memory_used_mib if self.before else None
        if self.peak_used_mib is not None and used_before is not None:
            peak = round(self.peak_used_mib - used_before, 1)
        return {
            "source": self.reader.source,
            "index": self.index,
            "before_cell": self.before.to_dict() if self.before else None,
            "measure_start": self.start_sample.to_dict() if self.start_sample else None,
            "measure_end": self.end_sample.to_dict() if self.end_sample else None,
            # The first loop's start against the last loop's end, and each loop by itself.
            "clocks_dropped": note is not None,
            "clock_note": note,
            "loops": loops,
            "poller": "paused during the timed loops" if self._thread else None,
            "peak_memory_mib": peak,
            "error": self.error,
            "memory_method": MEMORY_METHOD if self._thread else SMI_MEMORY_METHOD,
        }


def _loop_section(ends: dict[str, GpuSample | None]) -> dict[str, Any]:
    """One timed loop's two readings and its own clock verdict."""
    start, end = ends.get("start"), ends.get("end")
    note = clock_drop(start, end) if start and end else None
    return {
        "start": start.to_dict() if start else None,
        "end": end.to_dict() if end else None,
        "clocks_dropped": note is not None,
        "clock_note": note,
    }
