"""The environment fingerprint: /proc/cpuinfo parsing and the recorded keys."""

from __future__ import annotations

import jsonschema

from bench.measure import fingerprint as fp
from bench.result import schema

FLAGS = (
    "fpu vme pse mmx sse sse2 ht ssse3 sse4_1 sse4_2 fma avx avx2 f16c "
    "avx512f avx512bw avx512_vnni amx_bf16 pni"
)


def cpu_block(processor, physical_id, core_id):
    return (
        f"processor\t: {processor}\n"
        "vendor_id\t: GenuineIntel\n"
        "model\t\t: 143\n"
        "model name\t: Intel(R) Xeon(R) Platinum 8480+\n"
        f"physical id\t: {physical_id}\n"
        "siblings\t: 2\n"
        f"core id\t\t: {core_id}\n"
        f"flags\t\t: {FLAGS}\n\n"
    )


# 2 sockets x 2 cores, one thread each: core id 0 exists on both sockets
TWO_BY_TWO = "".join(
    cpu_block(p, phys, core) for p, (phys, core) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)])
)
# 2 sockets x 1 core x 2 hyperthreads: 4 processors, 2 physical cores
HYPERTHREADED = "".join(
    cpu_block(p, phys, core) for p, (phys, core) in enumerate([(0, 0), (0, 0), (1, 0), (1, 0)])
)


def test_parse_cpuinfo_counts_socket_core_pairs():
    info = fp.parse_cpuinfo(TWO_BY_TWO)
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["physical_cores"] == 4


def test_parse_cpuinfo_hyperthreads_count_once():
    assert fp.parse_cpuinfo(HYPERTHREADED)["physical_cores"] == 2


def test_parse_cpuinfo_keeps_only_relevant_flags():
    assert fp.parse_cpuinfo(TWO_BY_TWO)["flags"] == [
        "amx_bf16",
        "avx",
        "avx2",
        "avx512_vnni",
        "avx512bw",
        "avx512f",
        "f16c",
        "fma",
        "sse4_2",
    ]


def test_parse_cpuinfo_arm(monkeypatch):
    monkeypatch.setattr(fp.platform, "processor", lambda: "")
    monkeypatch.setattr(fp.platform, "machine", lambda: "aarch64")
    text = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimdhp asimdrdm asimddp\n"
    info = fp.parse_cpuinfo(text)
    assert info["model"] == "aarch64" and info["physical_cores"] is None
    assert info["flags"] == ["asimd", "asimddp", "asimdhp", "asimdrdm"]
    assert info["vendor"] is info["family"] is info["microarchitecture"] is None
    assert not any(info["isa"].values())  # the x86 features: none
    assert info["summary"] == "aarch64; asimd, asimddp, asimdhp, asimdrdm"


def test_fingerprint_matches_schema(monkeypatch):
    monkeypatch.setenv("DEPLOYBENCH_GIT_REVISION", "0123abc")
    env = fp.fingerprint()
    required = ["cpu", "memory_total_gib", "os", "python", "packages", "container"]
    required += ["git_revision", "gpus"]
    assert set(required) <= set(env)
    assert {"model", "flags", "logical_cores", "affinity_cores"} <= set(env["cpu"])
    assert {"in_container", "image", "image_digest"} <= set(env["container"])
    jsonschema.validate(
        env, schema()["properties"]["environment"], cls=jsonschema.Draft202012Validator
    )


def test_fingerprint_container_from_env(monkeypatch):
    monkeypatch.setenv("DEPLOYBENCH_IMAGE", "deploybench/ort:1.22")
    monkeypatch.setenv("DEPLOYBENCH_IMAGE_DIGEST", "sha256:feedface")
    monkeypatch.setenv("DEPLOYBENCH_GIT_REVISION", "0123abc")
    container = fp.fingerprint()["container"]
    assert container["image"] == "deploybench/ort:1.22"
    assert container["image_digest"] == "sha256:feedface"


def test_fingerprint_container_unset(monkeypatch):
    monkeypatch.delenv("DEPLOYBENCH_IMAGE", raising=False)
    monkeypatch.delenv("DEPLOYBENCH_IMAGE_DIGEST", raising=False)
    monkeypatch.setenv("DEPLOYBENCH_GIT_REVISION", "0123abc")
    container = fp.fingerprint()["container"]
    assert (container["image"], container["image_digest"]) == (None, None)


def test_git_revision_env_override(monkeypatch):
    monkeypatch.setenv("DEPLOYBENCH_GIT_REVISION", "cafe1234-dirty")
    assert fp.git_revision() == "cafe1234-dirty"
    assert fp.fingerprint()["git_revision"] == "cafe1234-dirty"


def test_thread_env_lists_only_set_variables(monkeypatch):
    for name in fp.THREAD_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.setenv("DEPLOYBENCH_GIT_REVISION", "0123abc")
    assert fp.fingerprint()["thread_env"] == {"OMP_NUM_THREADS": "4"}


def test_gpu_query_parsing():
    from bench.measure.fingerprint import parse_gpu_query

    text = "0, NVIDIA H200, GPU-5d2c, 143771 MiB, 580.95.05, 9.0, 1980 MHz, 700.00 W, Enabled\n\n"
    assert parse_gpu_query(text) == [
        {
            "index": "0",
            "name": "NVIDIA H200",
            "uuid": "GPU-5d2c",
            "memory.total": "143771 MiB",
            "driver_version": "580.95.05",
            "compute_cap": "9.0",
            "clocks.max.sm": "1980 MHz",
            "power.limit": "700.00 W",
            "persistence_mode": "Enabled",
        }
    ]
