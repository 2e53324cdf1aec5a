"""ONNX Runtime. On CPU, the CPU execution provider with the session settings of
bench/backends/ort_loader.py (as ONNX Runtime's documentation recommends for latency; the batch
fixed by a free-dimension override, or as exported with option shape=dynamic), which the
native session in C++ and `bench diverge` use too.
int8 on CPU runs ONNX Runtime's own static quantization for CPUs, calibrated on the sample
photos (`bench.quantize.ort_cpu_recipe`; option quantizer=tensorrt: the QDQ graph shaped for
TensorRT); ORT fuses its Q/DQ pairs into integer kernels, and the optimised graph it saves is
read back to count them: below 90% integer compute operators the cell is labelled mixed.
On CUDA, the CUDA or TensorRT EP (option `ep`) on the same session options, with IO binding for
the device-compute scope (see bench/backends/ort_cuda.py for the providers and fp16)."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.backends import ort_cuda
from bench.backends.base import Backend
from bench.backends.cuda import cuda_unavailable_reason
from bench.backends.ort_loader import cell_settings, input_shape_record, open_session
from bench.errors import Unsupported
from bench.quantize import (
    calibration_record,
    int8_label,
    integer_fraction,
    ort_cpu_int8_onnx,
    ort_cpu_recipe,
    qdq_recipe,
    reduced_precision_onnx,
)

# The compute operators of an optimised ORT graph, by the arithmetic they run.
INTEGER_COMPUTE = frozenset(
    {"QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger",
     "MatMulIntegerToFloat", "DynamicQuantizeMatMul"}
)  # fmt: skip
FLOAT_COMPUTE = frozenset(
    {"Conv", "FusedConv", "ConvTranspose", "Gemm", "FusedGemm", "MatMul", "FusedMatMul"}
)


def quantized_op_counts(onnx_path: Path) -> dict[str, int]:
    """How many of a graph's compute operators (convolutions, matrix products) run on integers
    and how many in float, from the graph ORT saved after optimisation."""
    import onnx

    nodes = onnx.load(str(onnx_path), load_external_data=False).graph.node
    integer = sum(1 for n in nodes if n.op_type in INTEGER_COMPUTE)
    floating = sum(1 for n in nodes if n.op_type in FLOAT_COMPUTE)
    return {"integer": integer, "float": floating}


def _denormals(options: ort.SessionOptions) -> str:
    """ONNX Runtime's denormal handling: flushed to zero only with session.set_denormal_as_zero
    (off unless set, which this project never does)."""
    try:
        flush = options.get_session_config_entry("session.set_denormal_as_zero") == "1"
    except RuntimeError:  # unset: ONNX Runtime's default
        flush = False
    return "flushed to zero" if flush else "IEEE (kept)"


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    serial_reason = None  # InferenceSession.run may be called from several threads at once

    def _device_unavailable(self) -> str | None:
        return cuda_unavailable_reason() if self.cell.device == "cuda" else None

    def _load(self) -> None:
        self.ep = ort_cuda.ep_option(self.cell)
        declared = self.artifact.meta["inputs"][0]["shape"]
        mode = self.cell.option("shape", "static")
        self.settings = cell_settings(declared, self.cell.batch_size, self.cell.threads, mode)
        self.input_shape = input_shape_record(declared, self.cell.batch_size, mode)
        self.model_path, providers = self.artifact.onnx_path, ["CPUExecutionProvider"]
        self.optimized_path: Path | None = None
        self.quantizer = None
        if self.ep != "cpu":
            self.model_path, providers = self._gpu_setup()
        elif self.precision == "int8":
            self.quantizer = self.cell.option("quantizer", "ort")
            if self.quantizer == "ort":
                self.model_path, _ = ort_cpu_int8_onnx(self.artifact)
            else:
                self.model_path, _ = reduced_precision_onnx(self.artifact, "int8", for_cpu=True)
            # ORT writes the graph it will run: the read-back of what its optimiser fused.
            # Beside the session, not beside the cached graph: a cache entry is never changed.
            self._readback = tempfile.TemporaryDirectory(prefix="deploybench-ort-")
            self.optimized_path = Path(self._readback.name) / "ort-cpu-optimized.onnx"
        # A cuda cell profiles its first (cold) run: the profile says which provider ran each
        # node, the only read-back of ORT's silent CPU fallback. Its cost is in cold_ms only.
        self._profiling = self.ep != "cpu"
        self._profile_dir = (
            tempfile.TemporaryDirectory(prefix="deploybench-ort-profile-")
            if self._profiling
            else None
        )
        prefix = str(Path(self._profile_dir.name) / "ort") if self._profile_dir else None
        self.session = open_session(
            self.model_path, self.settings, providers, self.optimized_path, prefix
        )
        if self.ep != "cpu":
            ort_cuda.require_active(self.session, self.ep)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.binding = None
        self.assignment: dict[str, dict[str, int]] | None = None
        self.cpu_fallback_nodes: int | None = None

    def _gpu_setup(self) -> tuple[Path, list]:
        """The graph and providers of a cuda cell, after checking the EP can load at all."""
        ort_cuda.require_gpu_build(self.ep)
        ort_cuda.preload_cuda_libraries()
        precision, key = self.precision, self.artifact.key
        if self.ep == "tensorrt":
            if reason := ort_cuda.tensorrt_unavailable_reason():
                raise Unsupported(reason)
            ort_cuda.control_tensorrt_tf32(precision)
            # TensorRT converts to fp16 itself (trt_fp16_enable): it gets the fp32 graph.
            # ORT reads and writes engines in the folder it is given: a copy of the verified
            # entry, published again when the session closes (see _close).
            entry = ort_cuda.trt_cache_entry(key, precision, self.cell.batch_size)
            self._trt_cache = contextlib.ExitStack()
            cache = self._trt_cache.enter_context(entry.build(seed=entry.lookup()))
            return self.artifact.onnx_path, ort_cuda.providers("tensorrt", precision, cache)
        path = self.artifact.onnx_path
        if precision == "fp16":  # the CUDA EP runs the types the graph has: a float16 copy
            path, _ = reduced_precision_onnx(self.artifact, "fp16")
        return path, ort_cuda.providers("cuda", precision)

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Host arrays in and out: on CUDA, ORT copies them to and from the device in run().
        out = dict(zip(self.output_names, self.session.run(self.output_names, feed), strict=True))
        if self._profiling:
            self._profiling = False
            self.assignment = ort_cuda.read_profile(self.session)
            self.cpu_fallback_nodes = ort_cuda.check_assignment(self.ep, self.assignment)
        return out

    def _stage(self, feed: dict[str, np.ndarray]) -> None:
        self.binding = ort_cuda.bind(self.session, feed)

    def _run_staged(self) -> None:
        self.session.run_with_iobinding(self.binding)
        self.binding.synchronize_outputs()  # returns once the device has finished

    def framework_version(self) -> str:
        return ort.__version__

    def _runtime_info(self) -> dict[str, object]:
        options = self.session.get_session_options()
        input_types = {i.type for i in self.session.get_inputs()}
        info: dict[str, object] = {
            # The graph's tensors are what the CPU EP computes in: float32 in, float32 math.
            "precision_run": "fp32" if input_types == {"tensor(float)"} else ",".join(input_types),
            "threads": options.intra_op_num_threads,
            "inter_op_threads": options.inter_op_num_threads,
            "providers": self.session.get_providers(),
            "graph_optimization_level": str(options.graph_optimization_level),
            "execution_mode": str(options.execution_mode),
            "input_shape": self.input_shape,
            "denormals": _denormals(options),
        }
        if self.ep != "cpu":
            info.update(self._gpu_info())
        elif self.optimized_path is not None:
            ops = quantized_op_counts(self.optimized_path)
            info["optimized_op_counts"] = ops
            info["integer_fraction"] = fraction = integer_fraction(ops["integer"], ops["float"])
            info["precision_run"] = int8_label(fraction)
            info["quantizer"] = self.quantizer
            info["model_file"] = str(self.model_path)
            recipe = ort_cpu_recipe() if self.quantizer == "ort" else qdq_recipe(for_cpu=True)
            info["calibration"] = calibration_record(self.artifact, recipe)
        return info

    def _gpu_info(self) -> dict[str, object]:
        # The options the session actually runs with, as ORT reports them.
        effective = self.session.get_provider_options()
        cuda = effective.get("CUDAExecutionProvider", {})
        trt = effective.get("TensorrtExecutionProvider", {})
        if self.ep == "tensorrt":
            # TensorRT picks each layer's kernel; fp16 enabled lets it choose fp16 ones.
            precision = "fp16" if trt.get("trt_fp16_enable") == "1" else "fp32"
        else:
            precision = ort_cuda.graph_precision(self.model_path)
        return {
            "precision_run": precision,
            "execution_provider": ort_cuda.EPS[self.ep],
            "tf32": cuda.get("use_tf32") == "1",  # the TensorRT EP's is set below
            "cudnn_conv_algo_search": cuda.get("cudnn_conv_algo_search"),
            "model_file": str(self.model_path),
            # Read back from ORT's profile of the cold run: who ran which operators.
            "node_assignment": self.assignment,
            "cpu_fallback_nodes": self.cpu_fallback_nodes,
            **({"trt_options": trt} if trt else {}),
            **(ort_cuda.tensorrt_tf32_record() if self.ep == "tensorrt" else {}),
        }

    def _close(self) -> None:
        created = getattr(self, "session", None) is not None
        self.session = self.binding = None
        if (profile_dir := getattr(self, "_profile_dir", None)) is not None:
            profile_dir.cleanup()
        if (stack := getattr(self, "_trt_cache", None)) is not None:
            self._trt_cache = None
            if created:
                stack.close()  # publishes the engines the TensorRT EP built
            else:  # a load that failed: its half-built cache is discarded
                stack.__exit__(RuntimeError, RuntimeError("no session"), None)
