"""int8 on CPU for real, each framework with its own quantizer calibrated on the sample photos:
ONNX Runtime the shared QDQ graph, OpenVINO NNCF (or the QDQ graph with quantizer=qdq), PyTorch
PT2E compiled by Inductor. Integer kernels are read back from each runtime, the calibration is
recorded, the parity is judged by the int8 tier, and quantized models are cached."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import run_cell_to_file
from onnx import numpy_helper

from bench.backends import torch_int8
from bench.backends.cpu import INT8_WITHOUT_VNNI, int8_cpu_settings, int8_saturates
from bench.errors import UsageError
from bench.quantize import ORT_CPU_RECIPE, ort_cpu_recipe, qdq_recipe

# The forced-flags override (bench.backends.cpu): the other CPUs of this machine kind.
ZEN3_FLAGS = "avx,avx2,fma,f16c,sse4_2"
ZEN4_FLAGS = ZEN3_FLAGS + ",avx512f,avx512_vnni,avx512_bf16"
x86_only = pytest.mark.skipif(
    platform.machine() != "x86_64", reason="the int8 saturation fix is for x86 CPUs"
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache: every test quantizes for real."""
    monkeypatch.setenv("DEPLOYBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _assert_int8_read_back(doc: dict, framework: str) -> None:
    runtime = doc["runtime"]
    if framework == "onnxruntime":
        assert runtime["optimized_op_counts"]["integer"] > 0  # QLinear*/Integer ops that ran
    elif framework == "openvino":
        layers = runtime["layer_precisions"]
        assert layers.get("i8", 0) + layers.get("u8", 0) > 0
    else:  # the oneDNN int8 kernels in the code Inductor generated
        kernels = runtime["int8_kernels"]
        assert sum(kernels.values()) > 0
        assert all(k.startswith(("onednn.q", "quantized.")) for k in kernels)
        assert runtime["inductor_freezing"] is True


@pytest.mark.parametrize("framework", ["onnxruntime", "openvino", "torch"])
def test_int8_runs_integer_kernels_and_reports_its_parity(
    small_artifact, tmp_path, cache, framework
):
    doc = run_cell_to_file(small_artifact, tmp_path, framework, precision="int8")
    assert doc["status"] == "ok", doc["reason"]
    runtime = doc["runtime"]
    # int8 when at least 90% of the compute operators run integer, mixed below (NNCF leaves
    # mobilenet_v3_small's squeeze-excitation layers in float: about 80% here).
    fraction = runtime["integer_fraction"]
    assert 0.5 < fraction <= 1.0
    assert runtime["precision_requested"] == "int8"
    assert runtime["precision_run"] == ("int8" if fraction >= 0.9 else "mixed")
    _assert_int8_read_back(doc, framework)
    calibration = runtime["calibration"]
    assert calibration["samples"] == len(small_artifact.inputs) == len(calibration["images"])
    recipe_tool = {
        "onnxruntime": ORT_CPU_RECIPE["tool"],
        "openvino": "nncf.quantize",  # OpenVINO's own quantizer is its default
        "torch": torch_int8.RECIPE["tool"],
    }[framework]
    assert calibration["recipe"]["tool"] == recipe_tool
    parity = doc["parity"]
    assert parity["tolerance"]["precision"] == "int8"
    # Random weights: int8 may change answers; what matters here is that it is measured.
    assert 0.0 <= parity["top1_agreement"] <= 1.0
    assert parity["verdict"] in ("pass", "fail")


@pytest.mark.parametrize(
    ("framework", "model_key", "reused_key"),
    [
        ("openvino", "model_file", "quantized_model_reused"),
        ("torch", "quantized_program", "quantized_program_reused"),
    ],
)
def test_a_quantized_model_is_cached_and_reused(
    small_artifact, tmp_path, cache, framework, model_key, reused_key
):
    first = run_cell_to_file(small_artifact, tmp_path, framework, precision="int8")
    again = run_cell_to_file(small_artifact, tmp_path, framework, precision="int8")
    assert first["status"] == again["status"] == "ok", (first["reason"], again["reason"])
    path = first["runtime"][model_key]
    assert Path(path).is_relative_to(cache) and Path(path).is_file()
    assert (first["runtime"][reused_key], again["runtime"][reused_key]) == (False, True)
    assert again["runtime"][model_key] == path
    _assert_int8_read_back(again, framework)
    # The cached model is the one that was quantized: the same answers.
    for a, b in zip(first["parity"]["outputs"], again["parity"]["outputs"], strict=True):
        assert a["rel_l2"] == pytest.approx(b["rel_l2"], rel=1e-6)
    # Poisoned in place (weights zeroed, the size kept): detected, rebuilt, never loaded.
    largest = max(Path(path).parent.iterdir(), key=lambda f: f.stat().st_size)
    data = bytearray(largest.read_bytes())
    data[len(data) // 4 : len(data) // 2] = bytes(len(data) // 2 - len(data) // 4)
    largest.write_bytes(bytes(data))
    rebuilt = run_cell_to_file(small_artifact, tmp_path, framework, precision="int8")
    assert rebuilt["status"] == "ok" and rebuilt["runtime"][reused_key] is False
    assert rebuilt["runtime"][model_key] == path and largest.read_bytes() != bytes(data)
    for a, b in zip(first["parity"]["outputs"], rebuilt["parity"]["outputs"], strict=True):
        assert a["rel_l2"] == pytest.approx(b["rel_l2"], rel=1e-6)


def test_openvino_quantizer_qdq_runs_onnx_runtimes_graph(small_artifact, tmp_path, cache):
    doc = run_cell_to_file(
        small_artifact, tmp_path, "openvino", precision="int8", options=(("quantizer", "qdq"),)
    )
    assert doc["status"] == "ok", doc["reason"]
    runtime = doc["runtime"]
    assert runtime["quantizer"] == "qdq" and runtime["precision_run"] in ("int8", "mixed")
    ort = run_cell_to_file(small_artifact, tmp_path, "onnxruntime", precision="int8")
    assert runtime["model_file"] == ort["runtime"]["model_file"]  # the one ONNX Runtime runs
    assert runtime["calibration"]["recipe"] == ort_cpu_recipe()
    _assert_int8_read_back(doc, "openvino")


def test_onnxruntime_runs_its_own_recipe_or_the_tensorrt_shaped_graph(
    resnet50_artifact, conv_artifact, tmp_path, cache
):
    own = run_cell_to_file(resnet50_artifact, tmp_path, "onnxruntime", precision="int8")
    assert own["status"] == "ok", own["reason"]
    runtime = own["runtime"]
    # Every convolution and the classifier integer: resnet50 has 53 convolutions and 1 Gemm.
    assert runtime["optimized_op_counts"] == {"integer": 54, "float": 0}
    assert runtime["integer_fraction"] == 1.0 and runtime["precision_run"] == "int8"
    assert runtime["calibration"]["recipe"]["tool"] == ORT_CPU_RECIPE["tool"]
    # The TensorRT-shaped graph quantizes only weighted layers' inputs: ORT leaves some float.
    trt = run_cell_to_file(
        resnet50_artifact, tmp_path, "onnxruntime", precision="int8",
        options=(("quantizer", "tensorrt"),),
    )  # fmt: skip
    assert trt["runtime"]["integer_fraction"] < 0.9 and trt["runtime"]["precision_run"] == "mixed"
    assert trt["runtime"]["calibration"]["recipe"] == qdq_recipe(for_cpu=True)
    # Within the int8 tier on a small trained-like net (random resnet50 weights are not).
    small = run_cell_to_file(conv_artifact, tmp_path, "onnxruntime", precision="int8")
    assert small["parity"]["verdict"] == "pass", small["parity"]["reasons"]


@pytest.mark.parametrize(
    ("precision", "quantizer", "message"),
    [
        ("int8", "pot", "openvino option quantizer='pot': must be nncf, qdq"),
        ("fp32", "qdq", "openvino option quantizer applies to int8 cells, not fp32"),
    ],
)
def test_openvino_refuses_a_bad_quantizer_option_before_any_work(
    small_artifact, tmp_path, precision, quantizer, message
):
    options = (("quantizer", quantizer),)
    with pytest.raises(UsageError, match=message):
        run_cell_to_file(small_artifact, tmp_path, "openvino", precision=precision, options=options)


def test_torch_int8_program_cached_by_one_process_loads_in_another(small_artifact, tmp_path, cache):
    """Rounds run each cell in a fresh process: the cached PT2E program must load there."""
    first = run_cell_to_file(small_artifact, tmp_path, "torch", precision="int8")
    assert first["status"] == "ok", first["reason"]
    out = tmp_path / "fresh.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--model", small_artifact.model,
         "--framework", "torch", "--precision", "int8", "--artifact", str(small_artifact.path),
         "--threads", "2", "--warmup-iters", "1", "--warmup-seconds", "0", "--iters", "2",
         "--seconds", "0", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    fresh = json.loads(out.read_text())
    assert fresh["status"] == "ok", (fresh["reason"], proc.stderr[-2000:])
    assert fresh["runtime"]["quantized_program_reused"] is True


def test_torch_int8_without_a_compiler_is_unsupported(small_artifact, tmp_path, monkeypatch):
    # Inductor's own compiler search, pointed at a compiler that does not exist.
    from torch._inductor import config

    monkeypatch.setattr(config.cpp, "cxx", (None, "/nonexistent/g++"))
    doc = run_cell_to_file(small_artifact, tmp_path, "torch", precision="int8")
    assert doc["status"] == "unsupported"
    assert "needs a C++ compiler" in doc["reason"] and "/nonexistent/g++" in doc["reason"]


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_tvm_is_fp32_only_and_says_why(small_artifact, tmp_path, precision):
    doc = run_cell_to_file(small_artifact, tmp_path, "tvm", precision=precision)
    assert doc["status"] == "unsupported"
    assert f"not {precision}: deploybench runs TVM in fp32 only" in doc["reason"]


# -- int8 on CPUs without VNNI: each framework's own fix, chosen from the CPU flags ------------
@x86_only
@pytest.mark.parametrize(("flags", "saturates"), [(ZEN3_FLAGS, True), (ZEN4_FLAGS, False)])
def test_the_int8_settings_follow_the_cpu(monkeypatch, flags, saturates):
    monkeypatch.setenv("DEPLOYBENCH_CPU_FLAGS", flags)
    assert int8_saturates() is saturates
    for framework, guidance in INT8_WITHOUT_VNNI.items():
        settings = int8_cpu_settings(framework)
        expected = guidance.without_vnni if saturates else guidance.with_vnni
        assert {k: settings[k] for k in expected} == expected
        assert settings["cpu_int8"].startswith("no VNNI: " if saturates else "VNNI: ")
    assert INT8_WITHOUT_VNNI["onnxruntime"].without_vnni == {"reduce_range": True}
    assert INT8_WITHOUT_VNNI["torch"].without_vnni == {"reduce_range": True}
    assert INT8_WITHOUT_VNNI["openvino"].without_vnni == {"overflow_fix": "first_layer_only"}


def _weight_codes(path: str) -> list[np.ndarray]:
    """The int8 codes of every quantized weight of a QDQ graph."""
    model = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [
        inits[n.input[0]]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0], np.zeros(0)).dtype == np.int8
    ]


@x86_only
def test_onnxruntime_int8_without_vnni_runs_7_bit_weights(
    conv_artifact, tmp_path, cache, monkeypatch
):
    monkeypatch.setenv("DEPLOYBENCH_CPU_FLAGS", ZEN3_FLAGS)
    doc = run_cell_to_file(conv_artifact, tmp_path, "onnxruntime", precision="int8")
    assert doc["status"] == "ok", doc["reason"]
    recipe = doc["runtime"]["calibration"]["recipe"]
    assert recipe["reduce_range"] is True and recipe["cpu_int8"].startswith("no VNNI")
    codes = _weight_codes(doc["runtime"]["model_file"])
    assert codes and max(int(np.abs(c).max()) for c in codes) <= 64  # 7 bits: [-64, 63]
    # The graph for VNNI CPUs is another cache entry, with the full 8-bit range.
    monkeypatch.setenv("DEPLOYBENCH_CPU_FLAGS", ZEN4_FLAGS)
    full = run_cell_to_file(conv_artifact, tmp_path, "onnxruntime", precision="int8")
    assert full["runtime"]["calibration"]["recipe"]["reduce_range"] is False
    assert full["runtime"]["model_file"] != doc["runtime"]["model_file"]
    assert max(int(np.abs(c).max()) for c in _weight_codes(full["runtime"]["model_file"])) > 64


@x86_only
def test_openvino_int8_records_nncf_overflow_fix_for_the_cpu(
    small_artifact, tmp_path, cache, monkeypatch
):
    monkeypatch.setenv("DEPLOYBENCH_CPU_FLAGS", ZEN3_FLAGS)
    doc = run_cell_to_file(small_artifact, tmp_path, "openvino", precision="int8")
    assert doc["status"] == "ok", doc["reason"]
    assert doc["runtime"]["calibration"]["recipe"]["overflow_fix"] == "first_layer_only"
    monkeypatch.setenv("DEPLOYBENCH_CPU_FLAGS", ZEN4_FLAGS)
    vnni = run_cell_to_file(small_artifact, tmp_path, "openvino", precision="int8")
    assert vnni["runtime"]["calibration"]["recipe"]["overflow_fix"] == "disable"
    assert vnni["runtime"]["model_file"] != doc["runtime"]["model_file"]  # cached apart


@x86_only
@pytest.mark.parametrize(("flags", "quant_max"), [(ZEN3_FLAGS, 127), (ZEN4_FLAGS, 255)])
def test_torch_int8_activations_use_7_bits_without_vnni(monkeypatch, flags, quant_max):
    monkeypatch.setenv("DEPLOYBENCH_CPU_FLAGS", flags)
    assert torch_int8.quantization_config().input_activation.quant_max == quant_max
    assert torch_int8.recipe()["reduce_range"] is (quant_max == 127)
