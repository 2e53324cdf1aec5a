"""Bad input, as a user gives it to `python -m bench` and `python -m runner`: one clear message,
exit status 2, no traceback, and nothing written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.data.images import SAMPLE_PHOTOS, sample_photo_dir

MATRIX = """
name: bad
models: [{model}]
frameworks: [onnxruntime]
devices: [cpu]
batch_sizes: [1]
precisions: [fp32]
threads: 1
timing: {{warmup_iters: 1, warmup_seconds: 0, iters: 3, seconds: 0}}
"""


def cli(module: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def assert_usage_error(proc: subprocess.CompletedProcess, *message: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for part in message:
        assert part in proc.stderr, proc.stderr


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")) if folder.exists() else []


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A small tmpfs at `path` (a disk that fills up); needs root, as CI and this host have."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def _bad_onnx_files(tmp_path: Path, good: Path) -> dict[str, Path]:
    files = {
        "random bytes": os.urandom(4096),
        "text": b"this is not a model\n",
        "empty": b"",
        "truncated": good.read_bytes()[: good.stat().st_size // 2],
    }
    out = {}
    for name, content in files.items():
        out[name] = tmp_path / f"{name.replace(' ', '_')}.onnx"
        out[name].write_bytes(content)
    return out


def test_corrupt_truncated_or_non_onnx_files_are_refused(tmp_path, small_artifact):
    artifacts = tmp_path / "artifacts"
    for name, path in _bad_onnx_files(tmp_path, small_artifact.onnx_path).items():
        proc = cli("bench", "export", "--model", f"onnx:{path}", "--artifacts", str(artifacts))
        assert_usage_error(proc, f"onnx:{path}: not a valid ONNX model")
        matrix = tmp_path / f"{path.stem}.yaml"
        matrix.write_text(MATRIX.format(model=f"onnx:{path}"))
        results = tmp_path / "results"
        proc = cli(
            "runner", "run", "--matrix", str(matrix), "--executor", "local",
            "--results", str(results), "--artifacts", str(artifacts),
        )  # fmt: skip
        assert_usage_error(proc, "not a valid ONNX model"), name
        assert _files(artifacts) == [] and _files(results) == []


def test_a_corrupt_image_in_the_images_folder_is_named(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in SAMPLE_PHOTOS[:2]:
        shutil.copy(sample_photo_dir() / name, images / name)
    # OpenCV decodes a truncated JPEG without complaint, greying out the missing part.
    rocket = (sample_photo_dir() / "rocket.jpg").read_bytes()
    (images / "rocket.jpg").write_bytes(rocket[: len(rocket) // 2])
    artifacts = tmp_path / "artifacts"
    args = ["export", "--model", "resnet18", "--images", str(images), "--artifacts", str(artifacts)]
    proc = cli("bench", *args)
    assert_usage_error(proc, f"image {images / 'rocket.jpg'} is corrupt or truncated")
    assert _files(artifacts) == []
    (images / "rocket.jpg").write_bytes(b"\x89PNG not really")
    assert_usage_error(cli("bench", *args), f"cannot decode image {images / 'rocket.jpg'}")


def test_unwritable_result_paths_are_refused_before_any_work(tmp_path, small_artifact):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    run = ["run", "--model", small_artifact.model, "--framework", "onnxruntime"]
    run += ["--artifact", str(small_artifact.path)]
    for out, why in (
        (blocker / "r.json", f"{blocker} is not a folder"),
        (Path("/proc/deploybench/r.json"), "/proc stores no files"),
    ):
        assert_usage_error(cli("bench", *run, "--out", str(out)), "--out folder", why)
    runner = ["run", "--matrix", "quick", "--executor", "local"]
    proc = cli("runner", *runner, "--results", str(blocker / "results"))
    assert_usage_error(proc, f"results folder {blocker / 'results'} cannot be created")
    proc = cli("runner", *runner, "--results", str(tmp_path / "r"), "--artifacts", str(blocker))
    assert_usage_error(proc, f"artifacts folder {blocker} cannot be created")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("run_id", ["../../escape", "a/b", "..", ".hidden", "x" * 200])
def test_run_ids_that_are_not_one_folder_name_are_refused(tmp_path, run_id):
    results = tmp_path / "deep" / "results"
    proc = cli(
        "runner", "run", "--matrix", "quick", "--executor", "local", "--run-id", run_id,
        "--results", str(results), "--artifacts", str(tmp_path / "artifacts"),
    )  # fmt: skip
    assert_usage_error(proc, f"run id {run_id!r}: use letters, digits")
    assert _files(tmp_path) == []


def test_an_artifact_from_a_newer_format_is_refused(tmp_path, small_artifact):
    newer = tmp_path / "artifacts" / small_artifact.path.name
    shutil.copytree(small_artifact.path, newer)
    meta = json.loads((newer / "meta.json").read_text())
    meta["format"] += 1
    (newer / "meta.json").write_text(json.dumps(meta))
    run = ["run", "--model", small_artifact.model, "--framework", "onnxruntime"]
    proc = cli("bench", *run, "--artifact", str(newer), "--out", str(tmp_path / "r.json"))
    assert_usage_error(proc, f"artifact format {meta['format']}, newer than")
    assert not (tmp_path / "r.json").exists()
    matrix = tmp_path / "m.yaml"
    matrix.write_text(MATRIX.format(model=small_artifact.model))
    proc = cli(
        "runner", "run", "--matrix", str(matrix), "--executor", "local", "--no-export",
        "--artifacts", str(newer.parent), "--results", str(tmp_path / "results"),
    )  # fmt: skip
    assert_usage_error(proc, "newer than")
    assert not (tmp_path / "results").exists()


def test_full_disks_are_named(tmp_path, small_artifact):
    with tmpfs(tmp_path / "full", "1m") as full:
        proc = cli("runner", "run", "--matrix", "quick", "--executor", "local", "--results",
                   str(full / "results"))  # fmt: skip
        assert_usage_error(proc, f"results folder {full / 'results'} is on a full disk")
        proc = cli("bench", "export", "--model", "resnet18", "--artifacts", str(full / "a"))
        assert_usage_error(proc, f"artifacts folder {full / 'a'} is on a full disk")
        assert _files(full) == []
    # A disk that fills up while the result is written: said so, and no half-written file.
    with tmpfs(tmp_path / "tiny", "4k") as tiny:
        run = ["run", "--model", small_artifact.model, "--framework", "onnxruntime", "--iters"]
        run += ["3", "--seconds", "0", "--warmup-iters", "1", "--warmup-seconds", "0"]
        proc = cli("bench", *run, "--artifact", str(small_artifact.path), "--out", f"{tiny}/r.json")
        assert_usage_error(proc, "no space left on the device writing", "free some space")
        assert _files(tiny) == []
