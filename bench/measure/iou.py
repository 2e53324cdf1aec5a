"""Overlaps of detections: box IoU, mask IoU (masks binarised at a threshold).

numpy only, like every measurement module: it runs inside framework images without torch.
"""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (N, 4) with every box of `b` (M, 4), as (N, M) float64.

    Boxes are (x1, y1, x2, y2) in continuous coordinates (area = width * height, no +1, as in
    torchvision). A box with zero or negative width or height has no area: its IoU with
    anything, itself included, is 0 (never NaN), so it can never match.
    """
    a = as_boxes(a, "a")
    b = as_boxes(b, "b")
    wa = np.clip(a[:, 2] - a[:, 0], 0.0, None)
    ha = np.clip(a[:, 3] - a[:, 1], 0.0, None)
    wb = np.clip(b[:, 2] - b[:, 0], 0.0, None)
    hb = np.clip(b[:, 3] - b[:, 1], 0.0, None)
    area_a = wa * ha
    area_b = wb * hb
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0.0, None) * np.clip(ih, 0.0, None)
    # Inverted boxes (x2 < x1) can still produce a positive "intersection"; zero it.
    valid = (area_a[:, None] > 0) & (area_b[None, :] > 0)
    inter = np.where(valid, inter, 0.0)
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=valid & (union > 0))
    return out


def mask_iou(a: np.ndarray, b: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """IoU of every mask of `a` (N, H, W) with every mask of `b` (M, H, W), as (N, M) float64.

    Masks are binarised as `mask >= threshold` (Mask R-CNN returns per-pixel probabilities);
    (N, 1, H, W) is accepted and squeezed. Two empty masks have IoU 1: they agree exactly (a
    tiny instance whose mask binarises to nothing on both sides is not a discrepancy); an empty
    mask against a non-empty one has IoU 0.
    """
    ma = binary_masks(a, threshold, "a")
    mb = binary_masks(b, threshold, "b")
    if ma.shape[1:] != mb.shape[1:]:
        raise ValueError(f"mask sizes differ: {ma.shape[1:]} and {mb.shape[1:]}")
    fa = ma.reshape(ma.shape[0], -1).astype(np.float64)
    fb = mb.reshape(mb.shape[0], -1).astype(np.float64)
    # Pixel counts are integers well below 2**53, so the float64 matrix product is exact.
    inter = fa @ fb.T
    union = fa.sum(axis=1)[:, None] + fb.sum(axis=1)[None, :] - inter
    out = np.ones_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def paired_mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of a[k] with b[k] for aligned binary masks (K, H, W); the same rules as mask_iou."""
    inter = np.logical_and(a, b).reshape(a.shape[0], -1).sum(axis=1)
    union = np.logical_or(a, b).reshape(a.shape[0], -1).sum(axis=1)
    out = np.ones(a.shape[0], dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def as_boxes(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name}: boxes must be shaped (N, 4), got {arr.shape}")
    return arr


def binary_masks(x: np.ndarray, threshold: float, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ValueError(f"{name}: masks must be shaped (N, H, W) or (N, 1, H, W), got {arr.shape}")
    return arr >= threshold
