"""The `auto` precision: what each framework runs when nobody asks, read back, and judged by the
tier of what it ran."""

from __future__ import annotations

import pytest
from helpers import run_cell_to_file

from bench.backends.cpu import bf16_unsupported_reason


@pytest.mark.parametrize("framework", ["torch", "onnxruntime"])
def test_auto_runs_the_framework_default(small_artifact, tmp_path, framework):
    doc = run_cell_to_file(small_artifact, tmp_path, framework, precision="auto")
    assert doc["status"] == "ok", doc["reason"]
    assert doc["runtime"]["precision_requested"] == "auto"
    assert doc["runtime"]["precision_run"] == "fp32"
    assert doc["parity"]["tolerance"]["precision"] == "fp32"


def test_openvino_auto_is_what_openvino_picks_on_this_cpu(small_artifact, tmp_path):
    doc = run_cell_to_file(small_artifact, tmp_path, "openvino", precision="auto")
    assert doc["status"] == "ok", doc["reason"]
    # OpenVINO's CPU plugin defaults to bf16 where the CPU computes it natively, else fp32.
    expected = "fp32" if bf16_unsupported_reason() else "bf16"
    assert doc["runtime"]["precision_run"] == expected
    assert doc["parity"]["tolerance"]["precision"] == expected
