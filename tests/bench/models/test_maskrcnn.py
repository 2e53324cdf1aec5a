"""Mask R-CNN for real on CPU: export, detection parity through ONNX Runtime and PyTorch, and a
precise unsupported reason from the frameworks whose ONNX frontends lack an operator it uses."""

from __future__ import annotations

import pytest
from helpers import run_cell_to_file

from bench.export import ExportSpec, export

MODEL = "maskrcnn_resnet50_fpn"


@pytest.fixture(scope="module")
def maskrcnn(artifacts_dir):
    artifact, _ = export(ExportSpec(model=MODEL), artifacts_dir)  # ~40 s
    return artifact


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
    assert refs[0]["masks"].shape[1:] == (1, 320, 320)
    assert refs[0]["boxes"].shape == (counts[0], 4)


@pytest.mark.parametrize("framework", ["onnxruntime", "torch"])
def test_detection_parity_passes(maskrcnn, tmp_path, framework):
    doc = run_cell_to_file(maskrcnn, tmp_path, framework)
    assert doc["status"] == "ok", doc["reason"]
    p = doc["parity"]
    assert p["kind"] == "detection" and p["verdict"] == "pass", p["reasons"]
    assert p["images"] == 8 and p["reference_detections"] > 0
    assert p["matched_fraction"] == 1.0 and p["min_box_iou"] > 0.99
    assert p["min_mask_iou"] is not None and p["min_mask_iou"] > 0.9


def test_a_batch_other_than_one_is_unsupported(maskrcnn, tmp_path):
    doc = run_cell_to_file(maskrcnn, tmp_path, "onnxruntime", batch_size=2)
    assert doc["status"] == "unsupported"
    assert "fixed at 1" in doc["reason"]


@pytest.mark.parametrize("framework", ["openvino", "tvm"])
def test_frameworks_without_onnx_loop_say_so(maskrcnn, tmp_path, framework):
    # torchvision exports the mask pasting as an ONNX Loop, which neither frontend converts.
    doc = run_cell_to_file(maskrcnn, tmp_path, framework)
    assert doc["status"] == "unsupported"
    assert "Loop" in doc["reason"].splitlines()[0]
