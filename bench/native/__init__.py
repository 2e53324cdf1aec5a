"""Native runners: the same cells through a framework's C++ API.

Per framework, one shared library with a small C API (`deploybench.h`: load, infer on the
caller's buffers, runtime info, free) and one C++ runner executable linking it
(`src/runner_main.cpp`: load, cold call, parity outputs and the timing loop, in C++).
`build.py` builds both with CMake against the SDK the framework's Python wheel ships;
`library.py` calls the library from Python through ctypes. The backends are in
`bench/backends/native.py` (`<framework>-cpp`, `<framework>-ctypes`).
"""

from __future__ import annotations

# The frameworks with a session_<framework>.cpp.
FRAMEWORKS = ("openvino", "torch", "onnxruntime", "tvm")


def config_string(pairs: dict[str, str]) -> str:
    """A native session's config, "KEY=VALUE;KEY=VALUE" (parsed by src/c_api.cpp)."""
    from bench.errors import Unsupported

    for key, value in pairs.items():
        if not key or any(c in key for c in ";=") or ";" in value:
            raise Unsupported(f"a native session's config cannot carry {key}={value!r}")
    return ";".join(f"{k}={v}" for k, v in pairs.items())
