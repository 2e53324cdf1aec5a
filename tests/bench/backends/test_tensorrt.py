"""TensorRT backend: what runs without a GPU, for real.

TensorRT itself needs an NVIDIA GPU (and its wheels NVIDIA's index), so here: the engine cache
key, shapes and the inspector reading; the fp16 and int8 (QDQ) graphs TensorRT 11 builds from,
made and run on the CPU with ONNX Runtime and held to the parity tiers; CUDA error checking
against the real cuda-python runtime; and how a tensorrt cell ends where TensorRT is absent.
The engine build and inference run in the trt-gpu image on a GPU host.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import SMALL_MODEL, assert_valid_result_file
from onnx import numpy_helper

from bench.backends import BACKENDS
from bench.backends.cuda import cuda_unavailable_reason
from bench.backends.tensorrt_engine import (
    cuda_check,
    engine_cache_key,
    layer_output_dtypes,
    precision_run,
    static_shape,
)
from bench.measure.parity import compare
from bench.quantize import calibration_batches, calibration_digest, reduced_precision_onnx

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None

# -- engine cache key ---------------------------------------------------------------------------
BASE = {
    "artifact_key": "0123456789abcdef" * 4,
    "tensorrt_version": "11.4.0.106",
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "compute_capability": "9.0",
    "precision": "int8",
    "batch_size": 8,
    "calibration_hash": "c" * 64,
    "builder_settings": {"tf32": True, "workspace_bytes": 1 << 30},
}


def test_cache_key_is_stable_and_readable():
    key = engine_cache_key(**BASE)
    assert key == engine_cache_key(**dict(BASE))
    assert key.startswith("0123456789ab-int8-b8-")
    # The order in which builder settings are given does not matter.
    reordered = dict(BASE, builder_settings={"workspace_bytes": 1 << 30, "tf32": True})
    assert engine_cache_key(**reordered) == key


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("artifact_key", "fedcba9876543210" * 4),
        ("tensorrt_version", "11.4.1.1"),
        ("gpu_name", "NVIDIA H200"),
        ("compute_capability", "9.1"),
        ("precision", "fp16"),
        ("batch_size", 1),
        ("calibration_hash", "d" * 64),
        ("builder_settings", {"tf32": False, "workspace_bytes": 1 << 30}),
    ],
)
def test_every_field_changes_the_cache_key(field, value):
    assert engine_cache_key(**dict(BASE, **{field: value})) != engine_cache_key(**BASE)


def test_int8_key_needs_calibration_data():
    with pytest.raises(ValueError, match="calibration"):
        engine_cache_key(**dict(BASE, calibration_hash=None))
    fp32 = engine_cache_key(**dict(BASE, precision="fp32", calibration_hash=None))
    assert "-fp32-b8-" in fp32


def test_static_shape_sets_the_batch_axis_only():
    assert static_shape(["batch", 3, 224, 224], 4) == (4, 3, 224, 224)
    assert static_shape([-1, 3, 32, 32], 1) == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="dynamic axes"):
        static_shape(["batch", 3, "height", 224], 1)


# -- reading precisions back from the engine inspector ------------------------------------------
def _layer(out_type: str, key: str = "DataType") -> dict:
    return {"Name": "l", "Inputs": [], "Outputs": [{"Name": "t", key: out_type}]}


def test_layer_dtypes_from_tensorrt_11_json():
    info = {
        "Layers": [_layer("Int8"), _layer("Int8"), _layer("Half"), _layer("Float")],
        "I/O Tensors": [{"Name": "input", "IOMode": "Input", "DataType": "Float"}],
    }
    counts = layer_output_dtypes(json.dumps(info))
    assert counts == {"fp16": 1, "fp32": 1, "int8": 2}
    assert precision_run(counts, {"input": "fp32"}) == "int8+fp16+fp32"


def test_layer_dtypes_from_tensorrt_10_format_text():
    text = "Channel major FP16 format where channel % 8 == 0"
    info = {"Layers": [_layer(text, "Format/Datatype")]}
    assert layer_output_dtypes(info) == {"fp16": 1}


def test_names_only_engine_falls_back_to_io_types():
    counts = layer_output_dtypes({"Layers": ["conv1", "relu1"]})
    assert counts == {}
    assert precision_run(counts, {"input": "fp32", "logits": "fp32"}) == "fp32"
    # Shape arithmetic in int64 is not a compute precision.
    assert precision_run({"int64": 5, "fp16": 2}, {}) == "fp16"


# -- CUDA return codes, against the real cuda-python runtime ------------------------------------
def test_cuda_check_names_the_error():
    cudart = pytest.importorskip("cuda.bindings.runtime")
    assert cuda_check(cudart.cudaRuntimeGetVersion()) >= 13000
    assert cuda_check((cudart.cudaError_t.cudaSuccess,)) is None
    with pytest.raises(RuntimeError, match=r"cudaErrorMemoryAllocation \(2\)"):
        cuda_check((cudart.cudaError_t.cudaErrorMemoryAllocation, None))
    if cuda_unavailable_reason() is None:
        assert cuda_check(cudart.cudaGetDeviceCount()) >= 1
    else:  # no driver or no device here: the runtime says which
        with pytest.raises(RuntimeError, match=r"cudaError\w+ \(\d+\)"):
            cuda_check(cudart.cudaGetDeviceCount())


# -- the reduced-precision graphs, made and run on the CPU --------------------------------------
def test_calibration_batches_cover_every_sample_in_full_batches():
    inputs = np.arange(5, dtype=np.float32).reshape(5, 1)
    batches = calibration_batches(inputs, 2)
    assert [b.ravel().tolist() for b in batches] == [[0, 1], [2, 3], [4, 0]]
    assert [b.ravel().tolist() for b in calibration_batches(inputs, 1)] == [[i] for i in range(5)]
    with pytest.raises(ValueError):
        calibration_batches(inputs[:0], 1)


def test_calibration_digest_follows_data_and_shape():
    a = np.zeros((2, 3), np.float32)
    assert calibration_digest(a) == calibration_digest(a.copy())
    assert calibration_digest(a) != calibration_digest(a.reshape(3, 2))
    b = a.copy()
    b[1, 2] = 1e-6
    assert calibration_digest(a) != calibration_digest(b)


def _run_ort(path, artifact, optimize: bool = True) -> dict[str, np.ndarray]:
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    outputs = session.run(artifact.output_names, {artifact.input_name: artifact.inputs})
    return dict(zip(artifact.output_names, outputs, strict=True))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_fp16_graph_is_half_inside_float_outside_and_passes_fp16_parity(small_artifact, cache):
    path, reused = reduced_precision_onnx(small_artifact, "fp16")
    assert not reused and path.is_relative_to(cache / "onnx")
    model = onnx.load(str(path))
    floats = onnx.TensorProto.FLOAT
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [floats]
    assert {o.type.tensor_type.elem_type for o in model.graph.output} == {floats}
    # Every float weight is now half; integer initializers (shapes) are left as they were.
    types = {w.data_type for w in model.graph.initializer if w.dims and np.prod(w.dims) > 1}
    assert onnx.TensorProto.FLOAT16 in types and floats not in types
    report = compare(
        _run_ort(path, small_artifact),
        small_artifact.references,
        "fp16",
        classifier_output=small_artifact.classifier_output,
    )
    assert report.verdict == "pass", report.reasons
    assert reduced_precision_onnx(small_artifact, "fp16") == (path, True)


def _qdq_nodes(model: onnx.ModelProto) -> tuple[list, list]:
    q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    return q, dq


def test_int8_graph_has_symmetric_qdq_as_tensorrt_requires(small_artifact, cache):
    path, reused = reduced_precision_onnx(small_artifact, "int8")
    assert not reused
    model = onnx.load(str(path))
    q, dq = _qdq_nodes(model)
    assert q and dq
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    # Symmetric: every zero point is an int8 zero (TensorRT rejects any other).
    zero_points = [inits[n.input[2]] for n in q + dq if len(n.input) > 2]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    # Per-channel weights: the Conv weights' DequantizeLinear has one scale per output channel.
    per_channel = [n for n in dq if n.input[0] in inits and inits[n.input[1]].size > 1]
    assert per_channel
    # Biases stay float: TensorRT's Q/DQ layers take no int32.
    assert all(inits[n.input[0]].dtype == np.int8 for n in dq if n.input[0] in inits)
    # It runs on the CPU and gives finite outputs of the reference's shape.
    outputs = _run_ort(path, small_artifact)
    for name, ref in small_artifact.references.items():
        assert outputs[name].shape == ref.shape and np.isfinite(outputs[name]).all()
    assert reduced_precision_onnx(small_artifact, "int8") == (path, True)


def test_int8_graph_passes_int8_parity_on_a_conv_net(conv_artifact, cache):
    """The graph's own arithmetic, the same on every CPU: with its optimiser off, ONNX Runtime
    runs each QuantizeLinear and DequantizeLinear as written and the convolutions in float,
    as TensorRT's int32-accumulating kernels compute them. (ORT's fused int8 kernels saturate
    on CPUs without VNNI: that is the CPU recipe's business, tests/bench/backends/test_int8.py.)"""
    path, _ = reduced_precision_onnx(conv_artifact, "int8")
    q, dq = _qdq_nodes(onnx.load(str(path)))
    assert len(q) >= 3 and len(dq) >= 6  # both convolutions and the classifier
    report = compare(
        _run_ort(path, conv_artifact, optimize=False),
        conv_artifact.references,
        "int8",
        classifier_output=conv_artifact.classifier_output,
    )
    assert report.verdict == "pass", report.reasons
    # Quantized, not a copy of the float graph: the outputs differ from the reference.
    assert report.worst.max_abs_err > 0


# -- how a tensorrt cell ends where TensorRT is absent ------------------------------------------
def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=600
    )


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_cell_without_tensorrt_is_skipped_with_the_reason(small_artifact, tmp_path, device):
    assert BACKENDS.get("tensorrt").importable() is False
    out = tmp_path / "r.json"
    proc = bench(
        "run",
        "--model",
        SMALL_MODEL,
        "--framework",
        "tensorrt",
        "--device",
        device,
        "--artifact",
        str(small_artifact.path),
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    doc = assert_valid_result_file(out)
    assert doc["status"] == "skipped"
    assert doc["reason"].startswith("tensorrt is not installed")
    assert "SKIPPED" in proc.stderr
    assert "framework tensorrt: not installed" in bench("info").stdout


@pytest.mark.skipif(not HAS_TENSORRT, reason="needs tensorrt (the trt-gpu image)")
def test_cpu_cell_is_unsupported_where_tensorrt_is_installed(small_artifact, tmp_path):
    from helpers import run_cell_to_file

    doc = run_cell_to_file(small_artifact, tmp_path, "tensorrt", device="cpu")
    assert doc["status"] == "unsupported"
    assert doc["reason"] == "tensorrt runs on cuda, not cpu"
