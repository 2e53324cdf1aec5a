"""Framework versions side by side: the cell's version, the `versions:` axis, a model's pin,
the images that exist for each version, and the report's labels. Pure logic: the Docker runs
are in test_docker.py, the local refusal in test_local_executor.py."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from bench.cell import Cell
from bench.errors import UsageError
from bench.models import MODELS
from bench.result import load_result
from runner import images
from runner.images import built_versions, image_for, version_unavailable
from runner.matrix import MatrixError, parse_matrix
from runner.report import tables

FIXTURES = Path(__file__).parents[1] / "fixtures" / "results"

MATRIX = """
models: [mobilenet_v3_small]
frameworks: [onnxruntime, onnxruntime-ctypes, openvino, torch]
devices: [cpu]
batch_sizes: [1]
precisions: [fp32]
threads: 1
"""


def _pin(requirements: Path, package: str) -> str:
    (line,) = [x for x in requirements.read_text().splitlines() if x.startswith(f"{package}==")]
    return line.split("==")[1]


def test_a_version_is_part_of_the_cell_its_id_and_its_dict():
    plain = Cell("resnet50", "onnxruntime", threads=1)
    old = Cell("resnet50", "onnxruntime", threads=1, version="1.22.1")
    assert plain.id == "resnet50-onnxruntime-cpu-fp32-b1"
    assert old.id == "resnet50-onnxruntime@1.22.1-cpu-fp32-b1"
    assert "version" not in plain.to_dict()  # as results written before versions existed
    assert old.to_dict()["version"] == "1.22.1"
    assert plain != old
    with pytest.raises(UsageError, match="not a version"):
        Cell("resnet50", "onnxruntime", threads=1, version="1.22 1")


def test_the_versions_with_an_image_are_the_default_pin_and_the_versions_folders():
    default = _pin(images.IMAGES_DIR / "ort-cpu" / "requirements.txt", "onnxruntime")
    versions = built_versions("onnxruntime", "cpu")
    assert next(iter(versions)) == default and "1.22.1" in versions
    assert versions[default].tag() == "deploybench/ort-cpu:latest"
    assert versions["1.22.1"].tag() == "deploybench/ort-cpu:1.22.1"
    assert versions["1.22.1"].key == "ort-cpu@1.22.1"
    assert (versions["1.22.1"].requirements_dir / "requirements.txt").is_file()
    # A native variant runs in its framework's image: the same versions.
    assert list(built_versions("onnxruntime-cpp", "cpu")) == list(versions)
    assert image_for("onnxruntime", "cpu", default) == image_for("onnxruntime", "cpu")
    assert "2025.4.1" in built_versions("openvino", "cpu")


def test_each_version_image_differs_from_the_default_in_the_framework_pin():
    for image, package, version in (("ort-cpu", "onnxruntime", "1.22.1"),):
        base = images.IMAGES_DIR / image
        other = base / "versions" / version / "requirements.txt"
        assert _pin(other, package) == version
        shared = set(base.joinpath("requirements.txt").read_text().splitlines()[1:])
        mine = set(other.read_text().splitlines()[1:])
        # Only the framework and what it alone needs differ; shared packages keep their pins.
        names = {p.split("==")[0] for p in shared ^ mine}
        assert package in names and "numpy" not in names and "onnx" not in names


def test_a_version_without_an_image_is_named_with_the_ones_there_are():
    why = version_unavailable("onnxruntime", "cpu", "1.7.0")
    assert "no image has onnxruntime 1.7.0" in why
    assert "1.22.1" in why and "images/ort-cpu/versions/1.7.0/requirements.in" in why
    assert version_unavailable("onnxruntime", "cpu", None) is None
    with pytest.raises(UsageError, match="no image has onnxruntime 1.7.0"):
        image_for("onnxruntime", "cpu", "1.7.0")


def test_a_versions_folder_that_pins_another_version_is_refused(tmp_path, monkeypatch):
    shutil.copytree(images.IMAGES_DIR / "ort-cpu", tmp_path / "ort-cpu")
    wrong = tmp_path / "ort-cpu" / "versions" / "1.23.0"
    shutil.copytree(tmp_path / "ort-cpu" / "versions" / "1.22.1", wrong)
    monkeypatch.setattr(images, "IMAGES_DIR", tmp_path)
    with pytest.raises(UsageError, match=r"does not pin onnxruntime==1.23.0"):
        built_versions("onnxruntime", "cpu")


def test_the_versions_axis_gives_one_cell_per_version_and_native_variants_follow():
    matrix = parse_matrix(MATRIX + "versions: {onnxruntime: [1.31.1, 1.22.1]}\n")
    ids = [c.id for c in matrix.cells]
    assert ids == [
        "mobilenet_v3_small-onnxruntime@1.31.1-cpu-fp32-b1",
        "mobilenet_v3_small-onnxruntime@1.22.1-cpu-fp32-b1",
        "mobilenet_v3_small-onnxruntime-ctypes@1.31.1-cpu-fp32-b1",
        "mobilenet_v3_small-onnxruntime-ctypes@1.22.1-cpu-fp32-b1",
        "mobilenet_v3_small-openvino-cpu-fp32-b1",
        "mobilenet_v3_small-torch-cpu-fp32-b1",
    ]


def test_a_versions_axis_with_versions_that_have_no_image_is_refused_with_its_lines():
    bad = MATRIX + "versions:\n  onnxruntime: [1.7.0]\n  onnxruntime-cpp: [1.22.1]\n  openvino: 3\n"
    with pytest.raises(MatrixError) as info:
        parse_matrix(bad)
    problems = info.value.problems
    assert problems[0].startswith("versions.onnxruntime[0] (line 9): no cpu image has")
    assert "1.31.1, 1.22.1" in problems[0]
    assert problems[1] == (
        "versions.onnxruntime-cpp (line 10): a native variant runs its framework's versions: "
        "onnxruntime"
    )
    assert problems[2] == "versions.openvino (line 11): must be a non-empty list of versions"


@pytest.fixture
def pinned_model(monkeypatch):
    """mobilenet_v3_small pinning ONNX Runtime 1.7.0, which no image has (the seed's "this
    model needs torch 1.7" case)."""
    spec = replace(MODELS.get("mobilenet_v3_small"), framework_versions=(("onnxruntime", "1.7.0"),))
    monkeypatch.setitem(MODELS._entries, "mobilenet_v3_small", spec)


def test_a_models_pin_wins_over_the_axis_and_is_not_a_usage_error(pinned_model):
    matrix = parse_matrix(MATRIX + "versions: {onnxruntime: [1.31.1, 1.22.1]}\n")
    versions = {c.framework: c.version for c in matrix.cells}
    assert versions["onnxruntime"] == "1.7.0" and versions["onnxruntime-ctypes"] == "1.7.0"
    assert versions["openvino"] is None
    assert len(matrix.cells) == 4  # the axis collapses to the pin


def test_tables_name_the_version_and_rank_versions_as_contenders():
    ok = next(FIXTURES.glob("v4/ok*.json"))
    a, b = load_result(ok), load_result(ok)
    b.cell = {**b.cell, "version": "1.22.1"}
    b.timing = json.loads(json.dumps(b.timing))
    for rnd in b.timing["rounds"]:
        rnd["stats"]["median_ms"] *= 2
    b.timing["estimate"] = {
        **b.timing["estimate"],
        **{k: b.timing["estimate"][k] * 2 for k in ("value", "low", "high")},
    }
    b.timing["samples_ms"] = [2 * x for x in b.timing["samples_ms"]]
    assert tables.label(b.cell) == "onnxruntime 1.22.1"
    rows = tables.best_rows([a, b])
    assert [r[1] for r in rows] == ["onnxruntime", "onnxruntime 1.22.1"]
    assert rows[0][-2] == "fastest"
