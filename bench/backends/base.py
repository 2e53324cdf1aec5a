"""The backend interface: load an artifact, run it on arrays, say what actually ran, close.

Template methods (the Polygraphy pattern): the public `load`/`infer` guard (supported device
and precision? device present? loaded?) and call the subclass's `_load`/`_infer`. The base class
stays framework-neutral.

Two timing scopes. `infer` is always host arrays in, host arrays out (`host_end_to_end`), so
every framework on every device is timed over the same work. A GPU backend also implements
`_stage` (copy one batch to the device, untimed) and `_run_staged` (run on it, leave outputs on
the device, and return only when the device has finished): the `device_compute_only` scope.
Both return only after the device is done, so a host clock around them never times an
asynchronous launch alone; but it times the host's launching too, which for a launch-bound cell
(many small kernels issued from Python) is most of it. A backend with a profiler says how much
of the run the device was busy (`profile_device_busy`, see bench/measure/device_busy.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from bench.artifact import Artifact
from bench.cell import Cell
from bench.errors import DeviceUnavailable, Unsupported
from bench.frameworks import FRAMEWORKS
from bench.measure.timing import TimingConfig, TimingRun

if TYPE_CHECKING:
    from bench.measure.loadgen import Slots

HOST_END_TO_END = "host_end_to_end"
DEVICE_COMPUTE_ONLY = "device_compute_only"
SCOPE_DESCRIPTIONS = {
    HOST_END_TO_END: "one infer call: host numpy arrays in, host numpy arrays out, including the "
    "framework's own input/output conversion and any host/device copies (through the "
    "framework's own host buffers: TensorRT stages through pinned ones, the others copy from "
    "pageable memory; runtime.host_buffers where set); preprocessing is excluded",
    DEVICE_COMPUTE_ONLY: "inputs already on the device, outputs left there: one run of the model "
    "followed by a synchronisation, timed by the host clock; no host/device copies. It is the "
    "device's time only where the host issues work faster than the device runs it: for a "
    "launch-bound cell (device_busy.launch_bound, many small kernels launched from Python) it "
    "is mostly the host's launch time",
}


def static_input_shape(artifact: Artifact, cell: Cell) -> dict[str, object]:
    """What a result records of a graph compiled for the cell's own input shape."""
    return {"mode": "static", "dims": [cell.batch_size, *artifact.meta["inputs"][0]["shape"][1:]]}


@dataclass(frozen=True)
class OwnLoopRun:
    """What a backend that runs its own timing loop measured (see `Backend.run_own_loop`)."""

    load_ms: float
    cold_ms: float
    outputs: dict[str, np.ndarray]  # every input's outputs, for parity
    timing: TimingRun


class Backend(ABC):
    """One framework's way to run an artifact. Use as a context manager."""

    name: ClassVar[str]
    # device -> the precisions this backend runs there (its keys are its devices) and the
    # options it takes: from the framework table (bench/frameworks.py), set per subclass.
    precisions: ClassVar[dict[str, tuple[str, ...]]] = {"cpu": ("fp32",)}
    option_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and cls.name in FRAMEWORKS:
            spec = FRAMEWORKS.get(cls.name)
            cls.precisions = spec.precisions
            cls.option_names = tuple(o.name for o in spec.options)

    # What an `auto` cell runs: the framework's own default; None where the backend lets the
    # framework choose (and reads back what it chose) or has no meaningful default.
    auto_precision: ClassVar[str | None] = "fp32"
    handles_auto: ClassVar[bool] = False  # True: the backend itself leaves the choice open
    timing_scope: ClassVar[str] = HOST_END_TO_END
    # True for a backend whose cell runs in another process with its own timing loop (the C++
    # runners): `bench.run` calls its `run_own_loop` instead of timing `infer` itself.
    runs_own_loop: ClassVar[bool] = False
    # How the load scenarios (bench/scenarios.py) run requests at once on this framework:
    # None where its `infer` may be called from several threads at once (one session or
    # model, its own thread pool shared); else why it serves one request at a time.
    serial_reason: ClassVar[str | None] = "its runtime is not known to be safe to enter twice"

    def __init__(self, artifact: Artifact, cell: Cell) -> None:
        self.artifact = artifact
        self.cell = cell
        self._loaded = False

    # -- public template methods -------------------------------------------------------------
    @classmethod
    def devices(cls) -> tuple[str, ...]:
        return tuple(cls.precisions)

    @property
    def precision(self) -> str | None:
        """The precision to run: the cell's, or for `auto` the framework's default."""
        return self.auto_precision if self.cell.precision == "auto" else self.cell.precision

    @property
    def has_compute_scope(self) -> bool:
        """Whether this cell's device work can be timed alone: a GPU cell of a backend that
        implements the staged methods."""
        return self.cell.device == "cuda" and type(self)._run_staged is not Backend._run_staged

    def load(self) -> None:
        """Check the cell is supported, then build the framework's session (timed as load)."""
        if self.cell.device not in self.precisions:
            raise Unsupported(
                f"{self.name} runs on {', '.join(self.devices())}, not {self.cell.device}"
            )
        if self.cell.precision == "auto":
            if self.auto_precision is None and not self.handles_auto:
                raise Unsupported(f"{self.name} has no default precision to run as auto")
        elif self.cell.precision not in self.precisions[self.cell.device]:
            raise Unsupported(
                f"{self.name} on {self.cell.device} supports precision "
                f"{', '.join(self.precisions[self.cell.device])}, not {self.cell.precision}"
            )
        if self.name in FRAMEWORKS and (
            reason := FRAMEWORKS.get(self.name).refusal(
                self.artifact.task, self.cell.device, dict(self.cell.options)
            )
        ):
            raise Unsupported(f"{self.name}: {reason}")
        fixed_batch = self.artifact.meta["inputs"][0]["shape"][0]
        if isinstance(fixed_batch, int) and fixed_batch != self.cell.batch_size:
            raise Unsupported(f"the model's batch dimension is fixed at {fixed_batch}")
        if reason := self._device_unavailable():
            raise DeviceUnavailable(reason)
        self._load()
        self._loaded = True

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on host arrays; returns every output by name."""
        if not self._loaded:
            raise RuntimeError("infer() before load()")
        return self._infer(feed)

    def stage(self, feed: dict[str, np.ndarray]) -> None:
        """Copy one batch to the device, once, outside any timed region."""
        if not self._loaded:
            raise RuntimeError("stage() before load()")
        self._stage(feed)

    def run_staged(self) -> None:
        """Run on the staged batch; returns when the device has finished."""
        self._run_staged()

    def model_files(self) -> list[Path]:
        """The artifact's files this backend loads (its size on disk): the ONNX graph and any
        external data beside it; a backend that loads other files says which."""
        onnx = self.artifact.onnx_path
        return [onnx, *sorted(onnx.parent.glob(onnx.name + ".data"))]

    @property
    def has_device_profiler(self) -> bool:
        """Whether this cell can say how busy the device was (`profile_device_busy`)."""
        return (
            self.has_compute_scope
            and type(self).profile_device_busy is not Backend.profile_device_busy
        )

    def profile_device_busy(self, runs: int) -> tuple[str, float | None]:
        """Run the staged batch `runs` times under the framework's profiler: (method, device
        busy milliseconds per run, None when it saw no device work)."""
        raise NotImplementedError(f"{self.name} has no device profiler wired in")

    def run_own_loop(self, inputs: np.ndarray, timing: TimingConfig) -> OwnLoopRun:
        """For `runs_own_loop` backends: after `load`, the cold call, every input's outputs
        and the timing loop on the first batch, all done by the backend's own process."""
        raise NotImplementedError(f"{self.name} is timed by bench.run")

    def request_slots(self, n: int) -> Slots:
        """At most `n` requests in flight on the loaded model, the framework's own way (a
        serial framework: one, whatever n). OpenVINO overrides it with async requests."""
        from bench.measure.loadgen import ThreadSlots

        reason = self.concurrency_serial_reason()
        if reason is None:
            return ThreadSlots(self.infer, n, f"{n} thread(s) calling {self.name}'s infer at once")
        return ThreadSlots(self.infer, 1, f"one request at a time: {reason}")

    def concurrency_serial_reason(self) -> str | None:
        """Why this cell serves one request at a time (None: several threads may infer)."""
        return type(self).serial_reason

    def preferred_in_flight(self) -> int:
        """How many requests the framework would run at once when nobody says (server)."""
        return 1

    def close(self) -> None:
        self._close()
        self._loaded = False

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def runtime_info(self) -> dict[str, object]:
        """What actually ran, read back from the framework where it can say."""
        return {"framework_version": self.framework_version(), **self._runtime_info()}

    # -- what a framework implements ---------------------------------------------------------
    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def framework_version(self) -> str: ...

    @abstractmethod
    def _runtime_info(self) -> dict[str, object]:
        """Must include `precision_run` and `threads`, read back from the framework."""

    def _close(self) -> None:  # noqa: B027 - optional hook
        pass

    def _device_unavailable(self) -> str | None:
        """Why the cell's device is absent here (a skip, not a failure); None when present."""
        return None

    def _stage(self, feed: dict[str, np.ndarray]) -> None:
        raise NotImplementedError(f"{self.name} has no device-compute scope")

    def _run_staged(self) -> None:
        raise NotImplementedError(f"{self.name} has no device-compute scope")
