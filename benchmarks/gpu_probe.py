"""Benchmark (not a test): how much of a host-timed GPU run is the device's work, four ways,
and what the NVML poller costs a timed loop.

For each model and batch, eager PyTorch in fp32 and fp16 on CUDA device 0:
- host: the host clock around run + torch.cuda.synchronize (what device_compute_only times);
- events: CUDA events recorded on the stream before and after the run (the device's clock,
  first kernel's start to last kernel's end, idle gaps between launches included);
- profiler: the device busy time per run from torch.profiler's kernel timeline (the union of
  kernel, copy and memset intervals: gaps excluded), as bench/measure/device_busy.py does;
- graph: the same model captured in a CUDA graph and replayed (launch cost removed), host-timed.
A host time well above the profiler's busy time is launch-bound: the host's time, not the GPU's.
The poller's cost: the host-timed loop again while bench.measure.gpu's NVML thread samples every
10 ms (as it did inside timed loops before it was paused there), against without it.

    python benchmarks/gpu_probe.py OUT.json [--runs N]
Without a CUDA device it writes {"skipped": reason} and exits 0 (the CPU dry run).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.backends.cuda import cuda_unavailable_reason

MODELS = ("resnet50", "mobilenet_v3_large")
BATCHES = (1, 32)
PRECISIONS = ("fp32", "fp16")


def _median_ms(samples_ns: list[int]) -> float:
    return round(statistics.median(samples_ns) / 1e6, 4)


def _host_timed(fn: Callable[[], object], runs: int) -> float:
    import torch

    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        torch.cuda.synchronize()
        samples.append(time.perf_counter_ns() - t0)
    return _median_ms(samples)


def _event_timed(fn: Callable[[], object], runs: int) -> float:
    import torch

    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return round(statistics.median(times), 4)


def _graph(model: Any, x: Any) -> Any:  # torch types: torch is imported lazily
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.inference_mode():
        for _ in range(3):
            model(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        model(x)
    return graph


def probe_one(name: str, batch: int, precision: str, runs: int) -> dict:
    import torch

    from bench.backends.pytorch import DTYPES, profile_device_busy
    from bench.measure.device_busy import LAUNCH_BOUND_BELOW
    from bench.measure.gpu import GpuMonitor
    from bench.models import MODELS as SPECS
    from bench.models.build import as_graph, build_model

    spec = SPECS.get(name)
    calibration = torch.randn(2, 3, 224, 224)
    model = as_graph(build_model(spec, "random", seed=0, calibration=calibration), spec)
    dtype = DTYPES[precision]
    model = model.to("cuda", dtype).eval()
    x = torch.randn(batch, 3, 224, 224, device="cuda", dtype=dtype)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False

    def run() -> None:
        with torch.inference_mode():
            model(x)

    for _ in range(10):  # warm-up: cuDNN's autotuning, allocations
        run()
    torch.cuda.synchronize()
    host = _host_timed(run, runs)
    events = _event_timed(run, runs)
    _, busy = profile_device_busy(lambda: (run(), torch.cuda.synchronize()), 20)
    graph = _graph(model, x)
    replay = _host_timed(graph.replay, runs)
    # Alternating blocks, so that a drift of the GPU's clocks favours neither side.
    polled_blocks, quiet_blocks, source = [], [], None
    for _ in range(2):
        monitor = GpuMonitor()
        monitor.start()  # its thread samples every 10 ms from here: never paused in this block
        polled_blocks.append(_host_timed(run, max(runs // 2, 1)))
        source = monitor.finish().get("source")
        quiet_blocks.append(_host_timed(run, max(runs // 2, 1)))
    polled, quiet = statistics.mean(polled_blocks), statistics.mean(quiet_blocks)
    fraction = None if busy is None else round(busy / host, 3)
    return {
        "model": name,
        "batch": batch,
        "precision": precision,
        "runs": runs,
        "host_ms": host,
        "events_ms": events,
        "profiler_busy_ms": None if busy is None else round(busy, 4),
        "graph_replay_ms": replay,
        "busy_fraction": fraction,
        "launch_bound": fraction is not None and fraction < LAUNCH_BOUND_BELOW,
        "poller": {
            "source": source,
            "with_poller_ms": round(polled, 4),
            "without_ms": round(quiet, 4),
            "cost_pct": round(100 * (polled - quiet) / quiet, 2) if quiet else None,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--deadline-s", type=float, default=90.0, help="stop starting probes")
    args = parser.parse_args()
    if reason := cuda_unavailable_reason():
        args.out.write_text(json.dumps({"skipped": reason}, indent=1) + "\n")
        print(f"gpu_probe: skipped: {reason}")
        return 0
    import torch

    started = time.monotonic()
    doc: dict = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "probes": []}
    for name, batch, precision in itertools.product(MODELS, BATCHES, PRECISIONS):
        if time.monotonic() - started > args.deadline_s:
            doc["stopped"] = f"deadline of {args.deadline_s} s reached"
            break
        try:
            probe = probe_one(name, batch, precision, args.runs)
        except Exception as exc:  # one probe's failure is a line, not the end
            probe = {"model": name, "batch": batch, "precision": precision,
                     "error": f"{type(exc).__name__}: {exc}"[:400]}  # fmt: skip
        doc["probes"].append(probe)
        print(json.dumps(probe), flush=True)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")  # every probe kept
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
