"""The CLI as a user runs it: a real subprocess, real exit codes, real files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import SMALL_MODEL, assert_valid_result_file


def bench(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


QUICK = ["--warmup-iters", "2", "--warmup-seconds", "0", "--iters", "5", "--seconds", "0"]


def test_help_lists_the_commands():
    proc = bench("--help")
    assert proc.returncode == 0
    for command in ("export", "run", "info"):
        assert command in proc.stdout


def test_info_reports_importable_frameworks():
    proc = bench("info", "--json")
    assert proc.returncode == 0
    info = json.loads(proc.stdout)
    assert info["frameworks"]["torch"]["importable"] is True
    assert info["frameworks"]["onnxruntime"]["importable"] is True
    assert info["environment"]["cpu"]["affinity_cores"] >= 1
    text = bench("info")
    assert "framework onnxruntime: importable" in text.stdout
    assert "framework openvino-cpp: importable" in text.stdout
    # cmake and g++ are installed here (CI installs them): the runners build on first use
    assert "native runners for torch: built on first use with" in text.stdout


@pytest.mark.parametrize(
    ("args", "listing"),
    [
        (["--model", "resnet5O", "--framework", "torch"], "valid choices: efficientnet_b0"),
        (
            ["--model", SMALL_MODEL, "--framework", "tensorflow"],
            "invalid choice: 'tensorflow' (choose from 'onnxruntime', ",
        ),
        (["--model", SMALL_MODEL, "--framework", "torch", "--device", "tpu"], "'cpu', 'cuda'"),
        (["--model", SMALL_MODEL, "--framework", "torch", "--precision", "fp8"], "'fp32', 'fp16'"),
        (["--model", SMALL_MODEL, "--framework", "torch", "--batch", "0"], "at least 1"),
        (["--model", SMALL_MODEL, "--framework", "torch", "--iters", "0"], "min_iters"),
    ],
)
def test_bad_run_input_exits_2_lists_choices_and_writes_nothing(tmp_path, args, listing):
    out = tmp_path / "result.json"
    proc = bench("run", *args, "--artifacts", str(tmp_path), "--out", str(out))
    assert proc.returncode == 2
    assert listing in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_missing_artifact_says_how_to_export(tmp_path):
    out = tmp_path / "result.json"
    proc = bench(
        "run",
        "--model",
        "resnet50",
        "--framework",
        "onnxruntime",
        "--artifacts",
        str(tmp_path),
        "--out",
        str(out),
    )
    assert proc.returncode == 2
    assert "python -m bench export --model resnet50" in proc.stderr
    assert not out.exists()


def test_bad_export_input_exits_2(tmp_path):
    proc = bench("export", "--model", "alexnet", "--artifacts", str(tmp_path))
    assert proc.returncode == 2 and "valid choices" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_export_then_run_both_frameworks(small_artifact, tmp_path):
    artifacts = str(small_artifact.path.parent)
    proc = bench("export", "--model", SMALL_MODEL, "--artifacts", artifacts)
    assert proc.returncode == 0 and proc.stdout.startswith("reused")
    for framework in ("torch", "onnxruntime"):
        out = tmp_path / f"{framework}.json"
        proc = bench(
            "run",
            "--model",
            SMALL_MODEL,
            "--framework",
            framework,
            "--threads",
            "1",
            "--artifacts",
            artifacts,
            "--out",
            str(out),
            *QUICK,
        )
        assert proc.returncode == 0, proc.stderr
        assert "parity pass" in proc.stderr
        doc = assert_valid_result_file(out)
        assert doc["cell"]["threads"] == doc["runtime"]["threads"] == 1


def test_unsupported_cell_writes_its_result_and_exits_0(small_artifact, tmp_path):
    out = tmp_path / "r.json"
    proc = bench(
        "run",
        "--model",
        SMALL_MODEL,
        "--framework",
        "torch",
        "--precision",
        "fp16",
        "--artifact",
        str(small_artifact.path),
        "--out",
        str(out),
        *QUICK,
    )
    assert proc.returncode == 0
    assert "UNSUPPORTED" in proc.stderr
    assert assert_valid_result_file(out)["status"] == "unsupported"


@pytest.mark.slow
def test_resnet50_batch1_end_to_end(artifacts_dir, tmp_path):
    """The issue's acceptance run: export resnet50, run both frameworks, parity passes."""
    proc = bench("export", "--model", "resnet50", "--artifacts", str(artifacts_dir))
    assert proc.returncode == 0, proc.stderr
    for framework in ("torch", "onnxruntime"):
        out = tmp_path / f"{framework}.json"
        proc = bench(
            "run",
            "--model",
            "resnet50",
            "--framework",
            framework,
            "--batch",
            "1",
            "--artifacts",
            str(artifacts_dir),
            "--out",
            str(out),
            "--warmup-iters",
            "3",
            "--iters",
            "10",
            "--seconds",
            "1",
        )
        assert proc.returncode == 0, proc.stderr
        doc = assert_valid_result_file(out)
        assert doc["status"] == "ok"
        assert doc["parity"]["verdict"] == "pass"
        assert doc["artifact"]["flops_per_sample"] == pytest.approx(8.18e9, rel=0.01)
