"""The preprocessing check: hand-computed differences, the variants on photos whose answer is
known, and the CLI on the bundled photos with a real model."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from bench.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig
from bench.preprocess_check import (
    VARIANTS,
    PhotoDifference,
    check,
    nearest,
    summary_rows,
    tensor_difference,
)


def _photo(tmp_path, name: str, rgb: np.ndarray):
    path = tmp_path / name
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def test_tensor_difference_by_hand():
    ours = np.array([[0.0, 1.0], [2.0, -1.0]], np.float32)
    theirs = np.array([[0.5, 1.0], [2.0, -2.0]], np.float32)
    assert tensor_difference(ours, theirs) == (1.0, 0.375)  # |0.5| + |1| over 4
    with pytest.raises(ValueError, match="shapes differ"):
        tensor_difference(ours, theirs[:1])


def test_every_variant_agrees_on_a_flat_photo(tmp_path):
    """A photo of one colour has one answer whatever the resize: (c/255 - mean) / std."""
    rgb = np.full((40, 60, 3), (200, 100, 50), np.uint8)
    cfg = PreprocessConfig(resize=16, crop=12)
    rows = check([_photo(tmp_path, "flat.png", rgb)], cfg)
    assert {r.variant for r in rows} == set(VARIANTS)
    for row in rows:
        assert row.max_abs < 1e-5, row
        assert row.top1_changed is None  # no model
    expected = (np.array([200, 100, 50]) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    got = nearest(rgb, cfg)
    assert got.shape == (3, 12, 12)
    np.testing.assert_allclose(got[:, 0, 0], expected, rtol=1e-5)


def test_nearest_resizing_picks_source_pixels():
    """4x4 -> 2x2 by nearest neighbour takes every other pixel (OpenCV: src = floor(dst * 2))."""
    values = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    rgb = np.repeat(values[:, :, None], 3, axis=2)
    cfg = PreprocessConfig(resize=2, crop=2, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    got = nearest(rgb, cfg)[0] * 255.0
    np.testing.assert_allclose(got, [[0, 20], [80, 100]], atol=1e-4)


def test_top1_changes_are_counted_against_the_project_tensor(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (30, 30, 3), dtype=np.uint8)
    photo = _photo(tmp_path, "noise.png", rgb)

    def model(batch: np.ndarray) -> np.ndarray:
        # ours first, then the variants in VARIANTS order: the second variant's logits flip
        logits = np.tile([3.0, 4.0], (len(batch), 1))
        logits[2] = [4.0, 3.0]
        return logits

    rows = check([photo], PreprocessConfig(resize=24, crop=20), model)
    names = list(VARIANTS)
    assert {r.variant: r.top1_changed for r in rows} == {n: n == names[1] for n in names}
    # |(4,3) - (3,4)| / |(3,4)| = sqrt(2) / 5; the others are unchanged
    rel = {r.variant: r.logits_rel_l2 for r in rows}
    assert rel == {n: pytest.approx(2**0.5 / 5) if n == names[1] else 0.0 for n in names}


def test_summary_takes_the_worst_and_the_mean_per_variant():
    rows = [
        PhotoDifference("a.jpg", "pil", 0.5, 0.01, True, 0.25),
        PhotoDifference("b.jpg", "pil", 0.25, 0.03, False, 0.75),
        PhotoDifference("a.jpg", "nearest", 1.0, 0.2, None),
    ]
    summary = {s["variant"]: s for s in summary_rows(rows)}
    assert summary["pil"] == {
        "variant": "pil",
        "photos": 2,
        "max_abs": 0.5,
        "mean_abs": pytest.approx(0.02),
        "top1_changed": 1,
        "logits_rel_l2": 0.5,
    }
    assert summary["nearest"]["top1_changed"] is None
    assert summary["nearest"]["logits_rel_l2"] is None
    assert set(summary) == {"pil", "nearest"}


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", "preprocess-check", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_cli_checks_the_bundled_photos_with_the_reference_model(tmp_path):
    out = tmp_path / "check.json"
    proc = _bench("--model", "mobilenet_v3_small", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    for variant in VARIANTS:
        assert f"| {variant} |" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["weights"] == "random" and doc["preprocess"]["resize"] == 256
    assert len(doc["rows"]) == len(VARIANTS) * len(doc["photos"])
    assert all(s["top1_changed"] is not None for s in doc["summary"])
    assert all(s["logits_rel_l2"] > 0 for s in doc["summary"])
    # The torchvision pipelines differ from OpenCV's by the resize alone: small but not zero.
    pil = next(s for s in doc["summary"] if s["variant"] == "pil")
    assert 0 < pil["mean_abs"] < 0.2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nope"], "unknown model 'nope'"),
        (["--model", "maskrcnn_resnet50_fpn", "--no-model"], "compares classifiers' inputs"),
    ],
)
def test_the_cli_refuses_what_it_cannot_check(args, message):
    proc = _bench(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
