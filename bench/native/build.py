"""Building a framework's native library and C++ runner with CMake, once per source version.

The SDK comes from the framework's own Python wheel (headers, libraries, CMake config), so the
native code is compiled against exactly the framework version the Python backend runs. Builds
are cached by a hash of the sources, the framework version and the compiler; an image builds
them at image-build time (`python -m bench native-build`) and points `DEPLOYBENCH_NATIVE_DIR`
at them. A missing toolchain or SDK, or a failed build, is `Unsupported` with the reason.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench import cache
from bench.errors import Unsupported, UsageError
from bench.native import FRAMEWORKS

SOURCE_DIR = Path(__file__).resolve().parent
BUILD_LOG_TAIL = 3000  # characters of a failed build's log kept in the reason
NATIVE_DIR_ENV = "DEPLOYBENCH_NATIVE_DIR"


@dataclass(frozen=True)
class NativeBuild:
    """A built framework: the shared library (ctypes) and the C++ runner executable."""

    library: Path
    runner: Path

    @classmethod
    def in_dir(cls, folder: Path, framework: str) -> NativeBuild:
        return cls(folder / f"libdeploybench_{framework}.so", folder / f"deploybench-{framework}")

    def exists(self) -> bool:
        return self.library.is_file() and self.runner.is_file()


def source_files() -> list[Path]:
    return sorted(p for p in SOURCE_DIR.rglob("*") if p.suffix in (".cpp", ".hpp", ".h", ".txt"))


def _check_framework(framework: str) -> None:
    if framework not in FRAMEWORKS:
        raise UsageError(f"no native runner for {framework!r}; valid: {', '.join(FRAMEWORKS)}")


def _sdk_args(framework: str) -> tuple[list[str], str]:
    """CMake arguments locating the framework's SDK in its wheel, and the framework version."""
    module = importlib.import_module(framework)
    root = Path(module.__file__).parent
    if framework == "openvino":
        config = root / "cmake" / "OpenVINOConfig.cmake"
        if not config.is_file():
            raise Unsupported(f"the openvino package at {root} ships no C++ SDK ({config} missing)")
        return [f"-DOpenVINO_DIR={config.parent}"], module.get_version()
    if framework == "onnxruntime":
        from bench.native import ort_headers

        ort_library()  # the session opens it at run time; it must exist now
        return [f"-DORT_INCLUDE_DIR={ort_headers.include_dir()}"], module.__version__
    if framework == "tvm":
        import tvm_ffi

        ffi_root = Path(tvm_ffi.__file__).parent
        runtime = root / "lib" / "libtvm_runtime.so"
        for needed in (ffi_root / "include" / "tvm" / "ffi" / "function.h", runtime):
            if not needed.is_file():
                raise Unsupported(f"the tvm/tvm_ffi packages ship no C++ runtime here ({needed})")
        args = [f"-DTVM_FFI_ROOT={ffi_root}", f"-DTVM_LIB_DIR={runtime.parent}"]
        return [*args, f"-DTVM_VERSION={module.__version__}"], module.__version__
    header = root / "include" / "torch" / "script.h"
    if not header.is_file():
        raise Unsupported(f"the torch package at {root} ships no LibTorch headers ({header})")
    abi = int(module._C._GLIBCXX_USE_CXX11_ABI)
    return [f"-DTORCH_ROOT={root}", f"-DTORCH_CXX11_ABI={abi}"], module.__version__


def ort_library() -> Path:
    """The onnxruntime wheel's C library, which the native session opens by path."""
    import onnxruntime

    capi = Path(onnxruntime.__file__).parent / "capi"
    found = sorted(capi.glob("libonnxruntime.so.*"))
    if not found:
        raise Unsupported(f"the onnxruntime package at {capi.parent} ships no libonnxruntime.so")
    return found[-1]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise Unsupported(f"building the native runner needs {name}, which is not installed")
    return path


def _compiler_version() -> str:
    cxx = os.environ.get("CXX") or _tool("c++")
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else cxx


def build_key(
    framework: str, framework_version: str, compiler: str, sdk: tuple[str, ...] = ()
) -> str:
    """The build's cache key: framework and version, compiler, the SDK's location (the runner
    links its libraries by absolute path: a venv elsewhere needs its own build) and sources."""
    text = "\0".join((framework, framework_version, compiler, *sdk)) + "\0"
    digest = hashlib.sha256(text.encode())
    for path in source_files():
        digest.update(path.relative_to(SOURCE_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def log_excerpt(text: str) -> str:
    """A failed build's first error (the cause; later ones often follow from it) and the log's
    tail, within BUILD_LOG_TAIL characters."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if "error" in line.lower()), None)
    tail = text[-BUILD_LOG_TAIL:]
    if first is None:
        return tail
    cause = "\n".join(lines[max(0, first - 2) : first + 3])
    if cause in tail:
        return tail
    budget = BUILD_LOG_TAIL // 3
    return f"first error:\n{cause[:budget]}\n...\n{tail[-2 * budget :]}"


def _run(cmd: list[str], log: Path) -> None:
    with log.open("a") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        text = log.read_text(errors="replace")
        what = f"{Path(cmd[0]).name} exit {done.returncode}"
        raise Unsupported(f"building the native runner failed ({what}):\n{log_excerpt(text)}")


def build(framework: str, dest: Path) -> NativeBuild:
    """Configure and build into `dest` (created; its previous content is replaced)."""
    _check_framework(framework)
    cmake = _tool("cmake")
    sdk, _version = _sdk_args(framework)
    _compiler_version()  # fails early, with a clear reason, when there is no C++ compiler
    with tempfile.TemporaryDirectory(prefix="deploybench-native-") as work:
        log = Path(work) / "build.log"
        _run([cmake, "-S", str(SOURCE_DIR), "-B", work, f"-DDB_FRAMEWORK={framework}", *sdk], log)
        _run([cmake, "--build", work, "--parallel", str(os.cpu_count() or 1)], log)
        built = NativeBuild.in_dir(Path(work), framework)
        dest.mkdir(parents=True, exist_ok=True)
        for path in (built.library, built.runner):
            shutil.copy2(path, dest / path.name)  # keeps the executable bit
    return NativeBuild.in_dir(dest, framework)


# Where each framework's C++ SDK comes from, as `bench info` says it.
SDK_SOURCES = {
    "openvino": "the openvino wheel's C++ SDK",
    "torch": "the torch wheel's LibTorch",
    "onnxruntime": "ONNX Runtime's C++ headers ({headers}) and the wheel's own library",
    "tvm": "the tvm-ffi headers and TVM's C++ runtime (libtvm_ffi.so, libtvm_runtime.so) "
    "that the wheels ship",
}


def native_status(framework: str) -> str:
    """How this environment gets the framework's native build (for `python -m bench info`)."""
    if importlib.util.find_spec(framework) is None:
        return f"none ({framework} is not installed here)"
    if (prebuilt := os.environ.get(NATIVE_DIR_ENV)) and NativeBuild.in_dir(
        Path(prebuilt) / framework, framework
    ).exists():
        return f"prebuilt in {Path(prebuilt) / framework}"
    try:
        _tool("cmake")
        compiler = _compiler_version()
    except Unsupported as exc:
        return f"cannot be built here: {exc}"
    from bench.native import ort_headers

    source = SDK_SOURCES[framework].format(headers=ort_headers.describe())
    return f"built on first use with {compiler}, against {source}"


def ensure_built(framework: str) -> NativeBuild:
    """The framework's native build: the image's prebuilt one, else built once into the cache."""
    _check_framework(framework)
    if prebuilt := os.environ.get(NATIVE_DIR_ENV):
        found = NativeBuild.in_dir(Path(prebuilt) / framework, framework)
        if found.exists():
            return found
    _tool("cmake")
    sdk, version = _sdk_args(framework)
    key = build_key(framework, version, _compiler_version(), tuple(sdk))
    entry = cache.entry("native", f"{framework}-{key}")
    # Verified before use (a library is loaded into the cell), built beside the entry and
    # renamed into place whole: a concurrent cell never sees half a build.
    if (found := entry.lookup()) and NativeBuild.in_dir(found, framework).exists():
        return NativeBuild.in_dir(found, framework)
    with entry.build() as staging:
        build(framework, staging)
    return NativeBuild.in_dir(entry.path, framework)
