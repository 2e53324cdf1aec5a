"""ONNX Runtime on CUDA: which execution provider, with which options, on which graph.

Kept apart from the backend so the CPU path reads as before and these pure pieces can be tested
on a host without a GPU.

- `ep=cuda` (default): the CUDA EP with exhaustive cuDNN algorithm search and TF32 off (a cell
  asks for fp32 and gets fp32). fp16 runs a graph converted by ONNX Runtime's own
  `convert_float_to_float16` (float32 inputs and outputs kept), cached per artifact and ORT
  version.
- `ep=tensorrt`: the TensorRT EP (fp16 through `trt_fp16_enable`) with its engine and timing
  caches, the CUDA EP after it for what TensorRT does not take. onnxruntime-gpu 1.31.1's
  TensorRT EP links TensorRT 10 (libnvinfer.so.10); NVIDIA publishes TensorRT's libraries only
  on its own package index (the PyPI packages are stubs that download from there), so the
  ort-gpu image does not carry them and such a cell ends `unsupported` saying so.
- CUDA and cuDNN come from NVIDIA's pip wheels (`onnxruntime-gpu[cuda,cudnn]`), loaded by
  `onnxruntime.preload_dlls()` before the first session.
"""

from __future__ import annotations

import ctypes
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench import cache
from bench.cell import Cell
from bench.errors import Unsupported

EPS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
# The TensorRT libraries onnxruntime-gpu 1.31.1's TensorRT EP is linked against (readelf).
TENSORRT_LIBS = ("libnvinfer.so.10", "libnvonnxparser.so.10")
# Ops whose weight input says what precision the heavy arithmetic runs in.
_WEIGHTED_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
_ONNX_FLOAT_TYPES = {1: "fp32", 10: "fp16", 16: "bf16", 11: "fp64"}  # TensorProto data types
_preloaded = False


def ep_option(cell: Cell) -> str:
    """The execution provider a cell asks for; only cuda cells choose one (its values and
    devices are checked with the cell, against the framework table)."""
    return cell.option("ep", "cuda") if cell.device == "cuda" else "cpu"


def preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from NVIDIA's pip wheels once (ORT documents this for its CUDA EP)."""
    global _preloaded
    if not _preloaded and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    _preloaded = True


def require_gpu_build(ep: str) -> None:
    """A CPU-only onnxruntime cannot run a cuda cell: `unsupported` (as a missing TensorRT
    is), saying which package can — not a failed cell."""
    if EPS[ep] not in ort.get_available_providers():
        raise Unsupported(
            f"this onnxruntime ({ort.__version__}) has no {EPS[ep]} (it has "
            f"{', '.join(ort.get_available_providers())}); cuda cells need onnxruntime-gpu, "
            "as in the ort-gpu image"
        )


def tensorrt_unavailable_reason() -> str | None:
    """Why the TensorRT EP cannot load here, or None when its libraries can be loaded."""
    for lib in TENSORRT_LIBS:
        try:
            ctypes.CDLL(lib)
        except OSError as exc:
            return (
                f"onnxruntime {ort.__version__}'s TensorRT EP needs TensorRT 10 ({lib}), which "
                f"cannot be loaded here ({exc}); TensorRT's libraries come only from NVIDIA's "
                "package index, which the ort-gpu image does not use"
            )
    return None


def trt_cache_entry(artifact_key: str, precision: str, batch_size: int) -> cache.Entry:
    """The cache entry in which the TensorRT EP keeps engines and timing cache for this
    artifact and cell. ORT adds the GPU's compute capability to each engine's file name."""
    what = {"ort": ort.__version__, "precision": precision, "batch": batch_size}
    return cache.entry("ort-trt", artifact_key[:16], what=what)


def graph_precision(onnx_path: Path) -> str:
    """The float type of the weights feeding the graph's Conv/Gemm/MatMul nodes, read from the
    graph ORT runs: 'fp16', 'fp32', or e.g. 'fp16,fp32' when the converter kept some in fp32."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    types = {i.name: i.data_type for i in graph.initializer}
    weights = Counter(
        types[n.input[1]]
        for n in graph.node
        if n.op_type in _WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in types
    )
    if not weights:  # no weighted op: every float initializer says it
        weights = Counter(t for t in types.values() if t in _ONNX_FLOAT_TYPES)
    names = sorted({_ONNX_FLOAT_TYPES.get(t, f"onnx-type-{t}") for t in weights})
    return ",".join(names) or "fp32"


def _cuda_options() -> dict[str, str]:
    # Strings: ORT parses provider options from strings (str(True) would be "True").
    return {"device_id": "0", "cudnn_conv_algo_search": "EXHAUSTIVE", "use_tf32": "0"}


def providers(ep: str, precision: str, trt_cache: Path | None = None) -> list:
    """The providers list for `InferenceSession`: the requested EP first, then its fallbacks."""
    cuda = ("CUDAExecutionProvider", _cuda_options())
    if ep == "cuda":
        return [cuda]
    if trt_cache is None:
        raise ValueError("the TensorRT EP needs a cache directory")
    trt = {
        "device_id": "0",
        "trt_fp16_enable": "1" if precision == "fp16" else "0",
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": str(trt_cache),
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": str(trt_cache),
    }
    return [("TensorrtExecutionProvider", trt), cuda]


def require_active(session: ort.InferenceSession, ep: str) -> None:
    """ORT falls back to the CPU with only a warning when an EP fails to load: never time that."""
    active = session.get_providers()
    if not active or active[0] != EPS[ep]:
        raise RuntimeError(
            f"onnxruntime did not activate {EPS[ep]} (active providers: {', '.join(active)}); "
            "its CUDA/cuDNN or TensorRT libraries did not load, see the log above"
        )


def bind(
    session: ort.InferenceSession, feed: dict[str, np.ndarray], device: str = "cuda"
) -> ort.IOBinding:
    """Copy the inputs to the device once and bind the outputs there (the compute scope)."""
    binding = session.io_binding()
    for name, array in feed.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, device, 0))
    for output in session.get_outputs():
        binding.bind_output(output.name, device, 0)
    binding.synchronize_inputs()
    return binding
