"""The answer a report leads with, and report.json, from hand-made rounds (pure logic): the
fastest passing cell, its speed-up over torch eager fp32 with the verdict, ties when the ratio's
interval does not leave the equivalence band, faster cells that failed parity counted."""

from __future__ import annotations

import pytest
from helpers import result_with_rounds

from runner.report import answer, summary


def _results():
    return [
        result_with_rounds("torch", "fp32", [10.0, 10.2, 9.9], "pass"),
        result_with_rounds("openvino", "fp32", [5.0, 5.1, 4.95], "pass"),
        result_with_rounds("onnxruntime", "fp32", [5.01, 5.1, 4.96], "pass"),  # ties with it
        result_with_rounds("tvm", "fp32", [8.0, 8.1, 7.9], "pass"),
        result_with_rounds("onnxruntime", "int8", [2.0, 2.1, 1.9], "fail"),  # changes answers
    ]


def test_the_answer_is_the_fastest_passing_cell_with_its_speedup_and_ties():
    (a,) = answer.answers(_results())
    assert (a.model, a.device, a.batch_size) == ("mobilenet_v3_small", "cpu", 1)
    assert a.fastest == "openvino fp32" and a.framework == "openvino"
    assert a.ties == ["onnxruntime fp32"]  # tvm (1.6x slower) is no tie
    assert a.faster_but_failed_parity == 1  # the int8 cell, faster but failing
    # 10.0/5.0, 10.2/5.1, 9.9/4.95 within each round: exactly 2x in each
    assert a.speedup["verdict"] == "faster"
    assert a.speedup["value"] == pytest.approx(2.0)
    assert a.latency_ms["value"] == pytest.approx(5.0, rel=0.02)
    (row,) = answer.rows([a])
    assert row[3] == "openvino fp32 (1 faster cells failed parity)"
    assert row[5].startswith("2.00x [") and row[5].endswith(" faster")
    assert row[6] == "onnxruntime fp32"


def test_the_reference_can_be_the_answer_and_no_passing_cell_says_so():
    results = [
        result_with_rounds("torch", "fp32", [4.0, 4.1, 3.9], "pass"),
        result_with_rounds("openvino", "fp32", [8.0, 8.2, 7.8], "pass"),
    ]
    (a,) = answer.answers(results)
    assert a.fastest == "torch fp32" and a.ties == []
    assert a.speedup == {"value": 1.0, "low": 1.0, "high": 1.0, "verdict": "reference"}
    assert answer.rows([a])[0][5] == "1.00x (it is the reference)"
    failing = [result_with_rounds("openvino", "fp32", [8.0, 8.2, 7.8], "fail")]
    (none,) = answer.answers(failing)
    assert none.fastest is None and none.note == "no cell passed parity (1 ran)"
    assert answer.rows([none])[0][3] == "no cell passed parity (1 ran)"


def test_report_json_holds_the_answers_and_every_cell_and_is_schema_valid():
    results = _results()
    runs = [{"run": "r", "host": "h", "cpu": "c", "state": "complete"}]
    doc = summary.report_json(results, runs, 0.02)
    summary.validate(doc)
    assert doc["report_version"] == summary.REPORT_VERSION
    assert [a["fastest"] for a in doc["answers"]] == ["openvino fp32"]
    assert len(doc["cells"]) == len(results)
    int8 = next(c for c in doc["cells"] if c["cell"]["precision"] == "int8")
    assert int8["parity"] == "fail" and int8["speedup_vs_torch"]["verdict"] == "faster"
    assert int8["costs"]["load_ms"] is not None
    assert doc["scenarios"] == []  # no scenario cell among them
    with pytest.raises(Exception, match="report_version"):
        summary.validate({**doc, "report_version": summary.REPORT_VERSION + 1})
    with pytest.raises(Exception, match="extra"):
        summary.validate({**doc, "extra": 1})


def test_the_cost_table_reads_compile_tuning_memory_and_size():
    from bench.result import validate
    from runner.report import costs

    r = result_with_rounds("tvm", "fp32", [8.0, 8.1, 7.9], "pass")
    r.runtime = {**r.runtime, "compile_s": 12.345, "tuning_s": 3600.4}
    r.memory = {
        "process": {"peak_rss_load_mib": 512.4, "peak_rss_steady_mib": 300.6},
        "container": {"peak_mib": 700.0, "source": "cgroup v1 max_usage_in_bytes"},
        "size": {"artifact_bytes": 3 * 2**20, "built": {"model_file": 2**20},
                 "total_bytes": 4 * 2**20},
    }  # fmt: skip
    validate(r.to_dict())
    (row,) = costs.rows([r])
    assert dict(zip(costs.COST_HEADERS, row, strict=True)) == {
        "framework": "tvm",
        "precision": "fp32",
        "batch": "1",
        "load ms": "1.0",
        "cold ms": "1.0",
        "compile / build s": "12.35",
        "tuning s": "3600",
        "peak RSS MiB (load / steady)": "512 / 301",
        "container peak MiB": "700",
        "on disk MiB": "4.0",
    }
    r.memory, r.runtime = None, {**r.runtime, "compile_s": None, "build_s": 2.5}
    assert costs.rows([r])[0][5:10] == ("2.50", "3600", "-", "-", "-")
