"""The comparison table printed at the end of a run."""

from __future__ import annotations

from bench.result import CellResult

HEADERS = (
    "model",
    "framework",
    "device",
    "prec",
    "batch",
    "status",
    "median ms [95% CI]",
    "p99 ms",
    "samples/s",
    "vs torch",
    "parity (worst rel L2)",
)


def _speedup(result: CellResult, results: list[CellResult]) -> str:
    """Speed-up over PyTorch eager fp32 of the same model, device and batch size."""
    cell = result.cell
    for ref in results:
        rc = ref.cell
        if (
            ref.status == "ok"
            and rc["framework"] == "torch"
            and rc["precision"] == "fp32"
            and not rc["options"]
            and (rc["model"], rc["device"], rc["batch_size"])
            == (cell["model"], cell["device"], cell["batch_size"])
        ):
            return f"{ref.timing['stats']['median_ms'] / result.timing['stats']['median_ms']:.2f}x"
    return "-"


def rows(results: list[CellResult]) -> list[tuple[str, ...]]:
    out = []
    for r in results:
        c = r.cell
        head = (c["model"], c["framework"], c["device"], c["precision"], str(c["batch_size"]))
        if r.status != "ok":
            out.append((*head, r.status, "-", "-", "-", "-", (r.reason or "").splitlines()[0][:60]))
            continue
        s = r.timing["stats"]
        verdict = "pass" if r.parity_passed else "FAIL"
        out.append(
            (
                *head,
                "ok",
                f"{s['median_ms']:.3f} "
                f"[{s['median_ci95_low_ms']:.3f}, {s['median_ci95_high_ms']:.3f}]",
                f"{s['p99_ms']:.3f}",
                f"{r.timing['throughput_sps']:.1f}",
                _speedup(r, results),
                f"{verdict} ({r.parity['worst_rel_l2']:.1e})",
            )
        )
    return out


def table(results: list[CellResult]) -> str:
    """A fixed-width text table of the results."""
    body = rows(results)
    widths = [
        max(len(h), *(len(row[i]) for row in body)) if body else len(h)
        for i, h in enumerate(HEADERS)
    ]
    line = "  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in body]
    return "\n".join([line, rule, *lines])
