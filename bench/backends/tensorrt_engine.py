"""The parts of the TensorRT backend that need neither TensorRT nor a GPU: the engine cache key,
the static input shape, reading precisions back from the engine inspector's JSON, and checking
CUDA return codes. Kept apart so that they are tested on any machine.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

# Bump when the way engines are built changes in a way the other key fields do not show.
ENGINE_CACHE_FORMAT = 1


def engine_cache_key(
    *,
    artifact_key: str,
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: str,
    precision: str,
    batch_size: int,
    calibration_hash: str | None = None,
    builder_settings: Mapping[str, object] | None = None,
) -> str:
    """The file name stem of a cached engine: every input that changes the engine, hashed.

    An engine is only valid for the TensorRT version and GPU model it was built on, and it is
    specialised to one batch size here; int8 engines also depend on their calibration data.
    `builder_settings` holds the rest (builder flags, the ONNX rewrite recipe, ...)."""
    if precision == "int8" and not calibration_hash:
        raise ValueError("an int8 engine's key needs the hash of its calibration data")
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, not {batch_size}")
    fields = {
        "format": ENGINE_CACHE_FORMAT,
        "artifact": artifact_key,
        "tensorrt": tensorrt_version,
        "gpu": gpu_name,
        "compute_capability": compute_capability,
        "precision": precision,
        "batch_size": batch_size,
        "calibration": calibration_hash,
        "builder": dict(builder_settings or {}),
    }
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    # A readable prefix, so that a person listing the cache sees what each engine is.
    return f"{artifact_key[:12]}-{precision}-b{batch_size}-{digest[:20]}"


def static_shape(meta_shape: Sequence[object], batch_size: int) -> tuple[int, ...]:
    """The concrete input shape of a cell: the artifact's shape with its batch axis (a name
    or -1 when dynamic) set to the cell's batch. Other dynamic axes cannot be guessed."""
    if not meta_shape:
        raise ValueError("an input without a shape")
    dims = [batch_size, *meta_shape[1:]]
    if not all(isinstance(d, int) and d > 0 for d in dims):
        raise ValueError(f"input shape {list(meta_shape)} has dynamic axes besides the batch")
    return tuple(int(d) for d in dims)


# TensorRT's data type names, as the inspector writes them (DataType in 11.x; inside the
# "Format/Datatype" text in 10.x), mapped to the precision names of a cell.
_DTYPE_NAMES = {
    "float": "fp32",
    "fp32": "fp32",
    "half": "fp16",
    "fp16": "fp16",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "int8": "int8",
    "fp8": "fp8",
    "int4": "int4",
    "fp4": "fp4",
    "int32": "int32",
    "int64": "int64",
    "bool": "bool",
    "uint8": "uint8",
}
# Types of computed values; integers and booleans only carry shapes and indices.
_COMPUTE_PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4", "fp4")


def _dtype_of(tensor: Mapping[str, Any]) -> str | None:
    name = tensor.get("DataType")
    if isinstance(name, str) and name.lower() in _DTYPE_NAMES:
        return _DTYPE_NAMES[name.lower()]
    text = tensor.get("Format/Datatype")  # TensorRT 10.x, e.g. "Channel major FP16 format"
    if isinstance(text, str):
        for word in re.findall(r"[A-Za-z]+[0-9]*", text):
            if word.lower() in _DTYPE_NAMES:
                return _DTYPE_NAMES[word.lower()]
    return None


def layer_output_dtypes(engine_info: str | Mapping[str, Any]) -> dict[str, int]:
    """How many engine layers produce each data type, from the inspector's JSON (built with
    detailed profiling verbosity). Empty when the engine carries no layer details."""
    doc = json.loads(engine_info) if isinstance(engine_info, str) else engine_info
    counts: Counter[str] = Counter()
    for layer in doc.get("Layers", []):
        if not isinstance(layer, Mapping):  # layer names only: no types to read
            continue
        for tensor in layer.get("Outputs", []):
            if isinstance(tensor, Mapping) and (dtype := _dtype_of(tensor)):
                counts[dtype] += 1
    return dict(sorted(counts.items()))


def precision_run(layer_dtypes: Mapping[str, int], io_dtypes: Mapping[str, str]) -> str:
    """What an engine computes in: the compute types its layers produce, most used first
    ("fp16+fp32"); the I/O tensor types when the engine has no layer details."""
    computed = {k: v for k, v in layer_dtypes.items() if k in _COMPUTE_PRECISIONS}
    if computed:
        return "+".join(sorted(computed, key=lambda k: (-computed[k], k)))
    return "+".join(sorted(set(io_dtypes.values()))) or "unknown"


def cuda_check(result: tuple[Any, ...]) -> Any:
    """Unpack a cuda-python call's (error, *values) tuple; raise RuntimeError with the error's
    name unless it succeeded. Returns None, the one value, or a tuple of them."""
    err, *values = result
    if int(err) != 0:
        name = getattr(err, "name", None) or f"CUDA error {int(err)}"
        raise RuntimeError(f"{name} ({int(err)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)
