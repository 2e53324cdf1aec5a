"""The environment fingerprint recorded in every result: enough to tell two hosts apart.

Reads only the OS (/proc, platform, package metadata, git); it imports no framework, so it is
cheap and identical in every image. The container image and its digest cannot be seen from
inside a container, so the runner passes them in `DEPLOYBENCH_IMAGE` and
`DEPLOYBENCH_IMAGE_DIGEST`.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from bench.measure.cpu_id import identify

# Distributions whose versions change results. Absent ones are simply not listed.
RELEVANT_PACKAGES = (
    "deploybench",
    "numpy",
    "torch",
    "torchvision",
    "torchao",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "nncf",
    "apache-tvm",
    "apache-tvm-ffi",
    "tensorrt",
    "tensorrt-cu13",
    "cuda-python",
    "cuda-bindings",
    "opencv-python-headless",
    "scikit-image",
)

# CPU flags that decide which kernels a runtime can use.
RELEVANT_CPU_FLAGS = re.compile(
    r"^(sse4_2|avx|avx2|fma|f16c|avx512\w*|avx_vnni\w*|amx\w*|vnni|bf16|fp16|asimd\w*|sve\w*|neon)$"
)

# Thread-related variables that change how frameworks behave.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "KMP_AFFINITY",
    "OMP_PROC_BIND",
)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


# /proc/cpuinfo keys of the CPUID identity (x86), first CPU's value kept.
_IDENTITY_KEYS = {
    "vendor_id": "vendor",
    "cpu family": "family",
    "model": "model_number",
    "stepping": "stepping",
}


def parse_cpuinfo(text: str) -> dict[str, object]:
    """CPU model name, CPUID identity (vendor, family, model number, stepping), relevant flags
    and physical core count from /proc/cpuinfo text, plus the identity `cpu_id` derives from
    them (microarchitecture, result-changing ISA features, a summary line)."""
    model = ""
    identity: dict[str, object] = {}
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()
    physical_id = core_id = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model", "cpu model") and not model:
            model = value
        elif key in _IDENTITY_KEYS and _IDENTITY_KEYS[key] not in identity:
            identity[_IDENTITY_KEYS[key]] = int(value) if value.isdigit() else value
        elif key in ("flags", "Features"):
            flags.update(value.split())
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            core_id = value
            cores.add((physical_id, core_id))
    info: dict[str, object] = {
        "model": model or platform.processor() or platform.machine(),
        "vendor": identity.get("vendor"),
        "family": identity.get("family"),
        "model_number": identity.get("model_number"),
        "stepping": identity.get("stepping"),
        "flags": sorted(f for f in flags if RELEVANT_CPU_FLAGS.match(f)),
        "physical_cores": len(cores) or None,
    }
    return {**info, **identify(info)}


def cpu_info() -> dict[str, object]:
    """This host's CPU model, relevant flags and physical core count."""
    return parse_cpuinfo(_read("/proc/cpuinfo"))


def _memory_total_gib() -> float | None:
    match = re.search(r"^MemTotal:\s+(\d+) kB", _read("/proc/meminfo"), re.M)
    return round(int(match.group(1)) / 2**20, 2) if match else None


def _os_name() -> str:
    match = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', _read("/etc/os-release"), re.M)
    return match.group(1) if match else platform.platform()


def package_versions(names: tuple[str, ...] = RELEVANT_PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_revision() -> str | None:
    """The bench code's git revision: from the image's build (env) or the source checkout."""
    if rev := os.environ.get("DEPLOYBENCH_GIT_REVISION"):
        return rev
    if not shutil.which("git"):
        return None
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}-dirty" if dirty else rev


def _in_container() -> bool:
    return Path("/.dockerenv").exists() or "docker" in _read("/proc/1/cgroup")


GPU_FIELDS = (
    "index,name,uuid,memory.total,driver_version,compute_cap,clocks.max.sm,power.limit,"
    "persistence_mode"
)


def parse_gpu_query(text: str, fields: str = GPU_FIELDS) -> list[dict[str, str]]:
    """`nvidia-smi --query-gpu=<fields> --format=csv,noheader` output -> one dict per GPU."""
    keys = fields.split(",")
    return [
        dict(zip(keys, (v.strip() for v in line.split(",")), strict=False))
        for line in text.splitlines()
        if line.strip()
    ]


def gpu_info() -> list[dict[str, str]]:
    """NVIDIA GPUs as nvidia-smi reports them; empty when there is none."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={GPU_FIELDS}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_gpu_query(out)


def fingerprint() -> dict[str, object]:
    """The environment of this process, as recorded in every result."""
    cpu = cpu_info()
    if (forced := os.environ.get("DEPLOYBENCH_CPU_FLAGS")) is not None:
        # The backends answered as a CPU with these flags (bench.backends.cpu): say so.
        cpu["flags_forced"] = sorted(f.strip() for f in forced.split(",") if f.strip())
    cpu["logical_cores"] = os.cpu_count()
    cpu["affinity_cores"] = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    )
    return {
        "hostname": platform.node(),
        "cpu": cpu,
        "memory_total_gib": _memory_total_gib(),
        "os": _os_name(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "thread_env": {k: os.environ[k] for k in THREAD_ENV_VARS if k in os.environ},
        # Other work on the host skews latencies: the load when the cell started says if it ran.
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "container": {
            "in_container": _in_container(),
            "image": os.environ.get("DEPLOYBENCH_IMAGE"),
            "image_digest": os.environ.get("DEPLOYBENCH_IMAGE_DIGEST"),
        },
        "git_revision": git_revision(),
        "gpus": gpu_info(),
    }
