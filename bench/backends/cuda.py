"""What every GPU backend needs to know about the CUDA device, without importing a framework.

The driver is asked directly (libcuda through ctypes), so that a GPU cell on a host without a
GPU, or in a container started without the NVIDIA runtime, ends as `skipped` with the reason,
the same way in every image, before a framework gets the chance to fall back to the CPU.
"""

from __future__ import annotations

import ctypes

NO_DRIVER = (
    "no NVIDIA driver here (libcuda.so.1 not found): GPU cells need an NVIDIA GPU and, "
    "in Docker, nvidia-container-toolkit"
)


def cuda_unavailable_reason() -> str | None:
    """Why CUDA cannot run here, or None when at least one device is visible."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return NO_DRIVER
    rc = lib.cuInit(0)
    if rc != 0:
        return f"the NVIDIA driver did not initialise (cuInit returned CUDA error {rc})"
    count = ctypes.c_int(0)
    rc = lib.cuDeviceGetCount(ctypes.byref(count))
    if rc != 0 or count.value == 0:
        return "the NVIDIA driver sees no CUDA device (check CUDA_VISIBLE_DEVICES)"
    return None


def cuda_arch(compute_capability: str) -> str:
    """'9.0' -> 'sm_90': the architecture name compilers take for a compute capability."""
    major, _, minor = compute_capability.strip().partition(".")
    if not major.isdigit() or not (minor or "0").isdigit():
        raise ValueError(f"not a compute capability: {compute_capability!r}")
    return f"sm_{int(major)}{int(minor or 0)}"
