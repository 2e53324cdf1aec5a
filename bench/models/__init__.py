"""What is benchmarked: a registry of model specs, by name.

Specs are plain data (no torch import), so every image can list the valid model names; the
torch-only building code is in `bench.models.build`. A user's own ONNX file is a model too,
named ``onnx:PATH``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.data.preprocess import PreprocessConfig
from bench.errors import UsageError
from bench.registry import Registry

ONNX_PREFIX = "onnx:"


@dataclass(frozen=True)
class ModelSpec:
    """A model the export stage can build: its torchvision constructor and preprocessing."""

    name: str
    # e.g. "resnet50": torchvision.models.<fn>; "deploybench.<name>": bench.models.build's own
    torchvision_fn: str
    # torchvision weights enum member, e.g. "ResNet50_Weights.DEFAULT"; "" when there are none
    pretrained_weights: str
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    task: str = "classification"
    input_name: str = "input"
    output_names: tuple[str, ...] = ("logits",)
    # Keyword arguments of the torchvision constructor (sorted pairs: the spec stays hashable).
    constructor_kwargs: tuple[tuple[str, object], ...] = ()
    # The export this model works best with when the user does not choose (None: the defaults,
    # dynamo at opset 18); recorded in the artifact either way.
    exporter: str | None = None
    opset: int | None = None
    fixed_batch: int | None = None  # models whose graph takes one image at a time
    # Where the exported graph ends, when that is not the model's own output (part of the
    # artifact's key and meta, so a changed boundary never reuses an old artifact).
    graph_boundary: str | None = None
    # Framework versions this model needs, as sorted (framework, version) pairs (the seed's
    # "Mask R-CNN needs torch 1.7"): its cells run in that version's image whatever a matrix's
    # `versions:` says, and are `unsupported` where no image has it. The export stays on the
    # default torch image.
    framework_versions: tuple[tuple[str, str], ...] = ()


MODELS: Registry[ModelSpec] = Registry("model")


def _classifier(name: str, weights: str, **preprocess: object) -> None:
    MODELS.add(name, ModelSpec(name, name, weights, PreprocessConfig(**preprocess)))


# Preprocessing follows each model's torchvision weights preset (resize, crop, interpolation).
_classifier("resnet50", "ResNet50_Weights.DEFAULT", resize=232)
_classifier("resnet18", "ResNet18_Weights.DEFAULT")
# EfficientNet once exported only up to opset 10; benchmarks/opset_sweep.py now finds opsets
# 10-20 all accepted, with parity, by ONNX Runtime, OpenVINO and TVM
# (results/opsets-efficientnet_b0/), so it takes the highest: opset 20, dynamo.
MODELS.add(
    "efficientnet_b0",
    ModelSpec(
        "efficientnet_b0",
        "efficientnet_b0",
        "EfficientNet_B0_Weights.DEFAULT",
        PreprocessConfig(resize=256, interpolation="bicubic"),
        opset=20,
    ),
)
_classifier("mobilenet_v3_large", "MobileNet_V3_Large_Weights.DEFAULT", resize=232)
_classifier("mobilenet_v3_small", "MobileNet_V3_Small_Weights.DEFAULT")


# Mask R-CNN at a fixed 320x320 input (torchvision's default is 800: 6x the work, and the
# random-weight detections are no more meaningful). The model normalises its input itself, so
# the preprocessing only scales to [0, 1]. Exported one image per run with the TorchScript
# exporter (the dynamo exporter cannot trace its data-dependent postprocessing), opset 17.
DETECTION_SIZE = 320
MODELS.add(
    "maskrcnn_resnet50_fpn",
    ModelSpec(
        "maskrcnn_resnet50_fpn",
        "detection.maskrcnn_resnet50_fpn",
        "MaskRCNN_ResNet50_FPN_Weights.DEFAULT",
        PreprocessConfig(
            resize=DETECTION_SIZE, crop=DETECTION_SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)
        ),
        task="detection",
        output_names=("boxes", "labels", "scores", "masks"),
        constructor_kwargs=(("max_size", DETECTION_SIZE), ("min_size", DETECTION_SIZE)),
        exporter="torchscript",
        opset=17,
        fixed_batch=1,
        graph_boundary="input normalised, not resized (320x320 is the transform's own size); "
        "ends before the mask paste: boxes, labels, scores and each detection's mask "
        "probabilities at the mask head's 28x28; the paste into the image is outside the graph "
        "and the timed region (bench.measure.masks)",
    ),
)


# A near-empty model for the cost of one call: a 32x32 photo averaged to 3 numbers and one
# 3 -> 8 linear layer (about 3 thousand FLOPs). Its latency is a framework API's per-call
# overhead and the language boundary's, measured alone (the native-runner comparison).
OVERHEAD_PROBE = "overhead_probe"
MODELS.add(
    OVERHEAD_PROBE,
    ModelSpec(
        OVERHEAD_PROBE,
        f"deploybench.{OVERHEAD_PROBE}",
        "",
        PreprocessConfig(resize=32, crop=32),
    ),
)


def is_onnx_model(name: str) -> bool:
    return name.startswith(ONNX_PREFIX)


def check_model_name(name: str) -> str:
    """Accept a registered name or ``onnx:PATH``; raise a `UsageError` listing choices otherwise."""
    if is_onnx_model(name):
        if not name[len(ONNX_PREFIX) :]:
            raise UsageError("onnx: model needs a path, e.g. onnx:/models/my.onnx")
        return name
    if name not in MODELS:
        raise UsageError(
            f"unknown model {name!r}; valid choices: {', '.join(MODELS.names())}, "
            f"or {ONNX_PREFIX}PATH for your own ONNX file"
        )
    return name
