"""The one preprocessing implementation (OpenCV), used for every model and framework.

decode -> BGR to RGB -> resize the shorter side -> center crop -> scale to [0, 1] ->
normalise (mean/std) -> HWC to CHW -> batch. The output float32 tensor is stored in the
artifact and is exactly what every framework receives.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.errors import UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INTERPOLATIONS = ("bilinear", "bicubic")


@dataclass(frozen=True)
class PreprocessConfig:
    """How a model's inputs are prepared (torchvision's classification presets)."""

    resize: int = 256
    crop: int = 224
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATIONS:
            raise UsageError(
                f"unknown interpolation {self.interpolation!r}; valid: {', '.join(_INTERPOLATIONS)}"
            )
        if self.crop > self.resize or self.crop < 1:
            raise UsageError(f"crop {self.crop} must be between 1 and resize {self.resize}")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def decode(path: Path) -> np.ndarray:
    """Read an image file as RGB uint8 HWC (greyscale photos become three equal channels)."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UsageError(f"cannot decode image {path} (corrupt, or not an image)")
    _check_complete(path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _check_complete(path: Path) -> None:
    """OpenCV decodes a truncated JPEG without an error, greying out what is missing: Pillow
    (which scikit-image brings where the export runs) reads the whole file to tell."""
    try:
        from PIL import Image
    except ImportError:
        return
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise UsageError(f"image {path} is corrupt or truncated ({exc})") from exc


def preprocess_image(rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """One RGB uint8 HWC image -> float32 CHW tensor."""
    import cv2

    interp = cv2.INTER_CUBIC if cfg.interpolation == "bicubic" else cv2.INTER_LINEAR
    return resize_crop_normalise(rgb, cfg, interp)


def resized_size(h: int, w: int, short: int) -> tuple[int, int]:
    """(height, width) with the shorter side `short` and the longer keeping the aspect ratio,
    truncated to whole pixels as torchvision's Resize computes it (`bench preprocess-check`
    found rounding one pixel off torchvision's presets on 3 of the 8 bundled photos)."""
    if h <= w:
        return short, max(short, int(w * short / h))
    return max(short, int(h * short / w)), short


def crop_offset(size: int, crop: int) -> int:
    """Where a centre crop starts, as torchvision's CenterCrop computes it: the half rounded
    (to even, Python's round), not floored — 61.5 starts at 62."""
    return round((size - crop) / 2.0)


def resize_crop_normalise(rgb: np.ndarray, cfg: PreprocessConfig, interp: int) -> np.ndarray:
    """The pipeline with OpenCV interpolation flag `interp` (preprocess-check varies it)."""
    import cv2

    new_h, new_w = resized_size(*rgb.shape[:2], cfg.resize)
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=interp)
    top, left = crop_offset(new_h, cfg.crop), crop_offset(new_w, cfg.crop)
    crop = resized[top : top + cfg.crop, left : left + cfg.crop]
    x = crop.astype(np.float32) / 255.0
    x = (x - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess_files(paths: list[Path], cfg: PreprocessConfig) -> np.ndarray:
    """Several image files -> one float32 NCHW batch."""
    return np.stack([preprocess_image(decode(p), cfg) for p in paths]).astype(np.float32)
