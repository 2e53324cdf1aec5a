"""ONNX Runtime's session, configured once: the settings every ONNX Runtime session of this
project runs with (the backend's, `bench diverge`'s, and the native session's in C++), decided
here from the cell and applied by whichever API opens the session.

The settings are what ONNX Runtime's documentation recommends for latency: all graph
optimisations, sequential execution, an explicit intra-op thread count and one inter-op thread,
and the batch dimension fixed at the cell's by a free-dimension override (shape=static, the
default), as TVM and TensorRT compile for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime as ort

from bench.errors import Unsupported
from bench.native import config_string

_LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}

# Errors by which ONNX Runtime says it cannot run a graph, as opposed to crashing.
UNSUPPORTED_ERRORS = tuple(
    getattr(ort.capi.onnxruntime_pybind11_state, name)
    for name in ("NotImplemented", "InvalidGraph")
    if hasattr(ort.capi.onnxruntime_pybind11_state, name)
)


@dataclass(frozen=True)
class OrtSettings:
    """One session's configuration, independent of the API that applies it."""

    threads: int
    inter_op_threads: int = 1
    graph_optimization_level: str = "all"
    # symbolic dimension -> its fixed value (the batch of a static-shape cell)
    free_dimensions: dict[str, int] = field(default_factory=dict)

    def session_options(self, optimized_model: Path | None = None) -> ort.SessionOptions:
        """For the Python API; `optimized_model`: where ORT saves the graph it will run."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = self.inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = _LEVELS[self.graph_optimization_level]
        # Errors only: a detector's outputs vary in size, and ORT warns about every one of them.
        options.log_severity_level = 3
        for name, value in self.free_dimensions.items():
            options.add_free_dimension_override_by_name(name, value)
        if optimized_model is not None:
            options.optimized_model_filepath = str(optimized_model)
        return options

    def native_config(self, library: Path) -> str:
        """For the C++ session (bench/native/src/session_onnxruntime.cpp), which takes the
        intra-op threads as its own argument and opens `library`, the wheel's C library."""
        pairs = {
            "library": str(library),
            "inter_op_num_threads": str(self.inter_op_threads),
            "graph_optimization_level": self.graph_optimization_level,
            "execution_mode": "sequential",
            **{f"free_dimension.{k}": str(v) for k, v in self.free_dimensions.items()},
        }
        return config_string(pairs)


def cell_settings(declared: list, batch_size: int, threads: int, shape: str) -> OrtSettings:
    """The settings of a cell whose graph input is declared with shape `declared`: the batch
    fixed at the cell's (shape=static) or left as exported (shape=dynamic)."""
    free = {}
    if shape == "static" and isinstance(declared[0], str):
        free[declared[0]] = batch_size
    return OrtSettings(threads=threads, free_dimensions=free)


def input_shape_record(declared: list, batch_size: int, shape: str) -> dict[str, object]:
    """What the result records of the input shape the session runs."""
    dims = [batch_size, *declared[1:]] if shape == "static" else declared
    return {"mode": shape, "dims": dims}


def open_session(
    model: Path | bytes,
    settings: OrtSettings,
    providers: list | None = None,
    optimized_model: Path | None = None,
    profile_prefix: str | None = None,
) -> ort.InferenceSession:
    """The ready session; a graph ONNX Runtime says it cannot run is `Unsupported`.
    `profile_prefix`: ORT's profiler on, writing there (ended by `session.end_profiling()`)."""
    source = str(model) if isinstance(model, Path) else model
    options = settings.session_options(optimized_model)
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    try:
        return ort.InferenceSession(
            source, options, providers=providers or ["CPUExecutionProvider"]
        )
    except UNSUPPORTED_ERRORS as exc:
        raise Unsupported(f"onnxruntime: {exc}") from exc
