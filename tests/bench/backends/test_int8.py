"""int8 on CPU for real: the QDQ graph calibrated on the sample photos, run by ONNX Runtime and
OpenVINO as integer kernels, read back from each runtime, judged by the int8 parity tier."""

from __future__ import annotations

import pytest
from helpers import run_cell_to_file


@pytest.mark.parametrize("framework", ["onnxruntime", "openvino"])
def test_int8_runs_integer_kernels_and_reports_its_parity(small_artifact, tmp_path, framework):
    doc = run_cell_to_file(small_artifact, tmp_path, framework, precision="int8")
    assert doc["status"] == "ok", doc["reason"]
    runtime = doc["runtime"]
    assert (runtime["precision_requested"], runtime["precision_run"]) == ("int8", "int8")
    if framework == "onnxruntime":
        assert runtime["optimized_op_counts"]["integer"] > 0  # QLinear*/Integer ops that ran
    else:
        layers = runtime["layer_precisions"]
        assert layers.get("i8", 0) + layers.get("u8", 0) > 0
    calibration = runtime["calibration"]
    assert calibration["samples"] == len(small_artifact.inputs) == len(calibration["images"])
    parity = doc["parity"]
    assert parity["tolerance"]["precision"] == "int8"
    # Random weights: int8 may change answers; what matters here is that it is measured.
    assert 0.0 <= parity["top1_agreement"] <= 1.0
    assert parity["verdict"] in ("pass", "fail")


def test_tvm_has_no_int8(small_artifact, tmp_path):
    doc = run_cell_to_file(small_artifact, tmp_path, "tvm", precision="int8")
    assert doc["status"] == "unsupported" and "not int8" in doc["reason"]
