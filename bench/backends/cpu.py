"""What this CPU can compute natively, for the precisions a framework would otherwise emulate.

A framework asked for bf16 on a CPU without bf16 instructions either refuses or emulates it,
slower than fp32; a cell measuring that emulation would rank the framework falsely, so such a
cell is `unsupported` instead. The flags come from /proc/cpuinfo; `DEPLOYBENCH_CPU_FLAGS`
(comma-separated) replaces them, so the check can be exercised on any machine.
"""

from __future__ import annotations

import os

from bench.measure.fingerprint import cpu_info

# x86: AVX-512 BF16 or AMX; Arm: the BF16 extension.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_flags() -> frozenset[str]:
    if (forced := os.environ.get("DEPLOYBENCH_CPU_FLAGS")) is not None:
        return frozenset(f.strip() for f in forced.split(",") if f.strip())
    return frozenset(cpu_info()["flags"])


def bf16_unsupported_reason() -> str | None:
    """Why bf16 would be emulated here, or None when the CPU computes it natively."""
    if cpu_flags() & BF16_FLAGS:
        return None
    return f"this CPU has no native bf16 ({', '.join(sorted(BF16_FLAGS))} absent from its flags)"
