"""Deliberate faults, to test that a crashing, hanging or memory-hungry cell cannot take the
matrix down, and that a real slowdown is found. `DEPLOYBENCH_FAULT=crash|hang|oom` makes
`python -m bench run` fail that way just before it measures; `nan` makes every output of the
framework NaN (a result whose parity must fail, and stay valid JSON); `slow=0.1` makes every
timed call 10% slower (busy work for a tenth of the call's own time, after it);
`DEPLOYBENCH_FAULT=hang:openvino` only in cells of that framework. The runner's tests, the
fault benchmark and the reproducibility benchmark set it on purpose. Unset, it does nothing."""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable

from bench.errors import UsageError

FAULTS = ("crash", "hang", "oom", "nan", "slow=FRACTION")


def _fault(framework: str) -> tuple[str, str]:
    """(fault name, its value) asked for this framework's cells; ("", "") when none."""
    fault, _, only = os.environ.get("DEPLOYBENCH_FAULT", "").partition(":")
    if not fault or (only and only != framework):
        return "", ""
    name, _, value = fault.partition("=")
    if name not in {f.split("=")[0] for f in FAULTS}:
        raise UsageError(f"DEPLOYBENCH_FAULT={fault!r}; valid: {', '.join(FAULTS)}")
    return name, value


def slowdown_from_env(framework: str) -> float:
    """The fraction by which `slow=FRACTION` makes each timed call slower (0: no fault)."""
    name, value = _fault(framework)
    if name != "slow":
        return 0.0
    try:
        fraction = float(value)
    except ValueError:
        fraction = -1.0
    if not 0 < fraction <= 10:
        raise UsageError(f"DEPLOYBENCH_FAULT=slow={value}: a fraction in (0, 10], e.g. slow=0.1")
    return fraction


def slowed(fn: Callable[[], object], fraction: float) -> Callable[[], object]:
    """`fn` followed by busy work for `fraction` of its own duration: a call that is slower by
    a known fraction whatever the machine's speed (a sleep would free the CPU instead)."""
    if fraction <= 0:
        return fn

    def call() -> object:
        t0 = time.perf_counter_ns()
        out = fn()
        now = time.perf_counter_ns()
        until = now + (now - t0) * fraction
        while time.perf_counter_ns() < until:
            pass
        return out

    return call


def inject_from_env(framework: str) -> None:
    fault, _ = _fault(framework)
    if not fault or fault == "slow":
        return
    if fault == "crash":
        # A real invalid memory access, as in a framework's native code: the kernel delivers
        # this SIGSEGV even to PID 1 of a container, which ignores a SIGSEGV sent by kill().
        ctypes.string_at(0)
    elif fault == "nan":
        _nan_outputs(framework)
    elif fault == "hang":
        while True:
            time.sleep(3600)
    else:
        hog = []
        while True:  # touch every page, so the memory is really committed
            hog.append(bytearray(b"\x01") * (64 << 20))


def _nan_outputs(framework: str) -> None:
    """Every float output of the framework's backend becomes NaN, as a broken kernel's would."""
    import numpy as np

    from bench.backends import BACKENDS

    backend = BACKENDS.get(framework).load_class()
    infer = backend.infer

    def nan_infer(self: object, feed: dict) -> dict:
        outputs = infer(self, feed)
        return {
            k: np.full_like(v, np.nan) if np.issubdtype(v.dtype, np.floating) else v
            for k, v in outputs.items()
        }

    backend.infer = nan_infer
