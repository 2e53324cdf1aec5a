"""The backend interface: load an artifact, run it on arrays, say what actually ran, close.

Template methods (the Polygraphy pattern): the public `load`/`infer` guard (supported device
and precision? loaded? inputs valid?) and call the subclass's `_load`/`_infer`. The base class
stays framework-neutral.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from bench.artifact import Artifact
from bench.cell import Cell
from bench.errors import Unsupported

# What is inside the timed region of a CPU backend's `infer`.
HOST_END_TO_END = "host_end_to_end"
SCOPE_DESCRIPTIONS = {
    HOST_END_TO_END: "one infer call: host numpy arrays in, host numpy arrays out, including the "
    "framework's own input/output conversion; preprocessing is excluded",
}


class Backend(ABC):
    """One framework's way to run an artifact. Use as a context manager."""

    name: ClassVar[str]
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    option_names: ClassVar[tuple[str, ...]] = ()
    timing_scope: ClassVar[str] = HOST_END_TO_END

    def __init__(self, artifact: Artifact, cell: Cell) -> None:
        self.artifact = artifact
        self.cell = cell
        self._loaded = False

    # -- public template methods -------------------------------------------------------------
    def load(self) -> None:
        """Check the cell is supported, then build the framework's session (timed as load)."""
        if self.cell.device not in self.devices:
            raise Unsupported(
                f"{self.name} runs on {', '.join(self.devices)}, not {self.cell.device}"
            )
        if self.cell.precision not in self.precisions:
            raise Unsupported(
                f"{self.name} on {self.cell.device} supports precision "
                f"{', '.join(self.precisions)}, not {self.cell.precision}"
            )
        unknown = sorted(set(dict(self.cell.options)) - set(self.option_names))
        if unknown:
            valid = ", ".join(self.option_names) or "none"
            raise Unsupported(f"{self.name} has no option {', '.join(unknown)} (valid: {valid})")
        fixed_batch = self.artifact.meta["inputs"][0]["shape"][0]
        if isinstance(fixed_batch, int) and fixed_batch != self.cell.batch_size:
            raise Unsupported(f"the model's batch dimension is fixed at {fixed_batch}")
        self._load()
        self._loaded = True

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on host arrays; returns every output by name."""
        if not self._loaded:
            raise RuntimeError("infer() before load()")
        return self._infer(feed)

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
