"""`python -m bench preprocess-check`: what a different preprocessing would change.

The matrix feeds every framework the same stored tensor, made by one OpenCV pipeline
(bench/data/preprocess.py). A deployment preprocesses with whatever its stack has; this check
makes the same photos with the usual alternatives and says how far each lands from the stored
tensor and how many of the reference model's top-1 predictions it changes:

- `pil`: torchvision's reference transforms on a PIL image (`Resize` with antialiasing,
  `CenterCrop`, `ToTensor`, `Normalize`), as torchvision's training and evaluation scripts do;
- `tv2_tensor`: torchvision `transforms.v2` on a uint8 tensor (antialiased `Resize`), as a
  GPU pipeline on tensors does;
- `tv2_no_antialias`: the same without antialiasing (`antialias=False`, what an unfiltered
  bilinear GPU resize computes);
- `nearest`: OpenCV with nearest-neighbour resizing (what `cv::cuda::resize` with
  `INTER_NEAREST`, or a careless default, does).

Every variant decodes the same file to the same RGB pixels (OpenCV), so the differences are the
resize and arithmetic alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data.preprocess import (
    PreprocessConfig,
    decode,
    preprocess_image,
    resize_crop_normalise,
)

Variant = Callable[[np.ndarray, PreprocessConfig], np.ndarray]


def _torchvision_interpolation(cfg: PreprocessConfig) -> object:
    from torchvision.transforms import InterpolationMode

    bicubic = cfg.interpolation == "bicubic"
    return InterpolationMode.BICUBIC if bicubic else InterpolationMode.BILINEAR


def pil_reference(rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    from PIL import Image
    from torchvision import transforms

    pipeline = transforms.Compose(
        [
            transforms.Resize(cfg.resize, interpolation=_torchvision_interpolation(cfg)),
            transforms.CenterCrop(cfg.crop),
            transforms.ToTensor(),
            transforms.Normalize(cfg.mean, cfg.std),
        ]
    )
    return pipeline(Image.fromarray(rgb)).numpy()


def _tv2(rgb: np.ndarray, cfg: PreprocessConfig, antialias: bool) -> np.ndarray:
    import torch
    from torchvision.transforms import v2

    pipeline = v2.Compose(
        [
            v2.Resize(
                cfg.resize, interpolation=_torchvision_interpolation(cfg), antialias=antialias
            ),
            v2.CenterCrop(cfg.crop),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(cfg.mean, cfg.std),
        ]
    )
    tensor = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    return pipeline(tensor).numpy()


def tv2_tensor(rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    return _tv2(rgb, cfg, antialias=True)


def tv2_no_antialias(rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    return _tv2(rgb, cfg, antialias=False)


def nearest(rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """The project's pipeline with nearest-neighbour resizing instead of its interpolation."""
    import cv2

    return resize_crop_normalise(rgb, cfg, cv2.INTER_NEAREST)


VARIANTS: dict[str, Variant] = {
    "pil": pil_reference,
    "tv2_tensor": tv2_tensor,
    "tv2_no_antialias": tv2_no_antialias,
    "nearest": nearest,
}


@dataclass(frozen=True)
class PhotoDifference:
    """One variant on one photo, against the project's tensor of it."""

    photo: str
    variant: str
    max_abs: float
    mean_abs: float
    top1_changed: bool | None  # None: no model was run
    logits_rel_l2: float | None = None  # ||logits - ours|| / ||ours||, the model's view


def tensor_difference(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float]:
    """(max, mean) absolute difference of two tensors of one shape, in float64."""
    if ours.shape != theirs.shape:
        raise ValueError(f"shapes differ: {ours.shape} and {theirs.shape}")
    diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    return float(diff.max()), float(diff.mean())


def check(
    photos: list[Path],
    cfg: PreprocessConfig,
    model: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[PhotoDifference]:
    """Every variant on every photo; `model` maps an NCHW batch to its logits."""
    rows = []
    for path in photos:
        rgb = decode(path)
        ours = preprocess_image(rgb, cfg)
        theirs = {name: make(rgb, cfg).astype(np.float32) for name, make in VARIANTS.items()}
        logits = None
        if model is not None:
            out = np.asarray(model(np.stack([ours, *theirs.values()])), np.float64)
            logits = dict(zip(["ours", *theirs], out, strict=True))
        for name, tensor in theirs.items():
            max_abs, mean_abs = tensor_difference(ours, tensor)
            changed = rel_l2 = None
            if logits is not None:
                changed = bool(logits[name].argmax() != logits["ours"].argmax())
                base = float(np.linalg.norm(logits["ours"])) or 1.0
                rel_l2 = float(np.linalg.norm(logits[name] - logits["ours"])) / base
            rows.append(PhotoDifference(path.name, name, max_abs, mean_abs, changed, rel_l2))
    return rows


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def summary_rows(rows: list[PhotoDifference]) -> list[dict[str, object]]:
    """Per variant: photos, the worst and the mean of the per-photo differences, top-1 changes."""
    out = []
    for variant in VARIANTS:
        mine = [r for r in rows if r.variant == variant]
        if not mine:
            continue
        known = [r.top1_changed for r in mine if r.top1_changed is not None]
        out.append(
            {
                "variant": variant,
                "photos": len(mine),
                "max_abs": max(r.max_abs for r in mine),
                "mean_abs": float(np.mean([r.mean_abs for r in mine])),
                "top1_changed": sum(known) if known else None,
                "logits_rel_l2": _mean([r.logits_rel_l2 for r in mine]),
            }
        )
    return out


def markdown(summary: list[dict[str, object]], model: str, weights: str) -> str:
    lines = [
        f"| variant ({model}, {weights} weights) | photos | worst max abs diff | mean abs diff "
        "| logits rel L2 (mean) | top-1 changed |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in summary:
        changed = "-" if s["top1_changed"] is None else f"{s['top1_changed']} of {s['photos']}"
        rel = "-" if s["logits_rel_l2"] is None else f"{s['logits_rel_l2']:.3f}"
        lines.append(
            f"| {s['variant']} | {s['photos']} | {s['max_abs']:.4f} | {s['mean_abs']:.5f} "
            f"| {rel} | {changed} |"
        )
    return "\n".join(lines)
