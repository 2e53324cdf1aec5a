"""The native runners, built and run for real: OpenVINO and LibTorch through their C++ APIs,
from the C++ runner process and through ctypes, on the session's small artifact."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from helpers import QUICK, onnx_artifact_of, run_cell_to_file

from bench.backends import BACKENDS
from bench.cell import Cell
from bench.errors import Unsupported, UsageError
from bench.measure.timing import TimingConfig, time_calls
from bench.native.build import ensure_built
from bench.native.library import NativeError, NativeLibrary, NativeSession
from bench.run import run_cell

NATIVE = ["openvino-cpp", "openvino-ctypes", "torch-cpp", "torch-ctypes"]


@pytest.fixture(scope="module")
def ov_session(small_artifact):
    build = ensure_built("openvino")
    session = NativeSession(
        NativeLibrary(build.library),
        small_artifact.onnx_path,
        1,
        "INFERENCE_PRECISION_HINT=f32",
        small_artifact.inputs.shape[1:],
        [small_artifact.references["logits"].shape[1:]],
    )
    yield session
    session.close()


@pytest.mark.parametrize("framework", NATIVE)
def test_native_cells_pass_parity_and_read_back_what_ran(small_artifact, tmp_path, framework):
    doc = run_cell_to_file(small_artifact, tmp_path, framework, batch_size=3)
    assert doc["status"] == "ok", doc.get("reason")
    assert doc["parity"]["verdict"] == "pass"
    assert doc["parity"]["top1_agreement"] == 1.0
    runtime = doc["runtime"]
    assert runtime["threads"] == 2
    assert runtime["precision_run"] == "fp32"
    assert runtime["call"] == ("ctypes" if framework.endswith("ctypes") else "c++ runner")
    assert runtime["framework_version"]
    # QUICK: at least 2 warm-up and 5 measured iterations, no minimum time: exactly those.
    assert doc["timing"]["warmup_iters"] == 2
    assert len(doc["timing"]["samples_ms"]) == 5


def test_cpp_timing_loop_stops_where_the_python_loop_does(small_artifact):
    """The C++ loop mirrors bench.measure.timing: the maximum count ends measurement before
    a minimum duration that would take far longer."""
    bounds = TimingConfig(
        warmup_min_iters=1, warmup_min_s=0.0, min_iters=3, min_s=30.0, max_iters=4, max_s=30.0
    )
    python_run = time_calls(lambda: None, bounds)
    cell = Cell(model=small_artifact.model, framework="openvino-cpp", threads=1)
    result = run_cell(cell, small_artifact, bounds)
    assert result.status == "ok", result.reason
    assert len(result.timing["samples_ms"]) == len(python_run.samples_ms) == 4
    assert result.timing["warmup_iters"] == python_run.warmup_iters == 1


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda x: x.astype(np.float64), "dtype must be float32, not float64"),
        (lambda x: x[0], r"shape must be \('batch', 3, 224, 224\), not \(3, 224, 224\)"),
        (lambda x: x[:, :2], r"not \(1, 2, 224, 224\)"),
        (lambda x: np.ascontiguousarray(x.transpose(0, 1, 3, 2))[:, :, :, ::-1], "C-contiguous"),
        (lambda x: x.tolist(), "must be a numpy array, not list"),
        (lambda x: x[:0], "batch must not be empty"),
    ],
)
def test_ctypes_call_refuses_wrong_inputs_in_python(
    ov_session, small_artifact, make_input, message
):
    with pytest.raises(ValueError, match=message):
        ov_session.infer(make_input(small_artifact.inputs[:1]))


def test_ctypes_call_reads_the_input_in_place_and_matches_the_reference(ov_session, small_artifact):
    x = small_artifact.inputs[:2]
    (logits,) = ov_session.infer(x)
    np.testing.assert_allclose(
        logits, small_artifact.references["logits"][:2], rtol=1e-3, atol=1e-4
    )


def test_the_library_checks_output_buffers_itself(small_artifact):
    """A caller whose output buffer is too small gets the library's error, not a crash."""
    build = ensure_built("openvino")
    session = NativeSession(
        NativeLibrary(build.library), small_artifact.onnx_path, 1, "", (3, 224, 224), [(999,)]
    )
    with pytest.raises(NativeError, match="has 1000 elements, the caller's buffer 999"):
        session.infer(small_artifact.inputs[:1])
    session.close()
    with pytest.raises(NativeError, match="closed"):
        session.infer(small_artifact.inputs[:1])


def test_framework_refusal_at_load_is_the_framework_message(small_artifact, tmp_path):
    bad = tmp_path / "not-a-model.onnx"
    bad.write_bytes(b"this is not ONNX")
    with pytest.raises(NativeError):
        NativeSession(NativeLibrary(ensure_built("openvino").library), bad, 1, "", (3,), [(1,)])
    cls = BACKENDS.get("openvino-cpp").load_class()
    with cls(small_artifact, Cell(model=small_artifact.model, framework="openvino-cpp")) as b:
        b.load()
        b.model_file = bad
        with pytest.raises(Unsupported, match="load failed"):
            b.run_own_loop(small_artifact.inputs, QUICK)


def test_cpp_runner_rejects_bad_arguments_with_a_message():
    runner = ensure_built("openvino").runner
    done = subprocess.run([str(runner), "--model", "x"], capture_output=True, text=True)
    assert done.returncode == 1
    assert "missing --inputs" in done.stderr


def _unbuilt_cell(artifact, framework, tmp_path, monkeypatch, **env: str):
    """Run a native cell in an empty cache, no prebuilt runners, with `env` changed."""
    monkeypatch.setenv("DEPLOYBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DEPLOYBENCH_NATIVE_DIR", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return run_cell(Cell(model=artifact.model, framework=framework, threads=1), artifact, QUICK)


def test_missing_toolchain_is_unsupported_with_the_reason(small_artifact, tmp_path, monkeypatch):
    # no cmake, no compiler on the PATH
    result = _unbuilt_cell(
        small_artifact, "openvino-ctypes", tmp_path, monkeypatch, PATH=str(tmp_path)
    )
    assert result.status == "unsupported"
    assert "needs cmake, which is not installed" in result.reason


def test_libtorch_needs_the_pytorch_model(tmp_path):
    import torch

    artifact = onnx_artifact_of(torch.nn.Conv2d(3, 4, 3), tmp_path)
    result = run_cell(Cell(model=artifact.model, framework="torch-cpp"), artifact, QUICK)
    assert result.status == "unsupported"
    assert "LibTorch needs the PyTorch model" in result.reason


def test_unknown_native_framework_is_a_usage_error():
    with pytest.raises(UsageError, match="valid: openvino, torch"):
        ensure_built("tvm")


def test_native_variants_refuse_what_they_do_not_run(small_artifact):
    result = run_cell(
        Cell(model=small_artifact.model, framework="torch-cpp", precision="bf16"),
        small_artifact,
        QUICK,
    )
    assert result.status == "unsupported"
    assert "supports precision fp32, not bf16" in result.reason


def test_a_failed_build_is_unsupported_with_the_build_log(small_artifact, tmp_path, monkeypatch):
    # a "compiler" that fails every check
    result = _unbuilt_cell(small_artifact, "openvino-cpp", tmp_path, monkeypatch, CXX="/bin/false")
    assert result.status == "unsupported"
    assert "building the native runner failed (cmake exit 1)" in result.reason
    assert "CMAKE_CXX_COMPILER" in result.reason or "CXX compiler" in result.reason
    assert not (tmp_path / "cache" / "native").exists() or not any(
        p.name.startswith("openvino-") for p in (tmp_path / "cache" / "native").iterdir()
    )


@pytest.mark.parametrize("framework", ["openvino-cpp", "openvino-ctypes", "torch-cpp"])
def test_auto_runs_what_the_python_backend_picks_and_reads_it_back(small_artifact, framework):
    """auto leaves the choice to the framework as its Python backend does (OpenVINO's CPU
    plugin picks bf16 on CPUs with native bf16, LibTorch runs fp32); parity uses that tier."""
    python = framework.split("-")[0]
    picked = {}
    for name in (python, framework):
        cell = Cell(model=small_artifact.model, framework=name, precision="auto", threads=1)
        result = run_cell(cell, small_artifact, QUICK)
        assert result.status == "ok", result.reason
        picked[name] = result.runtime["precision_run"]
        assert result.parity["tolerance"]["precision"] == picked[name]
    assert picked[python] == picked[framework]


def test_a_fresh_build_lands_whole_in_the_cache_once(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DEPLOYBENCH_NATIVE_DIR", raising=False)
    built = ensure_built("openvino")
    assert built.exists()
    assert os.access(built.runner, os.X_OK), "the runner stays executable"
    assert [p.name for p in (tmp_path / "cache" / "native").iterdir()] == [built.runner.parent.name]
    stamp = built.library.stat().st_mtime_ns
    assert ensure_built("openvino") == built  # found, not rebuilt
    assert built.library.stat().st_mtime_ns == stamp
