"""OpenVINO on CPU, configured as its documentation recommends, and labelled by what it ran.

- The inference precision is always set explicitly and read back after compiling. On a CPU
  with bf16 support OpenVINO's *default* is bf16, so an unset hint would run bf16 under an
  fp32 label; a precision the plugin replaces with another (fp16 becomes bf16 on CPUs without
  AVX512-FP16) ends the cell as unsupported instead.
- The runtime model's per-layer precisions are recorded too (`layer_precisions`): with a bf16
  hint some layers stay in f32, and the result shows how many.
- Every batch compiles with the LATENCY hint and runs one synchronous request on the whole
  batch, as every other framework makes one call per batch. Option hint=throughput compiles
  with the THROUGHPUT hint and one `infer` call splits the batch across the plugin's optimal
  number of asynchronous requests, so its streams work in parallel (labelled so in reports);
  the request and stream counts are recorded.
- The model is reshaped to the cell's static input shape before compiling (as TVM and
  TensorRT compile for it); option shape=dynamic keeps the exported dynamic batch.
- The thread budget is `inference_num_threads`, read back from the compiled model.
- int8: option `quantizer=nncf` (the default: OpenVINO's own post-training quantization,
  bench/backends/ov_nncf.py) or `quantizer=qdq` (ONNX Runtime's int8 graph, bench/quantize.py,
  to compare both runtimes on one quantization), both calibrated on the artifact's photos; the
  layers left in float run at f32, and below 90% of convolutions and matrix products in
  i8/u8 the cell is labelled mixed.
"""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.properties as props
import openvino.properties.hint as hints

from bench.backends import ov_nncf
from bench.backends.base import Backend
from bench.backends.cpu import bf16_unsupported_reason
from bench.errors import Unsupported
from bench.measure.loadgen import OnDone, Slots
from bench.quantize import (
    calibration_record,
    int8_label,
    integer_fraction,
    ort_cpu_int8_onnx,
    ort_cpu_recipe,
)

_NAMES = {ov.Type.f32: "fp32", ov.Type.bf16: "bf16", ov.Type.f16: "fp16"}
HINTS = {"latency": hints.PerformanceMode.LATENCY, "throughput": hints.PerformanceMode.THROUGHPUT}
# The runtime model's layer types that carry the arithmetic (their precision is what ran).
_COMPUTE_LAYERS = frozenset({"Convolution", "GroupConvolution", "FullyConnected", "MatMul"})


# OpenVINO's names of the inference precisions, as its properties take them (Python and C++).
OV_PRECISIONS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def compile_properties(hint: str, threads: int, precision: str | None) -> dict[str, str]:
    """The properties every OpenVINO compile of this project uses (the backend's, `bench
    diverge`'s, the native session's): the performance hint, the thread count and the inference
    precision, set explicitly unless None (`auto`: the plugin picks, and it is read back).
    As OpenVINO's own string names and values, which its Python and C++ APIs both parse."""
    properties = {
        hints.performance_mode(): HINTS[hint].name,
        props.inference_num_threads(): str(threads),
    }
    if precision is not None:
        properties[hints.inference_precision()] = OV_PRECISIONS[precision]
    return properties


def _first_cause(message: str) -> str:
    """OpenVINO's conversion errors start with the C++ check that failed; the operators it
    could not convert are named at the end ("Conversion is failed for: Loop-17"): lead with
    them, so that a report's one-line reason names the operator."""
    match = re.search(r"Conversion is failed for: ([^\n]+)", message)
    return f"cannot convert {match.group(1).strip()}; {message}" if match else message


class AsyncRequests(Slots):
    """OpenVINO's own concurrency for the load scenarios: n infer requests in an
    AsyncInferQueue on the compiled model, which runs them on its streams (hint=throughput
    compiles several; hint=latency one, so requests beyond it wait in the plugin)."""

    def __init__(self, compiled: ov.CompiledModel, n: int) -> None:
        super().__init__(n)
        streams = compiled.get_property(props.num_streams)
        self.mechanism = f"{n} OpenVINO async infer requests on {streams} stream(s)"
        self.queue = ov.AsyncInferQueue(compiled, n)
        self.queue.set_callback(lambda _request, on_done: self.finish(on_done, None))

    def _launch(self, feed: dict[str, np.ndarray], on_done: OnDone) -> None:
        self.queue.start_async({0: next(iter(feed.values()))}, on_done)

    def close(self) -> None:
        self.queue.wait_all()
        super().close()


class OpenVinoBackend(Backend):
    name = "openvino"
    serial_reason = None  # its own async infer requests run requests at once (request_slots)
    handles_auto = True  # auto: no inference precision set; OpenVINO picks, it is read back

    def _load(self) -> None:
        core = ov.Core()
        self.hint = hint = self.cell.option("hint", "latency")
        if self.cell.precision == "bf16" and (reason := bf16_unsupported_reason()):
            raise Unsupported(f"openvino bf16: {reason}")
        int8 = self.cell.precision == "int8"
        auto = self.cell.precision == "auto"
        self.quantizer = self.cell.option("quantizer", "nncf") if int8 else None
        try:
            # int8: a quantized model calibrated on the sample photos; OpenVINO runs its
            # quantized layers as int8 kernels and the rest at f32, not this CPU's default bf16.
            self.model_path, self.model_reused = self._quantized(core) if int8 else (None, None)
            model = core.read_model(str(self.model_path or self.artifact.onnx_path))
            self.input_shape = self._shape(model)
            # int8: the quantized layers run int8, the rest f32 (not this CPU's default bf16).
            precision = None if auto else "fp32" if int8 else self.precision
            config = compile_properties(hint, self.cell.threads, precision)
            self.compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as exc:  # OpenVINO reports conversion and compile errors this way
            raise Unsupported(f"openvino: {_first_cause(str(exc))}") from exc
        ran = self.compiled.get_property(hints.inference_precision)
        if int8 and not self._compute_layers()["integer"]:
            raise Unsupported(
                f"OpenVINO ran no layer of the {self.quantizer}-quantized model in int8 here"
            )
        if not (int8 or auto) and _NAMES.get(ran) != self.cell.precision:
            ran_name = _NAMES.get(ran, str(ran))
            raise Unsupported(
                f"asked for {self.cell.precision}, OpenVINO on this CPU runs {ran_name} instead"
            )
        self.output_names = [self._output_name(o) for o in self.compiled.outputs]
        requests = self.compiled.get_property(props.optimal_number_of_infer_requests)
        self.n_requests = 1 if hint == "latency" else max(1, min(requests, self.cell.batch_size))
        self.requests = [self.compiled.create_infer_request() for _ in range(self.n_requests)]

    def _output_name(self, output: ov.Output) -> str:
        """The artifact's name of a compiled output: a tensor that is also an inner node's
        output (Mask R-CNN's boxes) has several names, and `get_any_name` may pick another."""
        ours = output.get_names() & set(self.artifact.output_names)
        return ours.pop() if len(ours) == 1 else output.get_any_name()

    def _shape(self, model: ov.Model) -> dict[str, object]:
        """Reshape to the cell's static input shape (shape=static, the default) or keep the
        graph's dynamic batch (shape=dynamic); returns what the result records."""
        declared = self.artifact.meta["inputs"][0]["shape"]
        # The async requests of hint=throughput take chunks of the batch: a shape of their own.
        mode = self.cell.option("shape", "dynamic" if self.hint == "throughput" else "static")
        if mode == "static" and self.hint == "throughput":
            raise Unsupported(
                "openvino shape=static with hint=throughput: the async requests split the batch "
                "into chunks of other shapes; use shape=dynamic"
            )
        if mode == "static":
            dims = [self.cell.batch_size, *declared[1:]]
            if isinstance(declared[0], str):
                model.reshape({model.inputs[0].get_any_name(): dims})
            return {"mode": mode, "dims": dims}
        return {"mode": mode, "dims": declared}

    def _quantized(self, core: ov.Core) -> tuple[Path, bool]:
        """The int8 model file and whether it came from the cache."""
        if self.quantizer == "qdq":
            if not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")):
                raise Unsupported(
                    "openvino quantizer=qdq: the QDQ graph is made with onnx and onnxruntime, "
                    "which are not installed here (the ov-cpu image has NNCF, the default)"
                )
            return ort_cpu_int8_onnx(self.artifact)
        return ov_nncf.quantized_ir(core, self.artifact)

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feed[self.artifact.input_name]
        if self.n_requests == 1:
            out = self.requests[0].infer({0: x})
            return {name: out[i] for i, name in enumerate(self.output_names)}
        chunks = np.array_split(x, self.n_requests)
        for request, chunk in zip(self.requests, chunks, strict=True):
            request.start_async({0: chunk})
        for request in self.requests:
            request.wait()
        return {
            name: np.concatenate([r.get_output_tensor(i).data.copy() for r in self.requests])
            for i, name in enumerate(self.output_names)
        }

    def request_slots(self, n: int) -> Slots:
        return AsyncRequests(self.compiled, n)

    def preferred_in_flight(self) -> int:
        return int(self.compiled.get_property(props.optimal_number_of_infer_requests))

    def framework_version(self) -> str:
        return ov.get_version()

    def _layer_precisions(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for op in self.compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if "runtimePrecision" in info:
                counts[info["runtimePrecision"].astype(str)] += 1
        return dict(counts)

    def _compute_layers(self) -> dict[str, int]:
        """The runtime model's convolutions and matrix products, by the precision they run."""
        counts = {"integer": 0, "float": 0}
        for op in self.compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if "layerType" not in info or info["layerType"].astype(str) not in _COMPUTE_LAYERS:
                continue
            integer = info["runtimePrecision"].astype(str) in ("i8", "u8")
            counts["integer" if integer else "float"] += 1
        return counts

    def _runtime_info(self) -> dict[str, object]:
        c = self.compiled
        run = _NAMES[c.get_property(hints.inference_precision)]
        layers = self._compute_layers()
        fraction = integer_fraction(layers["integer"], layers["float"])
        return {
            # int8 when the compute layers run int8 (mixed when some do), else the float one.
            "precision_run": int8_label(fraction) if self.quantizer else run,
            "integer_fraction": fraction if self.quantizer else None,
            "compute_layers": layers,
            "input_shape": self.input_shape,
            # CPU_DENORMALS_OPTIMIZATION (flush to zero) is the plugin's; off unless set.
            "denormals": "flushed to zero"
            if c.get_property("CPU_DENORMALS_OPTIMIZATION")
            else "IEEE (kept)",
            "model_file": str(self.model_path or self.artifact.onnx_path),
            "quantizer": self.quantizer,
            "quantized_model_reused": self.model_reused,
            "calibration": self._calibration(),
            "threads": c.get_property(props.inference_num_threads),
            "performance_hint": self.hint,
            "num_streams": int(c.get_property(props.streams.num)),
            "infer_requests": self.n_requests,
            "layer_precisions": self._layer_precisions(),
            "execution_devices": list(c.get_property(props.execution_devices)),
        }

    def _calibration(self) -> dict[str, object] | None:
        if self.quantizer is None:
            return None
        recipe = ov_nncf.recipe() if self.quantizer == "nncf" else ort_cpu_recipe()
        return calibration_record(self.artifact, recipe)

    def _close(self) -> None:
        self.requests = []
        self.compiled = None
