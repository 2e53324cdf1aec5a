"""Parity metrics and verdicts against a reference, on tiny hand-made arrays."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from bench.measure.parity import TOLERANCES, compare, compare_output, topk_agreement

INT8 = TOLERANCES["int8"]  # rtol 0.1, atol_scale 0.1
FP32 = TOLERANCES["fp32"]  # rtol 1e-3, atol_scale 1e-4

REF = np.array([[3.0, 0.0], [0.0, 4.0]])


def test_compare_output_metrics():
    o = compare_output("y", np.array([[3.0, 0.0], [0.0, 5.0]]), REF, INT8)
    # diff = [0, 0, 0, 1]
    assert o.shape == [2, 2]
    assert o.max_abs_err == pytest.approx(1.0)
    assert o.mean_abs_err == pytest.approx(0.25)  # 1 / 4
    assert o.mse == pytest.approx(0.25)  # 1^2 / 4
    assert o.rel_l2 == pytest.approx(0.2)  # |diff| 1 / |ref| 5
    # (3*3 + 4*5) / (|out| sqrt(34) * |ref| 5) = 29 / 29.1548
    assert o.cosine_similarity == pytest.approx(0.9946917)
    assert o.reference_max_abs == pytest.approx(4.0)
    # max(diff - 0.1*|ref|) = max(-0.3, 0, 0, 1 - 0.4) = 0.6 > atol 0.1*4 = 0.4
    assert o.min_atol_to_pass == pytest.approx(0.6)
    assert o.allclose is False


def test_allclose_depends_on_tier():
    out = np.array([[3.0, 0.0], [0.0, 4.5]])  # diff 0.5 on the 4.0
    loose = compare_output("y", out, REF, INT8)
    assert loose.min_atol_to_pass == pytest.approx(0.1)  # 0.5 - 0.1*4 <= atol 0.4
    assert loose.allclose is True
    strict = compare_output("y", out, REF, FP32)
    assert strict.min_atol_to_pass == pytest.approx(0.496)  # 0.5 - 1e-3*4 > atol 4e-4
    assert strict.allclose is False


def test_zero_reference_and_zero_output():
    z = compare_output("z", np.zeros(3), np.zeros(3), FP32)
    assert (z.rel_l2, z.cosine_similarity, z.min_atol_to_pass) == (0.0, 1.0, 0.0)
    assert z.allclose is True


def test_zero_reference_nonzero_output():
    o = compare_output("z", np.array([0.0, 1e-3]), np.zeros(2), FP32)
    assert math.isinf(o.rel_l2)
    assert o.cosine_similarity == 0.0
    assert o.reference_max_abs == 0.0
    assert o.min_atol_to_pass == pytest.approx(1e-3)  # atol is 0 with a zero reference
    assert o.allclose is False


def test_zero_output_nonzero_reference():
    o = compare_output("z", np.zeros(2), np.array([3.0, 4.0]), FP32)
    assert o.rel_l2 == pytest.approx(1.0)  # |0 - ref| / |ref|
    assert o.cosine_similarity == 0.0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="'y'"):
        compare_output("y", np.zeros((2, 3)), np.zeros((3, 2)), FP32)


REF_LOGITS = np.array(
    [
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.1],  # top-1 0, top-5 {0,1,2,3,4}
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # top-1 5, top-5 {1,2,3,4,5}
        [5.0, 0.0, 1.0, 2.0, 3.0, 4.0],  # top-1 0, top-5 {0,2,3,4,5}
    ]
)
OUT_LOGITS = np.array(
    [
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.1],  # same: top-1 agrees, overlap 5/5
        [0.1, 0.2, 0.3, 0.4, 0.7, 0.6],  # top-1 4 != 5; top-5 {1,2,3,4,5}: 5/5
        [5.0, 4.0, 1.0, 2.0, 3.0, 0.0],  # top-1 0 agrees; top-5 {0,1,2,3,4}: 4/5
    ]
)


def test_topk_agreement():
    top1, top5 = topk_agreement(OUT_LOGITS, REF_LOGITS)
    assert top1 == pytest.approx(2 / 3)
    assert top5 == pytest.approx(2.8 / 3)  # (1 + 1 + 0.8) / 3


def test_topk_agreement_small_and_clipped_k():
    # k=2: {0,1}/{0,1} -> 1; {4,5}/{4,5} -> 1; {0,1}/{0,5} -> 0.5
    assert topk_agreement(OUT_LOGITS, REF_LOGITS, k=2)[1] == pytest.approx(2.5 / 3)
    # k=10 is clipped to the 6 classes: every set is all classes
    assert topk_agreement(OUT_LOGITS, REF_LOGITS, k=10)[1] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("a", "b"), [(np.zeros(6), np.zeros(6)), (np.zeros((3, 6)), np.zeros((3, 5)))]
)
def test_topk_agreement_rejects_bad_shapes(a, b):
    with pytest.raises(ValueError):
        topk_agreement(a, b)


FEATURES = np.ones((3, 4))


def test_compare_identical_passes():
    refs = {"logits": REF_LOGITS, "features": FEATURES}
    report = compare(dict(refs), refs, "fp32", classifier_output="logits")
    assert report.verdict == "pass"
    assert report.reasons == []
    assert (report.top1_agreement, report.top5_overlap) == (1.0, 1.0)


def test_compare_perturbed_output_fails_and_names_it():
    perturbed = FEATURES.copy()
    perturbed[1, 2] += 10.0
    refs = {"logits": REF_LOGITS, "features": FEATURES}
    report = compare({"logits": REF_LOGITS, "features": perturbed}, refs, "fp16")
    assert report.verdict == "fail"
    # needs atol >= 10 - 0.01*1 = 9.99; rel L2 = 10 / sqrt(12) = 2.89
    assert report.reasons == [
        "features: max abs error 10 exceeds atol+rtol*|ref| (needs atol >= 9.99)",
        "features: relative L2 error 2.89 > 0.01",
    ]
    assert report.to_dict()["worst_output"] == "features"
    assert report.top1_agreement is None


def test_top1_flip_fails_int8_tier():
    ref = np.array([[10.0, 9.9, 1, 2, 3, 4], [1, 10.0, 2, 3, 4, 5], [1, 2, 10.0, 3, 4, 5]])
    out = ref.copy()
    out[0, :2] = [9.9, 10.0]  # row 0 flips its top-1; |diff| 0.1 is well within int8 bounds
    report = compare({"logits": out}, {"logits": ref}, "int8", classifier_output="logits")
    assert report.outputs[0].allclose is True
    assert report.verdict == "fail"
    assert report.reasons == ["top-1 agreement 0.667 < 0.8"]  # 2/3


def test_missing_output_raises():
    with pytest.raises(ValueError, match="features"):
        compare({"logits": REF_LOGITS}, {"logits": REF_LOGITS, "features": FEATURES}, "fp32")


@pytest.mark.parametrize("other", ["fp16", "bf16", "int8"])
def test_fp32_is_strictest_tier(other):
    fp32, tier = TOLERANCES["fp32"], TOLERANCES[other]
    assert fp32.rtol < tier.rtol
    assert fp32.atol_scale < tier.atol_scale
    assert fp32.max_rel_l2 < tier.max_rel_l2


def test_lower_precision_tiers_loosen_in_order():
    tiers = [TOLERANCES[p] for p in ("fp16", "bf16", "int8")]
    for tighter, looser in itertools.pairwise(tiers):
        assert tighter.rtol <= looser.rtol
        assert tighter.atol_scale <= looser.atol_scale
        assert tighter.max_rel_l2 <= looser.max_rel_l2
        assert tighter.min_top1_agreement >= looser.min_top1_agreement


def test_non_finite_outputs_fail_with_their_count_and_null_metrics():
    ref = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], np.float32)
    out = ref.copy()
    out[0, 0], out[1, 2] = np.nan, np.inf
    report = compare({"y": out}, {"y": ref}, "fp32", classifier_output="y")
    assert report.verdict == "fail"
    assert report.reasons == ["y: non-finite outputs (2 NaN or inf values)"]
    assert report.outputs[0].non_finite == 2 and not report.outputs[0].allclose
    doc = report.to_dict()
    # Metrics that the non-finite values made meaningless are null: a result stays strict JSON.
    assert doc["outputs"][0]["rel_l2"] is None and doc["worst_rel_l2"] is None
    assert doc["outputs"][0]["reference_max_abs"] == 3.0  # the finite ones are kept
    json.dumps(doc, allow_nan=False)
