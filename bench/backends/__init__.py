"""What runs the model: one module per framework behind one small interface.

A backend is registered here by name with the module that holds it, and imported only when a
cell asks for it, so an image imports its own framework and nothing else. To add a framework:
write `bench/backends/<name>.py` with a `Backend` subclass and add one line below.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from bench.registry import Registry


@dataclass(frozen=True)
class BackendEntry:
    """Where a backend lives and which framework module it needs."""

    name: str
    module: str
    class_name: str
    requires: str  # the framework's import name, for `bench info`

    def load_class(self) -> type:
        return getattr(importlib.import_module(self.module), self.class_name)

    def importable(self) -> bool:
        return importlib.util.find_spec(self.requires) is not None


BACKENDS: Registry[BackendEntry] = Registry("framework")
BACKENDS.add("torch", BackendEntry("torch", "bench.backends.pytorch", "TorchBackend", "torch"))
BACKENDS.add(
    "openvino", BackendEntry("openvino", "bench.backends.openvino", "OpenVinoBackend", "openvino")
)
BACKENDS.add(
    "onnxruntime",
    BackendEntry("onnxruntime", "bench.backends.onnxruntime", "OnnxRuntimeBackend", "onnxruntime"),
)
BACKENDS.add("tvm", BackendEntry("tvm", "bench.backends.tvm", "TvmBackend", "tvm"))
BACKENDS.add(
    "tensorrt", BackendEntry("tensorrt", "bench.backends.tensorrt", "TensorRtBackend", "tensorrt")
)
# The native variants (bench/backends/native.py): the framework's C++ API from a C++ runner
# process, and the same C++ code called through ctypes.
for _fw, _cls in (("openvino", "OpenVino"), ("torch", "Torch")):
    for _variant, _suffix in (("cpp", "Cpp"), ("ctypes", "Ctypes")):
        BACKENDS.add(
            f"{_fw}-{_variant}",
            BackendEntry(f"{_fw}-{_variant}", "bench.backends.native", f"{_cls}{_suffix}", _fw),
        )
