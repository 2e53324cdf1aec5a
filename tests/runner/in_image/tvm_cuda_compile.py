"""Run inside the tvm-gpu image by tests/runner/test_docker.py: compile a small ONNX graph
for sm_90 through the backend's own passes and dlight, down to a cubin (NVRTC, no GPU)."""

import numpy as np
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx
from tvm.support.nvcc import compile_cuda

from bench.backends.tvm import prepare_for_tuning
from bench.backends.tvm_cuda import cuda_target, default_gpu_schedule, use_nvrtc_headers

use_nvrtc_headers()
# A tiny ONNX graph (Gemm + Relu) through the same frontend the backend uses.
graph = helper.make_graph(
    [helper.make_node("Gemm", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
    "probe",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
    [helper.make_tensor_value_info("z", TensorProto.FLOAT, [4, 8])],
    [numpy_helper.from_array(np.ones((64, 8), np.float32), "w")],
)
mod, _ = relax.frontend.detach_params(
    from_onnx(helper.make_model(graph), keep_params_in_input=True)
)
target = tvm.target.Target(cuda_target("9.0"))
mod, rules = default_gpu_schedule(prepare_for_tuning(mod, target, prepack=False), target)
with target:
    executable = tvm.compile(mod, target=target)
stack, source = [executable.mod], None
while stack:
    module = stack.pop()
    if module.kind == "cuda":
        source = module.inspect_source("cuda")
    stack.extend(module.imports)
cubin = compile_cuda(source, target_format="cubin", arch="sm_90", compiler="nvrtc")
print("rules", dict(rules), "cubin", bytes(cubin[:4]) == b"\x7fELF")
