"""Parity of a framework's outputs against the PyTorch fp32 reference, on identical inputs.

Metrics are computed per output in float64. The verdict uses the tolerance tier of the
precision the cell ran at: lower precisions are expected to differ more, and the tier says by
how much. Every criterion that failed is named in `reasons`, so a failing cell says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria of one precision tier.

    An output passes when every element satisfies |out - ref| <= atol + rtol * |ref| (numpy's
    allclose rule) with atol = atol_scale * max|ref| (so the rule does not depend on the
    output's scale), and its relative L2 error is at most max_rel_l2. For classifiers the
    top-1 agreement must also reach min_top1_agreement when the tier sets one.
    """

    precision: str
    rtol: float
    atol_scale: float
    max_rel_l2: float
    min_top1_agreement: float | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# Initial tiers. fp32 must agree to float rounding; the others are the usual expectations for
# half precision and post-training int8 (see README "Parity").
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance("fp32", rtol=1e-3, atol_scale=1e-4, max_rel_l2=1e-3),
    "fp16": Tolerance("fp16", rtol=1e-2, atol_scale=1e-2, max_rel_l2=1e-2, min_top1_agreement=0.95),
    "bf16": Tolerance("bf16", rtol=5e-2, atol_scale=5e-2, max_rel_l2=5e-2, min_top1_agreement=0.9),
    "int8": Tolerance("int8", rtol=1e-1, atol_scale=1e-1, max_rel_l2=1e-1, min_top1_agreement=0.8),
}


def tolerance_for(precision: str) -> Tolerance:
    return TOLERANCES[precision]


@dataclass(frozen=True)
class OutputParity:
    """Error metrics of one output tensor against its reference."""

    name: str
    shape: list[int]
    max_abs_err: float
    mean_abs_err: float
    mse: float
    rel_l2: float
    cosine_similarity: float
    reference_max_abs: float
    # The smallest atol with which this output would pass the allclose rule at the tier's rtol.
    min_atol_to_pass: float
    allclose: bool


@dataclass(frozen=True)
class ParityReport:
    """Parity of all outputs of a cell, with the verdict and the criteria that failed."""

    reference: str
    tolerance: Tolerance
    outputs: list[OutputParity]
    top1_agreement: float | None
    top5_overlap: float | None
    verdict: str  # "pass" or "fail"
    reasons: list[str] = field(default_factory=list)

    @property
    def worst(self) -> OutputParity:
        return max(self.outputs, key=lambda o: o.rel_l2)

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["worst_output"] = self.worst.name
        d["worst_rel_l2"] = self.worst.rel_l2
        d["worst_max_abs_err"] = self.worst.max_abs_err
        return d


def compare_output(name: str, out: np.ndarray, ref: np.ndarray, tol: Tolerance) -> OutputParity:
    """Metrics of one output against its reference (shapes must match)."""
    if out.shape != ref.shape:
        raise ValueError(f"output {name!r}: shape {out.shape} differs from reference {ref.shape}")
    a = np.asarray(out, dtype=np.float64).ravel()
    b = np.asarray(ref, dtype=np.float64).ravel()
    diff = np.abs(a - b)
    ref_norm = float(np.linalg.norm(b))
    diff_norm = float(np.linalg.norm(a - b))
    out_norm = float(np.linalg.norm(a))
    if ref_norm == 0.0:
        rel_l2 = 0.0 if diff_norm == 0.0 else float("inf")
    else:
        rel_l2 = diff_norm / ref_norm
    if ref_norm == 0.0 or out_norm == 0.0:
        cosine = 1.0 if ref_norm == out_norm else 0.0
    else:
        cosine = float(np.dot(a, b) / (out_norm * ref_norm))
    ref_max = float(np.max(np.abs(b))) if b.size else 0.0
    atol = tol.atol_scale * ref_max
    min_atol = float(np.max(diff - tol.rtol * np.abs(b), initial=0.0))
    return OutputParity(
        name=name,
        shape=list(out.shape),
        max_abs_err=float(diff.max(initial=0.0)),
        mean_abs_err=float(diff.mean()) if diff.size else 0.0,
        mse=float(np.mean(diff**2)) if diff.size else 0.0,
        rel_l2=rel_l2,
        cosine_similarity=cosine,
        reference_max_abs=ref_max,
        min_atol_to_pass=min_atol,
        allclose=bool(min_atol <= atol),
    )


def topk_agreement(logits: np.ndarray, ref_logits: np.ndarray, k: int = 5) -> tuple[float, float]:
    """(top-1 agreement, mean top-k overlap) of per-sample class scores, shape [N, classes]."""
    if logits.ndim != 2 or logits.shape != ref_logits.shape:
        raise ValueError("top-k agreement needs two [N, classes] arrays of the same shape")
    top1 = float(np.mean(np.argmax(logits, axis=1) == np.argmax(ref_logits, axis=1)))
    k = min(k, logits.shape[1])
    # argsort is stable on ties, so identical inputs give identical sets.
    top_a = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    top_b = np.argsort(-ref_logits, axis=1, kind="stable")[:, :k]
    overlap = [len(set(x) & set(y)) / k for x, y in zip(top_a, top_b, strict=True)]
    return top1, float(np.mean(overlap))


def compare(
    outputs: dict[str, np.ndarray],
    references: dict[str, np.ndarray],
    precision: str,
    classifier_output: str | None = None,
    reference: str = "torch-cpu-fp32",
) -> ParityReport:
    """Compare every reference output; `classifier_output` names the [N, classes] scores."""
    tol = tolerance_for(precision)
    missing = sorted(set(references) - set(outputs))
    if missing:
        raise ValueError(f"outputs missing from the framework's results: {missing}")
    reasons = []
    finite = {}
    for n in references:
        out = np.asarray(outputs[n])
        if np.issubdtype(out.dtype, np.inexact) and (bad := int(np.sum(~np.isfinite(out)))):
            # Said as the failure it is; the metrics (numbers in JSON, never NaN) treat them as 0.
            reasons.append(f"{n}: {bad} of {out.size} values are not finite (NaN or inf)")
            out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
        finite[n] = out
    per_output = [compare_output(n, finite[n], references[n], tol) for n in references]
    for o in per_output:
        if not o.allclose:
            reasons.append(
                f"{o.name}: max abs error {o.max_abs_err:.3g} exceeds atol+rtol*|ref| "
                f"(needs atol >= {o.min_atol_to_pass:.3g})"
            )
        if o.rel_l2 > tol.max_rel_l2:
            reasons.append(f"{o.name}: relative L2 error {o.rel_l2:.3g} > {tol.max_rel_l2:g}")
    top1 = top5 = None
    if classifier_output is not None and classifier_output not in references:
        raise ValueError(f"classifier output {classifier_output!r} is not among the outputs")
    if classifier_output is not None:
        top1, top5 = topk_agreement(finite[classifier_output], references[classifier_output])
        if tol.min_top1_agreement is not None and top1 < tol.min_top1_agreement:
            reasons.append(f"top-1 agreement {top1:.3f} < {tol.min_top1_agreement:g}")
    return ParityReport(
        reference=reference,
        tolerance=tol,
        outputs=per_output,
        top1_agreement=top1,
        top5_overlap=top5,
        verdict="fail" if reasons else "pass",
        reasons=reasons,
    )
