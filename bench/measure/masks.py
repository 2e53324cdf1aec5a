"""Pasting instance masks into the image: one implementation for every framework and the
reference, in numpy (it runs in every image, where torch is not installed).

Mask R-CNN's graph ends with each detection's mask probabilities at the mask head's resolution
(M x M, 28 for torchvision); pasting them into the image is postprocessing, done here, outside
the timed region. The algorithm is torchvision's `paste_masks_in_image`: pad the mask by one
pixel on each side, expand the box by the same factor, truncate it to whole pixels, resize the
mask to the box's size (bilinear, half-pixel centres: `align_corners=False`), and copy the part
inside the image.
"""

from __future__ import annotations

import numpy as np

PADDING = 1  # torchvision's: one pixel of zeros around the M x M mask


def expand_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """Boxes (N, 4: x0, y0, x1, y1) scaled about their centres."""
    boxes = np.asarray(boxes, dtype=np.float32)
    half_w = (boxes[:, 2] - boxes[:, 0]) * np.float32(0.5) * np.float32(scale)
    half_h = (boxes[:, 3] - boxes[:, 1]) * np.float32(0.5) * np.float32(scale)
    cx = (boxes[:, 2] + boxes[:, 0]) * np.float32(0.5)
    cy = (boxes[:, 3] + boxes[:, 1]) * np.float32(0.5)
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)


def resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) bilinear interpolation matrix with half-pixel centres, edges clamped:
    PyTorch's `interpolate(mode="bilinear", align_corners=False)` along one axis."""
    scale = n_in / n_out
    src = np.maximum((np.arange(n_out) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.intp), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    weights = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(weights, (rows, i0), 1.0 - frac)
    np.add.at(weights, (rows, i1), frac)
    return weights


def paste_mask(mask: np.ndarray, box: np.ndarray, height: int, width: int) -> np.ndarray:
    """One padded M x M mask pasted into a (height, width) image at an integer box."""
    x0, y0, x1, y1 = (int(v) for v in box)
    w, h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
    resized = resize_weights(mask.shape[0], h) @ mask @ resize_weights(mask.shape[1], w).T
    image = np.zeros((height, width), dtype=np.float32)
    ix0, ix1 = max(x0, 0), min(x1 + 1, width)
    iy0, iy1 = max(y0, 0), min(y1 + 1, height)
    if ix0 < ix1 and iy0 < iy1:
        image[iy0:iy1, ix0:ix1] = resized[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    return image


def paste_masks(masks: np.ndarray, boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Masks (N, 1, M, M) or (N, M, M) at their boxes (N, 4) -> (N, height, width) float32."""
    masks = np.asarray(masks, dtype=np.float32)
    if masks.ndim == 4:
        masks = masks[:, 0]
    if masks.ndim != 3 or len(masks) != len(boxes):
        raise ValueError(f"masks {masks.shape} do not go with {len(boxes)} boxes")
    if not len(masks):
        return np.zeros((0, height, width), dtype=np.float32)
    m = masks.shape[-1]
    padded = np.pad(masks, ((0, 0), (PADDING, PADDING), (PADDING, PADDING)))
    # Truncation toward zero, as torchvision's .to(torch.int64).
    expanded = np.trunc(expand_boxes(boxes, (m + 2 * PADDING) / m)).astype(np.int64)
    return np.stack(
        [paste_mask(p, b, height, width) for p, b in zip(padded, expanded, strict=True)]
    )
