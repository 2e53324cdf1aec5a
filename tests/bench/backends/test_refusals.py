"""What a framework cannot run, known from the framework table before any work: such a cell is
`unsupported` with the reason, on any host (a GPU cell does not need the GPU to learn it)."""

from __future__ import annotations

from helpers import run_cell_to_file

from bench.frameworks import FRAMEWORKS


def test_the_table_refuses_detection_in_cuda_graphs_and_in_tensorrt_only():
    torch, trt = FRAMEWORKS.get("torch"), FRAMEWORKS.get("tensorrt")
    assert "CUDA graph" in torch.refusal("detection", "cuda", {"cuda_graphs": "1"})
    assert torch.refusal("detection", "cuda", {"cuda_graphs": "0"}) is None
    assert torch.refusal("detection", "cuda", {}) is None
    assert torch.refusal("classification", "cuda", {"cuda_graphs": "1"}) is None
    assert "IOutputAllocator" in trt.refusal("detection", "cuda", {})
    assert trt.refusal("classification", "cuda", {}) is None
    assert FRAMEWORKS.get("onnxruntime").refusal("detection", "cuda", {"ep": "tensorrt"}) is None


def test_mask_rcnn_in_cuda_graphs_is_unsupported_with_the_reason(maskrcnn_artifact, tmp_path):
    """A real cell through bench.run: unsupported, not failed, and before the device check (so
    on this GPU-less host too)."""
    doc = run_cell_to_file(
        maskrcnn_artifact, tmp_path, "torch", device="cuda", options=(("cuda_graphs", "1"),)
    )
    assert doc["status"] == "unsupported"
    assert doc["reason"].startswith("torch: a detector cannot be captured in a CUDA graph")
