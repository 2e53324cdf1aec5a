"""The one preprocessing implementation, checked against hand-computed values."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bench.data.images import SAMPLE_PHOTOS, resolve_images, user_images
from bench.data.preprocess import (
    PreprocessConfig,
    crop_offset,
    decode,
    preprocess_image,
    resized_size,
)
from bench.errors import UsageError


def test_constant_image_normalises_per_channel():
    rgb = np.zeros((300, 400, 3), np.uint8)
    rgb[...] = (255, 0, 51)  # R, G, B
    x = preprocess_image(rgb, PreprocessConfig())
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    # (1.0 - 0.485) / 0.229 = 2.2489, (0 - 0.456) / 0.224 = -2.0357, (0.2 - 0.406) / 0.225 = -0.9156
    assert x[0].mean() == pytest.approx(2.2489, abs=1e-4)
    assert x[1].mean() == pytest.approx(-2.0357, abs=1e-4)
    assert x[2].mean() == pytest.approx(-0.9156, abs=1e-4)


def test_shorter_side_resized_then_center_cropped():
    # Left half black, right half white, 100 x 400 (h x w). Resize shorter side to 10 -> 10 x 40;
    # the center 10 x 10 crop spans columns 15..24, so it straddles the edge at column 20.
    rgb = np.zeros((100, 400, 3), np.uint8)
    rgb[:, 200:] = 255
    cfg = PreprocessConfig(resize=10, crop=10, mean=(0, 0, 0), std=(1, 1, 1))
    x = preprocess_image(rgb, cfg)
    assert x.shape == (3, 10, 10)
    assert x[0, :, 0].max() == pytest.approx(0.0)
    assert x[0, :, -1].min() == pytest.approx(1.0)


def test_the_long_side_is_truncated_as_torchvisions_resize_computes_it():
    # chelsea is 300 x 451: 451 * 232 / 300 = 348.77 -> 348 (rounding gave 349)
    assert resized_size(300, 451, 232) == (232, 348)
    assert resized_size(451, 300, 232) == (348, 232)
    assert resized_size(256, 256, 224) == (224, 224)
    assert resized_size(100, 101, 232) == (232, 234)  # 234.32 -> 234
    import torch
    from torchvision.transforms.v2 import functional

    for h, w in [(300, 451), (512, 512), (480, 640), (427, 640), (640, 480), (303, 384)]:
        shape = functional.resize(torch.zeros(1, h, w), [232]).shape[-2:]
        assert resized_size(h, w, 232) == tuple(shape)


def test_the_centre_crop_starts_where_torchvisions_center_crop_starts():
    # rocket is 427 x 640: resized to 232 x 347, a 224 crop starts at 61.5 -> 62 (not 61)
    assert crop_offset(347, 224) == 62
    assert crop_offset(349, 224) == 62  # 62.5 rounds to even
    assert crop_offset(232, 224) == 4 and crop_offset(224, 224) == 0
    import torch
    from torchvision.transforms.v2 import functional

    for size in range(224, 240):
        ramp = torch.arange(size, dtype=torch.float32).reshape(1, 1, size).expand(1, 224, size)
        first = functional.center_crop(ramp, [224, 224])[0, 0, 0]
        assert crop_offset(size, 224) == int(first)


def test_decode_gives_rgb(tmp_path):
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    rgb = decode(tmp_path / "red.png")
    assert rgb[0, 0].tolist() == [255, 0, 0]


def test_greyscale_photo_becomes_three_channels():
    camera = next(i for i in resolve_images(None) if i.name == "camera.png")
    rgb = decode(camera.path)
    assert rgb.shape[2] == 3
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 1])


def test_sample_photos_are_the_bundled_ones():
    images = resolve_images(None)
    assert [i.name for i in images] == list(SAMPLE_PHOTOS)
    assert all(len(i.sha256) == 64 for i in images)


def test_user_images_errors(tmp_path):
    with pytest.raises(UsageError, match="not a directory"):
        user_images(tmp_path / "missing")
    with pytest.raises(UsageError, match="no image files"):
        user_images(tmp_path)


def test_bad_preprocess_config():
    with pytest.raises(UsageError, match="interpolation"):
        PreprocessConfig(interpolation="lanczos")
    with pytest.raises(UsageError, match="crop"):
        PreprocessConfig(resize=100, crop=224)
