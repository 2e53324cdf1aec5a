"""Deliberate failures, to test that a crashing, hanging or memory-hungry cell cannot take the
matrix down. `DEPLOYBENCH_FAULT=crash|hang|oom` makes `python -m bench run` fail that way just
before it measures, and `nan` makes every output of the framework NaN (a result whose parity
must fail, and stay valid JSON); `DEPLOYBENCH_FAULT=hang:openvino` only in cells of that
framework. The
runner's tests set it on purpose. Unset, it does nothing."""

from __future__ import annotations

import ctypes
import os
import time

from bench.errors import UsageError

FAULTS = ("crash", "hang", "oom", "nan")


def inject_from_env(framework: str) -> None:
    fault, _, only = os.environ.get("DEPLOYBENCH_FAULT", "").partition(":")
    if not fault or (only and only != framework):
        return
    if fault not in FAULTS:
        raise UsageError(f"DEPLOYBENCH_FAULT={fault!r}; valid: {', '.join(FAULTS)}")
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
