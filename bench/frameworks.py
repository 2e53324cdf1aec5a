"""What each framework is, once, as data: its backend, where it runs, at which precisions, in
which image, and the options it takes with their types and valid values.

Everything that needs these facts reads them here: the cell (options validated and normalised
before any work), the matrix planner, the command lines' choices, the backends (their devices
and precisions), the image map, `bench info` and the README's option table (`python -m bench
frameworks` prints it; a test holds the README to it). The module imports nothing above it, so
every layer can use it; a backend's module is imported only when a cell asks for it.

To add a framework: a row here, and its backend module (README: "Adding a framework").
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field

from bench.errors import UsageError
from bench.registry import Registry

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Option:
    """One framework option: its type and valid values, where it applies, what it means.
    Values are normalised to strings (booleans to "1"/"0") so that a cell is hashable and one
    setting has one spelling in cell ids and results."""

    name: str
    kind: str  # "bool", "choice" or "int"
    help: str
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    default: str | None = None  # None: absent means the framework's own behaviour
    devices: tuple[str, ...] = ()  # empty: every device of the framework
    precisions: tuple[str, ...] = ()  # empty: every precision

    def valid(self) -> str:
        if self.kind == "bool":
            return "true or false (1 or 0)"
        if self.kind == "int":
            return f"an integer >= {self.minimum}" if self.minimum is not None else "an integer"
        return ", ".join(self.choices)

    def normalize(self, framework: str, value: object) -> str:
        """The canonical string of `value`, or a usage error naming the valid values."""
        text = str(value).strip().lower() if isinstance(value, (bool, str)) else str(value)
        bad = UsageError(f"{framework} option {self.name}={value!r}: must be {self.valid()}")
        if self.kind == "bool":
            if text in _TRUE:
                return "1"
            if text in _FALSE:
                return "0"
            raise bad
        if self.kind == "int":
            if isinstance(value, bool):
                raise bad
            try:
                number = int(str(value))
            except ValueError:
                raise bad from None
            if self.minimum is not None and number < self.minimum:
                raise bad
            return str(number)
        if str(value) not in self.choices:
            raise bad
        return str(value)


@dataclass(frozen=True)
class Refusal:
    """A combination a framework cannot run, known before any work: a cell of this task on
    this device (with this option value, when one is named) is `unsupported` with `reason`."""

    task: str
    device: str
    reason: str
    option: tuple[str, str] | None = None

    def matches(self, task: str, device: str, options: dict[str, str]) -> bool:
        if (task, device) != (self.task, self.device):
            return False
        return self.option is None or options.get(self.option[0]) == self.option[1]


@dataclass(frozen=True)
class Framework:
    """A framework as deploybench runs it."""

    name: str
    module: str  # the backend's module
    class_name: str
    requires: str  # the framework's import name, for `bench info` and skipping
    precisions: dict[str, tuple[str, ...]]  # device -> precisions; its keys are the devices
    images: dict[str, str]  # device -> the image whose container runs it
    options: tuple[Option, ...] = ()
    variant_of: str | None = None  # a native variant (C++ runner, ctypes) of this framework
    description: str = ""
    # device -> the distribution whose version is the framework's (a matrix's `versions:` axis
    # and a model's pin name it; each version is one pinned image, runner/images.py)
    packages: dict[str, str] = field(default_factory=dict)
    refusals: tuple[Refusal, ...] = ()
    _by_name: dict[str, Option] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_name.update({o.name: o for o in self.options})

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(self.precisions)

    @property
    def base(self) -> str:
        """The framework itself: a native variant's versions are its framework's."""
        return self.variant_of or self.name

    def package(self, device: str) -> str:
        return self.packages.get(device) or FRAMEWORKS.get(self.base).packages[device]

    def refusal(self, task: str, device: str, options: dict[str, str]) -> str | None:
        """Why this framework cannot run a cell of this task, device and options (None: no
        known reason)."""
        return next((r.reason for r in self.refusals if r.matches(task, device, options)), None)

    def option(self, name: str) -> Option:
        if name not in self._by_name:
            valid = ", ".join(self._by_name) or "none"
            raise UsageError(f"{self.name} has no option {name!r}; valid: {valid}")
        return self._by_name[name]

    def check_options(
        self, options: dict[str, object], device: str, precision: str
    ) -> tuple[tuple[str, str], ...]:
        """Validated, normalised, sorted option pairs for a cell on `device` at `precision`."""
        out = []
        for name, value in options.items():
            spec = self.option(name)
            if spec.devices and device not in spec.devices:
                raise UsageError(
                    f"{self.name} option {name} applies to {', '.join(spec.devices)} cells, "
                    f"not {device}"
                )
            if spec.precisions and precision not in spec.precisions:
                raise UsageError(
                    f"{self.name} option {name} applies to {', '.join(spec.precisions)} cells, "
                    f"not {precision}"
                )
            out.append((name, spec.normalize(self.name, value)))
        return tuple(sorted(out))

    def load_class(self) -> type:
        return getattr(importlib.import_module(self.module), self.class_name)

    def importable(self) -> bool:
        return importlib.util.find_spec(self.requires) is not None


SHAPE = Option(
    "shape",
    "choice",
    "static: the graph compiled for the cell's input shape, as TVM and TensorRT are; "
    "dynamic: the exported dynamic-batch graph as is",
    choices=("static", "dynamic"),
    default="static",
)
# How a ctypes variant hands its input over (bench/native/library.py).
MARSHAL = Option(
    "marshal",
    "choice",
    "buffer: the NumPy input read in place; lists: through a Python list and a ctypes array "
    "built from it, as naive ctypes code does (to measure what that costs)",
    choices=("buffer", "lists"),
    default="buffer",
)
# TVM's tuning budget, for the Python backend and the native runners that load its library.
TVM_BUDGET = (
    Option(
        "trials",
        "int",
        "MetaSchedule tuning trials of this cell's own (0: none; a committed database may "
        "still apply, see database)",
        minimum=0,
        default="0",
    ),
    Option("trials_per_task", "int", "MetaSchedule's trials per task", minimum=1, default="64"),
    Option(
        "database",
        "choice",
        "committed: apply the repository's tuned database for this exact target, model and "
        "batch when there is one (tuning/tvm/, its budget and provenance in the result), and "
        "tune from it when trials asks for more; none: this cell's own trials only",
        choices=("committed", "none"),
        default="committed",
        devices=("cpu",),
    ),
)

FRAMEWORKS: Registry[Framework] = Registry("framework")
for _framework in (
    Framework(
        "torch",
        "bench.backends.pytorch",
        "TorchBackend",
        "torch",
        {"cpu": ("fp32", "bf16", "int8"), "cuda": ("fp32", "fp16", "bf16")},
        {"cpu": "torch-cpu", "cuda": "torch-gpu"},
        (
            Option(
                "channels_last", "bool", "NHWC memory format for weights and inputs", default="0"
            ),
            Option(
                "compile",
                "choice",
                "torch.compile (Inductor) with this mode; compiled in the cold call "
                "(max-autotune also captures CUDA graphs; max-autotune-no-cudagraphs does not)",
                choices=(
                    "default",
                    "reduce-overhead",
                    "max-autotune",
                    "max-autotune-no-cudagraphs",
                ),
            ),
            Option(
                "cuda_graphs",
                "bool",
                "capture once on static buffers, replay",
                default="0",
                devices=("cuda",),
            ),
        ),
        description="eager PyTorch, the reference",
        packages={"cpu": "torch", "cuda": "torch"},
        refusals=(
            Refusal(
                "detection",
                "cuda",
                "a detector cannot be captured in a CUDA graph: its shapes depend on the data "
                "(how many boxes survive each stage) and it synchronises with the host to learn "
                "them (nonzero, NMS); use eager or compile=default",
                option=("cuda_graphs", "1"),
            ),
        ),
    ),
    Framework(
        "onnxruntime",
        "bench.backends.onnxruntime",
        "OnnxRuntimeBackend",
        "onnxruntime",
        {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16")},
        {"cpu": "ort-cpu", "cuda": "ort-gpu"},
        (
            Option(
                "ep",
                "choice",
                "the execution provider",
                choices=("cuda", "tensorrt"),
                default="cuda",
                devices=("cuda",),
            ),
            SHAPE,
            Option(
                "quantizer",
                "choice",
                "ort: ONNX Runtime's own static quantization for CPUs; tensorrt: the QDQ graph "
                "shaped for TensorRT (symmetric, weighted layers only)",
                choices=("ort", "tensorrt"),
                default="ort",
                devices=("cpu",),
                precisions=("int8",),
            ),
        ),
        packages={"cpu": "onnxruntime", "cuda": "onnxruntime-gpu"},
    ),
    Framework(
        "openvino",
        "bench.backends.openvino",
        "OpenVinoBackend",
        "openvino",
        {"cpu": ("fp32", "bf16", "fp16", "int8")},
        {"cpu": "ov-cpu"},
        (
            Option(
                "hint",
                "choice",
                "latency: one synchronous call per batch (as every framework); throughput: "
                "the batch split over OpenVINO's optimal number of async requests",
                choices=("latency", "throughput"),
                default="latency",
            ),
            SHAPE,
            Option(
                "quantizer",
                "choice",
                "nncf: OpenVINO's own post-training quantization; qdq: ONNX Runtime's int8 "
                "graph, to compare both runtimes on one quantization",
                choices=("nncf", "qdq"),
                default="nncf",
                precisions=("int8",),
            ),
        ),
        packages={"cpu": "openvino"},
    ),
    Framework(
        "tvm",
        "bench.backends.tvm",
        "TvmBackend",
        "tvm",
        {"cpu": ("fp32",), "cuda": ("fp32",)},
        {"cpu": "tvm-cpu", "cuda": "tvm-gpu"},
        TVM_BUDGET,
        packages={"cpu": "apache-tvm", "cuda": "apache-tvm"},
    ),
    Framework(
        "tensorrt",
        "bench.backends.tensorrt",
        "TensorRtBackend",
        "tensorrt",
        {"cuda": ("fp32", "fp16", "int8")},
        {"cuda": "trt-gpu"},
        packages={"cuda": "tensorrt-cu13"},
        refusals=(
            Refusal(
                "detection",
                "cuda",
                "a detector's outputs have a data-dependent dimension (the number of "
                "detections: -1 in the engine), which this backend's fixed output buffers "
                "cannot hold (it has no IOutputAllocator); ONNX Runtime's TensorRT EP "
                "(onnxruntime ep=tensorrt) allocates them itself",
            ),
        ),
    ),
    # The native variants (bench/backends/native.py): the framework's C++ API from a C++ runner
    # process, and the same C++ code called through ctypes.
    *(
        Framework(
            f"{fw}-{variant}",
            "bench.backends.native",
            f"{cls}{suffix}",
            fw,
            {"cpu": precisions},
            {"cpu": image},
            (*options, MARSHAL) if variant == "ctypes" else options,
            variant_of=fw,
        )
        for fw, cls, precisions, image, options in (
            ("openvino", "OpenVino", ("fp32", "bf16"), "ov-cpu", ()),
            ("torch", "Torch", ("fp32",), "torch-cpu", ()),
            ("onnxruntime", "OnnxRuntime", ("fp32",), "ort-cpu", (SHAPE,)),
            ("tvm", "Tvm", ("fp32",), "tvm-cpu", TVM_BUDGET),
        )
        for variant, suffix in (("cpp", "Cpp"), ("ctypes", "Ctypes"))
    ),
):
    FRAMEWORKS.add(_framework.name, _framework)


def frameworks_table() -> str:
    """Every framework: where it runs, at which precisions, in which image."""
    rows = [
        "| framework | device: precisions (image) | native variant of |",
        "| --- | --- | --- |",
    ]
    for name in FRAMEWORKS:
        fw = FRAMEWORKS.get(name)
        where = "; ".join(
            f"{device}: {', '.join(precisions)} (`{fw.images[device]}`)"
            for device, precisions in fw.precisions.items()
        )
        rows.append(f"| `{name}` | {where} | {fw.variant_of or '-'} |")
    return "\n".join(rows)


def options_table() -> str:
    """The README's option table, from the data above (`python -m bench frameworks`)."""
    rows = [
        "| framework | option | values | default | applies to | what |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in FRAMEWORKS:
        fw = FRAMEWORKS.get(name)
        for o in fw.options:
            where = ", ".join(o.devices + o.precisions) or "all cells"
            default = o.default if o.default is not None else "-"
            rows.append(f"| `{name}` | `{o.name}` | {o.valid()} | {default} | {where} | {o.help} |")
    return "\n".join(rows)
