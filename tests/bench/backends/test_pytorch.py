"""PyTorch's variants on a real artifact, and its CUDA cells on a host without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run_cell_to_file

from bench.backends import BACKENDS
from bench.backends.cpu import bf16_unsupported_reason
from bench.backends.cuda import cuda_unavailable_reason
from bench.cell import Cell
from bench.errors import DeviceUnavailable, Unsupported

NO_GPU = cuda_unavailable_reason() is not None


def _backend(artifact, **cell):
    cls = BACKENDS.get("torch").load_class()
    return cls(artifact, Cell(model=artifact.model, framework="torch", threads=2, **cell))


def test_torch_compile_gives_the_same_answers_and_keeps_its_cache(
    small_artifact, tmp_path, monkeypatch
):
    """Inductor compiles C++ kernels on CPU too, so the variant's code path runs here for real.
    Its caches go to a verified entry: a second cell (as the next round's process would)
    reuses them, and Inductor's environment is restored after each cell."""
    import os

    import torch

    monkeypatch.setenv("DEPLOYBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    infos = []
    for _ in range(2):
        torch._dynamo.reset()  # a fresh process holds no compiled code in memory either
        with _backend(small_artifact, options=(("compile", "default"),)) as backend:
            backend.load()
            out = backend.infer({"input": small_artifact.inputs[:1]})
            infos.append(backend.runtime_info())
        assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ
        np.testing.assert_allclose(
            out["logits"], small_artifact.references["logits"][:1], rtol=1e-3, atol=1e-4
        )
    first, second = (info["inductor_cache"] for info in infos)
    assert infos[0]["compile_mode"] == "default"
    assert first["reused"] is False and second["reused"] is True
    assert first["entry"] == second["entry"]
    assert (tmp_path / "inductor" / first["entry"]).is_dir()
    assert second["fxgraph_cache_hits"] > first["fxgraph_cache_hits"]


def test_precisions_per_device(small_artifact):
    with _backend(small_artifact, precision="fp16") as backend, pytest.raises(Unsupported) as exc:
        backend.load()
    assert "torch on cpu supports precision fp32, bf16, int8, not fp16" in str(exc.value)
    assert BACKENDS.get("torch").load_class().precisions["cuda"] == ("fp32", "fp16", "bf16")


@pytest.mark.skipif(
    bf16_unsupported_reason() is not None,
    reason="only a CPU with AVX512-BF16 or AMX computes bf16 (not this one): see the next test",
)
def test_bf16_on_a_bf16_cpu_runs_bf16_within_its_tier(small_artifact, tmp_path):
    doc = run_cell_to_file(small_artifact, tmp_path, "torch", precision="bf16")
    assert doc["status"] == "ok", doc["reason"]
    assert doc["runtime"]["precision_run"] == "bf16"
    assert doc["parity"]["tolerance"]["precision"] == "bf16"


@pytest.mark.parametrize("framework", ["torch", "openvino"])
def test_bf16_on_a_cpu_without_it_is_unsupported(small_artifact, tmp_path, monkeypatch, framework):
    # The real check, on flags that say what a CPU without AVX512-BF16 or AMX would.
    monkeypatch.setenv("DEPLOYBENCH_CPU_FLAGS", "avx,avx2,fma,avx512f")
    doc = run_cell_to_file(small_artifact, tmp_path, framework, precision="bf16")
    assert doc["status"] == "unsupported"
    assert "no native bf16" in doc["reason"]


@pytest.mark.skipif(not NO_GPU, reason="this host has a GPU")
def test_a_cuda_cell_without_a_gpu_is_skipped_with_the_reason(small_artifact, tmp_path):
    with (
        _backend(small_artifact, device="cuda", precision="fp16") as backend,
        pytest.raises(DeviceUnavailable, match="libcuda.so.1|no CUDA device"),
    ):
        backend.load()
    doc = run_cell_to_file(small_artifact, tmp_path, "torch", device="cuda", precision="fp16")
    assert doc["status"] == "skipped"
    assert doc["reason"] == cuda_unavailable_reason()
    assert doc["timing"] is doc["compute_timing"] is doc["gpu"] is None


def test_channels_last_from_a_matrix_really_lays_out_weights_and_inputs_nhwc(small_artifact):
    from runner.matrix import parse_matrix

    text = (
        f"models: [{small_artifact.model}]\nframeworks: [torch]\ndevices: [cpu]\n"
        "batch_sizes: [1]\nprecisions: [fp32]\nthreads: 1\n"
        "framework_options: {torch: {channels_last: [true, false]}}\n"
    )
    cells = parse_matrix(text, "m.yaml").cells
    assert [c.options for c in cells] == [(("channels_last", "1"),), (("channels_last", "0"),)]
    layouts = []
    for cell in cells:
        with BACKENDS.get("torch").load_class()(small_artifact, cell) as backend:
            backend.load()
            layouts.append(backend.runtime_info()["memory_format"])
    assert layouts[0] == {"weights": "channels_last (NHWC)", "inputs": "channels_last (NHWC)"}
    assert layouts[1] == {"weights": "contiguous (NCHW)", "inputs": "contiguous (NCHW)"}
