"""ONNX Runtime's CUDA configuration, tested without a GPU: options, providers, caches, the
fp16 graph (converted and run for real on the CPU EP), IO binding, and the skip of a cuda cell.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from helpers import SMALL_MODEL, run_cell_to_file

from bench.backends import ort_cuda
from bench.backends.cuda import cuda_unavailable_reason
from bench.backends.onnxruntime import OnnxRuntimeBackend
from bench.cell import Cell
from bench.errors import UsageError
from bench.quantize import reduced_precision_onnx

NO_GPU = pytest.mark.skipif(cuda_unavailable_reason() is None, reason="this host has a GPU")


def _cell(device="cuda", **options):
    return Cell(
        model=SMALL_MODEL, framework="onnxruntime", device=device, options=tuple(options.items())
    )


def test_the_ep_option():
    assert ort_cuda.ep_option(_cell()) == "cuda"
    assert ort_cuda.ep_option(_cell(ep="tensorrt")) == "tensorrt"
    assert ort_cuda.ep_option(_cell("cpu")) == "cpu"
    # Bad values and devices are the framework table's to refuse, before any work.
    with pytest.raises(UsageError, match="ep='rocm': must be cuda, tensorrt"):
        _cell(ep="rocm")
    with pytest.raises(UsageError, match="option ep applies to cuda cells, not cpu"):
        _cell("cpu", ep="cuda")


def test_the_providers_of_each_ep(tmp_path):
    cuda = ("CUDAExecutionProvider", {"device_id": "0", "cudnn_conv_algo_search": "EXHAUSTIVE",
                                      "use_tf32": "0"})  # fmt: skip
    assert ort_cuda.providers("cuda", "fp32") == [cuda]
    assert ort_cuda.providers("cuda", "fp16") == [cuda]  # fp16 is in the graph itself
    trt, fallback = ort_cuda.providers("tensorrt", "fp16", tmp_path)
    assert fallback == cuda
    assert trt == (
        "TensorrtExecutionProvider",
        {
            "device_id": "0",
            "trt_fp16_enable": "1",
            "trt_engine_cache_enable": "1",
            "trt_engine_cache_path": str(tmp_path),
            "trt_timing_cache_enable": "1",
            "trt_timing_cache_path": str(tmp_path),
        },
    )
    assert ort_cuda.providers("tensorrt", "fp32", tmp_path)[0][1]["trt_fp16_enable"] == "0"


def test_the_tensorrt_cache_is_keyed_by_artifact_ort_precision_and_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYBENCH_CACHE", str(tmp_path))
    key = "ab" * 32
    path = ort_cuda.trt_cache_entry(key, "fp16", 1).path
    assert path.parent == tmp_path / "ort-trt" and path.name.startswith(key[:16] + "-")
    assert ort_cuda.trt_cache_entry(key, "fp16", 1).path == path
    others = {
        ort_cuda.trt_cache_entry(key, "fp32", 1).path,
        ort_cuda.trt_cache_entry(key, "fp16", 8).path,
        ort_cuda.trt_cache_entry("cd" * 32, "fp16", 1).path,
    }
    monkeypatch.setattr(ort, "__version__", "0.0.1")
    others.add(ort_cuda.trt_cache_entry(key, "fp16", 1).path)
    assert len(others) == 4 and path not in others
    # An fp32 engine is keyed as TF32-off: none built before TF32 could be cleared is reused.
    from bench import cache

    untagged = {"ort": ort.__version__, "precision": "fp32", "batch": 1}
    assert ort_cuda.trt_cache_entry(key, "fp32", 1).path != (
        cache.entry("ort-trt", key[:16], what=untagged).path
    )


def test_the_fp16_graph_is_converted_once_and_runs(small_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYBENCH_CACHE", str(tmp_path))
    path, reused = reduced_precision_onnx(small_artifact, "fp16")
    assert path.is_relative_to(tmp_path / "onnx") and not reused
    assert ort_cuda.graph_precision(path) == "fp16"
    assert ort_cuda.graph_precision(small_artifact.onnx_path) == "fp32"
    mtime = path.stat().st_mtime_ns
    assert reduced_precision_onnx(small_artifact, "fp16") == (path, True)
    assert path.stat().st_mtime_ns == mtime  # cached, not converted again

    # float32 in and out (keep_io_types), float16 inside: ORT's CPU EP runs it too.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert {i.type for i in session.get_inputs() + session.get_outputs()} == {"tensor(float)"}
    x = small_artifact.inputs
    (y,) = session.run(None, {small_artifact.input_name: x})
    reference = small_artifact.references[small_artifact.output_names[0]]
    assert np.linalg.norm(y - reference) / np.linalg.norm(reference) < 2e-2
    assert (y.argmax(1) == reference.argmax(1)).mean() >= 7 / 8


def test_io_binding_stages_the_input_once(small_artifact):
    # The binding the compute scope uses, on the device ORT has here.
    session = ort.InferenceSession(
        str(small_artifact.onnx_path), providers=["CPUExecutionProvider"]
    )
    feed = {small_artifact.input_name: small_artifact.inputs[:1]}
    binding = ort_cuda.bind(session, feed, device="cpu")
    session.run_with_iobinding(binding)
    binding.synchronize_outputs()
    (staged,) = binding.copy_outputs_to_cpu()
    np.testing.assert_allclose(staged, session.run(None, feed)[0], rtol=1e-5, atol=1e-6)


def test_a_cpu_session_is_never_taken_for_a_cuda_one(small_artifact):
    session = ort.InferenceSession(
        str(small_artifact.onnx_path), providers=["CPUExecutionProvider"]
    )
    with pytest.raises(RuntimeError, match="did not activate CUDAExecutionProvider"):
        ort_cuda.require_active(session, "cuda")


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="onnxruntime-gpu here"
)
def test_a_cpu_only_onnxruntime_says_which_package_runs_cuda():
    """On a GPU host with the CPU-only wheel (the device machine's onnxruntime) a cuda cell is
    unsupported, with the reason, not failed."""
    from bench.errors import Unsupported

    with pytest.raises(Unsupported, match="need onnxruntime-gpu"):
        ort_cuda.require_gpu_build("cuda")


def test_tensorrt_ep_absent_is_a_reason():
    """The probe loads the EP's own library: a CPU-only onnxruntime has none, onnxruntime-gpu
    without TensorRT's libraries names the library the loader could not find."""
    from pathlib import Path

    reason = ort_cuda.tensorrt_unavailable_reason()
    provider = Path(ort.__file__).parent / "capi" / ort_cuda.TENSORRT_PROVIDER_LIB
    if not provider.is_file():
        assert reason == (
            f"this onnxruntime ({ort.__version__}) has no TensorRT EP "
            "(libonnxruntime_providers_tensorrt.so)"
        )
        return
    try:
        import ctypes

        ctypes.CDLL(str(provider))
    except OSError as exc:
        assert str(exc) in reason and "NVIDIA's package index" in reason
    else:
        assert reason is None


def test_only_cuda_cells_have_a_compute_scope(small_artifact):
    assert not OnnxRuntimeBackend(small_artifact, _cell("cpu")).has_compute_scope
    assert OnnxRuntimeBackend(small_artifact, _cell()).has_compute_scope


@NO_GPU
@pytest.mark.parametrize(("precision", "options"), [("fp32", ()), ("fp16", (("ep", "tensorrt"),))])
def test_a_cuda_cell_without_a_gpu_is_skipped_with_the_reason(
    small_artifact, tmp_path, precision, options
):
    doc = run_cell_to_file(
        small_artifact, tmp_path, "onnxruntime", device="cuda", precision=precision,
        options=options,
    )  # fmt: skip
    assert doc["status"] == "skipped"
    assert doc["reason"] == cuda_unavailable_reason()
    assert doc["timing"] is None and doc["parity"] is None


def test_node_assignment_from_a_hand_written_profile():
    """Each node once, by provider and op type; session and non-node events ignored."""
    node = "Node"
    profile = [
        {"cat": "Session", "name": "model_run", "args": {}},
        {"cat": node, "name": "conv1_kernel_time", "args": {"op_name": "Conv",
                                                            "provider": "CUDAExecutionProvider"}},
        {"cat": node, "name": "conv1_kernel_time", "args": {"op_name": "Conv",
                                                            "provider": "CUDAExecutionProvider"}},
        {"cat": node, "name": "conv1_fence_before", "args": {"op_name": "Conv",
                                                             "provider": "CUDAExecutionProvider"}},
        {"cat": node, "name": "shape_kernel_time", "args": {"op_name": "Shape",
                                                            "provider": "CPUExecutionProvider"}},
        {"cat": node, "name": "TRTKernel_graph_0_kernel_time",
         "args": {"op_name": "TRTKernel_graph_0", "provider": "TensorrtExecutionProvider"}},
    ]  # fmt: skip
    assignment = ort_cuda.node_assignment(profile)
    assert assignment == {
        "CUDAExecutionProvider": {"Conv": 1},
        "CPUExecutionProvider": {"Shape": 1},
        "TensorrtExecutionProvider": {"TRTKernel_graph_0": 1},
    }
    assert ort_cuda.check_assignment("tensorrt", assignment) == 1
    assert ort_cuda.check_assignment("cuda", {"CUDAExecutionProvider": {"Conv": 3}}) == 0


def test_a_tensorrt_ep_that_took_nothing_is_unsupported():
    from bench.errors import Unsupported

    with pytest.raises(Unsupported, match="TensorRT took no subgraph .*CUDAExecutionProvider: 5"):
        ort_cuda.check_assignment("tensorrt", {"CUDAExecutionProvider": {"Conv": 5}})


def test_node_assignment_read_from_a_real_profile(small_artifact, tmp_path):
    """ORT's own profile of one run on the CPU EP: every compute node is the CPU EP's."""
    from bench.backends.ort_loader import cell_settings, open_session

    declared = small_artifact.meta["inputs"][0]["shape"]
    settings = cell_settings(declared, 1, 1, "static")
    session = open_session(
        small_artifact.onnx_path, settings, ["CPUExecutionProvider"], None, str(tmp_path / "p")
    )
    session.run(None, {small_artifact.input_name: small_artifact.inputs[:1]})
    assignment = ort_cuda.read_profile(session)
    assert list(assignment) == ["CPUExecutionProvider"]
    assert assignment["CPUExecutionProvider"]["Conv"] >= 10  # mobilenet_v3_small's convolutions
    assert not list(tmp_path.glob("p*"))  # the profile file is removed once read


def test_tensorrt_fp32_turns_tf32_off_through_the_environment(monkeypatch):
    monkeypatch.delenv(ort_cuda.TF32_OVERRIDE, raising=False)
    ort_cuda.control_tensorrt_tf32("fp16")
    assert ort_cuda.tensorrt_tf32_record() == {
        "tf32": True,
        "tf32_control": "TensorRT's default (TF32 allowed)",
    }
    ort_cuda.control_tensorrt_tf32("fp32")
    assert ort_cuda.tensorrt_tf32_record() == {
        "tf32": False,
        "tf32_control": "NVIDIA_TF32_OVERRIDE=0",
    }
