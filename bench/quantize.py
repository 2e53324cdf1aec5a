"""Reduced-precision ONNX graphs: what TensorRT 11 builds fp16 and int8 engines from, and the
fp16 graph ONNX Runtime's CUDA execution provider runs.

TensorRT 11 removed weak typing: there is no BuilderFlag.FP16 or BuilderFlag.INT8 and no INT8
calibrator any more; every network is strongly typed, so the precision of each tensor is the
one written in the ONNX graph. A reduced-precision cell therefore starts from a rewritten graph:

- fp16: every float tensor and initializer converted to float16, the model's inputs and outputs
  kept float32 (ONNX Runtime's float16 converter, with `keep_io_types`).
- int8: explicit quantization, QuantizeLinear/DequantizeLinear pairs placed by ONNX Runtime's
  static quantizer and calibrated on the artifact's sample images: symmetric int8 activations
  and symmetric per-channel int8 weights (zero points 0, as TensorRT requires), float biases.

This runs on the CPU with onnx and onnxruntime only, so it is tested where there is no GPU; the
graphs are cached because calibration costs as much as an engine build on small models.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import numpy as np

from bench import cache
from bench.artifact import Artifact
from bench.backends.cpu import int8_cpu_settings
from bench.fsutil import atomic_path

# Where TensorRT gains from int8 and what NVIDIA's quantization tools put Q/DQ pairs in front
# of: the weighted layers. Elementwise ops stay float and TensorRT fuses them into the int8
# kernels around them; quantizing them too would only add rounding.
QDQ_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")
GRAPH_FILE = "model.onnx"  # the file of an "onnx" cache entry

# Everything that decides the rewritten graph, besides the model and the calibration data: part
# of the cache keys, so that changing the recipe never reuses an old graph or engine.
RECIPES: dict[str, dict[str, object]] = {
    "fp16": {"tool": "onnxruntime.transformers.float16", "keep_io_types": True},
    "int8": {
        "tool": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "activations": "int8 symmetric per-tensor",
        "weights": "int8 symmetric per-channel",
        "bias": "float",
        "calibration": "MinMax",
        "op_types": list(QDQ_OP_TYPES),
    },
}


# An int8 cell whose compute operators (convolutions, matrix products) run integer arithmetic
# in a smaller share than this is labelled `mixed`, not int8: most of its time is float.
INT8_MIN_INTEGER_FRACTION = 0.9


def integer_fraction(integer: int, floating: int) -> float:
    """The share of compute operators that run on integers (0 when there are none)."""
    total = integer + floating
    return integer / total if total else 0.0


def int8_label(fraction: float) -> str:
    """What an int8 cell ran: int8, mixed (some integer, mostly or partly float) or fp32."""
    if fraction >= INT8_MIN_INTEGER_FRACTION:
        return "int8"
    return "mixed" if fraction > 0 else "fp32"


def short_digest(doc: dict[str, object]) -> str:
    """16 hex characters of sha256 over a JSON document (a recipe and the versions applying
    it): the part of a cache key that changes whenever the way a model is rewritten does."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


# ONNX Runtime's own static quantization for CPU inference, as its quantize_static documents
# it ("Choosing parameters for CPU inference", onnxruntime 1.31): QDQ, uint8 activations with
# int8 weights on x86 (int8 on Arm), every operator ONNX Runtime quantizes, after its own
# pre-processing (shape inference and graph optimisation); per-channel weights, which it
# recommends for ResNet-style convolutions' accuracy; reduce_range per the CPU (below).
ORT_CPU_RECIPE: dict[str, object] = {
    "tool": "onnxruntime.quantization.quantize_static",
    # Its symbolic shape inference needs sympy, which the ort-cpu image does not carry; ONNX's
    # own shape inference (kept) resolves every shape of these static-shaped CNN graphs.
    "preprocess": "onnxruntime.quantization.shape_inference.quant_pre_process, skip_symbolic_shape",
    "format": "QDQ",
    "op_types": "every operator ONNX Runtime quantizes",
    "weights": "int8 symmetric per-channel",
    "bias": "int32 (ONNX Runtime's default)",
    "calibration": "MinMax",
    "source": "quantize_static, 'Choosing parameters for CPU inference' (onnxruntime 1.31)",
}


def _x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def ort_cpu_recipe() -> dict[str, object]:
    """ONNX Runtime's CPU recipe for this CPU: uint8 activations on x86 (int8 on Arm), and
    reduce_range where its int8 kernels saturate (no VNNI)."""
    activations = "uint8 asymmetric per-tensor" if _x86() else "int8 asymmetric per-tensor"
    return {**ORT_CPU_RECIPE, "activations": activations, **int8_cpu_settings("onnxruntime")}


def qdq_recipe(for_cpu: bool = False) -> dict[str, object]:
    """The int8 QDQ recipe shaped for TensorRT: as TensorRT takes it (full 8-bit range: GPUs do
    not saturate), or run by a CPU runtime (ONNX Runtime's option quantizer=tensorrt) with ONNX
    Runtime's setting for this CPU (`reduce_range` where int8 saturates without VNNI)."""
    if not for_cpu:
        return RECIPES["int8"]
    return {**RECIPES["int8"], **int8_cpu_settings("onnxruntime")}


def recipe_digest(precision: str, recipe: dict[str, object] | None = None) -> str:
    """A short hash of the rewrite recipe of `precision` (or the given one) and the onnxruntime
    version doing it."""
    import onnxruntime

    doc = RECIPES[precision] if recipe is None else recipe
    return short_digest({"recipe": doc, "onnxruntime": onnxruntime.__version__})


def calibration_digest(inputs: np.ndarray) -> str:
    """sha256 of the calibration samples: their dtype, shape and bytes."""
    digest = hashlib.sha256(f"{inputs.dtype.str}{list(inputs.shape)}".encode())
    digest.update(np.ascontiguousarray(inputs).tobytes())
    return digest.hexdigest()


def calibration_batches(inputs: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Every sample at least once, in batches of exactly `batch_size` (a model with a fixed
    batch takes no other), wrapping around to the first samples to fill the last batch."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, not {batch_size}")
    n = len(inputs)
    if n == 0:
        raise ValueError("no calibration samples")
    return [
        np.ascontiguousarray(inputs[(start + np.arange(batch_size)) % n])
        for start in range(0, n, batch_size)
    ]


def convert_fp16(onnx_path: Path, out_path: Path) -> Path:
    """Write the float16 version of a float32 graph, keeping float32 inputs and outputs."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
    with atomic_path(out_path) as tmp:
        onnx.save(model, str(tmp))
    return out_path


def _samples_reader(input_name: str, inputs: np.ndarray, batch_size: int) -> object:
    """An ONNX Runtime calibration reader over every sample, in the cell's batches."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Samples(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(calibration_batches(inputs, batch_size))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    return _Samples()


def quantize_ort_cpu(
    onnx_path: Path, out_path: Path, input_name: str, inputs: np.ndarray, batch_size: int = 1
) -> Path:
    """Write ONNX Runtime's own CPU quantization of the graph (`ort_cpu_recipe`)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    recipe = ort_cpu_recipe()
    with atomic_path(out_path) as tmp:
        pre = tmp.with_suffix(".pre.onnx")
        quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
        try:
            quantize_static(
                str(pre),
                str(tmp),
                _samples_reader(input_name, inputs, batch_size),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=bool(recipe["reduce_range"]),
                activation_type=QuantType.QUInt8 if _x86() else QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        finally:
            pre.unlink(missing_ok=True)
    return out_path


def quantize_qdq(
    onnx_path: Path,
    out_path: Path,
    input_name: str,
    inputs: np.ndarray,
    batch_size: int = 1,
    reduce_range: bool = False,
) -> Path:
    """Write the explicitly quantized (QDQ) graph shaped for TensorRT, calibrated on `inputs`;
    `reduce_range` quantizes weights to 7 bits, ONNX Runtime's fix for CPUs whose int8 kernels
    saturate."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with atomic_path(out_path) as tmp:
        quantize_static(
            str(onnx_path),
            str(tmp),
            _samples_reader(input_name, inputs, batch_size),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QDQ_OP_TYPES),
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            reduce_range=reduce_range,
            # TensorRT takes int8 Q/DQ with zero point 0 only: symmetric scales for both. Its
            # Q/DQ layers have no int32 type, so biases stay float (it fuses them itself).
            extra_options={
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "QuantizeBias": False,
            },
        )
    return out_path


def ort_cpu_int8_onnx(artifact: Artifact) -> tuple[Path, bool]:
    """The artifact quantized by ONNX Runtime's own CPU recipe, cached: (path, reused?)."""
    recipe = ort_cpu_recipe()
    parts = [
        artifact.key[:16],
        "int8-ort-cpu",
        recipe_digest("int8", recipe),
        calibration_digest(artifact.inputs)[:16],
    ]

    def make(folder: Path) -> None:
        batch = calibration_batch_size(artifact)
        quantize_ort_cpu(
            artifact.onnx_path, folder / GRAPH_FILE, artifact.input_name, artifact.inputs, batch
        )

    folder, reused = cache.entry("onnx", *parts).get(make)
    return folder / GRAPH_FILE, reused


def reduced_precision_onnx(
    artifact: Artifact, precision: str, for_cpu: bool = False
) -> tuple[Path, bool]:
    """The artifact's graph typed for `precision`, cached: (path, reused?). TensorRT 11
    (strongly typed) builds its engines from it, ORT's CUDA EP runs its fp16 copy, and the CPU
    runtimes run the int8 graph made `for_cpu` (`qdq_recipe`).

    fp32 is the artifact's own graph. The cache key holds the artifact's content hash, the
    recipe (with the onnxruntime version) and, for int8, the calibration samples' hash."""
    if precision == "fp32":
        return artifact.onnx_path, True
    if precision not in RECIPES:
        raise ValueError(f"no ONNX rewrite for precision {precision!r}")
    recipe = qdq_recipe(for_cpu) if precision == "int8" else RECIPES[precision]
    parts = [artifact.key[:16], precision, recipe_digest(precision, recipe)]
    if precision == "int8":
        parts.append(calibration_digest(artifact.inputs)[:16])

    def make(folder: Path) -> None:
        if precision == "fp16":
            convert_fp16(artifact.onnx_path, folder / GRAPH_FILE)
            return
        batch = calibration_batch_size(artifact)
        reduce_range = bool(recipe.get("reduce_range", False))
        quantize_qdq(
            artifact.onnx_path,
            folder / GRAPH_FILE,
            artifact.input_name,
            artifact.inputs,
            batch,
            reduce_range,
        )

    folder, reused = cache.entry("onnx", *parts).get(make)
    return folder / GRAPH_FILE, reused


def calibration_batch_size(artifact: Artifact) -> int:
    """The batch an ONNX graph calibrates with: one sample at a time when its batch is dynamic;
    a fixed batch only takes its own."""
    fixed = artifact.meta["inputs"][0]["shape"][0]
    return fixed if isinstance(fixed, int) else 1


def calibration_record(
    artifact: Artifact, recipe: dict[str, object] | None = None
) -> dict[str, object]:
    """What an int8 result records of its calibration set: the artifact's photos, by name, and
    the quantization recipe (default: this module's QDQ graph; PyTorch and NNCF pass theirs)."""
    return {
        "images": [i["name"] for i in artifact.meta.get("images", [])],
        "samples": len(artifact.inputs),
        "sha256": calibration_digest(artifact.inputs),
        "recipe": RECIPES["int8"] if recipe is None else recipe,
    }
