"""Building a torchvision model with its weights (torch only; runs in the export stage and
the torch backend).

Weights are one of:
- ``random``: seeded initialisation, then BatchNorm statistics calibrated on the sample
  images. Without calibration the running statistics (mean 0, variance 1) do not match the
  activations and a deep network's logits collapse (efficientnet_b0: around 1e-20), which would
  make any parity check meaningless. A detector's class logits are also sharpened (scaled by
  `DETECTION_LOGIT_SCALE`): random logits over 91 classes give scores near 1/91, under Mask
  R-CNN's 0.05 score threshold, so most photos would have no detection at all to compare.
- ``pretrained``: torchvision's weights from the user's torch hub cache, or the network.
- a path to a state dict saved with ``torch.save(model.state_dict(), PATH)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from bench.errors import UsageError
from bench.models import ModelSpec


def calibrate_batchnorm(model: nn.Module, batch: torch.Tensor) -> int:
    """Set every BatchNorm's running statistics to those of `batch`; return how many."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: after one batch, exactly its statistics
        m.train()
    with torch.no_grad():
        model(batch)
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    model.eval()
    return len(norms)


DETECTION_LOGIT_SCALE = 6.0  # scores up to ~0.99 on the sample photos, several classes each


class OverheadProbe(nn.Module):
    """Mean over the image, then one small linear layer: a model that costs next to nothing,
    so its latency is the call's overhead."""

    def __init__(self, weights: None = None, num_classes: int = 8) -> None:
        super().__init__()
        self.fc = nn.Linear(3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


LOCAL_MODELS = {"deploybench.overhead_probe": OverheadProbe}


def constructor(spec: ModelSpec) -> object:
    """torchvision.models.<fn>, where fn may name a submodule (detection.maskrcnn_...), or one
    of this module's own models."""
    if spec.torchvision_fn in LOCAL_MODELS:
        return LOCAL_MODELS[spec.torchvision_fn]
    target: object = torchvision.models
    for part in spec.torchvision_fn.split("."):
        target = getattr(target, part)
    return target


def _new(spec: ModelSpec, **weights: object) -> nn.Module:
    return constructor(spec)(**weights, **dict(spec.constructor_kwargs))


def _weights_enum(spec: ModelSpec) -> object:
    if not spec.pretrained_weights:
        raise UsageError(f"{spec.name} has no pretrained weights; use --weights random")
    enum_name, _, member = spec.pretrained_weights.partition(".")
    module = torchvision.models.detection if spec.task == "detection" else torchvision.models
    return getattr(module, enum_name)[member]


def _random(spec: ModelSpec) -> nn.Module:
    if spec.task != "detection":
        return _new(spec, weights=None)
    # weights_backbone=None: no ImageNet backbone download; BatchNorm (not frozen) to calibrate.
    model = _new(spec, weights=None, weights_backbone=None)
    predictor = model.roi_heads.box_predictor.cls_score
    with torch.no_grad():
        predictor.weight.mul_(DETECTION_LOGIT_SCALE)
        predictor.bias.mul_(DETECTION_LOGIT_SCALE)
    return model


class DetectionOutputs(nn.Module):
    """A torchvision detector as a graph of one image: [1, 3, H, W] -> boxes, labels, scores
    (and masks), the tensors ONNX and every runtime return (torchvision returns dicts).

    The graph ends before the mask paste: `masks` are the per-detection probabilities at the
    mask head's resolution (N, 1, 28, 28), as `roi_heads` returns them. torchvision's paste
    into the image (`paste_masks_in_image`) is a Python loop over detections that exports as
    an ONNX `Loop`, which OpenVINO and TVM cannot convert, and it truncates each expanded box
    to whole pixels, so a box that moves by 1e-4 of a pixel across an integer resizes its mask
    by a pixel. The paste is done outside the graph by one implementation for every framework
    and the reference (`bench.measure.masks`), outside the timed region."""

    def __init__(self, detector: nn.Module, output_names: tuple[str, ...]) -> None:
        super().__init__()
        self.detector, self.output_names = detector, output_names

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from torchvision.models.detection.transform import resize_boxes

        det = self.detector
        original_size = (int(x.shape[-2]), int(x.shape[-1]))
        images = self._transform(x)
        features = det.backbone(images.tensors)
        proposals, _ = det.rpn(images, features)
        found = det.roi_heads(features, proposals, images.image_sizes)[0][0]
        # What transform.postprocess does, less the paste: boxes back to the input's pixels.
        found["boxes"] = resize_boxes(found["boxes"], images.image_sizes[0], original_size)
        return tuple(found[name] for name in self.output_names)

    def _transform(self, x: torch.Tensor) -> object:
        """The detector's input transform. An image already at the transform's size (the
        fixed export size) is only normalised: its resize would be the identity (scale 1,
        bilinear at half-pixel centres) and its padding none, but it exports as a Resize of a
        computed size that TVM's frontend cannot convert."""
        from torchvision.models.detection.image_list import ImageList

        transform = self.detector.transform
        h, w = int(x.shape[-2]), int(x.shape[-1])
        identity = (
            transform.min_size[-1] == transform.max_size == h == w
            and h % transform.size_divisible == 0
        )
        if not identity:
            return transform(list(x))[0]
        return ImageList(transform.normalize(x[0])[None], [(h, w)])


def _pretrained(spec: ModelSpec) -> nn.Module:
    weights = _weights_enum(spec)
    try:
        return _new(spec, weights=weights)
    except (OSError, RuntimeError) as exc:
        # urllib's URLError is an OSError: no cache and no network.
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise UsageError(
            f"pretrained weights for {spec.name} are neither in the torch hub cache ({cache}) "
            f"nor downloadable ({exc}). Download {weights.url} into {cache.parent}, "
            "or use --weights random or --weights PATH_TO_STATE_DICT"
        ) from exc


def _from_state_dict(spec: ModelSpec, path: Path) -> nn.Module:
    if not path.is_file():
        raise UsageError(
            f"--weights {path}: no such file; valid: random, pretrained, or a state dict path"
        )
    no_backbone = {"weights_backbone": None} if spec.task == "detection" else {}
    model = _new(spec, weights=None, **no_backbone)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # torch raises several types for a bad file; all mean the same
        raise UsageError(f"--weights {path}: not a state dict for {spec.name}: {exc}") from exc
    return model


def build_model(
    spec: ModelSpec, weights: str, seed: int, calibration: torch.Tensor | None = None
) -> nn.Module:
    """The model in eval mode with the requested weights."""
    if weights == "pretrained":
        model = _pretrained(spec)
    elif weights == "random":
        if calibration is None:
            raise ValueError("random weights need a calibration batch for BatchNorm")
        torch.manual_seed(seed)
        model = _random(spec)
        calibrate_batchnorm(model, calibration)
    else:
        model = _from_state_dict(spec, Path(weights))
    return model.eval()


def as_graph(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """What is exported and timed: the model itself, or a detector's one-image tensor form."""
    if spec.task == "detection":
        return DetectionOutputs(model, spec.output_names).eval()
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_sample(model: nn.Module, sample: torch.Tensor) -> int:
    """FLOPs of one forward pass on one sample (a multiply-add counts as two)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(sample[:1])
    return int(counter.get_total_flops())
