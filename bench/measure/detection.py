"""Parity of a detection model's outputs against the PyTorch fp32 reference, on identical inputs.

Tensor parity (`bench.measure.parity`) compares two arrays element by element, which assumes
the element at index i means the same thing on both sides. Detection outputs break that:
a detector returns a variable-length *set* of instances (boxes, labels, scores, masks), sorted
by score, after score thresholding and NMS. A score change in the fourth decimal can reorder
two detections, push one across the model's score threshold or let NMS keep a different box of
an overlapping pair, so the arrays differ in length and order while the detections agree. So
detections are first *matched*: per image, reference and output detections of the same label
are paired by an optimal assignment (most pairs, then largest total IoU) among pairs whose box
IoU reaches `iou_threshold`. Parity is then measured on what matched (box IoU, score
differences, mask IoU) and on what did not (unmatched detections on either side), and the
verdict uses the detection tier of the cell's precision.

numpy only: this runs inside every framework image, where scipy is not installed, so the
assignment solver (`linear_sum_assignment`) is implemented here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from bench.measure.assignment import linear_sum_assignment
from bench.measure.iou import as_boxes, binary_masks, box_iou, mask_iou, paired_mask_iou
from bench.measure.masks import paste_masks

__all__ = ["box_iou", "detection_parity", "linear_sum_assignment", "mask_iou", "match_detections"]

# Detections scoring below this on both sides are not compared: low-confidence detections
# flicker across runtimes and precisions (NMS keeps one box of a near-tied pair or the other),
# and the user-facing result rarely keeps them. Keep `min_score - score_margin` above the
# model's own score threshold (torchvision's box_score_thresh is 0.05), or a detection can
# straddle *that* threshold and be absent from the arrays altogether.
DEFAULT_MIN_SCORE = 0.3
# A detection scoring in [min_score - score_margin, min_score) is "tolerated": it can match a
# detection of the other side that scores at least min_score, but is never a miss itself.
# 0.1 is at least every tier's max_score_diff, so a score change that a tier accepts never
# turns into a miss; a larger change still matches and fails on the score difference, which
# names the actual discrepancy better than "unmatched" would.
DEFAULT_SCORE_MARGIN = 0.1
DEFAULT_IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class DetectionTolerance:
    """Pass criteria of one precision tier for detection parity.

    Fractions and IoUs are lower bounds, score differences upper bounds. The matched fraction
    bound applies to both sides (reference detections that matched, and output detections that
    matched). "min" bounds apply to the worst matched pair, "mean" bounds to the average over
    all matched pairs of all images. Mask bounds apply only when the model outputs masks.
    """

    precision: str
    min_matched_fraction: float
    min_box_iou: float
    min_mean_box_iou: float
    max_score_diff: float
    max_mean_score_diff: float
    min_mask_iou: float
    min_mean_mask_iou: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# Initial tiers, to be recalibrated on the first real runs. fp32 runtimes differ only by
# float rounding and kernel order: boxes agree to a fraction of a pixel (IoU 0.95 is a 10 px
# box off by ~0.25 px, so the worst pair of a small box still passes) and scores to ~1e-3.
# fp16 (eps 1e-3) and bf16 (eps 8e-3) lose precision through the backbone, RoIAlign and box
# regression; post-training int8 loses most, and a few low-confidence detections may flip.
# Masks are binarised at 0.5, so boundary pixels flip easily: mask bounds sit below box bounds.
DETECTION_TOLERANCES: dict[str, DetectionTolerance] = {
    "fp32": DetectionTolerance(
        "fp32",
        min_matched_fraction=0.99,
        min_box_iou=0.95,
        min_mean_box_iou=0.99,
        max_score_diff=1e-2,
        max_mean_score_diff=1e-3,
        min_mask_iou=0.9,
        min_mean_mask_iou=0.98,
    ),
    "fp16": DetectionTolerance(
        "fp16",
        min_matched_fraction=0.97,
        min_box_iou=0.9,
        min_mean_box_iou=0.98,
        max_score_diff=3e-2,
        max_mean_score_diff=5e-3,
        min_mask_iou=0.85,
        min_mean_mask_iou=0.95,
    ),
    "bf16": DetectionTolerance(
        "bf16",
        min_matched_fraction=0.95,
        min_box_iou=0.85,
        min_mean_box_iou=0.97,
        max_score_diff=5e-2,
        max_mean_score_diff=1e-2,
        min_mask_iou=0.8,
        min_mean_mask_iou=0.93,
    ),
    "int8": DetectionTolerance(
        "int8",
        min_matched_fraction=0.9,
        min_box_iou=0.75,
        min_mean_box_iou=0.95,
        max_score_diff=1e-1,
        max_mean_score_diff=2e-2,
        min_mask_iou=0.7,
        min_mean_mask_iou=0.9,
    ),
}


def detection_tolerance_for(precision: str) -> DetectionTolerance:
    return DETECTION_TOLERANCES[precision]


# --------------------------------------------------------------------------------------------
# Matching


@dataclass(frozen=True)
class DetectionMatch:
    """The matching of one image. Indices refer to the caller's (unfiltered) arrays.

    `ref_idx[k]` matched `out_idx[k]` with box IoU `box_iou[k]`, score difference
    `score_diff[k]` (output minus reference) and mask IoU `mask_iou[k]` (None without masks).
    `unmatched_ref` / `unmatched_out` are the counted detections (score >= min_score) left
    unmatched; tolerated ones left unmatched are not listed (see `match_detections`).
    """

    ref_idx: np.ndarray
    out_idx: np.ndarray
    box_iou: np.ndarray
    score_diff: np.ndarray
    mask_iou: np.ndarray | None
    unmatched_ref: np.ndarray
    unmatched_out: np.ndarray

    @property
    def matched(self) -> int:
        return len(self.ref_idx)


def _detections(d: Mapping[str, object], name: str) -> dict[str, np.ndarray | None]:
    for key in ("boxes", "labels", "scores"):
        if key not in d:
            raise ValueError(f"{name}: detections lack {key!r}")
    boxes = as_boxes(d["boxes"], name)
    labels = np.asarray(d["labels"]).reshape(-1)
    scores = np.asarray(d["scores"], dtype=np.float64).reshape(-1)
    n = boxes.shape[0]
    if labels.shape[0] != n or scores.shape[0] != n:
        raise ValueError(
            f"{name}: {n} boxes, {labels.shape[0]} labels and {scores.shape[0]} scores differ"
        )
    masks = d.get("masks")
    if masks is not None:
        masks = np.asarray(masks)
        if masks.shape[0] != n:
            raise ValueError(f"{name}: {masks.shape[0]} masks for {n} boxes")
    return {"boxes": boxes, "labels": labels, "scores": scores, "masks": masks}


def match_detections(
    ref: Mapping[str, object],
    out: Mapping[str, object],
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    min_score: float = DEFAULT_MIN_SCORE,
    score_margin: float = DEFAULT_SCORE_MARGIN,
    mask_threshold: float = 0.5,
    image_size: tuple[int, int] | None = None,
) -> DetectionMatch:
    """Match one image's output detections to its reference detections.

    Inputs are dicts {"boxes": (N, 4), "labels": (N,), "scores": (N,), "masks": optional
    (N, 1, H, W) or (N, H, W)}. Masks smaller than `image_size` are RoI masks (Mask R-CNN's
    graph ends before the paste): each matched pair is pasted at the reference's box
    (`bench.measure.masks`) before its IoU is taken. A reference and an output detection can
    be paired only when their labels are equal and their box IoU is at least `iou_threshold`.
    Among the pairings allowed, the optimal assignment takes the largest number of pairs and,
    among those, the largest total box IoU. Greedy matching (best IoU first) can do worse on
    both counts.

    The score floor. A detection is *counted* when its score is >= min_score, *tolerated*
    when it lies in [min_score - score_margin, min_score), and ignored below that. A pair
    needs at least one counted side: two tolerated detections are noise near the floor and
    are not compared. A counted detection left unmatched is a miss (reference side) or an
    extra (output side); a tolerated one left unmatched is neither. So a detection scoring
    just above the floor on one side and just below it on the other still matches (its score
    difference is measured) instead of counting as a miss.
    """
    if score_margin < 0:
        raise ValueError("score_margin must be >= 0")
    r = _detections(ref, "reference")
    o = _detections(out, "output")
    if (r["masks"] is None) != (o["masks"] is None):
        raise ValueError("masks are present on one side only")
    low = min_score - score_margin
    r_keep = np.nonzero(r["scores"] >= low)[0]
    o_keep = np.nonzero(o["scores"] >= low)[0]
    r_counted = r["scores"] >= min_score
    o_counted = o["scores"] >= min_score

    ref_idx: list[np.ndarray] = []
    out_idx: list[np.ndarray] = []
    # Match within each label: pairs of different labels are never allowed, and the per-label
    # matrices are much smaller than one matrix over all detections.
    labels = np.intersect1d(r["labels"][r_keep], o["labels"][o_keep])
    for label in labels:
        ri = r_keep[r["labels"][r_keep] == label]
        oi = o_keep[o["labels"][o_keep] == label]
        iou = box_iou(r["boxes"][ri], o["boxes"][oi])
        allowed = (iou >= iou_threshold) & (r_counted[ri][:, None] | o_counted[oi][None, :])
        if not allowed.any():
            continue
        # Maximise (number of pairs, total IoU) lexicographically with one weight per pair:
        # IoU + big, where big exceeds any total IoU (at most min(N, M)), so one more pair
        # always outweighs any IoU gain. Disallowed pairs weigh 0 and are dropped afterwards;
        # every allowed weight is > 0, so dropping them never loses a better assignment.
        big = float(min(iou.shape) + 1)
        weight = np.where(allowed, iou + big, 0.0)
        rows, cols = linear_sum_assignment(-weight)
        ok = allowed[rows, cols]
        ref_idx.append(ri[rows[ok]])
        out_idx.append(oi[cols[ok]])

    ri_all = np.concatenate(ref_idx) if ref_idx else np.zeros(0, dtype=np.intp)
    oi_all = np.concatenate(out_idx) if out_idx else np.zeros(0, dtype=np.intp)
    order = np.argsort(ri_all, kind="stable")
    ri_all, oi_all = ri_all[order].astype(np.intp), oi_all[order].astype(np.intp)

    ious = box_iou(r["boxes"][ri_all], o["boxes"][oi_all]).diagonal().copy()
    score_diff = o["scores"][oi_all] - r["scores"][ri_all]
    m_iou = None
    if r["masks"] is not None:
        ref_masks, out_masks = r["masks"][ri_all], o["masks"][oi_all]
        if image_size is not None and tuple(ref_masks.shape[-2:]) != tuple(image_size):
            # RoI masks: both pasted at the reference's box, so that the mask heads are
            # compared, not the paste's rounding of two boxes (box IoU measures those).
            boxes = r["boxes"][ri_all]
            ref_masks = paste_masks(ref_masks, boxes, *image_size)
            out_masks = paste_masks(out_masks, boxes, *image_size)
        mr = binary_masks(ref_masks, mask_threshold, "reference")
        mo = binary_masks(out_masks, mask_threshold, "output")
        if mr.shape[1:] != mo.shape[1:]:
            raise ValueError(f"mask sizes differ: {mr.shape[1:]} and {mo.shape[1:]}")
        m_iou = paired_mask_iou(mr, mo)

    r_unmatched = np.setdiff1d(np.nonzero(r_counted)[0], ri_all).astype(np.intp)
    o_unmatched = np.setdiff1d(np.nonzero(o_counted)[0], oi_all).astype(np.intp)
    return DetectionMatch(
        ref_idx=ri_all,
        out_idx=oi_all,
        box_iou=ious,
        score_diff=score_diff,
        mask_iou=m_iou,
        unmatched_ref=r_unmatched,
        unmatched_out=o_unmatched,
    )


# --------------------------------------------------------------------------------------------
# Report


def _mean(x: np.ndarray) -> float | None:
    return float(np.mean(x)) if x.size else None


def _min(x: np.ndarray) -> float | None:
    return float(np.min(x)) if x.size else None


def _max(x: np.ndarray) -> float | None:
    return float(np.max(x)) if x.size else None


def _mask_comparison(
    refs: Sequence[Mapping[str, object]], image_size: tuple[int, int] | None
) -> str:
    shapes = {tuple(np.asarray(r["masks"]).shape[-2:]) for r in refs if r.get("masks") is not None}
    if image_size is not None and shapes - {tuple(image_size)}:
        h, w = image_size
        return (
            f"RoI masks ({', '.join('x'.join(map(str, s)) for s in sorted(shapes))}) of each "
            f"matched pair pasted at the reference's box into {h}x{w} (bench.measure.masks)"
        )
    return "image masks as the model returned them"


def detection_parity(
    refs: Sequence[Mapping[str, object]],
    outs: Sequence[Mapping[str, object]],
    precision: str,
    reference: str = "torch-cpu-fp32",
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    min_score: float = DEFAULT_MIN_SCORE,
    score_margin: float = DEFAULT_SCORE_MARGIN,
    mask_threshold: float = 0.5,
    image_size: tuple[int, int] | None = None,
) -> dict[str, object]:
    """Detection parity over all images (refs[i] against outs[i]): a JSON-serialisable report.
    `image_size` (height, width) is where RoI masks are pasted (see `match_detections`).

    Metrics pool the matched pairs of all images. A metric with nothing to measure is None
    (no matched pairs, no masks, no counted detections) and its criterion does not apply: a
    model that detects nothing on both sides passes, one side detecting nothing fails on the
    other side's unmatched detections. Every criterion that failed is named in `reasons`.
    """
    if len(refs) != len(outs):
        raise ValueError(f"{len(refs)} reference images but {len(outs)} output images")
    tol = detection_tolerance_for(precision)
    matches = [
        match_detections(r, o, iou_threshold, min_score, score_margin, mask_threshold, image_size)
        for r, o in zip(refs, outs, strict=True)
    ]
    ious = np.concatenate([m.box_iou for m in matches]) if matches else np.zeros(0)
    diffs = np.abs(np.concatenate([m.score_diff for m in matches])) if matches else np.zeros(0)
    has_masks = any(m.mask_iou is not None for m in matches)
    masks = (
        np.concatenate([m.mask_iou for m in matches if m.mask_iou is not None])
        if has_masks
        else np.zeros(0)
    )
    matched = sum(m.matched for m in matches)
    unmatched_ref = sum(len(m.unmatched_ref) for m in matches)
    unmatched_out = sum(len(m.unmatched_out) for m in matches)
    # Denominators: the detections of each side that take part, i.e. counted ones plus the
    # tolerated ones that matched (each matched pair counts once on each side).
    n_ref = matched + unmatched_ref
    n_out = matched + unmatched_out
    matched_fraction = matched / n_ref if n_ref else None
    output_matched_fraction = matched / n_out if n_out else None

    report: dict[str, object] = {
        "kind": "detection",
        "reference": reference,
        "tier": tol.precision,
        "thresholds": tol.to_dict(),
        "iou_threshold": float(iou_threshold),
        "min_score": float(min_score),
        "score_margin": float(score_margin),
        "mask_threshold": float(mask_threshold) if has_masks else None,
        "mask_comparison": _mask_comparison(refs, image_size) if has_masks else None,
        "images": len(matches),
        "reference_detections": n_ref,
        "output_detections": n_out,
        "matched": matched,
        "unmatched_reference": unmatched_ref,
        "unmatched_output": unmatched_out,
        "matched_fraction": matched_fraction,
        "output_matched_fraction": output_matched_fraction,
        "mean_box_iou": _mean(ious),
        "min_box_iou": _min(ious),
        "mean_score_diff": _mean(diffs),
        "max_score_diff": _max(diffs),
        "mean_mask_iou": _mean(masks) if has_masks else None,
        "min_mask_iou": _min(masks) if has_masks else None,
        "per_image": [
            {
                "matched": m.matched,
                "unmatched_reference": len(m.unmatched_ref),
                "unmatched_output": len(m.unmatched_out),
            }
            for m in matches
        ],
    }

    reasons: list[str] = []
    if matched_fraction is not None and matched_fraction < tol.min_matched_fraction:
        reasons.append(
            f"matched fraction {matched_fraction:.3g} < {tol.min_matched_fraction:g} "
            f"({unmatched_ref} of {n_ref} reference detections unmatched)"
        )
    if output_matched_fraction is not None and output_matched_fraction < tol.min_matched_fraction:
        reasons.append(
            f"output matched fraction {output_matched_fraction:.3g} < "
            f"{tol.min_matched_fraction:g} ({unmatched_out} of {n_out} output detections "
            "unmatched)"
        )
    lower_bounds = [
        ("min box IoU", report["min_box_iou"], tol.min_box_iou),
        ("mean box IoU", report["mean_box_iou"], tol.min_mean_box_iou),
        ("min mask IoU", report["min_mask_iou"], tol.min_mask_iou),
        ("mean mask IoU", report["mean_mask_iou"], tol.min_mean_mask_iou),
    ]
    for label, value, bound in lower_bounds:
        if value is not None and value < bound:
            reasons.append(f"{label} {value:.3g} < {bound:g}")
    upper_bounds = [
        ("max |score difference|", report["max_score_diff"], tol.max_score_diff),
        ("mean |score difference|", report["mean_score_diff"], tol.max_mean_score_diff),
    ]
    for label, value, bound in upper_bounds:
        if value is not None and value > bound:
            reasons.append(f"{label} {value:.3g} > {bound:g}")
    report["verdict"] = "fail" if reasons else "pass"
    report["reasons"] = reasons
    return report
