"""Where the input photographs come from: scikit-image's bundled photos, or the user's folder."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from bench.errors import UsageError

# Real colour and greyscale photographs that ship inside the scikit-image wheel (no download).
SAMPLE_PHOTOS = (
    "astronaut.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "rocket.jpg",
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageFile:
    """One input photograph and the hash that makes an artifact reproducible."""

    path: Path
    sha256: str

    @property
    def name(self) -> str:
        return self.path.name


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sample_photo_dir() -> Path:
    try:
        import skimage
    except ImportError as exc:
        raise UsageError(
            "the sample photos come from scikit-image, which is not installed here; "
            "install the torch extra (pip install '.[torch]') or pass --images DIR"
        ) from exc
    return Path(skimage.__file__).parent / "data"


def sample_photos() -> list[ImageFile]:
    directory = sample_photo_dir()
    return [ImageFile(directory / n, _sha256(directory / n)) for n in SAMPLE_PHOTOS]


def user_images(directory: str | Path) -> list[ImageFile]:
    """Every image file directly inside `directory`, in name order."""
    path = Path(directory)
    if not path.is_dir():
        raise UsageError(f"--images {directory}: not a directory")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UsageError(
            f"--images {directory}: no image files ({', '.join(IMAGE_SUFFIXES)}) in that directory"
        )
    return [ImageFile(p, _sha256(p)) for p in files]


def resolve_images(directory: str | Path | None) -> list[ImageFile]:
    """The user's images when a directory is given, the bundled sample photos otherwise."""
    return user_images(directory) if directory else sample_photos()
