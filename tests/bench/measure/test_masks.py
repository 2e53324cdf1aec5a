"""The one mask paste (numpy): hand-computed interpolation weights and placements, and
torchvision's own paste_masks_in_image on Mask R-CNN's real RoI masks."""

from __future__ import annotations

import numpy as np
import pytest

from bench.measure.detection import match_detections
from bench.measure.masks import expand_boxes, paste_mask, paste_masks, resize_weights


def test_resize_weights_are_half_pixel_bilinear_with_clamped_edges():
    # 2 -> 4: source positions (i + 0.5) / 2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25.
    assert resize_weights(2, 4).tolist() == [
        [1.0, 0.0],
        [0.75, 0.25],
        [0.25, 0.75],
        [0.0, 1.0],
    ]
    # 4 -> 2: positions 0.5 and 2.5, halfway between neighbours.
    assert resize_weights(4, 2).tolist() == [[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]
    assert np.allclose(resize_weights(28, 57).sum(axis=1), 1.0)


def test_expand_boxes_about_their_centres():
    out = expand_boxes(np.array([[10.0, 20.0, 30.0, 60.0]]), 1.5)
    assert out.tolist() == [[5.0, 10.0, 35.0, 70.0]]


def test_paste_mask_places_the_resized_mask_inside_the_image():
    image = paste_mask(np.ones((2, 2), np.float32), np.array([3, 1, 4, 2]), 5, 6)
    expected = np.zeros((5, 6), np.float32)
    expected[1:3, 3:5] = 1.0  # box x 3..4, y 1..2 inclusive: 2x2 pixels
    assert image.tolist() == expected.tolist()
    # A box running off the image keeps only its inside part.
    clipped = paste_mask(np.ones((2, 2), np.float32), np.array([4, -1, 7, 1]), 5, 6)
    assert clipped[0:2, 4:6].tolist() == [[1.0, 1.0], [1.0, 1.0]] and clipped.sum() == 4


def test_matches_torchvision_on_the_real_masks(maskrcnn_artifact):
    torch = pytest.importorskip("torch")
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    height, width = maskrcnn_artifact.inputs.shape[-2:]
    for det in maskrcnn_artifact.detections:
        theirs = paste_masks_in_image(
            torch.from_numpy(det["masks"]), torch.from_numpy(det["boxes"]), (height, width)
        ).numpy()[:, 0]
        ours = paste_masks(det["masks"], det["boxes"], height, width)
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() < 1e-5


def test_roi_masks_are_compared_at_the_reference_box_so_a_subpixel_shift_is_no_change():
    # An expanded box edge at 114.9996 truncates to 114, at 115.0001 to 115: pasted at their
    # own boxes, two equal masks would differ by a column; at the reference's box they agree.
    rng = np.random.default_rng(0)
    mask = rng.random((1, 1, 28, 28)).astype(np.float32)
    ref = {"boxes": np.array([[75.3965, 257.0307, 113.63398, 274.4414]], np.float32)}
    out = {"boxes": np.array([[75.397064, 257.03073, 113.634445, 274.44138]], np.float32)}
    for d in (ref, out):
        d.update(labels=np.array([1]), scores=np.array([0.8], np.float32), masks=mask)
    own_ref = paste_masks(mask, ref["boxes"], 320, 320) >= 0.5
    own_out = paste_masks(mask, out["boxes"], 320, 320) >= 0.5
    assert (own_ref != own_out).any()  # the paste's rounding alone moves pixels
    match = match_detections(ref, out, image_size=(320, 320))
    assert match.mask_iou.tolist() == [1.0]
