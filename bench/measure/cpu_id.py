"""Which CPU a number came from, precisely: vendor, family/model/stepping, microarchitecture and
the instruction-set features that change what a framework runs.

"AMD EPYC" names a Zen 3 without AVX-512 and a Zen 4 with AVX-512, VNNI and bf16 alike, and the
same cell is not the same work on both (oneDNN, MLAS and OpenVINO pick other kernels, bf16 and
fp16 cells run or are refused, int8 saturates without VNNI). Machines of one cloud kind come
with either, so every result, report header and comparison names the CPU by this module.

The microarchitecture comes from CPUID's family and model (the tables below, from the vendors'
programming references). A hypervisor may report a model number whose chip lacks the features
the guest sees (a "Rocket Lake" with AMX); then the name is derived from the features instead
and says so, rather than naming a chip that cannot be there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# The instruction-set features that change results, in the order a reader expects them, each
# with the /proc/cpuinfo flags that provide it (any one suffices).
ISA_FEATURES: dict[str, frozenset[str]] = {
    "AVX2": frozenset({"avx2"}),
    "AVX-512": frozenset({"avx512f"}),
    "VNNI": frozenset({"avx512_vnni", "avx_vnni", "avx512vnni"}),
    "bf16": frozenset({"avx512_bf16", "amx_bf16"}),
    "AMX": frozenset({"amx_tile", "amx_bf16", "amx_int8"}),
    "AVX512-FP16": frozenset({"avx512_fp16"}),
}

_AVX2 = frozenset({"AVX2"})
_AVX512 = _AVX2 | {"AVX-512"}
_AVX512_VNNI = _AVX512 | {"VNNI"}
_ZEN4 = _AVX512_VNNI | {"bf16"}
_SPR = _ZEN4 | {"AMX", "AVX512-FP16"}


@dataclass(frozen=True)
class Microarchitecture:
    """A range of CPUID (vendor, family, model[, stepping]) values and what that chip has."""

    vendor: str  # CPUID vendor string
    family: int
    models: tuple[int, ...]
    name: str
    isa: frozenset[str]
    steppings: tuple[int, ...] = ()  # empty: any

    def matches(self, vendor: str, family: int, model: int, stepping: int | None) -> bool:
        if (vendor, family) != (self.vendor, self.family) or model not in self.models:
            return False
        return not self.steppings or stepping in self.steppings


def _r(first: int, last: int) -> tuple[int, ...]:
    return tuple(range(first, last + 1))


AMD, INTEL = "AuthenticAMD", "GenuineIntel"
# Ordered: the first match wins (Intel 0x55 is told apart by its stepping).
MICROARCHITECTURES: tuple[Microarchitecture, ...] = (
    Microarchitecture(AMD, 23, _r(0x00, 0x2F), "Zen/Zen+", _AVX2),
    Microarchitecture(AMD, 23, _r(0x30, 0xFF), "Zen 2", _AVX2),
    Microarchitecture(AMD, 25, _r(0x00, 0x0F), "Zen 3", _AVX2),
    Microarchitecture(AMD, 25, _r(0x10, 0x1F), "Zen 4", _ZEN4),
    Microarchitecture(AMD, 25, _r(0x20, 0x5F), "Zen 3", _AVX2),
    Microarchitecture(AMD, 25, _r(0x60, 0x7F), "Zen 4", _ZEN4),
    Microarchitecture(AMD, 25, _r(0xA0, 0xAF), "Zen 4c", _ZEN4),
    Microarchitecture(AMD, 26, _r(0x00, 0xFF), "Zen 5", _ZEN4),
    Microarchitecture(INTEL, 6, (0x3C, 0x3F, 0x45, 0x46), "Haswell", _AVX2),
    Microarchitecture(INTEL, 6, (0x3D, 0x47, 0x4F, 0x56), "Broadwell", _AVX2),
    Microarchitecture(INTEL, 6, (0x4E, 0x5E, 0x8E, 0x9E, 0xA5, 0xA6), "Skylake client", _AVX2),
    Microarchitecture(INTEL, 6, (0x55,), "Skylake-SP", _AVX512, steppings=_r(0, 4)),
    Microarchitecture(INTEL, 6, (0x55,), "Cascade Lake", _AVX512_VNNI, steppings=_r(5, 7)),
    Microarchitecture(INTEL, 6, (0x55,), "Cooper Lake", _ZEN4, steppings=_r(10, 11)),
    Microarchitecture(INTEL, 6, (0x6A, 0x6C), "Ice Lake-SP", _AVX512_VNNI),
    Microarchitecture(INTEL, 6, (0x7D, 0x7E), "Ice Lake client", _AVX512_VNNI),
    Microarchitecture(INTEL, 6, (0x8C, 0x8D), "Tiger Lake", _AVX512_VNNI),
    Microarchitecture(INTEL, 6, (0xA7,), "Rocket Lake", _AVX512_VNNI),
    Microarchitecture(
        INTEL, 6, (0x97, 0x9A, 0xB7, 0xBA, 0xBF), "Alder/Raptor Lake", _AVX2 | {"VNNI"}
    ),
    Microarchitecture(INTEL, 6, (0xAF,), "Sierra Forest", _AVX2 | {"VNNI"}),
    Microarchitecture(INTEL, 6, (0x8F,), "Sapphire Rapids", _SPR),
    Microarchitecture(INTEL, 6, (0xCF,), "Emerald Rapids", _SPR),
    Microarchitecture(INTEL, 6, (0xAD, 0xAE), "Granite Rapids", _SPR),
)
# A guest whose features exceed its reported model's: named by the least chip that has them.
_CLASSES_BY_FEATURES: tuple[tuple[str, str, frozenset[str]], ...] = (
    (INTEL, "Sapphire Rapids", _SPR),
    (INTEL, "Cooper Lake", _ZEN4),
    (INTEL, "Ice Lake-SP", _AVX512_VNNI),
    (INTEL, "Skylake-SP", _AVX512),
    (INTEL, "Haswell", _AVX2),
    (AMD, "Zen 4", _ZEN4),
    (AMD, "Zen 3", _AVX2),
)
VENDOR_NAMES = {AMD: "AMD", INTEL: "Intel"}


def isa_features(flags: Iterable[str]) -> dict[str, bool]:
    """Each result-changing feature of `ISA_FEATURES`: present in `flags` or not."""
    have = set(flags)
    return {name: bool(provided & have) for name, provided in ISA_FEATURES.items()}


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def microarchitecture(
    vendor: str, family: int | None, model: int | None, stepping: int | None, flags: Iterable[str]
) -> str | None:
    """The chip's name from CPUID; from its features (and said so) when the reported model is
    a chip without them; None when neither tells."""
    features = {name for name, present in isa_features(flags).items() if present}
    if family is not None and model is not None:
        for arch in MICROARCHITECTURES:
            if arch.matches(vendor, family, model, stepping):
                if features <= arch.isa:
                    return arch.name
                break  # a hypervisor's model number: the features decide
    for class_vendor, name, isa in _CLASSES_BY_FEATURES:
        if class_vendor == vendor and isa <= features:
            return f"{name}-class (by its features)"
    return None


def identify(info: dict[str, object]) -> dict[str, object]:
    """The identity fields of a CPU record (`fingerprint.parse_cpuinfo`'s output): vendor,
    microarchitecture, result-changing ISA features, and one summary line for headers."""
    vendor = str(info.get("vendor") or "")
    family, model, stepping = (_int(info.get(k)) for k in ("family", "model_number", "stepping"))
    flags = list(info.get("flags") or [])
    isa = isa_features(flags)
    arch = microarchitecture(vendor, family, model, stepping, flags)
    return {"microarchitecture": arch, "isa": isa, "summary": summary(info, arch, isa)}


def summary(info: dict[str, object], arch: str | None, isa: dict[str, bool]) -> str:
    """E.g. 'AMD EPYC 7B13 — Zen 3 (family 25 model 1 stepping 1); AVX2, no AVX-512'."""
    name = str(info.get("model") or "unknown CPU")
    where = ", ".join(
        f"{label} {info[key]}"
        for label, key in (
            ("family", "family"),
            ("model", "model_number"),
            ("stepping", "stepping"),
        )
        if info.get(key) not in (None, "")
    )
    head = name
    if arch or where:
        head += " — " + (arch or "unknown microarchitecture") + (f" ({where})" if where else "")
    present = [f for f, has in isa.items() if has]
    absent = [f for f, has in isa.items() if not has]
    if present:  # the first missing feature tells the reader where the line is
        features = ", ".join(present) + (f", no {absent[0]}" if absent else "")
    else:  # not x86 (Arm lists asimd, sve, ...), or x86 without AVX2
        features = ", ".join(info.get("flags") or []) or "no AVX2"  # type: ignore[arg-type]
    return f"{head}; {features}"


def describe(cpu: dict[str, object]) -> str:
    """The summary of a recorded CPU, also for results written before it was recorded."""
    if cpu.get("summary"):
        return str(cpu["summary"])
    return identify(cpu)["summary"]  # type: ignore[return-value]


def identity_key(cpu: dict[str, object]) -> tuple[object, ...]:
    """What must be equal for two runs to come from the same kind of CPU."""
    ident = identify(cpu)
    return (
        cpu.get("model"),
        cpu.get("vendor"),
        cpu.get("family"),
        cpu.get("model_number"),
        cpu.get("stepping"),
        ident["microarchitecture"],
        tuple(sorted(k for k, v in ident["isa"].items() if v)),  # type: ignore[union-attr]
    )
