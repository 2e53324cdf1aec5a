"""EfficientNet-B0 at its default export (the highest opset the sweep found every CPU framework
accepting) through every CPU framework, with parity passing."""

from __future__ import annotations

import pytest
from helpers import run_cell_to_file

from bench.export import ExportSpec, export
from bench.models import MODELS


@pytest.fixture(scope="module")
def efficientnet(artifacts_dir):
    artifact, _ = export(ExportSpec(model="efficientnet_b0"), artifacts_dir)
    return artifact


def test_the_default_export_is_the_swept_opset(efficientnet):
    assert MODELS.get("efficientnet_b0").opset == 20
    assert (efficientnet.meta["opset"], efficientnet.meta["exporter"]) == (20, "dynamo")


@pytest.mark.parametrize("framework", ["torch", "onnxruntime", "openvino", "tvm"])
def test_every_cpu_framework_runs_it_with_parity(efficientnet, tmp_path, framework):
    doc = run_cell_to_file(efficientnet, tmp_path, framework)
    assert doc["status"] == "ok", doc["reason"]
    assert doc["parity"]["verdict"] == "pass", doc["parity"]["reasons"]
