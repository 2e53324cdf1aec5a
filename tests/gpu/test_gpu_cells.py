"""GPU-positive tests: real cells on a real CUDA device. Every test here is marked `gpu` and is
skipped (with the driver's reason) where no CUDA device is visible, so the suite holds on CPU
hosts; benchmarks/device_check.sh runs them where a GPU is. A framework whose GPU package is
not importable here (no TensorRT, a CPU-only onnxruntime, no TVM) skips its own tests."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from helpers import run_cell_to_file

from bench.backends import BACKENDS
from bench.cell import Cell
from bench.measure import parity

pytestmark = pytest.mark.gpu


def _backend(artifact, framework="torch", **cell):
    cls = BACKENDS.get(framework).load_class()
    cell.setdefault("device", "cuda")
    return cls(artifact, Cell(model=artifact.model, framework=framework, threads=2, **cell))


def _outputs(artifact, **cell) -> dict[str, np.ndarray]:
    with _backend(artifact, **cell) as backend:
        backend.load()
        return backend.infer({artifact.input_name: artifact.inputs[:4]})


def _assert_ok_with_both_scopes(doc: dict) -> None:
    assert doc["status"] == "ok", f"{doc['reason']}\n{doc.get('log_tail')}"
    assert doc["timing"]["scope"] == "host_end_to_end"
    assert doc["compute_timing"]["scope"] == "device_compute_only"
    assert doc["parity"]["verdict"] == "pass", doc["parity"]["reasons"]
    gpu = doc["gpu"]
    assert gpu["source"] in ("nvml", "nvidia-smi"), gpu.get("error")
    assert set(gpu["loops"]) == {"host_end_to_end", "device_compute_only"}
    assert gpu["measure_start"]["sm_clock_mhz"] and gpu["measure_end"]["sm_clock_mhz"]
    assert gpu["peak_memory_mib"] is not None and gpu["peak_memory_mib"] >= 0


def test_a_torch_cuda_cell_ends_ok_with_both_scopes_an_nvml_section_and_device_busy(
    small_artifact, tmp_path
):
    doc = run_cell_to_file(small_artifact, tmp_path, "torch", device="cuda")
    _assert_ok_with_both_scopes(doc)
    assert doc["runtime"]["tf32"] is False and doc["runtime"]["precision_run"] == "fp32"
    busy = doc["compute_timing"]["device_busy"]
    assert busy["method"], busy.get("reason")
    # The device cannot be busy much longer than the host-timed run it ran in.
    assert 0 < busy["busy_fraction"] <= 1.2
    assert isinstance(busy["launch_bound"], bool)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precisions_run_what_they_say_in_their_tier(small_artifact, tmp_path, precision):
    doc = run_cell_to_file(small_artifact, tmp_path, "torch", device="cuda", precision=precision)
    _assert_ok_with_both_scopes(doc)
    assert doc["runtime"]["precision_run"] == precision
    assert doc["parity"]["tolerance"]["precision"] == precision


def test_cuda_graphs_give_eager_answers_within_the_fp32_tier(small_artifact):
    eager = _outputs(small_artifact)
    graphs = _outputs(small_artifact, options=(("cuda_graphs", "1"),))
    report = parity.compare(
        graphs, eager, "fp32", classifier_output=small_artifact.classifier_output,
        reference="torch-cuda-fp32 eager",
    )  # fmt: skip
    assert report.verdict == "pass", report.reasons


def test_tf32_off_is_honoured_in_fp32(small_artifact):
    """TF32 left on by an earlier reduced-precision cell is switched off by an fp32 cell, and
    with its settings a float32 matrix product on the GPU is float32-exact (TF32's 10-bit
    mantissa leaves a relative error near 1e-3, which the contrast shows)."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    exact = (a.double() @ b.double()).float()

    def relative_error() -> float:
        got = (a.cuda() @ b.cuda()).cpu()
        return float((got - exact).norm() / exact.norm())

    tf32_error = relative_error()
    with _backend(small_artifact) as backend:
        backend.load()
        assert torch.backends.cuda.matmul.allow_tf32 is False
        assert torch.backends.cudnn.allow_tf32 is False
        assert backend.runtime_info()["tf32"] is False
        fp32_error = relative_error()
    assert fp32_error < 1e-5
    if torch.cuda.get_device_capability() >= (8, 0):  # TF32 exists from Ampere on
        assert tf32_error > 10 * fp32_error


def _ort_has(provider: str) -> bool:
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    import onnxruntime

    return provider in onnxruntime.get_available_providers()


@pytest.mark.skipif(not _ort_has("CUDAExecutionProvider"), reason="no onnxruntime-gpu here")
def test_onnxruntime_cuda_ep_cell_ok_and_its_node_assignment_read_back(small_artifact, tmp_path):
    doc = run_cell_to_file(small_artifact, tmp_path, "onnxruntime", device="cuda")
    _assert_ok_with_both_scopes(doc)
    runtime = doc["runtime"]
    assert runtime["tf32"] is False
    assert runtime["node_assignment"].get("CUDAExecutionProvider")
    assert isinstance(runtime["cpu_fallback_nodes"], int)


@pytest.mark.skipif(not _ort_has("TensorrtExecutionProvider"), reason="no TensorRT EP here")
def test_onnxruntime_tensorrt_ep_fp32_runs_without_tf32(small_artifact, tmp_path):
    from bench.backends.ort_cuda import tensorrt_unavailable_reason

    if reason := tensorrt_unavailable_reason():
        pytest.skip(reason)
    doc = run_cell_to_file(
        small_artifact, tmp_path, "onnxruntime", device="cuda", options=(("ep", "tensorrt"),)
    )
    _assert_ok_with_both_scopes(doc)
    assert doc["runtime"]["tf32"] is False
    assert doc["runtime"]["tf32_control"] == "NVIDIA_TF32_OVERRIDE=0"
    assert doc["runtime"]["node_assignment"].get("TensorrtExecutionProvider")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="no TensorRT here")
def test_tensorrt_fp32_cell_ok_without_tf32(small_artifact, tmp_path):
    doc = run_cell_to_file(small_artifact, tmp_path, "tensorrt", device="cuda")
    _assert_ok_with_both_scopes(doc)
    assert doc["runtime"]["tf32"] is False
    assert doc["runtime"]["host_buffers"].startswith("pinned")


@pytest.mark.skipif(importlib.util.find_spec("tvm") is None, reason="no TVM here")
def test_tvm_cuda_fp32_cell_ok_with_ieee_division(small_artifact, tmp_path):
    doc = run_cell_to_file(small_artifact, tmp_path, "tvm", device="cuda")
    _assert_ok_with_both_scopes(doc)
    assert "--prec-div=true" in doc["runtime"]["cuda_math"]
