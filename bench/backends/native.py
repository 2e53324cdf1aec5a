"""The native variants of a framework: its C++ API in a C++ runner process (`<fw>-cpp`), and
the same C++ code called from Python through ctypes (`<fw>-ctypes`).

Both run what the Python backend runs, configured the same way (threads, precision, one
request), on the same artifact and inputs, so that the three variants differ only in the
language boundary:
- `-ctypes` is an ordinary backend: every `infer` is one ctypes call into the native library
  with the NumPy input read in place and outputs written into NumPy buffers; the timing loop
  is Python's, like every other backend's.
- `-cpp` runs the whole cell in the C++ runner (load, cold call, parity outputs, warm-up and
  measurement with the same bounds); `bench.run` turns what it writes into the same result.

Each framework's own loader decides the native session's configuration (`FRAMEWORKS` below):
OpenVINO compiles the artifact's ONNX graph with the backend's compile properties, reshaped to
the cell's static shape; ONNX Runtime opens it with the backend's session settings
(bench/backends/ort_loader.py) through the wheel's own library; TVM loads the library the TVM
backend compiled for the cell (same target, tuning budget and database), exported once (cached);
LibTorch reads TorchScript, traced once (cached) from the weights the torch backend builds from.
The native runners take models with one float32 input and float32 outputs of fixed shape
(classifiers); detectors are `unsupported`.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from bench import cache
from bench.artifact import Artifact
from bench.backends.base import Backend, OwnLoopRun, static_input_shape
from bench.backends.cpu import bf16_unsupported_reason
from bench.cell import Cell
from bench.errors import Unsupported
from bench.frameworks import TVM_BUDGET
from bench.measure.timing import TimingConfig, TimingRun
from bench.native import config_string
from bench.native.build import NativeBuild, ensure_built
from bench.native.library import NativeLibrary, NativeSession, through_python_lists

LOAD_REFUSED_EXIT = 3  # the C++ runner's exit code when the framework refuses the model
STDERR_TAIL = 2000


def torchscript_file(artifact: Artifact) -> Path:
    """The artifact's PyTorch model traced to TorchScript, once per artifact and torch version."""
    import torch

    from bench.models import MODELS
    from bench.models.build import build_model

    if artifact.weights_path is None:
        raise Unsupported("LibTorch needs the PyTorch model; this artifact came from an ONNX file")

    def make(folder: Path) -> None:
        model = build_model(MODELS.get(artifact.model), str(artifact.weights_path), seed=0)
        with torch.no_grad():
            traced = torch.jit.trace(model, torch.from_numpy(artifact.inputs[:1]))
        torch.jit.save(traced, str(folder / "model.pt"))

    folder, _ = cache.entry("torchscript", artifact.key, f"torch{torch.__version__}").get(make)
    return folder / "model.pt"


@dataclass(frozen=True)
class NativeSetup:
    """What a framework's native session is given, decided by the framework's own loader so
    that it runs configured exactly as the Python backend."""

    model_file: Path
    config: str  # the library's "KEY=VALUE;..." config (bench/native/src/session_*.cpp)
    info: dict[str, object] = field(default_factory=dict)  # recorded in the result


def _openvino_setup(artifact: Artifact, cell: Cell) -> NativeSetup:
    from bench.backends.openvino import compile_properties

    # As the backend: the inference precision set (unless `auto`: the plugin's pick is read
    # back), the LATENCY hint, the threads, the model reshaped to the cell's static shape.
    precision = None if cell.precision == "auto" else cell.precision
    properties = compile_properties("latency", cell.threads, precision)
    shape = static_input_shape(artifact, cell)
    properties["db.static_shape"] = ",".join(map(str, shape["dims"]))
    info = {"input_shape": shape}
    return NativeSetup(artifact.onnx_path, config_string(properties), info)


def _torch_setup(artifact: Artifact, cell: Cell) -> NativeSetup:
    return NativeSetup(torchscript_file(artifact), "")


def _onnxruntime_setup(artifact: Artifact, cell: Cell) -> NativeSetup:
    from bench.backends.ort_loader import cell_settings, input_shape_record
    from bench.native.build import ort_library

    declared = artifact.meta["inputs"][0]["shape"]
    mode = cell.option("shape", "static")
    settings = cell_settings(declared, cell.batch_size, cell.threads, mode)
    info = {"input_shape": input_shape_record(declared, cell.batch_size, mode)}
    return NativeSetup(artifact.onnx_path, settings.native_config(ort_library()), info)


def _tvm_setup(artifact: Artifact, cell: Cell) -> NativeSetup:
    folder, meta = tvm_library(artifact, cell)
    prepack = str(int(bool(meta["prepack"])))
    config = config_string({"params": str(folder / "params.bin"), "prepack": prepack})
    info = {"input_shape": static_input_shape(artifact, cell), **meta}
    return NativeSetup(folder / "model.so", config, info)


def tvm_library(artifact: Artifact, cell: Cell) -> tuple[Path, dict[str, object]]:
    """The library the TVM backend compiles for this cell (same target, tuning budget and
    database), exported once per artifact, target, batch size, budget and TVM version."""
    import tvm

    from bench.backends.tvm import TvmBackend, host_target
    from bench.backends.tvm_database import find_committed

    # The TVM backend's own cell: its options only (a variant's, such as marshal, are not TVM's).
    names = {option.name for option in TVM_BUDGET}
    budget = tuple((k, v) for k, v in cell.options if k in names)
    python_cell = replace(cell, framework="tvm", options=budget)
    target = host_target(cell.threads)
    committed = None
    if python_cell.option("database", "committed") == "committed":
        committed, _ = find_committed(artifact.model, target, cell.batch_size, tvm.__version__)
    what = {
        "target": target,
        "batch": cell.batch_size,
        "budget": [python_cell.option("trials", "0"), python_cell.option("trials_per_task")],
        # the committed database applied (by its records' hash), if any
        "committed": committed.sha256 if committed else None,
        "tvm": tvm.__version__,
        "layout": 3,  # the folder's files and meta.json keys (TvmBackend.export)
    }

    def make(folder: Path) -> None:
        with TvmBackend(artifact, python_cell) as backend:
            backend.load()
            backend.export(folder)

    folder, _ = cache.entry("tvm-library", artifact.key[:16], what=what).get(make)
    return folder, json.loads((folder / "meta.json").read_text())


FRAMEWORKS: dict[str, Callable[[Artifact, Cell], NativeSetup]] = {
    "openvino": _openvino_setup,
    "torch": _torch_setup,
    "onnxruntime": _onnxruntime_setup,
    "tvm": _tvm_setup,
}


class _NativeBackend(Backend):
    framework: ClassVar[str]
    # auto: the framework's own choice, as the Python backend leaves it; read back from the run.
    auto_precision = None
    handles_auto = True

    def _prepare(self) -> None:
        """Checks and files both variants need; sets build, model file, config and shapes."""
        spec = FRAMEWORKS[self.framework]
        inputs = self.artifact.meta["inputs"]
        if self.artifact.task == "detection" or len(inputs) != 1 or inputs[0]["dtype"] != "float32":
            raise Unsupported(
                "the native runners take one float32 input and fixed-shape float32 outputs; "
                f"this {self.artifact.task} model has other"
            )
        if self.precision == "bf16" and (reason := bf16_unsupported_reason()):
            raise Unsupported(f"{self.name} bf16: {reason}")
        self.build: NativeBuild = ensure_built(self.framework)
        setup = spec(self.artifact, self.cell)
        self.model_file, self.config, self.setup_info = setup.model_file, setup.config, setup.info
        self.sample_shape = tuple(self.artifact.inputs.shape[1:])
        refs = self.artifact.references
        self.output_shapes = [tuple(refs[name].shape[1:]) for name in self.artifact.output_names]


class CtypesBackend(_NativeBackend):
    """The framework's C++ inference code in this process, one ctypes call per inference."""

    def _load(self) -> None:
        self._prepare()
        self.marshal = self.cell.option("marshal", "buffer")
        self.library = NativeLibrary(self.build.library)
        try:
            self.session = NativeSession(
                self.library, self.model_file, self.cell.threads, self.config,
                self.sample_shape, self.output_shapes,
            )  # fmt: skip
        except RuntimeError as exc:
            raise Unsupported(f"{self.name}: {exc}") from exc

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feed[self.artifact.input_name]
        if self.marshal == "lists":  # the naive way in and out, measured as an option
            outputs = self.session.infer(through_python_lists(x))
            outputs = [np.array(o.tolist(), np.float32) for o in outputs]
        else:
            outputs = self.session.infer(x)
        return dict(zip(self.artifact.output_names, outputs, strict=True))

    def framework_version(self) -> str:
        return self.library.framework_version()

    def _runtime_info(self) -> dict[str, object]:
        return {
            **self.setup_info,
            **self.session.runtime_info(),
            "call": "ctypes",
            "marshal": self.marshal,
            "native_build": str(self.build.library),
        }

    def _close(self) -> None:
        if getattr(self, "session", None) is not None:
            self.session.close()


class CppBackend(_NativeBackend):
    """The whole cell in the C++ runner process; `bench.run` calls `run_own_loop`."""

    runs_own_loop = True

    def _load(self) -> None:
        self._prepare()
        self._run_info: dict[str, object] = {}

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise Unsupported(
            f"{self.name} runs in its own process; {self.framework}-ctypes calls the same code "
            "in-process"
        )

    def run_own_loop(self, inputs: np.ndarray, timing: TimingConfig) -> OwnLoopRun:
        """Run the cell in the C++ runner on `inputs` (every photo) and read what it wrote."""
        with tempfile.TemporaryDirectory(prefix="deploybench-cpp-") as work:
            out = Path(work)
            np.ascontiguousarray(inputs, np.float32).tofile(out / "inputs.bin")
            elems = [int(np.prod(s)) for s in self.output_shapes]
            cmd = [
                str(self.build.runner), "--model", str(self.model_file),
                "--inputs", str(out / "inputs.bin"),
                "--shape", ",".join(map(str, inputs.shape)),
                "--batch", str(self.cell.batch_size), "--threads", str(self.cell.threads),
                "--outputs", ",".join(map(str, elems)), "--out", str(out),
                "--config", self.config,
                *(arg for key, value in timing.to_dict().items()
                  for arg in (f"--{key.replace('_', '-')}", str(value))),
            ]  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            tail = done.stderr[-STDERR_TAIL:].strip()
            if done.returncode == LOAD_REFUSED_EXIT:
                raise Unsupported(f"{self.name}: {tail}")
            if done.returncode != 0:
                how = f"signal {-done.returncode}" if done.returncode < 0 else done.returncode
                raise RuntimeError(f"{self.build.runner.name} exited with {how}: {tail}")
            run = json.loads((out / "run.json").read_text())
            outputs = {
                name: np.fromfile(out / f"output_{i}.bin", np.float32).reshape(-1, *shape)
                for i, (name, shape) in enumerate(
                    zip(self.artifact.output_names, self.output_shapes, strict=True)
                )
            }
        self._version = run["framework_version"]
        self._run_info = {
            **self.setup_info,
            **run["runtime"],
            "call": "c++ runner",
            "compiler": run["compiler"],
            "native_build": str(self.build.runner),
        }
        return OwnLoopRun(
            load_ms=run["load_ms"],
            cold_ms=run["cold_ms"],
            outputs=outputs,
            timing=TimingRun(
                warmup_iters=run["warmup_iters"],
                warmup_s=run["warmup_s"],
                samples_ms=run["samples_ms"],
                measure_s=run["measure_s"],
            ),
        )

    def framework_version(self) -> str:
        return getattr(self, "_version", "unknown")

    def _runtime_info(self) -> dict[str, object]:
        return self._run_info


class OpenVinoCtypes(CtypesBackend):
    name, framework = "openvino-ctypes", "openvino"


class OpenVinoCpp(CppBackend):
    name, framework = "openvino-cpp", "openvino"


class TorchCtypes(CtypesBackend):
    name, framework = "torch-ctypes", "torch"


class TorchCpp(CppBackend):
    name, framework = "torch-cpp", "torch"


class OnnxRuntimeCtypes(CtypesBackend):
    name, framework = "onnxruntime-ctypes", "onnxruntime"


class OnnxRuntimeCpp(CppBackend):
    name, framework = "onnxruntime-cpp", "onnxruntime"


class TvmCtypes(CtypesBackend):
    name, framework = "tvm-ctypes", "tvm"


class TvmCpp(CppBackend):
    name, framework = "tvm-cpp", "tvm"
