"""Naming the CPU a number came from: CPUID identity -> microarchitecture, the ISA features that
change results, and the summary line every report header carries. The /proc/cpuinfo texts are
those of the machines this project has run on (two AMD EPYCs, an Intel guest) and of
well-known chips."""

from __future__ import annotations

import pytest

from bench.measure import cpu_id
from bench.measure.fingerprint import parse_cpuinfo

ZEN3_FLAGS = "fpu sse sse2 ssse3 sse4_1 sse4_2 fma avx avx2 f16c bmi2 sha_ni"
ZEN4_FLAGS = (
    ZEN3_FLAGS + " avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni avx512_bf16 avx512vbmi"
)
SPR_FLAGS = ZEN4_FLAGS + " amx_bf16 amx_tile amx_int8 avx512_fp16 avx_vnni"


def cpuinfo(vendor: str, family: int, model: int, stepping: int, name: str, flags: str) -> str:
    return (
        "processor\t: 0\n"
        f"vendor_id\t: {vendor}\n"
        f"cpu family\t: {family}\n"
        f"model\t\t: {model}\n"
        f"model name\t: {name}\n"
        f"stepping\t: {stepping}\n"
        f"flags\t\t: {flags}\n\n"
    )


def test_zen3_epyc_is_named_zen3_without_avx512():
    info = parse_cpuinfo(cpuinfo("AuthenticAMD", 25, 1, 1, "AMD EPYC 7B13", ZEN3_FLAGS))
    assert (info["vendor"], info["family"], info["model_number"], info["stepping"]) == (
        "AuthenticAMD",
        25,
        1,
        1,
    )
    assert info["microarchitecture"] == "Zen 3"
    assert info["isa"] == {
        "AVX2": True,
        "AVX-512": False,
        "VNNI": False,
        "bf16": False,
        "AMX": False,
        "AVX512-FP16": False,
    }
    assert info["summary"] == (
        "AMD EPYC 7B13 — Zen 3 (family 25, model 1, stepping 1); AVX2, no AVX-512"
    )


def test_zen4_epyc_has_avx512_vnni_bf16_and_no_amx():
    info = parse_cpuinfo(cpuinfo("AuthenticAMD", 25, 17, 0, "AMD EPYC 9B14", ZEN4_FLAGS))
    assert info["microarchitecture"] == "Zen 4"
    assert info["summary"] == (
        "AMD EPYC 9B14 — Zen 4 (family 25, model 17, stepping 0); AVX2, AVX-512, VNNI, bf16, no AMX"
    )


def test_the_two_epycs_are_different_cpus_though_their_names_share_amd_epyc():
    zen3 = parse_cpuinfo(cpuinfo("AuthenticAMD", 25, 1, 1, "AMD EPYC", ZEN3_FLAGS))
    zen4 = parse_cpuinfo(cpuinfo("AuthenticAMD", 25, 17, 0, "AMD EPYC", ZEN4_FLAGS))
    assert cpu_id.identity_key(zen3) != cpu_id.identity_key(zen4)
    assert cpu_id.identity_key(zen3) == cpu_id.identity_key(dict(zen3))


def test_sapphire_rapids_by_its_model_number():
    info = parse_cpuinfo(
        cpuinfo("GenuineIntel", 6, 143, 8, "Intel(R) Xeon(R) Platinum 8480+", SPR_FLAGS)
    )
    assert info["microarchitecture"] == "Sapphire Rapids"
    assert info["summary"].endswith("; AVX2, AVX-512, VNNI, bf16, AMX, AVX512-FP16")


def test_a_guest_whose_model_number_lacks_its_features_is_named_by_the_features():
    # A KVM guest seen here: family 6 model 167 is Rocket Lake, which has no AMX.
    info = parse_cpuinfo(
        cpuinfo("GenuineIntel", 6, 167, 1, "Intel(R) Xeon(R) Processor", SPR_FLAGS)
    )
    assert info["microarchitecture"] == "Sapphire Rapids-class (by its features)"
    assert "(family 6, model 167, stepping 1)" in info["summary"]


@pytest.mark.parametrize(
    ("stepping", "flags", "name"),
    [
        (4, ZEN3_FLAGS + " avx512f", "Skylake-SP"),
        (7, ZEN3_FLAGS + " avx512f avx512_vnni", "Cascade Lake"),
        (11, ZEN4_FLAGS, "Cooper Lake"),
    ],
)
def test_intel_model_85_is_told_apart_by_stepping(stepping, flags, name):
    assert cpu_id.microarchitecture("GenuineIntel", 6, 85, stepping, flags.split()) == name


def test_an_unknown_chip_is_not_given_a_name():
    assert cpu_id.microarchitecture("HygonGenuine", 24, 1, 1, ["avx2"]) is None
    info = parse_cpuinfo(cpuinfo("HygonGenuine", 24, 1, 1, "Hygon C86", ZEN3_FLAGS))
    assert info["summary"] == (
        "Hygon C86 — unknown microarchitecture (family 24, model 1, stepping 1); AVX2, no AVX-512"
    )


def test_a_result_written_before_the_identity_was_recorded_is_still_described():
    # Version-2 results have the model name and the relevant flags only.
    old = {"model": "AMD EPYC 7B13", "flags": ["avx", "avx2", "fma"]}
    assert cpu_id.describe(old) == "AMD EPYC 7B13; AVX2, no AVX-512"
    new = parse_cpuinfo(cpuinfo("AuthenticAMD", 25, 1, 1, "AMD EPYC 7B13", ZEN3_FLAGS))
    assert cpu_id.describe(new) == new["summary"]


def test_vnni_counts_from_avx_vnni_too():
    assert cpu_id.isa_features(["avx2", "avx_vnni"])["VNNI"] is True
    assert cpu_id.isa_features(["avx2"])["VNNI"] is False
