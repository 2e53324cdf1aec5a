"""Running whole cells on real frameworks: results, parity verdicts, failures as statuses."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from helpers import QUICK, assert_valid_result_file

from bench.artifact import Artifact
from bench.cell import Cell
from bench.errors import UsageError
from bench.result import write_result
from bench.run import batch_indices, run_all_inputs, run_cell


def _cell(artifact, framework, **kw):
    return Cell(model=artifact.model, framework=framework, threads=2, **kw)


@pytest.mark.parametrize("framework", ["torch", "onnxruntime"])
@pytest.mark.parametrize("batch", [1, 3])
def test_a_cell_runs_to_a_valid_passing_result(small_artifact, tmp_path, framework, batch):
    result = run_cell(_cell(small_artifact, framework, batch_size=batch), small_artifact, QUICK)
    path = write_result(result, tmp_path / "r.json")
    doc = assert_valid_result_file(path)
    assert doc["status"] == "ok", doc["reason"]
    assert doc["parity"]["verdict"] == "pass"
    assert doc["parity"]["top1_agreement"] == 1.0
    # parity covers all 8 photos, also when the batch does not divide them
    assert doc["parity"]["outputs"][0]["shape"] == [8, 1000]
    assert doc["timing"]["stats"]["count"] == len(doc["timing"]["samples_ms"]) >= 5
    assert doc["timing"]["warmup_iters"] >= 2
    assert doc["timing"]["scope"] == "host_end_to_end"
    assert doc["runtime"]["threads"] == 2
    assert doc["runtime"]["precision_run"] == doc["runtime"]["precision_requested"] == "fp32"
    median_s = doc["timing"]["stats"]["median_ms"] / 1000
    assert doc["timing"]["throughput_sps"] == pytest.approx(batch / median_s)
    assert doc["timing"]["achieved_gflops_per_s"] == pytest.approx(
        small_artifact.meta["flops_per_sample"] * batch / median_s / 1e9
    )
    assert doc["environment"]["packages"][framework]


def test_a_perturbed_output_fails_parity_and_is_flagged(small_artifact, tmp_path):
    artifact = Artifact.load(small_artifact.path)
    perturbed = artifact.references["logits"].copy()
    perturbed[3, 7] += 5 * np.abs(perturbed).max()  # one logit far off
    artifact.references["logits"] = perturbed
    result = run_cell(_cell(artifact, "onnxruntime"), artifact, QUICK)
    doc = assert_valid_result_file(write_result(result, tmp_path / "r.json"))
    assert doc["status"] == "ok"  # it ran; its answers are wrong, and the result says so
    assert doc["parity"]["verdict"] == "fail"
    assert any("logits" in r for r in doc["parity"]["reasons"])
    assert doc["parity"]["top1_agreement"] == pytest.approx(7 / 8)


def test_a_crashing_framework_gives_a_failed_result_with_log_tail(small_artifact, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(small_artifact.path, broken)
    (broken / "model.onnx").write_bytes(b"\x08\x01garbage")
    artifact = Artifact.load(broken, verify=False)
    result = run_cell(_cell(artifact, "onnxruntime"), artifact, QUICK)
    doc = assert_valid_result_file(write_result(result, tmp_path / "r.json"))
    assert doc["status"] == "failed"
    assert "onnx" in doc["reason"].lower()
    assert "Traceback" in doc["log_tail"]
    assert doc["timing"] is None and doc["parity"] is None


def test_an_unsupported_request_is_a_status_with_the_reason(small_artifact, tmp_path):
    result = run_cell(_cell(small_artifact, "torch", precision="fp16"), small_artifact, QUICK)
    doc = assert_valid_result_file(write_result(result, tmp_path / "r.json"))
    assert doc["status"] == "unsupported"
    assert "not fp16" in doc["reason"]


def test_torch_cannot_run_a_user_onnx_artifact(small_artifact, tmp_path):
    from bench.export import ExportSpec, export

    onnx_file = tmp_path / "m.onnx"
    shutil.copy(small_artifact.onnx_path, onnx_file)
    artifact, _ = export(ExportSpec(model=f"onnx:{onnx_file}"), tmp_path / "a")
    torch_doc = run_cell(_cell(artifact, "torch"), artifact, QUICK).to_dict()
    ort_doc = run_cell(_cell(artifact, "onnxruntime"), artifact, QUICK).to_dict()
    assert torch_doc["status"] == "unsupported" and "no PyTorch model" in torch_doc["reason"]
    assert ort_doc["status"] == "ok" and ort_doc["parity"]["verdict"] == "pass"


def test_batch_indices_wrap_around():
    assert batch_indices(8, 3, start=6).tolist() == [6, 7, 0]
    assert batch_indices(2, 5).tolist() == [0, 1, 0, 1, 0]


def test_run_all_inputs_truncates_the_last_padded_batch(small_artifact):
    from bench.backends.onnxruntime import OnnxRuntimeBackend

    with OnnxRuntimeBackend(
        small_artifact, _cell(small_artifact, "onnxruntime", batch_size=3)
    ) as b:
        b.load()
        out = run_all_inputs(b, small_artifact.inputs, "input", 3)
    assert out["logits"].shape == (8, 1000)


def test_the_slow_fault_makes_every_timed_call_slower_by_its_fraction(monkeypatch):
    import time

    from bench.faults import slowdown_from_env, slowed

    monkeypatch.setenv("DEPLOYBENCH_FAULT", "slow=0.5:onnxruntime")
    assert slowdown_from_env("onnxruntime") == 0.5 and slowdown_from_env("torch") == 0.0
    spent = []

    def work():
        t0 = time.perf_counter_ns()
        time.sleep(0.01)
        spent.append(time.perf_counter_ns() - t0)

    call = slowed(work, 0.5)
    t0 = time.perf_counter_ns()
    call()
    assert time.perf_counter_ns() - t0 >= 1.5 * spent[0]
    monkeypatch.setenv("DEPLOYBENCH_FAULT", "slow=fast")
    with pytest.raises(UsageError, match="a fraction in"):
        slowdown_from_env("torch")


def test_a_model_that_outputs_nan_gives_a_written_valid_result_that_fails_parity(tmp_path):
    """log of a negative number: NaN in every output, the reference's too (ONNX Runtime's)."""
    import torch
    from helpers import onnx_artifact_of

    class Negative(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.log(x.mean(dim=(2, 3)) - 100.0)

    artifact = onnx_artifact_of(Negative(), tmp_path)
    result = run_cell(
        Cell(model=artifact.model, framework="onnxruntime", threads=1), artifact, QUICK
    )
    doc = assert_valid_result_file(write_result(result, tmp_path / "nan.json"))
    assert doc["status"] == "ok" and doc["timing"]["samples_ms"]  # the measurement is kept
    parity = doc["parity"]
    assert parity["verdict"] == "fail"
    assert parity["reasons"] == ["logits: non-finite outputs (24 NaN or inf values)"]
    assert parity["outputs"][0]["non_finite"] == 24 and parity["worst_rel_l2"] is None
