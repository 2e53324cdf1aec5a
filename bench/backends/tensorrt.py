"""TensorRT 11 on an NVIDIA GPU: an engine built from the ONNX artifact, cached, and run through
cuda-python device buffers on one stream.

Precisions, as TensorRT 11 supports them. TensorRT 11 removed weak typing (BuilderFlag.FP16,
BuilderFlag.INT8, the INT8 calibrators and `platform_has_fast_*`): every network is strongly
typed and each tensor runs in the type the ONNX graph gives it.
- fp32: the artifact's graph, with the TF32 builder flag cleared (TensorRT sets it by default,
  which would run float32 convolutions and matrix products in TF32).
- fp16: a float16 copy of the graph with float32 inputs and outputs (`bench.quantize`).
- int8: explicit quantization, a QDQ graph calibrated on CPU on the artifact's sample images
  (`bench.quantize`); TensorRT runs int8 kernels between the Q/DQ pairs.
A graph or precision TensorRT cannot build on this GPU is `unsupported`, in TensorRT's words.

The engine is specialised to the cell's batch (an optimization profile with min = opt = max when
the graph's batch is dynamic) and kept in the verified cache (`bench.cache`), keyed by everything
that changes it (`engine_cache_key`); its build time is reported as `build_s`, apart from loading.
"""

from __future__ import annotations

import ctypes
import json
import logging
import time
from pathlib import Path

import numpy as np
import tensorrt as trt
from cuda.bindings import runtime as cudart

from bench import cache
from bench.artifact import Artifact
from bench.backends.base import Backend, static_input_shape
from bench.backends.cuda import cuda_unavailable_reason
from bench.backends.tensorrt_engine import (
    cuda_check,
    engine_cache_key,
    layer_output_dtypes,
    precision_run,
    static_shape,
)
from bench.cell import Cell
from bench.errors import Unsupported
from bench.measure.loadgen import LaneSlots, Slots
from bench.quantize import (
    RECIPES,
    calibration_digest,
    recipe_digest,
    reduced_precision_onnx,
)

log = logging.getLogger(__name__)

ENGINE_FILE = "model.engine"  # the file of a "tensorrt" cache entry
# Room for TensorRT's tactics; a larger workspace only widens the search, never slows a kernel.
WORKSPACE_BYTES = 4 << 30

_PRECISION_NAMES = {np.dtype(np.float32): "fp32", np.dtype(np.float16): "fp16"}


class _Logger(trt.ILogger):
    """Keeps TensorRT's errors for the cell's reason; passes warnings on to logging."""

    def __init__(self) -> None:
        trt.ILogger.__init__(self)
        self.errors: list[str] = []

    def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
        if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
            self.errors.append(msg)
            log.error("tensorrt: %s", msg)
        elif severity == trt.ILogger.Severity.WARNING:
            log.warning("tensorrt: %s", msg)

    def take(self) -> str:
        text, self.errors = "; ".join(self.errors), []
        return text


class _PinnedArray:
    """A page-locked host buffer seen as a numpy array: asynchronous copies need pinned memory."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.nbytes = int(np.prod(shape)) * dtype.itemsize
        self.ptr = cuda_check(cudart.cudaMallocHost(self.nbytes))
        raw = (ctypes.c_byte * self.nbytes).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=np.uint8).view(dtype).reshape(shape)

    def free(self) -> None:
        self.array = None
        if self.ptr:
            cuda_check(cudart.cudaFreeHost(self.ptr))
            self.ptr = 0


class TensorRtBackend(Backend):
    # TensorRT's own default would be fp32 with TF32 on: not a precision this project labels.
    name = "tensorrt"
    serial_reason = None  # the load scenarios run an execution context per request in flight
    auto_precision = None

    def __init__(self, artifact: Artifact, cell: Cell) -> None:
        super().__init__(artifact, cell)
        # Everything _close frees, set before _load so that a load that fails half-way closes.
        self._stream: cudart.cudaStream_t | None = None
        self._device: dict[str, int] = {}
        self._host: dict[str, _PinnedArray] = {}
        self._engine = self._context = self._runtime = None
        self._info: dict[str, object] = {}

    # -- loading -----------------------------------------------------------------------------
    def _device_unavailable(self) -> str | None:
        return cuda_unavailable_reason()

    def _gpu(self) -> dict[str, str]:
        device = cuda_check(cudart.cudaGetDevice())
        props = cuda_check(cudart.cudaGetDeviceProperties(device))
        runtime = cuda_check(cudart.cudaRuntimeGetVersion())
        driver = cuda_check(cudart.cudaDriverGetVersion())
        return {
            "gpu": props.name.decode(errors="replace").rstrip("\x00"),
            "compute_capability": f"{props.major}.{props.minor}",
            # CUDA encodes versions as 1000 * major + 10 * minor.
            "cuda_version": f"{runtime // 1000}.{runtime % 1000 // 10}",
            "cuda_driver_version": f"{driver // 1000}.{driver % 1000 // 10}",
        }

    def _load(self) -> None:
        self._logger = _Logger()
        gpu = self._gpu()
        precision = self.precision
        t0 = time.perf_counter()
        onnx_path, onnx_reused = reduced_precision_onnx(self.artifact, precision)
        rewrite_s = time.perf_counter() - t0
        shape = static_shape(self.artifact.meta["inputs"][0]["shape"], self.cell.batch_size)
        settings = {
            # fp32 means float32 math; reduced-precision cells keep TensorRT's default (TF32 on)
            # for the few layers their graph leaves in float32.
            "tf32": precision != "fp32",
            "workspace_bytes": WORKSPACE_BYTES,
            "profiling_verbosity": "DETAILED",
            "onnx_rewrite": recipe_digest(precision) if precision in RECIPES else None,
        }
        calibration = calibration_digest(self.artifact.inputs) if precision == "int8" else None
        key = engine_cache_key(
            artifact_key=self.artifact.key,
            tensorrt_version=trt.__version__,
            gpu_name=gpu["gpu"],
            compute_capability=gpu["compute_capability"],
            precision=precision,
            batch_size=self.cell.batch_size,
            calibration_hash=calibration,
            builder_settings=settings,
        )
        entry = cache.entry("tensorrt", self.artifact.key[:16], key)
        self._runtime = trt.Runtime(self._logger)
        found = entry.lookup()  # verified: deserializing an engine runs the code it holds
        engine_path = (found or entry.path) / ENGINE_FILE
        build_s, reused = 0.0, found is not None
        if reused:
            self._engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
            if self._engine is None:  # truncated or from another build: rebuild it
                log.warning("cached engine %s did not load (%s)", engine_path, self._logger.take())
                reused = False
        if not reused:
            t0 = time.perf_counter()
            plan = self._build(onnx_path, shape, tf32=settings["tf32"])
            build_s = time.perf_counter() - t0
            with entry.build() as folder:
                (folder / ENGINE_FILE).write_bytes(plan)
            engine_path = entry.path / ENGINE_FILE
            self._engine = self._runtime.deserialize_cuda_engine(plan)
            if self._engine is None:
                raise RuntimeError(f"tensorrt: the new engine did not load: {self._logger.take()}")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise RuntimeError(f"tensorrt: no execution context: {self._logger.take()}")
        self._shape = shape
        self._allocate(shape)
        self._info = {
            **gpu,
            "tensorrt": trt.__version__,
            "engine_cache": str(engine_path),
            "engine_reused": reused,
            "build_s": build_s,
            "onnx_used": str(onnx_path),
            "onnx_rewrite": RECIPES.get(precision),
            "onnx_rewrite_reused": onnx_reused,
            "onnx_rewrite_s": rewrite_s,
            "calibration_sha256": calibration,
            "calibration_samples": len(self.artifact.inputs) if calibration else None,
            "strongly_typed": True,
            "tf32": settings["tf32"],
        }

    def _build(self, onnx_path: Path, shape: tuple[int, ...], tf32: bool) -> bytes:
        """Parse the graph and build a serialized engine for the one static input shape."""
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)  # strongly typed: the only kind TensorRT 11 has
        parser = trt.OnnxParser(network, self._logger)
        # From the file, so that TensorRT finds external weights beside the graph.
        if not parser.parse_from_file(str(onnx_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise Unsupported(f"tensorrt cannot parse the model: {'; '.join(errors)}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        # Detailed layer information is what lets runtime_info read back each layer's type.
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        if tf32:
            config.set_flag(trt.BuilderFlag.TF32)
        else:
            config.clear_flag(trt.BuilderFlag.TF32)
        inputs = [network.get_input(i) for i in range(network.num_inputs)]
        if len(inputs) != 1:
            raise Unsupported(f"tensorrt backend runs single-input models, this has {len(inputs)}")
        if any(d < 0 for d in inputs[0].shape):
            profile = builder.create_optimization_profile()
            profile.set_shape(inputs[0].name, shape, shape, shape)
            config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise Unsupported(f"tensorrt cannot build the engine: {self._logger.take()}")
        return bytes(plan)

    def _allocate(self, input_shape: tuple[int, ...]) -> None:
        """One device and one pinned host buffer per I/O tensor, bound to the context."""
        engine, context = self._engine, self._context
        self._stream = cuda_check(cudart.cudaStreamCreate())
        self._names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._inputs = [
            n for n in self._names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
        ]
        self._outputs = [n for n in self._names if n not in self._inputs]
        for name in self._inputs:
            dynamic = any(d < 0 for d in engine.get_tensor_shape(name))
            if dynamic and not context.set_input_shape(name, input_shape):
                raise RuntimeError(f"tensorrt: cannot set {name} to {input_shape}")
        for name in self._names:
            shape = tuple(context.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            self._host[name] = _PinnedArray(shape, dtype)
            self._device[name] = cuda_check(cudart.cudaMalloc(self._host[name].nbytes))
            if not context.set_tensor_address(name, self._device[name]):
                raise RuntimeError(f"tensorrt: cannot bind {name}")

    # -- running -----------------------------------------------------------------------------
    def _copy_in(self, feed: dict[str, np.ndarray]) -> None:
        kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        for name in self._inputs:
            host = self._host[name]
            np.copyto(host.array, feed[name], casting="same_kind")
            cuda_check(
                cudart.cudaMemcpyAsync(
                    self._device[name], host.ptr, host.nbytes, kind, self._stream
                )
            )

    def _execute(self) -> None:
        if not self._context.execute_async_v3(int(self._stream)):
            raise RuntimeError(f"tensorrt: execution failed: {self._logger.take()}")

    def _synchronize(self) -> None:
        cuda_check(cudart.cudaStreamSynchronize(self._stream))

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._copy_in(feed)
        self._execute()
        kind = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in self._outputs:
            host = self._host[name]
            cuda_check(
                cudart.cudaMemcpyAsync(
                    host.ptr, self._device[name], host.nbytes, kind, self._stream
                )
            )
        self._synchronize()
        # Copies: the pinned buffers are overwritten by the next call.
        return {name: self._host[name].array.copy() for name in self._outputs}

    def _stage(self, feed: dict[str, np.ndarray]) -> None:
        self._copy_in(feed)
        self._synchronize()

    def _run_staged(self) -> None:
        self._execute()
        self._synchronize()

    # -- requests at once (the load scenarios) -------------------------------------------------
    def _lane(self) -> TensorRtBackend:
        """Another execution context of this engine, with its own stream and buffers."""
        lane = TensorRtBackend(self.artifact, self.cell)
        lane._logger, lane._runtime, lane._engine = self._logger, self._runtime, self._engine
        lane._context = self._engine.create_execution_context()
        if lane._context is None:
            raise RuntimeError(f"tensorrt: no execution context: {self._logger.take()}")
        lane._allocate(self._shape)
        lane._loaded = True
        return lane

    def request_slots(self, n: int) -> Slots:
        """n execution contexts of the one engine, each on its own CUDA stream: TensorRT's
        way to run requests at once (this cell's own context is the first)."""
        extra = [self._lane() for _ in range(n - 1)]

        def close_extra() -> None:
            for lane in extra:
                lane.close()

        mechanism = f"{n} TensorRT execution context(s), each on its own CUDA stream"
        return LaneSlots([self.infer, *(lane.infer for lane in extra)], mechanism, close_extra)

    # -- reporting and closing ---------------------------------------------------------------
    def framework_version(self) -> str:
        return trt.__version__

    def _runtime_info(self) -> dict[str, object]:
        engine = self._engine
        io_dtypes = {
            n: _PRECISION_NAMES.get(self._host[n].array.dtype, str(self._host[n].array.dtype))
            for n in self._names
        }
        inspector = engine.create_engine_inspector()
        self._info["input_shape"] = static_input_shape(self.artifact, self.cell)
        info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
        layers = layer_output_dtypes(info)
        return {
            **self._info,
            # host_end_to_end's copies go through these (the other frameworks copy from the
            # caller's pageable numpy arrays): part of what this scope measures for TensorRT.
            "host_buffers": "pinned (page-locked) staging buffers, asynchronous copies",
            "precision_run": precision_run(layers, io_dtypes),
            "layer_output_dtypes": layers,
            "engine_layers": engine.num_layers,
            "io_dtypes": io_dtypes,
            "io_shapes": {n: list(self._host[n].array.shape) for n in self._names},
            # TensorRT has no host thread pool to size: one host thread enqueues the work and
            # the GPU runs it. The cell's thread budget is reported as given, for fairness.
            "threads": self.cell.threads,
        }

    def _close(self) -> None:
        # The context before the engine before the runtime: each depends on the next.
        self._context = self._engine = self._runtime = None
        # Free everything even when one call fails, then report the first failure.
        frees = [lambda p=p: cuda_check(cudart.cudaFree(p)) for p in self._device.values()]
        frees += [host.free for host in self._host.values()]
        if self._stream is not None:
            frees.append(lambda s=self._stream: cuda_check(cudart.cudaStreamDestroy(s)))
        self._device, self._host, self._stream = {}, {}, None
        errors = []
        for free in frees:
            try:
                free()
            except RuntimeError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
