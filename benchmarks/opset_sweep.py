#!/usr/bin/env python3
"""Which ONNX opsets a model exports at, and which of those each CPU framework runs correctly.

    .venv/bin/python benchmarks/opset_sweep.py --model efficientnet_b0 [--opsets 9-21]
        [--frameworks onnxruntime,openvino,tvm] [--out results/opsets-efficientnet_b0]

For every opset: export with the TorchScript exporter (it covers old opsets) and, from opset 18,
with the dynamo exporter too; then run each framework's cell on the artifact (short timing: this
checks acceptance and parity, not speed). Writes `opsets.json` (every attempt, with the
framework's message when it refused, and the environment) and `opsets.md` (the table), and
names the highest opset every framework runs with parity passing: the model's default opset
(`ModelSpec.opset`) should be that one.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cell import Cell
from bench.export import ExportSpec, export
from bench.fsutil import atomic_write_text
from bench.measure.fingerprint import fingerprint
from bench.measure.timing import TimingConfig
from bench.run import run_cell

ACCEPTANCE = TimingConfig(warmup_min_iters=1, warmup_min_s=0.0, min_iters=3, min_s=0.0)


def _range(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def sweep(model: str, opsets: list[int], frameworks: list[str], work: Path) -> list[dict]:
    rows = []
    for opset in opsets:
        for exporter in ("torchscript", "dynamo"):
            if exporter == "dynamo" and opset < 18:
                continue  # the dynamo exporter writes opset 18 and up
            row: dict = {"opset": opset, "exporter": exporter, "frameworks": {}}
            try:
                artifact, _ = export(
                    ExportSpec(model=model, opset=opset, exporter=exporter), work / "artifacts"
                )
                row["export"] = "ok"
                row["opset_written"] = artifact.meta["opset"]
            except Exception as exc:  # every exporter failure is an answer for this opset
                row["export"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                row["export_log_tail"] = "".join(traceback.format_exc().splitlines(True)[-5:])
                rows.append(row)
                print(f"opset {opset} {exporter}: export failed", flush=True)
                continue
            for framework in frameworks:
                result = run_cell(Cell(model=model, framework=framework), artifact, ACCEPTANCE)
                row["frameworks"][framework] = {
                    "status": result.status,
                    "parity": (result.parity or {}).get("verdict"),
                    "reason": result.reason.splitlines()[0][:300] if result.reason else None,
                }
                print(f"opset {opset} {exporter} {framework}: {result.status}", flush=True)
            rows.append(row)
    return rows


def best(rows: list[dict], frameworks: list[str]) -> dict | None:
    """The highest opset (dynamo first at equal opsets) every framework runs with parity."""
    good = [
        r
        for r in rows
        if r.get("export") == "ok"
        and all(
            r["frameworks"].get(f, {}).get("status") == "ok"
            and r["frameworks"][f].get("parity") == "pass"
            for f in frameworks
        )
    ]
    return max(good, key=lambda r: (r["opset"], r["exporter"] == "dynamo"), default=None)


def markdown(model: str, rows: list[dict], frameworks: list[str], chosen: dict | None) -> str:
    head = ["opset", "exporter", "export", *frameworks]
    lines = [f"# ONNX opsets of {model}", "", "| " + " | ".join(head) + " |"]
    lines.append("|" + " --- |" * len(head))
    for r in rows:
        cells = [str(r["opset"]), r["exporter"], "ok" if r["export"] == "ok" else "FAILED"]
        for f in frameworks:
            fr = r["frameworks"].get(f)
            if fr is None:
                cells.append("-")
            elif fr["status"] == "ok":
                cells.append("ok" if fr["parity"] == "pass" else "PARITY FAIL")
            else:
                cells.append(f"{fr['status']}: {fr['reason'] or ''}"[:120].replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    pick = f"opset {chosen['opset']} ({chosen['exporter']})" if chosen else "none"
    lines += ["", f"Highest opset every framework runs with parity passing: {pick}.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_b0")
    parser.add_argument("--opsets", default="9-21", help="a range, e.g. 9-21")
    parser.add_argument("--frameworks", default="onnxruntime,openvino,tvm")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    frameworks = args.frameworks.split(",")
    out = args.out or Path("results") / f"opsets-{args.model}"
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="opset-sweep-") as tmp:
        rows = sweep(args.model, _range(args.opsets), frameworks, Path(tmp))
    chosen = best(rows, frameworks)
    doc = {
        "model": args.model,
        "frameworks": frameworks,
        "rows": rows,
        "best": chosen and {"opset": chosen["opset"], "exporter": chosen["exporter"]},
        "environment": fingerprint(),
    }
    atomic_write_text(out / "opsets.json", json.dumps(doc, indent=2) + "\n")
    manifest = {
        "kind": "opset-sweep",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "started_at": started,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": doc["environment"],
        "files": ["opsets.json", "opsets.md"],
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    atomic_write_text(out / "opsets.md", markdown(args.model, rows, frameworks, chosen))
    print(markdown(args.model, rows, frameworks, chosen))
    return 0 if chosen else 1


if __name__ == "__main__":
    sys.exit(main())
