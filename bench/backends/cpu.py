"""What this CPU can compute natively, and what each framework recommends for it.

- bf16: a framework asked for bf16 on a CPU without bf16 instructions either refuses or
  emulates it, slower than fp32; a cell measuring that emulation would rank the framework
  falsely, so such a cell is `unsupported` instead.
- int8: x86 CPUs without VNNI multiply uint8 activations by int8 weights with `vpmaddubsw`,
  whose 16-bit sums of pairs saturate; every framework documents a fix for such CPUs (7-bit
  weights or activations), which costs accuracy where VNNI makes it unnecessary. So the int8
  recipe is chosen from the CPU flags (`int8_cpu_settings`) and recorded in the result.

The flags come from /proc/cpuinfo; `DEPLOYBENCH_CPU_FLAGS` (comma-separated) replaces them, so
the other CPU's paths can be exercised on any machine (the fingerprint records the override).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from bench.measure.cpu_id import ISA_FEATURES
from bench.measure.fingerprint import cpu_info

# x86: AVX-512 BF16 or AMX; Arm: the BF16 extension.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
# x86 int8 dot products without the saturating 16-bit intermediate: AVX512-VNNI, AVX-VNNI, AMX.
VNNI_FLAGS = ISA_FEATURES["VNNI"] | {"amx_int8"}


@dataclass(frozen=True)
class Int8Guidance:
    """A framework's int8 settings for x86 CPUs without VNNI and with it, and where it says so."""

    without_vnni: dict[str, object]
    with_vnni: dict[str, object]
    source: str


# What each framework's own documentation recommends for int8 on an x86 CPU without VNNI (the
# saturation above). The cell's recipe records the setting it got and this source.
INT8_WITHOUT_VNNI: dict[str, Int8Guidance] = {
    "onnxruntime": Int8Guidance(
        {"reduce_range": True},
        {"reduce_range": False},
        "ONNX Runtime, 'Quantize ONNX models', when to try U8U8: VPMADDUBSW saturates on "
        "AVX2/AVX-512 without VNNI; use reduce_range (7-bit weights) or U8U8",
    ),
    "torch": Int8Guidance(
        {"reduce_range": True},
        {"reduce_range": False},
        "torchao get_default_x86_inductor_quantization_config: reduce_range 'to True on "
        "earlier CPUs without VNNI to avoid accuracy issue' (7-bit activations)",
    ),
    # NNCF's default, FIRST_LAYER, is its advice for CPUs without VNNI; with VNNI nothing
    # saturates, and the full range of the first layer's weights is kept.
    "openvino": Int8Guidance(
        {"overflow_fix": "first_layer_only"},
        {"overflow_fix": "disable"},
        "nncf OverflowFix: 8-bit instructions of CPUs without VNNI saturate; FIRST_LAYER (half "
        "the weight range of the first convolutions) is recommended on AVX2/AVX-512",
    ),
}


def cpu_flags() -> frozenset[str]:
    if (forced := os.environ.get("DEPLOYBENCH_CPU_FLAGS")) is not None:
        return frozenset(f.strip() for f in forced.split(",") if f.strip())
    return frozenset(cpu_info()["flags"])


def bf16_unsupported_reason() -> str | None:
    """Why bf16 would be emulated here, or None when the CPU computes it natively."""
    if cpu_flags() & BF16_FLAGS:
        return None
    return f"this CPU has no native bf16 ({', '.join(sorted(BF16_FLAGS))} absent from its flags)"


def int8_saturates() -> bool:
    """True on an x86 CPU whose int8 kernels saturate: no VNNI (nor AMX) in its flags."""
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    return x86 and not cpu_flags() & VNNI_FLAGS


def int8_cpu_settings(framework: str) -> dict[str, object]:
    """The framework's int8 settings for this CPU, for its recipe: what it recommends without
    VNNI, the full 8-bit range with it; `cpu_int8` says which and why."""
    guidance = INT8_WITHOUT_VNNI[framework]
    if int8_saturates():
        return {**guidance.without_vnni, "cpu_int8": f"no VNNI: {guidance.source}"}
    return {**guidance.with_vnni, "cpu_int8": "VNNI: no saturation, the full 8-bit range"}
