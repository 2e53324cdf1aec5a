"""The export stage (runs where torch is): model + inputs -> a content-addressed artifact.

It builds the model, preprocesses the photos, runs the PyTorch fp32 reference, exports ONNX
and writes the artifact folder (see `bench.artifact`). The folder's name holds a hash of
everything that determines its content, so exporting the same thing twice reuses it, and the
folder is assembled under a temporary name and renamed into place, so a crash never leaves a
half-written artifact behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench import __version__
from bench.artifact import ARTIFACT_FORMAT, DETECTIONS_FILE, META_FILE, Artifact, sha256_file
from bench.data.images import ImageFile, resolve_images
from bench.data.preprocess import PreprocessConfig, preprocess_files
from bench.errors import ArtifactError, UsageError
from bench.fsutil import atomic_write_text, fsync_dir
from bench.measure.fingerprint import package_versions
from bench.models import MODELS, ONNX_PREFIX, ModelSpec, check_model_name, is_onnx_model

log = logging.getLogger(__name__)

EXPORTERS = ("dynamo", "torchscript")
REUSE_ENV = "DEPLOYBENCH_ARTIFACTS_REUSE"
DEFAULT_OPSET = 18


@dataclass(frozen=True)
class ExportSpec:
    """What to export; every field changes the artifact, so all are part of its key."""

    model: str
    weights: str = "random"
    seed: int = 0
    # None: the model's own choice (ModelSpec.opset / .exporter), else opset 18 with dynamo.
    opset: int | None = None
    exporter: str | None = None
    images: str | None = None  # a directory of the user's photos; None: the sample photos

    def __post_init__(self) -> None:
        check_model_name(self.model)
        model_spec = None if is_onnx_model(self.model) else MODELS.get(self.model)
        if self.opset is None:
            object.__setattr__(self, "opset", (model_spec and model_spec.opset) or DEFAULT_OPSET)
        if self.exporter is None:
            object.__setattr__(self, "exporter", (model_spec and model_spec.exporter) or "dynamo")
        if self.exporter not in EXPORTERS:
            raise UsageError(f"unknown exporter {self.exporter!r}; valid: {', '.join(EXPORTERS)}")
        if not 7 <= self.opset <= 23:
            raise UsageError(f"opset {self.opset} out of the supported range 7..23")


def _weights_identity(weights: str) -> object:
    if weights in ("random", "pretrained"):
        return weights
    path = Path(weights)
    if not path.is_file():
        raise UsageError(
            f"--weights {weights}: no such file; valid: random, pretrained, or a state dict path"
        )
    return {"state_dict_sha256": sha256_file(path)}


def artifact_key(spec: ExportSpec, images: list[ImageFile], extra: dict[str, object]) -> str:
    """sha256 of everything that determines an artifact's content."""
    identity = {
        "format": ARTIFACT_FORMAT,
        "model": spec.model if not is_onnx_model(spec.model) else "onnx",
        "weights": _weights_identity(spec.weights) if not is_onnx_model(spec.model) else None,
        "seed": spec.seed if spec.weights == "random" else None,
        "opset": spec.opset,
        "exporter": spec.exporter,
        "images": [i.sha256 for i in images],
        **extra,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _folder_name(model: str, key: str) -> str:
    stem = Path(model[len(ONNX_PREFIX) :]).stem if is_onnx_model(model) else model
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', stem)}-{key[:12]}"


def _onnx_opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _export_torch_onnx(
    model: object, sample: np.ndarray, path: Path, spec: ExportSpec, model_spec: ModelSpec
) -> None:
    import torch

    x = torch.from_numpy(sample)
    names = {"input_names": [model_spec.input_name], "output_names": list(model_spec.output_names)}
    if spec.exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=4096)
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=True,
            opset_version=spec.opset,
            dynamic_shapes=({0: batch},),
            external_data=False,
            **names,
        )
    else:
        axes = {n: {0: "batch"} for n in (model_spec.input_name, *model_spec.output_names)}
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=False,
            opset_version=spec.opset,
            dynamic_axes=axes,
            **names,
        )


def _export_detector(graph: object, sample: np.ndarray, path: Path, spec: ExportSpec) -> None:
    """A detector's one-image graph; its outputs' first dimension is the detection count."""
    import torch

    if spec.exporter != "torchscript":
        raise UsageError(
            f"{spec.model} exports with --exporter torchscript only: the dynamo exporter cannot "
            "trace its data-dependent postprocessing"
        )
    names = list(graph.output_names)
    torch.onnx.export(
        graph,
        (torch.from_numpy(sample),),
        str(path),
        dynamo=False,
        opset_version=spec.opset,
        input_names=["input"],
        output_names=names,
        dynamic_axes={n: {0: "detections"} for n in names},
    )


def _build_detector(spec: ExportSpec, model_spec: ModelSpec, images: list, work: Path) -> dict:
    """A detector: one image per run; the reference detections of every photo, per photo."""
    import onnx
    import torch

    from bench.models.build import as_graph, build_model, count_parameters, flops_per_sample

    inputs = preprocess_files([i.path for i in images], model_spec.preprocess)
    x = torch.from_numpy(inputs)
    model = build_model(model_spec, spec.weights, spec.seed, calibration=x)
    graph = as_graph(model, model_spec)
    references: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        for i in range(len(inputs)):
            for name, value in zip(model_spec.output_names, graph(x[i : i + 1]), strict=True):
                references[f"{i}/{name}"] = value.numpy()
    _export_detector(graph, inputs[:1], work / "model.onnx", spec)
    onnx.checker.check_model(str(work / "model.onnx"))
    torch.save(model.state_dict(), work / "weights.pt")
    np.save(work / "inputs.npy", inputs)
    np.savez(work / "reference" / DETECTIONS_FILE, **references)
    first = {n: references[f"0/{n}"] for n in model_spec.output_names}
    return {
        "task": "detection",
        "graph_boundary": model_spec.graph_boundary,
        "preprocess": model_spec.preprocess.to_dict(),
        "inputs": [{"name": "input", "shape": [1, *inputs.shape[1:]], "dtype": "float32"}],
        "outputs": [
            {"name": n, "shape": ["detections", *v.shape[1:]], "dtype": str(v.dtype)}
            for n, v in first.items()
        ],
        "param_count": count_parameters(model),
        "flops_per_sample": flops_per_sample(graph, x),
        "reference": "torch-cpu-fp32",
    }


def _build_torchvision(spec: ExportSpec, images: list[ImageFile], work: Path) -> dict:
    """Fill `work` with a torchvision model's files; return the meta fields it determines."""
    import onnx
    import torch

    from bench.models.build import build_model, count_parameters, flops_per_sample

    model_spec = MODELS.get(spec.model)
    if model_spec.task == "detection":
        return _build_detector(spec, model_spec, images, work)
    inputs = preprocess_files([i.path for i in images], model_spec.preprocess)
    x = torch.from_numpy(inputs)
    model = build_model(model_spec, spec.weights, spec.seed, calibration=x)
    with torch.inference_mode():
        reference = model(x).numpy()
    _export_torch_onnx(model, inputs[:1], work / "model.onnx", spec, model_spec)
    onnx.checker.check_model(str(work / "model.onnx"))
    torch.save(model.state_dict(), work / "weights.pt")
    np.save(work / "inputs.npy", inputs)
    np.save(work / "reference" / f"{model_spec.output_names[0]}.npy", reference)
    return {
        "task": model_spec.task,
        "preprocess": model_spec.preprocess.to_dict(),
        "inputs": [
            {
                "name": model_spec.input_name,
                "shape": ["batch", *inputs.shape[1:]],
                "dtype": "float32",
            }
        ],
        "outputs": [
            {
                "name": model_spec.output_names[0],
                "shape": ["batch", *reference.shape[1:]],
                "dtype": str(reference.dtype),
            }
        ],
        "param_count": count_parameters(model),
        "flops_per_sample": flops_per_sample(model, x),
        "reference": "torch-cpu-fp32",
    }


def check_user_onnx(path: Path) -> object:
    """The user's ONNX file parsed and checked (an onnx.ModelProto), or a usage error that says
    what is wrong with it: missing, truncated, corrupt, or not ONNX at all."""
    import onnx
    from google.protobuf.message import DecodeError

    if not path.is_file():
        raise UsageError(f"{ONNX_PREFIX}{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model)
    except (DecodeError, OSError, onnx.checker.ValidationError) as exc:
        raise UsageError(
            f"{ONNX_PREFIX}{path}: not a valid ONNX model (truncated, corrupt, or not ONNX): "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    if not model.graph.node:
        raise UsageError(f"{ONNX_PREFIX}{path}: not a valid ONNX model (its graph is empty)")
    return model


def _onnx_image_input(path: Path) -> tuple[str, list]:
    graph = check_user_onnx(path).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UsageError(f"{path}: expected one image input, found {len(inputs)}")
    dims = [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "batch")
        for d in inputs[0].type.tensor_type.shape.dim
    ]
    if len(dims) != 4 or dims[1] != 3 or not all(isinstance(d, int) and d > 0 for d in dims[2:]):
        raise UsageError(
            f"{path}: input {inputs[0].name!r} has shape {dims}; need [N, 3, H, W] "
            "with fixed H and W"
        )
    return inputs[0].name, dims


def _build_user_onnx(spec: ExportSpec, images: list[ImageFile], work: Path) -> dict:
    """A user's ONNX file: copied as is; the reference comes from ONNX Runtime CPU fp32."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise UsageError(
            "a user ONNX model needs onnxruntime in the export environment for its "
            "reference outputs: pip install '.[torch,ort]'"
        ) from exc
    source = Path(spec.model[len(ONNX_PREFIX) :])
    input_name, dims = _onnx_image_input(source)
    size = dims[2]
    cfg = PreprocessConfig(resize=round(size * 256 / 224), crop=size)
    inputs = preprocess_files([i.path for i in images], cfg)
    shutil.copyfile(source, work / "model.onnx")
    np.save(work / "inputs.npy", inputs)
    session = ort.InferenceSession(str(work / "model.onnx"), providers=["CPUExecutionProvider"])
    out_names = [o.name for o in session.get_outputs()]
    # A fixed batch dimension (often 1) is run one sample at a time.
    step = dims[0] if isinstance(dims[0], int) else len(inputs)
    chunks = [
        session.run(None, {input_name: inputs[i : i + step]}) for i in range(0, len(inputs), step)
    ]
    outputs = [np.concatenate([c[k] for c in chunks]) for k in range(len(out_names))]
    for name, value in zip(out_names, outputs, strict=True):
        np.save(work / "reference" / f"{name}.npy", value)
    classifier = len(outputs) == 1 and outputs[0].ndim == 2 and outputs[0].shape[1] > 1
    return {
        "task": "classification" if classifier else "generic",
        "preprocess": cfg.to_dict(),
        "inputs": [{"name": input_name, "shape": dims, "dtype": "float32"}],
        "outputs": [
            {"name": n, "shape": [dims[0], *v.shape[1:]], "dtype": str(v.dtype)}
            for n, v in zip(out_names, outputs, strict=True)
        ],
        "source_onnx": str(source),
        "param_count": None,
        "flops_per_sample": None,
        "reference": f"onnxruntime-{ort.__version__}-cpu-fp32",
    }


# Packages whose versions change an artifact's content: the model definitions (torchvision), the
# exporters (torch, onnx, onnxscript), preprocessing (OpenCV, numpy) and the user-ONNX reference
# (onnxruntime); and the export code itself, hashed.
KEY_PACKAGES = (
    "torch",
    "torchvision",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "opencv-python-headless",
    "numpy",
)
EXPORT_CODE = (
    "export.py",
    "models/__init__.py",
    "models/build.py",
    "data/preprocess.py",
    "data/images.py",
)


def export_code_digest() -> str:
    """sha256 of the code that builds artifacts: BN calibration, detection logit scaling, the
    detector's graph boundary, preprocessing, the export itself."""
    digest = hashlib.sha256()
    root = Path(__file__).parent
    for name in EXPORT_CODE:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    return digest.hexdigest()


def key_inputs() -> dict[str, object]:
    """The versions and code an artifact's key and meta record beside its own settings."""
    return {"packages": package_versions(KEY_PACKAGES), "export_code": export_code_digest()}


def export(spec: ExportSpec, artifacts_dir: str | Path) -> tuple[Artifact, bool]:
    """Export (or reuse) the artifact of `spec`; returns it and whether it was reused."""
    root = Path(artifacts_dir)
    images = resolve_images(spec.images)
    extra: dict[str, object] = key_inputs()
    if is_onnx_model(spec.model):
        source = Path(spec.model[len(ONNX_PREFIX) :])
        check_user_onnx(source)  # before anything is written
        extra["onnx_sha256"] = sha256_file(source)
    else:
        extra["preprocess"] = MODELS.get(spec.model).preprocess.to_dict()
        if boundary := MODELS.get(spec.model).graph_boundary:
            extra["graph_boundary"] = boundary
    key = artifact_key(spec, images, extra)
    final = root / _folder_name(spec.model, key)
    # In a container the existing artifacts are offered read-only beside the folder it writes.
    if (reuse := os.environ.get(REUSE_ENV)) and (Path(reuse) / final.name).is_dir():
        with contextlib.suppress(ArtifactError):
            return Artifact.load(Path(reuse) / final.name), True
    if final.exists():
        try:
            return Artifact.load(final), True
        except ArtifactError as exc:
            log.warning("re-exporting: %s", exc)
            shutil.rmtree(final)

    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tmp-export-", dir=root))
    try:
        (work / "reference").mkdir()
        build = _build_user_onnx if is_onnx_model(spec.model) else _build_torchvision
        fields = build(spec, images, work)
        files = {
            str(p.relative_to(work)): sha256_file(p) for p in sorted(work.rglob("*")) if p.is_file()
        }
        meta = {
            "format": ARTIFACT_FORMAT,
            "key": key,
            "model": spec.model,
            "weights": spec.weights if not is_onnx_model(spec.model) else "file",
            "seed": spec.seed if spec.weights == "random" else None,
            "opset": _onnx_opset(work / "model.onnx"),
            "opset_requested": spec.opset,
            "exporter": spec.exporter if not is_onnx_model(spec.model) else "user",
            "images": [{"name": i.name, "sha256": i.sha256} for i in images],
            "versions": package_versions() | {"bench": __version__},
            "key_inputs": {k: v for k, v in extra.items() if k in ("packages", "export_code")},
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **fields,
            "files": files,
        }
        atomic_write_text(work / META_FILE, json.dumps(meta, indent=2) + "\n")
        os.chmod(work, 0o755)
        try:
            os.rename(work, final)
        except OSError:
            if not final.exists():
                raise
            shutil.rmtree(work)  # a concurrent export of the same key won; use its folder
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Artifact.load(final), False
