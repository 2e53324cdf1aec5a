"""ONNX Runtime, CPU execution provider, configured as its documentation recommends for
latency: all graph optimisations, sequential execution, an explicit intra-op thread count."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from bench.backends.base import Backend
from bench.errors import Unsupported

# Errors by which ONNX Runtime says it cannot run a graph, as opposed to crashing.
_UNSUPPORTED_ERRORS = tuple(
    getattr(ort.capi.onnxruntime_pybind11_state, name)
    for name in ("NotImplemented", "InvalidGraph")
    if hasattr(ort.capi.onnxruntime_pybind11_state, name)
)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def _load(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.cell.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                str(self.artifact.onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except _UNSUPPORTED_ERRORS as exc:
            raise Unsupported(f"onnxruntime: {exc}") from exc
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feed), strict=True))

    def framework_version(self) -> str:
        return ort.__version__

    def _runtime_info(self) -> dict[str, object]:
        options = self.session.get_session_options()
        input_types = {i.type for i in self.session.get_inputs()}
        return {
            # The graph's tensors are what the CPU EP computes in: float32 in, float32 math.
            "precision_run": "fp32" if input_types == {"tensor(float)"} else ",".join(input_types),
            "threads": options.intra_op_num_threads,
            "inter_op_threads": options.inter_op_num_threads,
            "providers": self.session.get_providers(),
            "graph_optimization_level": str(options.graph_optimization_level),
            "execution_mode": str(options.execution_mode),
        }

    def _close(self) -> None:
        self.session = None
