"""OpenVINO on CPU: the precision asked for is the precision run, read back from the runtime."""

from __future__ import annotations

import openvino as ov
import pytest
from helpers import run_cell_to_file

from bench.errors import UsageError

CAPABILITIES = set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def _run(artifact, tmp_path, **cell):
    return run_cell_to_file(artifact, tmp_path, "openvino", **cell)


def test_fp32_runs_fp32_everywhere_with_latency_hint(small_artifact, tmp_path):
    doc = _run(small_artifact, tmp_path)
    assert doc["status"] == "ok", doc["reason"]
    runtime = doc["runtime"]
    assert runtime["precision_run"] == "fp32"
    # Not one layer in bf16: OpenVINO's default on bf16-capable CPUs would put most there.
    assert "bf16" not in runtime["layer_precisions"] and runtime["layer_precisions"]["f32"] > 0
    assert runtime["performance_hint"] == "latency" and runtime["infer_requests"] == 1
    assert runtime["threads"] == 2
    assert doc["parity"]["verdict"] == "pass"


def test_throughput_hint_splits_the_batch_across_async_requests(small_artifact, tmp_path):
    doc = _run(small_artifact, tmp_path, batch_size=4, options=(("hint", "throughput"),))
    assert doc["status"] == "ok", doc["reason"]
    assert doc["runtime"]["performance_hint"] == "throughput"
    assert 1 <= doc["runtime"]["infer_requests"] <= 4
    assert doc["parity"]["verdict"] == "pass"
    assert doc["parity"]["outputs"][0]["shape"] == [8, 1000]


@pytest.mark.skipif(
    "BF16" not in CAPABILITIES,
    reason="only a CPU with AVX512-BF16 or AMX computes bf16 (not this one): see the next test",
)
def test_bf16_runs_bf16_layers_and_is_labelled_so(small_artifact, tmp_path):
    doc = _run(small_artifact, tmp_path, precision="bf16")
    assert doc["status"] == "ok", doc["reason"]
    assert doc["runtime"]["precision_run"] == "bf16"
    assert doc["runtime"]["layer_precisions"].get("bf16", 0) > 0
    assert doc["parity"]["tolerance"]["precision"] == "bf16"


def test_bf16_without_cpu_support_is_unsupported(small_artifact, tmp_path, monkeypatch):
    # On any CPU: the forced flags make it answer as a Zen 3 (no AVX512-BF16, no AMX).
    monkeypatch.setenv("DEPLOYBENCH_CPU_FLAGS", "avx,avx2,fma")
    doc = _run(small_artifact, tmp_path, precision="bf16")
    assert doc["status"] == "unsupported" and "no native bf16" in doc["reason"]
    assert doc["environment"]["cpu"]["flags_forced"] == ["avx", "avx2", "fma"]


@pytest.mark.skipif(
    "FP16" not in CAPABILITIES,
    reason="only a CPU with AVX512-FP16 (Sapphire Rapids and later) computes fp16: see the next",
)
def test_fp16_on_a_cpu_with_avx512_fp16_runs_fp16_layers(small_artifact, tmp_path):
    doc = _run(small_artifact, tmp_path, precision="fp16")
    assert doc["status"] == "ok", doc["reason"]
    assert doc["runtime"]["precision_run"] == "fp16"
    assert doc["runtime"]["layer_precisions"].get("f16", 0) > 0
    assert doc["parity"]["tolerance"]["precision"] == "fp16"


@pytest.mark.skipif(
    "FP16" in CAPABILITIES,
    reason="the plugin replaces fp16 only on CPUs without AVX512-FP16 (not this one): see the "
    "previous test",
)
def test_fp16_replaced_by_the_plugin_is_unsupported_not_mislabelled(small_artifact, tmp_path):
    doc = _run(small_artifact, tmp_path, precision="fp16")
    assert doc["status"] == "unsupported"
    assert "asked for fp16" in doc["reason"]


def test_an_unknown_hint_is_refused_before_any_work(small_artifact, tmp_path):
    with pytest.raises(UsageError, match="openvino option hint='fastest': must be latency"):
        _run(small_artifact, tmp_path, options=(("hint", "fastest"),))
