"""Mask R-CNN for real on CPU: export (a graph that ends before the mask paste), detection
parity through PyTorch, ONNX Runtime and OpenVINO, and a precise unsupported reason from TVM,
whose ONNX frontend cannot convert one of its operators."""

from __future__ import annotations

import pytest
from helpers import run_cell_to_file


@pytest.fixture
def maskrcnn(maskrcnn_artifact):
    return maskrcnn_artifact


def test_export_records_a_one_image_graph_and_per_photo_references(maskrcnn):
    meta = maskrcnn.meta
    assert (meta["task"], meta["exporter"], meta["opset"]) == ("detection", "torchscript", 17)
    assert meta["inputs"][0]["shape"] == [1, 3, 320, 320]
    assert [o["name"] for o in meta["outputs"]] == ["boxes", "labels", "scores", "masks"]
    refs = maskrcnn.detections
    assert len(refs) == len(maskrcnn.inputs) == 8
    counts = [len(r["scores"]) for r in refs]
    # Sharpened random class logits: confident detections on every photo, not none.
    assert all(c > 0 for c in counts), counts
    assert max(float(r["scores"].max()) for r in refs) > 0.5
    # The graph ends before the paste: each detection's mask at the mask head's 28x28.
    assert refs[0]["masks"].shape[1:] == (1, 28, 28)
    assert refs[0]["boxes"].shape == (counts[0], 4)
    assert "before the mask paste" in meta["graph_boundary"]
    assert "Loop" not in {n.op_type for n in __import__("onnx").load(maskrcnn.onnx_path).graph.node}


@pytest.mark.parametrize("framework", ["onnxruntime", "torch", "openvino"])
def test_detection_parity_passes(maskrcnn, tmp_path, framework):
    doc = run_cell_to_file(maskrcnn, tmp_path, framework)
    assert doc["status"] == "ok", doc["reason"]
    p = doc["parity"]
    assert p["kind"] == "detection" and p["verdict"] == "pass", p["reasons"]
    assert p["images"] == 8 and p["reference_detections"] > 0
    assert p["matched_fraction"] == 1.0 and p["min_box_iou"] > 0.99
    assert p["min_mask_iou"] is not None and p["min_mask_iou"] > 0.9
    assert "pasted at the reference's box into 320x320" in p["mask_comparison"]
    assert doc["artifact"]["graph_boundary"] == maskrcnn.meta["graph_boundary"]


def test_a_batch_other_than_one_is_unsupported(maskrcnn, tmp_path):
    doc = run_cell_to_file(maskrcnn, tmp_path, "onnxruntime", batch_size=2)
    assert doc["status"] == "unsupported"
    assert "fixed at 1" in doc["reason"]


def test_tvm_names_the_operator_its_frontend_cannot_convert(maskrcnn, tmp_path):
    doc = run_cell_to_file(maskrcnn, tmp_path, "tvm")
    assert doc["status"] == "unsupported"
    assert doc["reason"].startswith("TVM's Relax ONNX frontend: cannot convert ConstantOfShape")
