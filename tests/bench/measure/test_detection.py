"""Detection parity on hand-made boxes: overlaps, the assignment solver, matching, the report."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from bench.measure.detection import (
    DETECTION_TOLERANCES,
    box_iou,
    detection_parity,
    linear_sum_assignment,
    mask_iou,
    match_detections,
)


def dets(boxes, labels, scores, masks=None):
    d = {
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        "labels": np.asarray(labels, dtype=np.int64),
        "scores": np.asarray(scores, dtype=np.float32),
    }
    if masks is not None:
        d["masks"] = np.asarray(masks, dtype=np.float32)
    return d


# Three well separated 10x10 (and 20x20) boxes of classes 1, 2, 1.
BOXES = [[0, 0, 10, 10], [50, 50, 70, 70], [100, 0, 110, 10]]
LABELS = [1, 2, 1]
SCORES = [0.9, 0.8, 0.7]
REF = dets(BOXES, LABELS, SCORES)


# ---- box_iou ---------------------------------------------------------------------------------


def test_box_iou_hand_computed():
    a = np.array([[0, 0, 10, 10], [0, 0, 2, 2]])
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30], [1, 1, 3, 3]])
    iou = box_iou(a, b)
    assert iou.shape == (2, 4)
    # 10x10 shifted by 5 px: intersection 5*10 = 50, union 100 + 100 - 50 = 150
    assert iou[0, 0] == pytest.approx(1 / 3)
    assert iou[0, 1] == pytest.approx(1.0)
    assert iou[0, 2] == 0.0  # disjoint
    assert iou[0, 3] == pytest.approx(4 / 100)  # [1,1,3,3] inside: 4 / 100
    assert iou[1, 3] == pytest.approx(1 / 7)  # 1x1 overlap, union 4 + 4 - 1
    assert iou[1, 1] == pytest.approx(4 / 100)
    # touching edges have zero intersection
    assert box_iou([[0, 0, 1, 1]], [[1, 0, 2, 1]])[0, 0] == 0.0


def test_box_iou_degenerate_boxes_are_zero_not_nan():
    a = np.array([[0, 0, 0, 10], [5, 5, 5, 5], [10, 10, 0, 0], [0, 0, 10, 10]])
    iou = box_iou(a, a)
    assert not np.isnan(iou).any()
    # zero-width, zero-area, inverted: IoU 0 with everything, themselves included
    assert np.array_equal(iou[:3], np.zeros((3, 4)))
    assert np.array_equal(iou[:, :3], np.zeros((4, 3)))
    assert iou[3, 3] == 1.0


def test_box_iou_empty_and_bad_shapes():
    assert box_iou(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)
    assert box_iou(np.zeros((2, 4)), np.zeros(0)).shape == (2, 0)
    with pytest.raises(ValueError, match="N, 4"):
        box_iou(np.zeros((2, 5)), np.zeros((2, 4)))


# ---- mask_iou --------------------------------------------------------------------------------


def square_mask(x0, y0, size, hw=(20, 20), value=1.0):
    m = np.zeros(hw, dtype=np.float32)
    m[y0 : y0 + size, x0 : x0 + size] = value
    return m


def test_mask_iou_hand_computed_and_squeezed():
    a = np.stack([square_mask(0, 0, 4), square_mask(10, 10, 5)])[:, None]  # (2, 1, 20, 20)
    b = np.stack([square_mask(2, 0, 4), square_mask(10, 10, 5)])[:, None]
    iou = mask_iou(a, b)
    # 4x4 shifted by 2: intersection 2*4 = 8, union 16 + 16 - 8 = 24
    assert iou[0, 0] == pytest.approx(1 / 3)
    assert iou[0, 1] == 0.0
    assert iou[1, 1] == pytest.approx(1.0)
    assert np.allclose(mask_iou(a[:, 0], b[:, 0]), iou)  # (N, H, W) gives the same


def test_mask_iou_binarises_at_threshold():
    probs = square_mask(0, 0, 4, value=0.6)
    probs[0, :4] = 0.4  # the first row of the square falls below 0.5: 12 pixels remain
    ref = square_mask(0, 0, 4)
    assert mask_iou(probs[None], ref[None])[0, 0] == pytest.approx(12 / 16)
    assert mask_iou(probs[None], ref[None], threshold=0.3)[0, 0] == pytest.approx(1.0)


def test_mask_iou_empty_masks_and_size_mismatch():
    empty = np.zeros((1, 8, 8))
    full = np.ones((1, 8, 8))
    assert mask_iou(empty, empty)[0, 0] == 1.0  # both empty: they agree
    assert mask_iou(empty, full)[0, 0] == 0.0
    with pytest.raises(ValueError, match="mask sizes differ"):
        mask_iou(np.zeros((1, 8, 8)), np.zeros((1, 8, 9)))


# ---- linear_sum_assignment -------------------------------------------------------------------


def brute_force_min(cost: np.ndarray) -> float:
    n, m = cost.shape
    if n > m:
        return brute_force_min(cost.T)
    if n == 0:
        return 0.0
    return min(cost[np.arange(n), list(p)].sum() for p in itertools.permutations(range(m), n))


def assert_valid_assignment(cost, rows, cols):
    n, m = cost.shape
    assert len(rows) == len(cols) == min(n, m)
    assert len(set(rows.tolist())) == len(rows)
    assert len(set(cols.tolist())) == len(cols)
    assert list(rows) == sorted(rows)


@pytest.mark.parametrize(
    ("cost", "rows", "cols"),
    [
        # 2x2: diagonal 1 + 1 = 2 beats anti-diagonal 2 + 2 = 4
        ([[1, 2], [2, 1]], [0, 1], [0, 1]),
        # 3x3: row 0 prefers col 0 (cost 1), but the optimum gives col 0 to row 1:
        # 0->1 (2) + 1->0 (1) + 2->2 (2) = 5 vs greedy 0->0 (1) + 1->2 (9) + 2->1 (9) = 19
        ([[1, 2, 9], [1, 9, 9], [9, 9, 2]], [0, 1, 2], [1, 0, 2]),
        # 2x3 (more columns): column 1 stays free; 0->2 (1) + 1->0 (1)
        ([[5, 4, 1], [1, 6, 7]], [0, 1], [2, 0]),
        # 3x2 (more rows): row 1 stays free; 0->1 (0) + 2->0 (1)
        ([[3, 0], [4, 5], [1, 8]], [0, 2], [1, 0]),
    ],
)
def test_assignment_hand_checked(cost, rows, cols):
    r, c = linear_sum_assignment(np.array(cost, dtype=float))
    assert r.tolist() == rows
    assert c.tolist() == cols


@pytest.mark.parametrize("seed", range(40))
def test_assignment_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, m = rng.integers(1, 7, size=2)
    # Alternate continuous costs and small integers (many ties), negatives included.
    cost = rng.integers(-3, 4, size=(n, m)).astype(float) if seed % 2 else rng.normal(size=(n, m))
    rows, cols = linear_sum_assignment(cost)
    assert_valid_assignment(cost, rows, cols)
    assert cost[rows, cols].sum() == pytest.approx(brute_force_min(cost))


def test_assignment_empty_and_invalid():
    for shape in [(0, 0), (0, 3), (3, 0)]:
        rows, cols = linear_sum_assignment(np.zeros(shape))
        assert rows.size == cols.size == 0
    with pytest.raises(ValueError, match="finite"):
        linear_sum_assignment(np.array([[1.0, np.inf]]))
    with pytest.raises(ValueError, match="2-D"):
        linear_sum_assignment(np.zeros(3))


def test_assignment_matches_scipy_on_larger_matrices():
    scipy_optimize = pytest.importorskip("scipy.optimize")  # a dev-only cross-check
    rng = np.random.default_rng(7)
    for shape in [(40, 40), (30, 70), (90, 25), (120, 120)]:
        cost = rng.random(shape)
        rows, cols = linear_sum_assignment(cost)
        assert_valid_assignment(cost, rows, cols)
        r2, c2 = scipy_optimize.linear_sum_assignment(cost)
        assert cost[rows, cols].sum() == pytest.approx(cost[r2, c2].sum())


# ---- match_detections ------------------------------------------------------------------------


def test_identical_reordered_all_matched():
    order = [2, 0, 1]
    out = dets(np.array(BOXES)[order], np.array(LABELS)[order], np.array(SCORES)[order])
    m = match_detections(REF, out)
    assert m.ref_idx.tolist() == [0, 1, 2]
    assert m.out_idx.tolist() == [1, 2, 0]  # ref 0 is out 1, ref 1 is out 2, ref 2 is out 0
    assert np.allclose(m.box_iou, 1.0)
    assert np.allclose(m.score_diff, 0.0)
    assert m.mask_iou is None
    assert m.unmatched_ref.size == m.unmatched_out.size == 0


def test_missing_detection():
    out = dets(BOXES[:2], LABELS[:2], SCORES[:2])
    m = match_detections(REF, out)
    assert m.matched == 2
    assert m.unmatched_ref.tolist() == [2]
    assert m.unmatched_out.size == 0


def test_extra_detection():
    out = dets([*BOXES, [200, 200, 220, 220]], [*LABELS, 3], [*SCORES, 0.6])
    m = match_detections(REF, out)
    assert m.matched == 3
    assert m.unmatched_ref.size == 0
    assert m.unmatched_out.tolist() == [3]


def test_shifted_boxes_known_iou_and_iou_threshold():
    # Box 0 (10x10) shifted by 5 px: IoU 50 / 150 = 1/3.
    shifted = [[5, 0, 15, 10], BOXES[1], BOXES[2]]
    out = dets(shifted, LABELS, SCORES)
    m = match_detections(REF, out)  # threshold 0.5: the shifted box cannot match
    assert m.ref_idx.tolist() == [1, 2]
    assert (m.unmatched_ref.tolist(), m.unmatched_out.tolist()) == ([0], [0])
    loose = match_detections(REF, out, iou_threshold=0.3)
    assert loose.matched == 3
    assert loose.box_iou[0] == pytest.approx(1 / 3)


def test_label_mismatch_never_matches():
    out = dets(BOXES, [1, 3, 1], SCORES)  # box 1 has the same place but another class
    m = match_detections(REF, out)
    assert m.ref_idx.tolist() == [0, 2]
    assert (m.unmatched_ref.tolist(), m.unmatched_out.tolist()) == ([1], [1])


def test_score_differences_signed_output_minus_reference():
    out = dets(BOXES, LABELS, [0.95, 0.8, 0.6])
    m = match_detections(REF, out)
    assert m.score_diff == pytest.approx([0.05, 0.0, -0.1], abs=1e-6)


def test_optimal_assignment_beats_greedy():
    # One class, all boxes 10 high, so IoU is the overlap of the x intervals:
    # A = [0, 10], B = [2, 11]; X = [1, 10], Y = [-2, 10].
    # A-X 9/10 = 0.9 (the best pair), A-Y 10/12 = 0.833, B-X 8/10 = 0.8, B-Y 8/13 = 0.615.
    # At IoU threshold 0.7 B-Y is not allowed. Greedy (best IoU first) takes A-X and strands
    # B and Y: 1 pair, total 0.9. The optimum is A-Y + B-X: 2 pairs, total 1.633.
    ref = dets([[0, 0, 10, 10], [2, 0, 11, 10]], [1, 1], [0.9, 0.9])
    out = dets([[1, 0, 10, 10], [-2, 0, 10, 10]], [1, 1], [0.9, 0.9])
    iou = box_iou(ref["boxes"], out["boxes"])
    assert iou == pytest.approx(np.array([[0.9, 10 / 12], [0.8, 8 / 13]]))
    m = match_detections(ref, out, iou_threshold=0.7)
    assert m.ref_idx.tolist() == [0, 1]
    assert m.out_idx.tolist() == [1, 0]  # A-Y, B-X
    assert m.box_iou.sum() == pytest.approx(10 / 12 + 0.8)
    assert m.unmatched_ref.size == m.unmatched_out.size == 0


def test_assignment_maximises_total_iou_among_equal_counts():
    # Two refs, two outputs, all four pairs allowed: A-X + B-Y = 1.0 + 0.6 beats the crossed
    # pairing 0.7 + 0.7 (more total IoU), although both pair everything.
    ref = dets([[0, 0, 10, 10], [0, 0, 10, 6]], [1, 1], [0.9, 0.9])
    out = dets([[0, 0, 10, 10], [0, 0, 10, 7]], [1, 1], [0.9, 0.9])
    iou = box_iou(ref["boxes"], out["boxes"])
    assert iou == pytest.approx(np.array([[1.0, 0.7], [0.6, 60 / 70]]))
    m = match_detections(ref, out)
    assert m.out_idx.tolist() == [0, 1]


def test_score_floor_both_below_is_ignored():
    # A detection at 0.1 on both sides (floor 0.3, margin 0.1): noise, not compared at all.
    ref = dets([*BOXES, [200, 200, 210, 210]], [*LABELS, 1], [*SCORES, 0.1])
    out = dets([*BOXES, [300, 300, 310, 310]], [*LABELS, 1], [*SCORES, 0.1])
    m = match_detections(ref, out)
    assert m.matched == 3
    assert m.unmatched_ref.size == m.unmatched_out.size == 0


def test_score_floor_straddling_detection_is_matched_not_missed():
    # Box 2 scores 0.31 in the reference (counted) and 0.29 in the output (tolerated): it is
    # matched, with its score difference, instead of a miss.
    out = dets(BOXES, LABELS, [0.9, 0.8, 0.29])
    ref = dets(BOXES, LABELS, [0.9, 0.8, 0.31])
    m = match_detections(ref, out)
    assert m.matched == 3
    assert m.score_diff[2] == pytest.approx(-0.02, abs=1e-6)
    assert m.unmatched_ref.size == m.unmatched_out.size == 0
    # The same the other way round (output above the floor, reference below).
    m = match_detections(out, ref)
    assert m.matched == 3


def test_score_floor_tolerated_unmatched_is_not_a_miss_but_counted_is():
    # Reference box at 0.25 (tolerated) with nothing in the output: not a miss.
    ref = dets([*BOXES, [200, 200, 210, 210]], [*LABELS, 1], [*SCORES, 0.25])
    m = match_detections(ref, REF)
    assert m.unmatched_ref.size == 0
    # At 0.35 it is counted, so it is a miss.
    ref["scores"][3] = 0.35
    assert match_detections(ref, REF).unmatched_ref.tolist() == [3]
    # Below the margin (0.31 vs 0.15) the output box is ignored: the reference one is a miss.
    ref = dets(BOXES, LABELS, [0.9, 0.8, 0.31])
    out = dets(BOXES, LABELS, [0.9, 0.8, 0.15])
    m = match_detections(ref, out)
    assert m.unmatched_ref.tolist() == [2]
    assert m.unmatched_out.size == 0


def test_two_tolerated_detections_do_not_pair():
    ref = dets([[0, 0, 10, 10]], [1], [0.25])
    out = dets([[0, 0, 10, 10]], [1], [0.22])
    m = match_detections(ref, out)
    assert m.matched == 0
    assert m.unmatched_ref.size == m.unmatched_out.size == 0


def test_masks_of_matched_pairs():
    masks_ref = np.stack([square_mask(0, 0, 4), square_mask(10, 10, 5)])[:, None]
    masks_out = np.stack([square_mask(10, 10, 5), square_mask(2, 0, 4)])[:, None]  # reordered
    ref = dets([[0, 0, 4, 4], [10, 10, 15, 15]], [1, 1], [0.9, 0.8], masks_ref)
    out = dets([[10, 10, 15, 15], [0, 0, 4, 4]], [1, 1], [0.8, 0.9], masks_out)
    m = match_detections(ref, out)
    assert m.out_idx.tolist() == [1, 0]
    assert m.mask_iou == pytest.approx([1 / 3, 1.0])  # 4x4 shifted by 2: 8 / 24


def test_masks_on_one_side_only_raise():
    ref = dets(BOXES, LABELS, SCORES, np.zeros((3, 1, 8, 8)))
    with pytest.raises(ValueError, match="one side"):
        match_detections(ref, REF)


def test_inconsistent_lengths_raise():
    with pytest.raises(ValueError, match="differ"):
        match_detections(REF, {"boxes": np.zeros((2, 4)), "labels": [1], "scores": [0.9, 0.9]})
    with pytest.raises(ValueError, match="lack 'scores'"):
        match_detections(REF, {"boxes": np.zeros((0, 4)), "labels": []})


def test_empty_sides():
    empty = dets(np.zeros((0, 4)), [], [])
    m = match_detections(empty, empty)
    assert m.matched == 0 and m.unmatched_ref.size == m.unmatched_out.size == 0
    assert match_detections(REF, empty).unmatched_ref.tolist() == [0, 1, 2]
    assert match_detections(empty, REF).unmatched_out.tolist() == [0, 1, 2]


# ---- detection_parity ------------------------------------------------------------------------


def test_parity_identical_passes_and_is_json():
    out = dets(np.array(BOXES)[[1, 2, 0]], np.array(LABELS)[[1, 2, 0]], np.array(SCORES)[[1, 2, 0]])
    report = detection_parity([REF, REF], [out, REF], "fp32")
    assert report["kind"] == "detection"
    assert report["verdict"] == "pass"
    assert report["reasons"] == []
    assert report["tier"] == "fp32"
    assert report["thresholds"] == DETECTION_TOLERANCES["fp32"].to_dict()
    assert (report["images"], report["matched"], report["reference_detections"]) == (2, 6, 6)
    assert report["matched_fraction"] == report["output_matched_fraction"] == 1.0
    assert report["min_box_iou"] == report["mean_box_iou"] == 1.0
    assert report["max_score_diff"] == 0.0
    assert report["mean_mask_iou"] is None and report["mask_threshold"] is None
    assert report["per_image"][0] == {"matched": 3, "unmatched_reference": 0, "unmatched_output": 0}
    assert json.loads(json.dumps(report)) == report  # plain JSON types only


def test_parity_missing_extra_and_shift_fail_with_reasons():
    # Image 0: box 2 missing. Image 1: box 0 shifted by 5 px (unmatched both sides) + an extra.
    out0 = dets(BOXES[:2], LABELS[:2], SCORES[:2])
    out1 = dets(
        [[5, 0, 15, 10], BOXES[1], BOXES[2], [200, 200, 220, 220]],
        [1, 2, 1, 3],
        [0.9, 0.8, 0.7, 0.5],
    )
    report = detection_parity([REF, REF], [out0, out1], "int8")
    assert report["matched"] == 4
    assert (report["unmatched_reference"], report["unmatched_output"]) == (2, 2)
    assert report["matched_fraction"] == pytest.approx(4 / 6)
    assert report["output_matched_fraction"] == pytest.approx(4 / 6)
    assert report["verdict"] == "fail"
    assert report["reasons"] == [
        "matched fraction 0.667 < 0.9 (2 of 6 reference detections unmatched)",
        "output matched fraction 0.667 < 0.9 (2 of 6 output detections unmatched)",
    ]
    assert report["per_image"] == [
        {"matched": 2, "unmatched_reference": 1, "unmatched_output": 0},
        {"matched": 2, "unmatched_reference": 1, "unmatched_output": 2},
    ]


def test_parity_box_iou_and_score_thresholds_depend_on_tier():
    # Box 0 of 10x10 grows by 0.6 px to the right: IoU 100 / 106 = 0.943; score 0.9 -> 0.92.
    out = dets([[0, 0, 10.6, 10], BOXES[1], BOXES[2]], LABELS, [0.92, 0.8, 0.7])
    fp32 = detection_parity([REF], [out], "fp32")
    assert fp32["min_box_iou"] == pytest.approx(100 / 106)
    assert fp32["mean_box_iou"] == pytest.approx((100 / 106 + 2) / 3)
    assert fp32["max_score_diff"] == pytest.approx(0.02, abs=1e-6)
    assert fp32["mean_score_diff"] == pytest.approx(0.02 / 3, abs=1e-6)
    assert fp32["verdict"] == "fail"
    assert fp32["reasons"] == [
        "min box IoU 0.943 < 0.95",
        "mean box IoU 0.981 < 0.99",
        "max |score difference| 0.02 > 0.01",
        "mean |score difference| 0.00667 > 0.001",
    ]
    int8 = detection_parity([REF], [out], "int8")
    assert int8["verdict"] == "pass"


def test_parity_masks():
    masks_ref = np.stack([square_mask(0, 0, 4), square_mask(10, 10, 5)])[:, None]
    masks_out = np.stack([square_mask(1, 0, 4), square_mask(10, 10, 5)])[:, None]
    ref = dets([[0, 0, 4, 4], [10, 10, 15, 15]], [1, 1], [0.9, 0.8], masks_ref)
    out = dets([[0, 0, 4, 4], [10, 10, 15, 15]], [1, 1], [0.9, 0.8], masks_out)
    report = detection_parity([ref], [out], "fp16")
    # 4x4 shifted by 1: intersection 12, union 20 -> 0.6
    assert report["min_mask_iou"] == pytest.approx(0.6)
    assert report["mean_mask_iou"] == pytest.approx(0.8)
    assert report["mask_threshold"] == 0.5
    assert report["reasons"] == ["min mask IoU 0.6 < 0.85", "mean mask IoU 0.8 < 0.95"]
    assert json.loads(json.dumps(report)) == report


def test_parity_straddling_score_fails_on_score_not_on_match():
    ref = dets(BOXES, LABELS, [0.9, 0.8, 0.31])
    out = dets(BOXES, LABELS, [0.9, 0.8, 0.29])
    fp32 = detection_parity([ref], [out], "fp32")
    assert fp32["matched_fraction"] == 1.0
    assert fp32["reasons"] == [
        "max |score difference| 0.02 > 0.01",
        "mean |score difference| 0.00667 > 0.001",
    ]
    # fp16 accepts the 0.02 difference but not a mean of 0.02 / 3 over three pairs; bf16 both.
    fp16 = detection_parity([ref], [out], "fp16")
    assert fp16["reasons"] == ["mean |score difference| 0.00667 > 0.005"]
    assert detection_parity([ref], [out], "bf16")["verdict"] == "pass"


def test_parity_empty_sides():
    empty = dets(np.zeros((0, 4)), [], [])
    both = detection_parity([empty], [empty], "fp32")
    assert both["verdict"] == "pass"  # nothing detected on either side: they agree
    assert both["matched_fraction"] is None and both["min_box_iou"] is None
    assert json.loads(json.dumps(both)) == both
    none_out = detection_parity([REF], [empty], "fp32")
    assert none_out["verdict"] == "fail"
    assert none_out["matched_fraction"] == 0.0 and none_out["output_matched_fraction"] is None
    assert none_out["reasons"] == [
        "matched fraction 0 < 0.99 (3 of 3 reference detections unmatched)"
    ]
    none_ref = detection_parity([empty], [REF], "fp32")
    assert none_ref["verdict"] == "fail"
    assert none_ref["reasons"] == [
        "output matched fraction 0 < 0.99 (3 of 3 output detections unmatched)"
    ]
    assert detection_parity([], [], "fp32")["verdict"] == "pass"


def test_parity_image_count_mismatch_raises():
    with pytest.raises(ValueError, match="images"):
        detection_parity([REF], [REF, REF], "fp32")


@pytest.mark.parametrize("other", ["fp16", "bf16", "int8"])
def test_fp32_is_strictest_tier(other):
    fp32, tier = DETECTION_TOLERANCES["fp32"], DETECTION_TOLERANCES[other]
    assert fp32.min_matched_fraction > tier.min_matched_fraction
    assert fp32.min_box_iou > tier.min_box_iou
    assert fp32.max_score_diff < tier.max_score_diff
    assert fp32.min_mask_iou > tier.min_mask_iou


def test_lower_precision_tiers_loosen_in_order():
    tiers = [DETECTION_TOLERANCES[p] for p in ("fp32", "fp16", "bf16", "int8")]
    for tighter, looser in itertools.pairwise(tiers):
        assert tighter.min_matched_fraction >= looser.min_matched_fraction
        assert tighter.min_box_iou >= looser.min_box_iou
        assert tighter.min_mean_box_iou >= looser.min_mean_box_iou
        assert tighter.max_score_diff <= looser.max_score_diff
        assert tighter.max_mean_score_diff <= looser.max_mean_score_diff
        assert tighter.min_mask_iou >= looser.min_mask_iou
        assert tighter.min_mean_mask_iou >= looser.min_mean_mask_iou
        # A score change the tier accepts must never turn a detection into a miss.
        assert looser.max_score_diff <= 0.1  # DEFAULT_SCORE_MARGIN
