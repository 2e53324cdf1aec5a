"""The native runners, built and run for real: OpenVINO and LibTorch through their C++ APIs,
from the C++ runner process and through ctypes, on the session's small artifact."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from helpers import QUICK, onnx_artifact_of, run_cell_to_file

from bench import cache
from bench.backends import BACKENDS
from bench.cell import Cell
from bench.errors import Unsupported, UsageError
from bench.measure.timing import TimingConfig, time_calls
from bench.native.build import ensure_built
from bench.native.library import NativeError, NativeLibrary, NativeSession
from bench.run import run_cell

NATIVE = [
    f"{fw}-{way}" for fw in ("openvino", "torch", "onnxruntime", "tvm") for way in ("cpp", "ctypes")
]


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
    assert runtime["framework_version"] not in ("", "unknown")
    # Each session says which of its figures the framework's API read back.
    assert "precision_run" in runtime["read_back"] or framework.startswith("tvm")
    assert ("threads" in runtime["read_back"]) == (not framework.startswith("onnxruntime"))
    # The batch fixed at the cell's, as the Python backends compile it.
    declared = small_artifact.meta["inputs"][0]["shape"]
    if framework.startswith("onnxruntime"):
        assert runtime["free_dimension_overrides"] == {declared[0]: 3}
    if framework.startswith("openvino"):
        assert runtime["static_shape"] == "3,3,224,224"
    if not framework.startswith("torch"):
        assert runtime["input_shape"] == {"mode": "static", "dims": [3, 3, 224, 224]}
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
    with pytest.raises(UsageError, match="valid: openvino, torch, onnxruntime, tvm"):
        ensure_built("tensorrt")


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


@pytest.mark.parametrize("framework", ["onnxruntime", "tvm"])
def test_native_outputs_are_the_python_backends_outputs(small_artifact, framework):
    """One library (ONNX Runtime's) or one compiled module (TVM's) with one configuration: the
    ctypes variant computes what the Python backend computes."""
    feed = {small_artifact.input_name: np.ascontiguousarray(small_artifact.inputs[:2])}
    outputs = {}
    for name in (framework, f"{framework}-ctypes"):
        cell = Cell(model=small_artifact.model, framework=name, batch_size=2, threads=1)
        with BACKENDS.get(name).load_class()(small_artifact, cell) as backend:
            backend.load()
            outputs[name] = backend.infer(feed)["logits"]
    np.testing.assert_allclose(
        outputs[f"{framework}-ctypes"], outputs[framework], rtol=1e-5, atol=1e-6
    )


def _session(framework: str, model, config: str, artifact) -> NativeSession:
    return NativeSession(
        NativeLibrary(ensure_built(framework).library),
        model,
        1,
        config,
        artifact.inputs.shape[1:],
        [artifact.references["logits"].shape[1:]],
    )


@pytest.mark.parametrize(
    ("framework", "config", "message"),
    [
        ("onnxruntime", "", "config needs library=PATH"),
        ("onnxruntime", "library=/nonexistent/libonnxruntime.so", "cannot open"),
        ("onnxruntime", "library={ort};warp=9", "unknown onnxruntime config key warp"),
        ("onnxruntime", "library={ort};inter_op_num_threads=many", "must be an integer"),
        ("tvm", "", "config needs params=PATH"),
        ("tvm", "params=/nonexistent.bin;speed=max", "unknown tvm config key speed"),
    ],
)
def test_native_sessions_refuse_a_bad_config_with_a_message(
    small_artifact, framework, config, message
):
    from bench.native.build import ort_library

    with pytest.raises(NativeError, match=message):
        config = config.format(ort=ort_library())
        _session(framework, small_artifact.onnx_path, config, small_artifact)


def test_tvm_native_loads_the_library_the_backend_compiled(small_artifact):
    """The library comes from the TVM backend's own compile (its tuning label and target) and
    is exported once: a second cell of the same configuration loads the cached one."""
    from bench.backends.native import tvm_library

    cell = Cell(model=small_artifact.model, framework="tvm-ctypes", threads=1)
    folder, meta = tvm_library(small_artifact, cell)
    assert meta["tuning"] == "UNTUNED" and meta["prepack"] is False
    files = sorted(p.name for p in folder.iterdir() if p.name != cache.MANIFEST)
    assert files == ["meta.json", "model.so", "params.bin"]
    assert tvm_library(small_artifact, cell)[0] == folder
    # A variant's own options (how ctypes hands over its input) are not the compile's.
    lists = (("marshal", "lists"),)
    naive = Cell(model=small_artifact.model, framework="tvm-ctypes", threads=1, options=lists)
    assert tvm_library(small_artifact, naive)[0] == folder


def test_missing_onnxruntime_headers_are_unsupported_with_the_reason(
    small_artifact, tmp_path, monkeypatch
):
    empty = tmp_path / "include"
    empty.mkdir()
    result = _unbuilt_cell(
        small_artifact, "onnxruntime-cpp", tmp_path, monkeypatch, DEPLOYBENCH_ORT_INCLUDE=str(empty)
    )
    assert result.status == "unsupported"
    assert f"DEPLOYBENCH_ORT_INCLUDE={empty} holds no onnxruntime_cxx_api.h" in result.reason


def test_a_failed_onnxruntime_build_is_unsupported_with_the_compiler_log(
    small_artifact, tmp_path, monkeypatch
):
    broken = tmp_path / "include"
    broken.mkdir()
    (broken / "onnxruntime_cxx_api.h").write_text('#error "deploybench test: a broken header"\n')
    result = _unbuilt_cell(
        small_artifact, "onnxruntime-ctypes", tmp_path, monkeypatch,
        DEPLOYBENCH_ORT_INCLUDE=str(broken),
    )  # fmt: skip
    assert result.status == "unsupported"
    assert "building the native runner failed (cmake exit" in result.reason
    assert "deploybench test: a broken header" in result.reason


def test_the_header_fetch_touches_no_apt_state_of_the_host(tmp_path):
    """Every path apt is given lies under the private folder (or is /dev/null)."""
    from bench.native.ort_headers import SUITE, _apt_options

    options = _apt_options(tmp_path / "apt")
    values = dict(o.split("=", 1) for o in options[1::2])
    assert values["Dir::Etc::SourceList"] == values["Dir::State::Status"] == "/dev/null"
    for key in ("Dir::Etc::SourceParts", "Dir::State::Lists", "Dir::Cache"):
        assert values[key].startswith(str(tmp_path / "apt")), key
    sources = (tmp_path / "apt" / "sources" / f"{SUITE}.sources").read_text()
    assert f"Suites: {SUITE}" in sources


def test_a_build_log_excerpt_keeps_the_first_error_and_the_tail():
    from bench.native.build import BUILD_LOG_TAIL, log_excerpt

    cause = "$ cmake --build\nx.h:1:2: error: #error the cause\n"
    log = cause + "noise\n" * 2000 + "make: Error 2\n"
    excerpt = log_excerpt(log)
    assert excerpt.startswith("first error:\n$ cmake --build\nx.h:1:2: error: #error the cause")
    assert excerpt.endswith("make: Error 2\n") and len(excerpt) <= BUILD_LOG_TAIL + 40
    short = "$ cmake\nerror: short\n"
    assert log_excerpt(short) == short  # the first error is in the tail already


def test_naive_list_marshalling_copies_every_element_and_changes_no_answer(small_artifact):
    """marshal=lists hands the library a ctypes array built from a Python list (not the
    caller's buffer) and returns the same outputs as the in-place call."""
    from bench.native.library import through_python_lists

    x = np.ascontiguousarray(small_artifact.inputs[:1])
    copied = through_python_lists(x)
    assert copied.dtype == np.float32 and copied.shape == x.shape
    assert not np.shares_memory(copied, x)
    np.testing.assert_array_equal(copied, x)
    feed = {small_artifact.input_name: x}
    outputs, runtime = {}, {}
    for marshal in ("buffer", "lists"):
        cell = Cell(
            model=small_artifact.model,
            framework="onnxruntime-ctypes",
            threads=1,
            options=(("marshal", marshal),),
        )
        with BACKENDS.get("onnxruntime-ctypes").load_class()(small_artifact, cell) as backend:
            backend.load()
            outputs[marshal] = backend.infer(feed)["logits"]
            runtime[marshal] = backend.runtime_info()["marshal"]
    np.testing.assert_array_equal(outputs["lists"], outputs["buffer"])
    assert runtime == {"buffer": "buffer", "lists": "lists"}
