"""TVM on CUDA without a GPU: the target, dlight's schedules, and a real compile for sm_90.

TVM 0.27 compiles the CUDA C++ it generates with NVRTC, which needs no GPU, so the whole CUDA
build of a real model is tested here; running it is for a GPU host (a cuda cell here is
skipped with the driver's reason).
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import tvm
from helpers import run_cell_to_file
from tvm.relax.frontend.onnx import from_onnx

from bench.backends.cuda import cuda_unavailable_reason
from bench.backends.tvm import prepare_for_tuning
from bench.backends.tvm_cuda import GPU_RULES, cuda_target, default_gpu_schedule, use_nvrtc_headers

H100 = {
    "kind": "cuda",
    "arch": "sm_90",
    "max_threads_per_block": 1024,
    "max_shared_memory_per_block": 49152,
    "thread_warp_size": 32,
    "registers_per_block": 65536,
    "host": {"kind": "llvm"},
}


def test_the_target_of_a_compute_capability():
    assert cuda_target("9.0") == H100
    assert cuda_target("8.6")["arch"] == "sm_86"
    assert cuda_target("12.0")["arch"] == "sm_120"
    with pytest.raises(ValueError, match="compute capability"):
        cuda_target("ampere")


def test_tvm_takes_the_target_with_its_host():
    target = tvm.target.Target(cuda_target("9.0"))
    assert target.kind.name == "cuda" and str(target.attrs["arch"]) == "sm_90"
    assert target.host.kind.name == "llvm"
    assert int(target.attrs["max_shared_memory_per_block"]) == 49152


def _cuda_module(executable):
    stack = [executable.mod]
    while stack:
        module = stack.pop()
        if module.kind == "cuda":
            return module
        stack.extend(module.imports)
    raise AssertionError("the executable has no CUDA module")


@pytest.mark.skipif(
    importlib.util.find_spec("cuda.bindings") is None, reason="needs cuda-bindings (dev extra)"
)
def test_the_model_compiles_for_sm_90_on_this_host(small_artifact, monkeypatch):
    """The backend's untuned CUDA path up to the binary the GPU would load."""
    from tvm import relax
    from tvm.support.nvcc import compile_cuda

    for var in ("CUDA_PATH", "TVM_CUDA_NVRTC_EXTRA_OPTS"):  # restored after the test
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no nvcc: the headers come from the wheels
    cuda_path = use_nvrtc_headers()
    import onnx

    target = tvm.target.Target(cuda_target("9.0"))
    shape = [1, *small_artifact.inputs.shape[1:]]
    mod = from_onnx(
        onnx.load(str(small_artifact.onnx_path)),
        shape_dict={small_artifact.input_name: shape},
        keep_params_in_input=True,
    )
    mod, _ = relax.frontend.detach_params(mod)
    mod, rules = default_gpu_schedule(prepare_for_tuning(mod, target, prepack=False), target)
    assert rules and set(rules) <= set(GPU_RULES)
    assert rules.get("Matmul", 0) + rules.get("GEMV", 0) >= 1  # the classifier's Gemm
    with target:
        executable = tvm.compile(mod, target=target)
    source = _cuda_module(executable).inspect_source("cuda")
    assert source.count("__global__") >= sum(rules.values())
    # What TVM's CUDA runtime does with this source when the module loads on the GPU.
    cubin = compile_cuda(source, target_format="cubin", arch="sm_90", compiler="nvrtc")
    assert bytes(cubin[:4]) == b"\x7fELF", cuda_path


@pytest.mark.skipif(
    importlib.util.find_spec("cuda.bindings") is None, reason="needs cuda-bindings (dev extra)"
)
def test_fp32_cells_compile_ieee_division_and_other_precisions_keep_fast_math(monkeypatch):
    """The PTX NVRTC makes of a division through TVM's own compile path: approximate under
    TVM's --use_fast_math, correctly rounded (div.rn.f32) once an fp32 cell's options are set;
    the options are added once, after what was there."""
    from tvm.support.nvcc import compile_cuda

    from bench.backends.tvm_cuda import NVRTC_EXTRA_ENV, use_nvrtc_math

    for var in ("CUDA_PATH", NVRTC_EXTRA_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    use_nvrtc_headers()
    kernel = (
        'extern "C" __global__ void divide(float* a, const float* b) '
        "{ a[threadIdx.x] = a[threadIdx.x] / b[threadIdx.x]; }"
    )

    def ptx() -> str:
        return bytes(compile_cuda(kernel, target_format="ptx", arch="sm_90")).decode()

    assert "fast_math" in use_nvrtc_math("fp16")
    fast = ptx()
    assert "div.rn.f32" not in fast and ("div.approx" in fast or "div.full" in fast)
    before = os.environ.get(NVRTC_EXTRA_ENV, "")
    record = use_nvrtc_math("fp32")
    use_nvrtc_math("fp32")  # a second cell in the process adds nothing twice
    assert (
        os.environ[NVRTC_EXTRA_ENV]
        == f"{before} --ftz=false --prec-div=true --prec-sqrt=true".strip()
    )
    assert "--prec-div=true" in record and "transcendental" in record
    assert "div.rn.f32" in ptx()


@pytest.mark.skipif(cuda_unavailable_reason() is None, reason="this host has a CUDA device")
def test_a_cuda_cell_without_a_gpu_is_skipped_with_the_reason(small_artifact, tmp_path):
    doc = run_cell_to_file(small_artifact, tmp_path, "tvm", device="cuda")
    assert doc["status"] == "skipped"
    assert doc["reason"] == cuda_unavailable_reason()
    assert doc["timing"] is None
