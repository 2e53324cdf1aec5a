"""ONNX Runtime on CUDA: which execution provider, with which options, on which graph.

Kept apart from the backend so the CPU path reads as before and these pure pieces can be tested
on a host without a GPU.

- `ep=cuda` (default): the CUDA EP with exhaustive cuDNN algorithm search and TF32 off (a cell
  asks for fp32 and gets fp32). fp16 runs a graph converted by ONNX Runtime's own
  `convert_float_to_float16` (float32 inputs and outputs kept), cached per artifact and ORT
  version.
- `ep=tensorrt`: the TensorRT EP (fp16 through `trt_fp16_enable`) with its engine and timing
  caches, the CUDA EP after it for what TensorRT does not take; fp32 with TF32 off through
  NVIDIA_TF32_OVERRIDE=0 (the EP has no option for it). A cell in which TensorRT took no node
  is unsupported; nodes ORT silently gave the CPU EP are counted (`cpu_fallback_nodes`), both
  read from ORT's profile of the cold run. onnxruntime-gpu 1.31.1's
  TensorRT EP links TensorRT 10 (libnvinfer.so.10); NVIDIA publishes TensorRT's libraries only
  on its own package index (the PyPI packages are stubs that download from there), so the
  ort-gpu image does not carry them and such a cell ends `unsupported` saying so. The probe
  loads the EP's own library (after TensorRT's wheel libraries, where installed), so it
  reports whatever that library lacks.
- CUDA and cuDNN come from NVIDIA's pip wheels (`onnxruntime-gpu[cuda,cudnn]`), loaded by
  `onnxruntime.preload_dlls()` before the first session.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench import cache
from bench.cell import Cell
from bench.errors import Unsupported

EPS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
# The TensorRT EP's library in onnxruntime-gpu (it links TensorRT's libnvinfer and
# libnvonnxparser of the major version ORT was built against).
TENSORRT_PROVIDER_LIB = "libonnxruntime_providers_tensorrt.so"
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


def _preload_pip_tensorrt() -> None:
    """TensorRT's libraries from NVIDIA's `tensorrt_libs` wheel, where it is installed: loaded
    by full path, so that the EP's dependency on their sonames resolves without
    LD_LIBRARY_PATH (the wheel's folder is not on the loader's path)."""
    spec = importlib.util.find_spec("tensorrt_libs")
    if spec is None or not spec.submodule_search_locations:
        return
    for folder in spec.submodule_search_locations:
        for lib in sorted(Path(folder).glob("libnv*.so*")):
            with contextlib.suppress(OSError):
                ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)


def tensorrt_unavailable_reason() -> str | None:
    """Why the TensorRT EP cannot load here, or None when it can: the EP's own library is
    loaded the way ORT loads it, so the answer names whatever it lacks (TensorRT's libraries,
    of the version this onnxruntime was built against), with no library name written here."""
    provider = Path(ort.__file__).parent / "capi" / TENSORRT_PROVIDER_LIB
    if not provider.is_file():
        return f"this onnxruntime ({ort.__version__}) has no TensorRT EP ({provider.name})"
    _preload_pip_tensorrt()
    try:
        ctypes.CDLL(str(provider))
    except OSError as exc:
        return (
            f"onnxruntime {ort.__version__}'s TensorRT EP cannot load here ({exc}); TensorRT's "
            "libraries come only from NVIDIA's package index, which the ort-gpu image does not "
            "use"
        )
    return None


TF32_OVERRIDE = "NVIDIA_TF32_OVERRIDE"


def control_tensorrt_tf32(precision: str) -> None:
    """TensorRT's builder allows TF32 by default and ONNX Runtime's TensorRT EP has no option
    to clear it: an fp32 cell would run its convolutions in TF32. NVIDIA_TF32_OVERRIDE=0 is
    the one switch (TensorRT, cuBLAS and cuDNN read it when they build or initialise, which
    in a cell's process is after this, before the session). Other precisions keep the
    default (an fp16 engine may use TF32 layers; it is not an fp32 cell lowered)."""
    if precision == "fp32":
        os.environ[TF32_OVERRIDE] = "0"


def tensorrt_tf32_record() -> dict[str, object]:
    """What a TensorRT EP cell records of TF32, read back from the process's environment."""
    off = os.environ.get(TF32_OVERRIDE) == "0"
    return {
        "tf32": not off,
        "tf32_control": f"{TF32_OVERRIDE}=0" if off else "TensorRT's default (TF32 allowed)",
    }


def trt_cache_entry(artifact_key: str, precision: str, batch_size: int) -> cache.Entry:
    """The cache entry in which the TensorRT EP keeps engines and timing cache for this
    artifact and cell. ORT adds the GPU's compute capability to each engine's file name."""
    # TF32 is part of what an engine is (fp32 engines are built with it off since it can be).
    what = {"ort": ort.__version__, "precision": precision, "batch": batch_size}
    if precision == "fp32":
        what["tf32"] = False
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


def node_assignment(profile: list) -> dict[str, dict[str, int]]:
    """Which execution provider ran which operators, from ORT's profile (its Chrome-trace JSON
    list): {provider: {op type: nodes}}. Each node is counted once however often it ran; a
    TensorRT subgraph is one fused node of TensorRT's."""
    seen: dict[str, dict[str, int]] = {}
    names: set[str] = set()
    for event in profile if isinstance(profile, list) else []:
        args = event.get("args") or {}
        name = str(event.get("name", ""))
        if event.get("cat") != "Node" or "provider" not in args or name in names:
            continue
        if not name.endswith("_kernel_time"):
            continue
        names.add(name)
        ops = seen.setdefault(str(args["provider"]), {})
        op = str(args.get("op_name", "?"))
        ops[op] = ops.get(op, 0) + 1
    return seen


def read_profile(session: ort.InferenceSession) -> dict[str, dict[str, int]]:
    """End the session's profiling and return its node assignment (the file is removed)."""
    path = Path(session.end_profiling())
    try:
        return node_assignment(json.loads(path.read_text()))
    finally:
        path.unlink(missing_ok=True)


def check_assignment(ep: str, assignment: dict[str, dict[str, int]]) -> int:
    """A TensorRT EP cell in which TensorRT took no node is not a TensorRT cell: unsupported,
    saying who ran it. Returns how many nodes fell back to the CPU EP (ORT does that silently
    for operators the CUDA EP lacks; the result and the report say it)."""
    if ep == "tensorrt" and not assignment.get(EPS["tensorrt"]):
        ran = ", ".join(f"{p}: {sum(ops.values())} nodes" for p, ops in assignment.items())
        raise Unsupported(
            f"TensorRT took no subgraph of this graph (ran by {ran or 'nobody'}): its parser "
            "refused every node, see the log above"
        )
    return sum(assignment.get("CPUExecutionProvider", {}).values())


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
