"""The answer a report leads with: for each model, device and batch size, the fastest cell whose
parity passes, its speed-up over the PyTorch reference with the interval and verdict, and every
other framework that cannot be told apart from it (a tie within the equivalence band).

A faster cell that changes the answers is not a configuration anyone could ship: it is never
the answer, but the answer says how many such cells were faster, so nobody wonders where they
went. Pure functions over results; report.md, report.html, report.json and the terminal summary
print the same answers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from bench.measure.rounds import DEFAULT_EQUIVALENCE_BAND
from bench.result import CellResult
from runner.report import estimates, tables


@dataclass(frozen=True)
class Answer:
    """One (model, device, batch) question's answer."""

    model: str  # with its pool host, where there is one: `resnet50 [host gpu-box]`
    device: str
    batch_size: int
    fastest: str | None  # label and precision, e.g. "openvino int8"; None: no cell passed
    framework: str | None
    latency_ms: dict[str, float] | None  # value, low, high
    one_slot: bool  # the interval is one round's iterations
    speedup: dict[str, object] | None  # value, low, high, verdict: over torch eager fp32
    ties: list[str] = field(default_factory=list)  # other frameworks' best cells tied with it
    faster_but_failed_parity: int = 0
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def answer_for(
    model: str,
    device: str,
    batch: int,
    cells: list[CellResult],
    results: list[CellResult],
    band: float = DEFAULT_EQUIVALENCE_BAND,
) -> Answer:
    """The answer for one group's cells of one batch size (`results`: where its reference is)."""
    ok = [r for r in cells if r.status == "ok" and r.timing]
    # The same ranking as the best-configuration table: each framework's fastest passing cell.
    ranked = tables.best_per_framework(cells, batch)
    if not ranked:
        failed = len(ok)
        note = f"no cell passed parity ({failed} ran)" if failed else "no cell ran to a result"
        return Answer(model, device, batch, None, None, None, False, None, note=note)
    leader = ranked[0]
    lead_ms = estimates.latency(leader)
    tied = tables.tied_with_leader(ranked, band)
    ties = [f"{tables.label(r.cell)} {r.cell['precision']}" for r in tied]
    faster_failed = sum(
        1 for r in ok if not r.parity_passed and estimates.latency(r).value < lead_ms.value
    )
    speedup = None
    if (up := tables.speedup(leader, results, band)) is not None:
        if tables.reference(leader, results) is leader:
            speedup = {"value": 1.0, "low": 1.0, "high": 1.0, "verdict": "reference"}
        else:
            speedup = {
                "value": up.value, "low": up.low, "high": up.high, "verdict": up.verdict.word
            }  # fmt: skip
    return Answer(
        model,
        device,
        batch,
        f"{tables.label(leader.cell)} {leader.cell['precision']}",
        tables.framework_name(leader.cell),
        {"value": lead_ms.value, "low": lead_ms.low, "high": lead_ms.high},
        lead_ms.rounds < 2,
        speedup,
        ties,
        faster_failed,
    )


def answers(results: list[CellResult], band: float = DEFAULT_EQUIVALENCE_BAND) -> list[Answer]:
    """Every (model, device, batch) of the results, in matrix order."""
    out = []
    for (device, model), group in tables.groups(results).items():
        for batch in sorted({r.cell["batch_size"] for r in group}):
            cells = [r for r in group if r.cell["batch_size"] == batch]
            out.append(answer_for(model, device, batch, cells, results, band))
    return out


ANSWER_HEADERS = (
    "model",
    "device",
    "batch",
    "fastest passing",
    "median ms [95% CI]",
    "vs torch [95% CI]",
    "tied with it",
)


def _speedup_text(answer: Answer) -> str:
    s = answer.speedup
    if s is None:
        return "- (no torch eager fp32 cell)"
    if s["verdict"] == "reference":
        return "1.00x (it is the reference)"
    star = "*" if answer.one_slot else ""
    return f"{s['value']:.2f}x [{s['low']:.2f}, {s['high']:.2f}]{star} {s['verdict']}"


def rows(items: list[Answer]) -> list[tuple[str, ...]]:
    out = []
    for a in items:
        if a.fastest is None:
            out.append((a.model, a.device, str(a.batch_size), a.note, "-", "-", "-"))
            continue
        ms = a.latency_ms or {}
        star = "*" if a.one_slot else ""
        fastest = a.fastest
        if a.faster_but_failed_parity:
            fastest += f" ({a.faster_but_failed_parity} faster cells failed parity)"
        out.append(
            (
                a.model,
                a.device,
                str(a.batch_size),
                fastest,
                f"{ms['value']:.3f} [{ms['low']:.3f}, {ms['high']:.3f}]{star}",
                _speedup_text(a),
                ", ".join(a.ties) or "none",
            )
        )
    return out


ANSWER_LEGEND = (
    "The answer: per model, device and batch, the fastest cell whose parity passes; tied "
    "with it: other frameworks' fastest passing cells whose time ratio to it is not beyond "
    "±{band:.0%} (the whole interval). * marks an interval from one round's iterations."
)
