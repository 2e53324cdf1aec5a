"""MetaSchedule's search as every tuning run here drives it: the builder (our candidate build),
the runner, and the live progress of the trials.

Module-level functions: MetaSchedule's build processes import `build_candidate` by name.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import tvm
from tvm.s_tir import meta_schedule as ms

from bench.phase import report_phase


def build_candidate(mod: tvm.IRModule, target: tvm.target.Target, _params: object) -> object:
    """MetaSchedule's default_build less the tensor-intrinsics import: scheduled CPU fp32 code
    is already tensorized (or not) when it gets here. Module-level: build processes import it."""
    from tvm.driver import build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


# MetaSchedule's default of 30 s per candidate build drops candidates on a loaded 2-core host
# (seen: a convolution's build took 35 s while Docker built an image); a dropped candidate is a
# trial lost to the host, not to the schedule. Measurements keep the runner's own timeouts.
CANDIDATE_BUILD_TIMEOUT_S = 180


def tuning_workers(threads: int) -> dict[str, object]:
    """tune_relax's builder (a process a thread, our build_candidate) and runner (one process:
    measurements never overlap), as every MetaSchedule run here uses them."""
    builder = ms.builder.LocalBuilder(
        max_workers=threads, timeout_sec=CANDIDATE_BUILD_TIMEOUT_S, f_build=build_candidate
    )
    return {"builder": builder, "runner": ms.runner.LocalRunner()}


@contextlib.contextmanager
def tuning_progress(work_dir: Path, trials: int, every_s: float = 5.0) -> Iterator[None]:
    """Report "tuning: k/N trials" as the cell's phase while MetaSchedule runs: k is the
    records its database file gained (a line each; cheap to count, unlike loading it)."""
    records = work_dir / "database_tuning_record.json"

    def lines() -> int:
        try:
            with records.open("rb") as f:
                return sum(1 for _ in f)
        except OSError:
            return 0

    start, stop = lines(), threading.Event()

    def poll() -> None:
        while True:
            report_phase(f"tuning: {min(lines() - start, trials)}/{trials} MetaSchedule trials")
            if stop.wait(every_s):
                return

    thread = threading.Thread(target=poll, name="tuning-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
