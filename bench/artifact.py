"""The exported artifact: one content-addressed folder that every framework image consumes.

    <artifacts>/<model>-<key12>/
        meta.json          what was exported, how, with which versions; sha256 of every file
        model.onnx         the exported graph (dynamic batch axis)
        inputs.npy         the preprocessed input tensor, float32 [N, C, H, W]
        reference/<output>.npy   PyTorch fp32 outputs on those inputs
        weights.pt         the PyTorch state dict (torchvision models only), for the torch backend

Reading an artifact needs numpy only, so images without torch can use it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from bench.errors import ArtifactError

ARTIFACT_FORMAT = 1
DETECTIONS_FILE = "detections.npz"  # a detector's reference: "<photo index>/<output>" arrays
META_FILE = "meta.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _export_hint(model: str, artifacts_dir: Path) -> str:
    return f"export it with: python -m bench export --model {model} --artifacts {artifacts_dir}"


@dataclass(frozen=True)
class Artifact:
    """A verified artifact folder and its metadata."""

    path: Path
    meta: dict

    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> Artifact:
        """Open an artifact folder; with `verify`, check every file against its sha256."""
        path = Path(path)
        meta_path = path / META_FILE
        if not meta_path.is_file():
            raise ArtifactError(f"{path} is not an artifact (no {META_FILE})")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(
                f"{meta_path} is corrupt ({exc}); delete {path} and export again"
            ) from exc
        found = meta.get("format")
        if isinstance(found, int) and found > ARTIFACT_FORMAT:
            raise ArtifactError(
                f"{path} has artifact format {found}, newer than the {ARTIFACT_FORMAT} this "
                "deploybench reads: it was written by a newer version; upgrade, or export it "
                "again with this one into another --artifacts folder"
            )
        if found != ARTIFACT_FORMAT:
            raise ArtifactError(
                f"{path} has artifact format {meta.get('format')!r}, this bench reads "
                f"{ARTIFACT_FORMAT}; export it again"
            )
        artifact = cls(path, meta)
        if verify:
            artifact.verify()
        return artifact

    def verify(self) -> None:
        for name, expected in self.meta["files"].items():
            file = self.path / name
            if not file.is_file():
                raise ArtifactError(
                    f"artifact {self.path} lacks {name}; delete it and export again"
                )
            if sha256_file(file) != expected:
                raise ArtifactError(
                    f"artifact {self.path}: {name} does not match its sha256 (corrupt or "
                    "modified); delete the folder and export again"
                )

    @property
    def key(self) -> str:
        return self.meta["key"]

    @property
    def model(self) -> str:
        return self.meta["model"]

    @property
    def onnx_path(self) -> Path:
        return self.path / "model.onnx"

    @property
    def weights_path(self) -> Path | None:
        return self.path / "weights.pt" if "weights.pt" in self.meta["files"] else None

    @property
    def input_name(self) -> str:
        return self.meta["inputs"][0]["name"]

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self.meta["outputs"]]

    @property
    def classifier_output(self) -> str | None:
        """The [N, classes] scores output of a classifier, for top-k agreement."""
        return self.output_names[0] if self.meta.get("task") == "classification" else None

    @cached_property
    def inputs(self) -> np.ndarray:
        return np.load(self.path / "inputs.npy")

    @property
    def task(self) -> str:
        return self.meta.get("task", "generic")

    @cached_property
    def references(self) -> dict[str, np.ndarray]:
        """Every output over every input, batched (not for detectors: see `detections`)."""
        return {n: np.load(self.path / "reference" / f"{n}.npy") for n in self.output_names}

    @cached_property
    def detections(self) -> list[dict[str, np.ndarray]]:
        """A detector's reference: per input photo, its outputs (each as many rows as it
        found objects in that photo)."""
        with np.load(self.path / "reference" / DETECTIONS_FILE) as saved:
            return [
                {n: saved[f"{i}/{n}"] for n in self.output_names} for i in range(len(self.inputs))
            ]

    def summary(self) -> dict[str, object]:
        """What a result records about the artifact it ran."""
        keys = (
            "key",
            "model",
            "weights",
            "seed",
            "opset",
            "exporter",
            "task",
            "graph_boundary",
            "param_count",
            "flops_per_sample",
            "reference",
        )
        return {k: self.meta.get(k) for k in keys} | {"path": str(self.path)}


def find_artifact(artifacts_dir: str | Path, model: str, key: str | None = None) -> Artifact:
    """The one artifact of `model` in `artifacts_dir` (or the one with `key`)."""
    root = Path(artifacts_dir)
    candidates = []
    for meta_path in sorted(root.glob(f"*/{META_FILE}")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # reported by Artifact.load if this one is chosen explicitly
        if meta.get("model") == model and (key is None or meta.get("key", "").startswith(key)):
            candidates.append(meta_path.parent)
    if not candidates:
        raise ArtifactError(
            f"no artifact for model {model!r} in {root}; {_export_hint(model, root)}"
        )
    if len(candidates) > 1:
        listing = ", ".join(p.name for p in candidates)
        raise ArtifactError(
            f"several artifacts for model {model!r} in {root} ({listing}); "
            "choose one with --artifact PATH"
        )
    return Artifact.load(candidates[0])
