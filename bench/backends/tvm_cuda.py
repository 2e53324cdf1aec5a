"""What TVM needs to compile for and run on CUDA: the target, dlight's default GPU schedules,
and a CUDA compiler.

- The target is built from the GPU's compute capability (TVM 0.27 takes targets as dicts), with
  the per-block limits every CUDA GPU since compute capability 5.0 shares, so dlight and
  MetaSchedule need not guess them; a plain LLVM host runs the VM's host code.
- Untuned modules get dlight's default GPU rules, the ones TVM's own CUDA pipeline applies;
  each rule is wrapped to count the kernels it scheduled, so the result says what ran.
- TVM 0.27 compiles the CUDA C++ it generates with NVRTC by default (`tvm.support.nvcc`,
  `TVM_CUDA_COMPILE_MODE=nvrtc`, through the `cuda-bindings` package): no nvcc. NVRTC needs the
  CUDA headers; when no toolkit is installed (CUDA_PATH unset, no nvcc) they come from NVIDIA's
  pip wheels (nvidia-cuda-runtime, -crt, -cccl), found with cuda-pathfinder. TVM itself only
  looks for CCCL under a toolkit's targets/ folder, so its include folder is passed to NVRTC.
  Compiling needs no GPU: tests/bench/backends/test_tvm_cuda.py does it on a CPU-only host.
- TVM 0.27 passes NVRTC --use_fast_math always (flush denormals to zero, approximate division
  and square root, fast intrinsics). An fp32 cell adds --ftz=false --prec-div=true
  --prec-sqrt=true after it (TVM puts TVM_CUDA_NVRTC_EXTRA_OPTS last, so they win): IEEE
  denormals and correctly rounded division and square root. The fast intrinsics for
  transcendental functions (expf, ...) cannot be turned off from outside TVM and remain; the
  result says so (`cuda_math`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
from collections import Counter
from pathlib import Path

import tvm
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.base import ScheduleRule

from bench.backends.cuda import cuda_arch

# dlight's GPU rules in the order TVM's CUDA pipeline (relax/backend/cuda) tries them.
GPU_RULES = ("Matmul", "GEMV", "Reduction", "GeneralReduction", "Fallback")


def cuda_target(compute_capability: str) -> dict[str, object]:
    """The CUDA target for a GPU of this compute capability, e.g. '9.0' -> arch sm_90."""
    return {
        "kind": "cuda",
        "arch": cuda_arch(compute_capability),
        # Limits shared by every GPU since compute capability 5.0 (without opt-in shared memory).
        "max_threads_per_block": 1024,
        "max_shared_memory_per_block": 49152,
        "thread_warp_size": 32,
        "registers_per_block": 65536,
        "host": {"kind": "llvm"},
    }


def device_target() -> dict[str, object]:
    """The target of CUDA device 0 in TVM's canonical form (what is recorded and cache-keyed)."""
    device = tvm.cuda(0)
    if not device.exist:
        raise RuntimeError(
            "TVM's CUDA runtime sees no device although the driver does: libtvm_runtime_cuda.so "
            "did not load at `import tvm` (it needs libcudart.so.13 on the loader path; the "
            "tvm-gpu image sets it, in a venv add nvidia/cu13/lib to LD_LIBRARY_PATH)"
        )
    return json.loads(str(tvm.target.Target(cuda_target(device.compute_version))))


class _Counted(ScheduleRule):
    """A dlight rule that counts the kernels it scheduled."""

    def __init__(self, rule: ScheduleRule, name: str, counts: Counter) -> None:
        self.rule, self.name, self.counts = rule, name, counts

    def apply(self, func: object, target: tvm.target.Target, tunable: bool) -> object:
        schedule = self.rule.apply(func, target, tunable)
        if schedule is not None:
            self.counts[self.name] += 1
        return schedule

    def is_target_available(self, target: tvm.target.Target) -> bool:
        return self.rule.is_target_available(target)


def default_gpu_schedule(
    mod: tvm.IRModule, target: tvm.target.Target
) -> tuple[tvm.IRModule, dict[str, int]]:
    """Schedule every PrimFunc not yet scheduled (by MetaSchedule) with dlight's GPU rules;
    returns the module and how many kernels each rule scheduled."""
    counts: Counter = Counter()
    rules = [_Counted(getattr(dl.gpu, name)(), name, counts) for name in GPU_RULES]
    with target:
        mod = dl.ApplyDefaultSchedule(*rules)(mod)
    return mod, dict(counts)


def use_nvrtc_headers() -> str:
    """Make sure TVM's NVRTC compile can run and find CUDA's headers; returns the CUDA path.

    Sets CUDA_PATH (and the CCCL include for NVRTC) from the pip wheels unless a toolkit is
    already configured; the variables reach MetaSchedule's builder and runner processes too."""
    if importlib.util.find_spec("cuda.bindings") is None:
        raise RuntimeError(
            "TVM compiles CUDA with NVRTC through the cuda-bindings package, which is not "
            "installed (the tvm-gpu image has it)"
        )
    if "CUDA_PATH" in os.environ:
        return os.environ["CUDA_PATH"]
    nvcc = shutil.which("nvcc")
    # Only a toolkit whose headers are really there: an nvcc wrapper of a removed toolkit is not.
    if nvcc and (Path(nvcc).resolve().parents[1] / "include" / "cuda_runtime.h").is_file():
        return str(Path(nvcc).resolve().parents[1])
    from cuda import pathfinder

    cudart = pathfinder.find_nvidia_header_directory("cudart")
    if cudart is None:
        raise RuntimeError(
            "NVRTC needs the CUDA headers: no toolkit (CUDA_PATH, nvcc) and no "
            "nvidia-cuda-runtime wheel here"
        )
    os.environ["CUDA_PATH"] = str(Path(cudart).parent)  # TVM reads <CUDA_PATH>/include
    cccl = pathfinder.find_nvidia_header_directory("cccl")
    if cccl is not None and "TVM_CUDA_NVRTC_EXTRA_OPTS" not in os.environ:
        os.environ["TVM_CUDA_NVRTC_EXTRA_OPTS"] = f"-I{shlex.quote(cccl)}"
    return os.environ["CUDA_PATH"]


NVRTC_EXTRA_ENV = "TVM_CUDA_NVRTC_EXTRA_OPTS"
# NVRTC options that undo what --use_fast_math implies for float32 arithmetic.
IEEE_FP32_OPTIONS = ("--ftz=false", "--prec-div=true", "--prec-sqrt=true")


def use_nvrtc_math(precision: str) -> str:
    """Set the NVRTC options of this cell's precision; returns what the result records."""
    if precision != "fp32":
        return "NVRTC --use_fast_math (TVM's default)"
    extra = os.environ.get(NVRTC_EXTRA_ENV, "").split()
    missing = [o for o in IEEE_FP32_OPTIONS if o not in extra]
    os.environ[NVRTC_EXTRA_ENV] = " ".join([*extra, *missing])
    return (
        "NVRTC --use_fast_math, then " + " ".join(IEEE_FP32_OPTIONS) + " (IEEE denormals, "
        "correctly rounded division and square root); fast intrinsics for transcendental "
        "functions remain (TVM 0.27 passes --use_fast_math always)"
    )
