"""Memory and size per cell: /proc parsing and the size sums with hand-computed expectations,
then a real cell of a model whose weights are a known 192 MiB."""

from __future__ import annotations

import pytest
from helpers import onnx_artifact_of, run_cell_to_file

from bench.measure import memory


def test_status_fields_are_read_in_kib():
    text = "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t   1024 kB\n"
    assert memory.status_kib("VmHWM", text) == 204800
    assert memory.status_kib("VmRSS", text) == 1024
    assert memory.status_kib("VmSwap", text) is None


def test_the_steady_peak_is_the_loops_not_the_loads():
    """A 256 MiB buffer touched at load and freed: the load peak holds it, the loop's peak
    (after the reset) does not."""
    import numpy as np

    m = memory.ProcessMemory()
    big = np.ones(256 * 2**20 // 8)  # 256 MiB, touched
    m.loaded()
    del big
    m.loop_started()
    small = np.ones(2**20 // 8)  # 1 MiB inside the loop
    m.loop_ended()
    del small
    s = m.section()
    if "steady_reason" in s:
        pytest.skip(s["steady_reason"])
    assert s["peak_rss_load_mib"] >= 256
    assert s["peak_rss_steady_mib"] < s["peak_rss_load_mib"] - 200


def test_sizes_add_the_artifact_and_what_was_built(tmp_path):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"x" * 1000)
    built = tmp_path / "engine"
    built.mkdir()
    (built / "a.bin").write_bytes(b"y" * 300)
    (built / "b.bin").write_bytes(b"z" * 200)
    runtime = {"model_file": str(onnx), "engine_cache": str(built), "threads": 2}
    # the graph the framework ran is the artifact itself: not counted twice
    assert memory.sizes([onnx], runtime) == {
        "artifact_bytes": 1000,
        "built": {"engine_cache": 500},
        "total_bytes": 1500,
    }
    assert memory.sizes([onnx], None)["total_bytes"] == 1000


def test_only_a_cells_own_container_reports_its_cgroup_peak(monkeypatch):
    monkeypatch.delenv(memory.IMAGE_ENV, raising=False)
    assert memory.container_peak() is None  # a local cell: its cgroup is not its own
    monkeypatch.setenv(memory.IMAGE_ENV, "deploybench/ort-cpu:test")
    peak = memory.container_peak()
    if peak["source"] is not None:  # this host's cgroup files, v1 or v2
        assert peak["peak_mib"] > 0


@pytest.fixture(scope="module")
def heavy_artifact(tmp_path_factory):
    """A classifier whose one Linear layer holds 192 MiB of float32 weights."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(16),  # 3 x 16 x 16 = 768 features
        torch.nn.Flatten(),
        torch.nn.Linear(768, 65536),  # 768 * 65536 * 4 bytes = 192 MiB
    )
    return onnx_artifact_of(net, tmp_path_factory.mktemp("heavy"))


def test_a_cell_records_its_memory_and_size(heavy_artifact, tmp_path):
    """ONNX Runtime holds the 192 MiB of weights from load on: both peaks are above it, and
    the size on disk is the artifact's graph with its weights."""
    doc = run_cell_to_file(heavy_artifact, tmp_path, "onnxruntime")
    assert doc["status"] == "ok", doc["reason"]
    mem = doc["memory"]
    assert mem["process"]["peak_rss_load_mib"] >= 192
    if mem["process"]["peak_rss_steady_mib"] is not None:
        assert mem["process"]["peak_rss_steady_mib"] >= 192
    assert mem["size"]["artifact_bytes"] >= 192 * 2**20
    assert mem["size"]["total_bytes"] >= mem["size"]["artifact_bytes"]
