"""int8 on CPU for real, each framework with its own quantizer calibrated on the sample photos:
ONNX Runtime the shared QDQ graph, OpenVINO NNCF (or the QDQ graph with quantizer=qdq), PyTorch
PT2E compiled by Inductor. Integer kernels are read back from each runtime, the calibration is
recorded, the parity is judged by the int8 tier, and quantized models are cached."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_cell_to_file

from bench.backends import torch_int8
from bench.quantize import RECIPES


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
    assert (runtime["precision_requested"], runtime["precision_run"]) == ("int8", "int8")
    _assert_int8_read_back(doc, framework)
    calibration = runtime["calibration"]
    assert calibration["samples"] == len(small_artifact.inputs) == len(calibration["images"])
    recipe_tool = {
        "onnxruntime": RECIPES["int8"]["tool"],
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


def test_openvino_quantizer_qdq_runs_the_shared_qdq_graph(small_artifact, tmp_path, cache):
    doc = run_cell_to_file(
        small_artifact, tmp_path, "openvino", precision="int8", options=(("quantizer", "qdq"),)
    )
    assert doc["status"] == "ok", doc["reason"]
    runtime = doc["runtime"]
    assert runtime["quantizer"] == "qdq" and runtime["precision_run"] == "int8"
    assert runtime["model_file"].endswith(".onnx")  # the graph ONNX Runtime runs too
    assert runtime["calibration"]["recipe"] == RECIPES["int8"]
    _assert_int8_read_back(doc, "openvino")


@pytest.mark.parametrize(
    ("precision", "quantizer", "message"),
    [
        ("int8", "pot", "openvino quantizer 'pot'; valid: nncf, qdq"),
        ("fp32", "qdq", "option quantizer applies to int8, not fp32"),
    ],
)
def test_openvino_refuses_a_bad_quantizer_option(
    small_artifact, tmp_path, precision, quantizer, message
):
    options = (("quantizer", quantizer),)
    doc = run_cell_to_file(
        small_artifact, tmp_path, "openvino", precision=precision, options=options
    )
    assert doc["status"] == "unsupported" and message in doc["reason"]


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
