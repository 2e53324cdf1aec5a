"""The timing section of a result: one round's, and several merged (pure logic)."""

from __future__ import annotations

import math

import pytest

from bench.measure.sections import (
    ONE_SLOT_LATENCY,
    merge_rounds,
    round_medians,
    round_samples,
    round_section,
)


def _round(samples, index, load_ms=100.0):
    return round_section(
        scope="host_end_to_end",
        scope_description="test",
        config={},
        samples_ms=samples,
        warmup_iters=2,
        warmup_s=0.5,
        measure_s=1.0,
        batch_size=2,
        flops_per_sample=1e9,
        round_index=index,
        position=index % 2,
        load_ms=load_ms,
        cold_ms=None if load_ms is None else load_ms / 10,
    )


def test_one_round_estimates_from_its_iterations_and_says_it_covers_one_slot():
    section = _round([1.0, 2.0, 3.0, 4.0, 100.0], 1)
    est = section["estimate"]
    assert est["value"] == 3.0 and est["rounds"] == 1 and est["method"] == ONE_SLOT_LATENCY
    assert (est["low"], est["high"]) == (section["stats"]["median_ci95_low_ms"], 100.0)
    assert section["throughput_sps"] == pytest.approx(2 * 1000 / 3.0)
    assert section["rounds"][0]["samples"] == [0, 5] and section["rounds"][0]["position"] == 1


def test_merged_rounds_keep_each_rounds_slice_and_estimate_across_rounds():
    merged = merge_rounds([_round([4.0, 5.0, 6.0], 2, 90.0), _round([1.0, 2.0, 3.0], 1)], 2, 1e9)
    assert merged["samples_ms"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # round order
    assert [r["samples"] for r in merged["rounds"]] == [[0, 3], [3, 6]]
    assert round_samples(merged, merged["rounds"][1]) == [4.0, 5.0, 6.0]
    assert round_medians(merged) == {1: 2.0, 2: 5.0}
    assert merged["stats"]["median_ms"] == 3.5  # pooled
    assert merged["estimate"]["value"] == pytest.approx(math.sqrt(10.0))  # geometric mean
    assert merged["estimate"]["rounds"] == 2
    assert (merged["load_ms"], merged["warmup_iters"]) == (100.0, 4)  # the first round's load
    assert merged["throughput_sps"] == pytest.approx(2000 / math.sqrt(10.0))
    # Merging a merge with a further round gives the same as merging all three.
    three = merge_rounds([merged, _round([7.0, 8.0, 9.0], 3)], 2, 1e9)
    assert three["samples_ms"] == [float(x) for x in range(1, 10)]
    assert round_medians(three) == {1: 2.0, 2: 5.0, 3: 8.0}


def test_the_compute_scope_has_no_load_of_its_own():
    section = _round([1.0, 2.0], 1, load_ms=None)
    assert "load_ms" not in section and section["rounds"][0]["load_ms"] is None
    assert "load_ms" not in merge_rounds([section, _round([3.0], 2, load_ms=None)], 1, None)
