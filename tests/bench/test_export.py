"""The export stage on real torch: artifact content, reuse, integrity, opsets, user inputs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from helpers import SMALL_MODEL

from bench.artifact import Artifact, find_artifact
from bench.errors import ArtifactError, UsageError
from bench.export import ExportSpec, export


def test_artifact_holds_inputs_reference_and_metadata(small_artifact):
    meta = small_artifact.meta
    assert meta["model"] == SMALL_MODEL
    assert meta["opset"] == 18
    assert meta["exporter"] == "dynamo"
    assert meta["task"] == "classification"
    assert meta["reference"] == "torch-cpu-fp32"
    assert meta["inputs"] == [
        {"name": "input", "shape": ["batch", 3, 224, 224], "dtype": "float32"}
    ]
    assert meta["outputs"][0]["shape"] == ["batch", 1000]
    # mobilenet_v3_small: 2,542,856 parameters and ~0.06 GMACs per image (torchvision's card)
    assert meta["param_count"] == 2_542_856
    assert 0.1e9 < meta["flops_per_sample"] < 0.13e9
    assert set(meta["files"]) == {"model.onnx", "inputs.npy", "reference/logits.npy", "weights.pt"}
    assert [i["name"] for i in meta["images"]][:2] == ["astronaut.png", "camera.png"]
    assert "torch" in meta["versions"] and "onnx" in meta["versions"]
    assert small_artifact.inputs.shape == (8, 3, 224, 224)
    assert small_artifact.references["logits"].shape == (8, 1000)


def test_export_twice_reuses_the_artifact(small_artifact, artifacts_dir):
    again, reused = export(ExportSpec(model=SMALL_MODEL), artifacts_dir)
    assert reused
    assert again.path == small_artifact.path
    assert not list(artifacts_dir.glob(".tmp-*")), "no temporary folder left behind"


def test_a_corrupt_artifact_is_refused_with_how_to_export(small_artifact, tmp_path):
    copy = tmp_path / small_artifact.path.name
    shutil.copytree(small_artifact.path, copy)
    np.save(copy / "inputs.npy", np.zeros((8, 3, 224, 224), np.float32))
    with pytest.raises(ArtifactError, match="sha256.*export again"):
        Artifact.load(copy)


def test_find_artifact_says_how_to_export_a_missing_model(tmp_path):
    with pytest.raises(ArtifactError, match=r"python -m bench export --model resnet50"):
        find_artifact(tmp_path, "resnet50")


def test_torchscript_exporter_at_an_older_opset(tmp_path):
    artifact, reused = export(
        ExportSpec(model=SMALL_MODEL, exporter="torchscript", opset=13), tmp_path
    )
    assert not reused
    assert artifact.meta["opset"] == 13
    assert artifact.meta["exporter"] == "torchscript"


def test_user_images_folder(tmp_path, small_artifact):
    from bench.data.images import sample_photos

    photos = tmp_path / "photos"
    photos.mkdir()
    for image in sample_photos()[2:4]:
        shutil.copy(image.path, photos / image.name)
    (photos / "notes.txt").write_text("not an image")
    artifact, _ = export(ExportSpec(model=SMALL_MODEL, images=str(photos)), tmp_path / "a")
    assert [i["name"] for i in artifact.meta["images"]] == ["chelsea.png", "coffee.png"]
    assert artifact.inputs.shape == (2, 3, 224, 224)
    # The same photos and weights give the same tensors as in the sample-photo artifact.
    np.testing.assert_array_equal(artifact.inputs, small_artifact.inputs[2:4])
    assert artifact.key != small_artifact.key


def test_user_onnx_model_gets_an_onnxruntime_reference(tmp_path, small_artifact):
    onnx_file = tmp_path / "mine.onnx"
    shutil.copy(small_artifact.onnx_path, onnx_file)
    artifact, _ = export(ExportSpec(model=f"onnx:{onnx_file}"), tmp_path / "a")
    assert artifact.meta["reference"].startswith("onnxruntime-")
    assert artifact.meta["task"] == "classification"
    assert artifact.weights_path is None
    assert artifact.path.name.startswith("mine-")
    # ORT's outputs for the exported graph match torch's reference closely.
    np.testing.assert_allclose(
        artifact.references["logits"], small_artifact.references["logits"], rtol=1e-3, atol=1e-4
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"model": "resnet5O"}, "valid choices: .*resnet50"),
        ({"model": SMALL_MODEL, "exporter": "jit"}, "valid: dynamo, torchscript"),
        ({"model": SMALL_MODEL, "opset": 3}, "opset 3"),
        ({"model": "onnx:"}, "needs a path"),
    ],
)
def test_bad_export_specs_are_usage_errors(spec, message):
    with pytest.raises(UsageError, match=message):
        ExportSpec(**spec)


def test_missing_state_dict_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        export(ExportSpec(model=SMALL_MODEL, weights=str(tmp_path / "none.pt")), tmp_path)


def test_the_key_covers_every_package_and_the_code_that_shape_an_artifact(small_artifact):
    from bench.export import KEY_PACKAGES, artifact_key, export_code_digest, key_inputs

    recorded = small_artifact.meta["key_inputs"]
    assert recorded == key_inputs()  # what the key was made of is in meta.json
    assert {"torch", "torchvision", "onnx", "opencv-python-headless"} <= set(KEY_PACKAGES)
    assert set(recorded["packages"]) <= set(KEY_PACKAGES)
    assert "torchvision" in recorded["packages"] and len(recorded["export_code"]) == 64
    assert recorded["export_code"] == export_code_digest()
    spec = ExportSpec(model=SMALL_MODEL)
    base = artifact_key(spec, [], key_inputs())
    newer = {**key_inputs(), "packages": {**recorded["packages"], "torchvision": "99.0"}}
    assert artifact_key(spec, [], newer) != base
    changed_code = {**key_inputs(), "export_code": "0" * 64}
    assert artifact_key(spec, [], changed_code) != base
