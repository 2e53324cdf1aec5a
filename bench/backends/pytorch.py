"""PyTorch: the reference framework, run the way a PyTorch user would deploy it.

- CPU: inference_mode, an explicit intra-op thread count and one inter-op thread; fp32, or
  bf16 (the model converted, oneDNN's bf16 kernels) on CPUs that compute bf16 natively, or
  int8: PT2E static quantization compiled by Inductor into oneDNN int8 kernels, which are
  read back from the generated code (bench/backends/torch_int8.py).
- CUDA: the model converted to the cell's precision (`.half()` / `.bfloat16()`, so the
  precision run is read back from the parameters), cuDNN autotuning on (`cudnn.benchmark`:
  shapes are fixed), and for fp32 TF32 switched off in both cuDNN and matmuls: PyTorch lets
  cuDNN use TF32 by default, which would run fp32 cells at a lower precision than asked.
- Options, each a variant of its own in the matrix:
  - ``channels_last=1``: NHWC memory format (oneDNN blocked kernels on CPU, tensor-core
    friendly layouts on GPU);
  - ``compile=default|reduce-overhead|max-autotune|max-autotune-no-cudagraphs``:
    `torch.compile` with that mode; the compilation happens in the cold call (`cold_ms`), not
    in the timed ones. On CUDA `max-autotune` also captures CUDA graphs (as reduce-overhead
    does); `max-autotune-no-cudagraphs` autotunes the kernels alone;
  - ``cuda_graphs=1`` (CUDA): the model captured once in a CUDA graph on static input and
    output buffers and replayed, which removes the per-kernel launch cost.
- A compiled cell keeps Inductor's caches (FX graphs, generated kernels, autotuning results)
  in a verified cache entry per artifact, torch version, mode, device, precision, batch and
  layout: a later process (the next round, a rerun) reuses them instead of compiling and
  autotuning again. `inductor_cache` in the result says whether it was reused and how many
  FX graphs came from it; `cold_ms` of a reused cache is a warm compile.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bench import cache
from bench.backends import torch_int8
from bench.backends.base import Backend, static_input_shape
from bench.backends.cpu import bf16_unsupported_reason
from bench.backends.cuda import cuda_unavailable_reason
from bench.errors import Unsupported
from bench.measure.device_busy import device_intervals, union_length
from bench.models import MODELS
from bench.models.build import as_graph, build_model
from bench.quantize import calibration_batches, calibration_record, int8_label, integer_fraction

INDUCTOR_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PRECISION_OF = {v: k for k, v in DTYPES.items()}


PROFILER_METHOD = (
    "torch.profiler (Kineto/CUPTI): union of the kernel, copy and memset intervals on the "
    "device timeline, per run"
)


def profile_device_busy(run: Callable[[], object], runs: int) -> tuple[str, float | None]:
    """`run` called `runs` times under torch's profiler: the device's busy milliseconds per
    run (None when the profiler saw no device work, as on a CPU)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        for _ in range(runs):
            run()
    with tempfile.TemporaryDirectory(prefix="deploybench-profile-") as folder:
        trace_path = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(trace_path))
        trace = json.loads(trace_path.read_text())
    spans = device_intervals(trace)
    return PROFILER_METHOD, union_length(spans) / 1000 / runs if spans else None


class TorchBackend(Backend):
    name = "torch"
    serial_reason = None  # eager inference_mode forwards may run in several threads at once

    def _device_unavailable(self) -> str | None:
        if self.cell.device != "cuda":
            return None
        if reason := cuda_unavailable_reason():
            return reason
        if not torch.cuda.is_available():
            return f"torch {torch.__version__} sees no CUDA device (a CPU-only build?)"
        return None

    def _options(self) -> None:
        self.channels_last = self.cell.option("channels_last", "0") == "1"
        self.compile_mode = self.cell.option("compile")
        self.cuda_graphs = self.cell.option("cuda_graphs", "0") == "1"
        # Names, values and devices are the framework table's (checked with the cell); what is
        # left is the one combination the table cannot say.
        if self.cuda_graphs and self.compile_mode:
            raise Unsupported(
                "torch options cuda_graphs and compile together: use compile=reduce-overhead, "
                "which captures CUDA graphs itself"
            )

    def _load(self) -> None:
        if self.artifact.weights_path is None:
            raise Unsupported("the artifact holds no PyTorch model (it came from an ONNX file)")
        self._options()
        cpu_bf16 = self.cell.device == "cpu" and self.precision == "bf16"
        if cpu_bf16 and (reason := bf16_unsupported_reason()):
            raise Unsupported(f"torch bf16: {reason}")
        self.int8 = self.precision == "int8"
        if self.int8 and (reason := torch_int8.unavailable_reason()):
            raise Unsupported(reason)
        torch.set_num_threads(self.cell.threads)
        # Only settable before the first parallel work; a second cell in one process keeps it.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
        self.device = torch.device("cuda", 0) if self.cell.device == "cuda" else torch.device("cpu")
        # int8 takes and gives float32; its integer kernels are Inductor's (see _load_int8).
        self.dtype = torch.float32 if self.int8 else DTYPES[self.precision]
        if self.device.type == "cuda":
            fp32 = self.precision == "fp32"
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.allow_tf32 = not fp32
            torch.backends.cuda.matmul.allow_tf32 = not fp32
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.graph: torch.cuda.CUDAGraph | None = None
        self.staged: torch.Tensor | None = None
        self.output: torch.Tensor | None = None
        if self.int8:
            self._load_int8()
            return
        self.model = self._build()
        if self.compile_mode:
            self._use_inductor_cache()
        self.forward = (
            torch.compile(self.model, mode=self.compile_mode) if self.compile_mode else self.model
        )

    def _inductor_entry(self) -> cache.Entry:
        what = {
            "torch": torch.__version__,
            "mode": self.compile_mode,
            "device": self.cell.device,
            "gpu": torch.cuda.get_device_name(0) if self.device.type == "cuda" else None,
            "precision": self.precision,
            "batch": self.cell.batch_size,
            "channels_last": self.channels_last,
        }
        return cache.entry("inductor", self.artifact.key[:16], what=what)

    def _use_inductor_cache(self) -> None:
        """Point Inductor at a writable copy of this cell's verified cache entry (the shared
        cache may be mounted read-only); published back when the cell closes, if it grew."""
        entry = self._inductor_entry()
        found = entry.lookup()
        self._inductor_stack = contextlib.ExitStack()
        folder = self._inductor_stack.enter_context(entry.build(seed=found))
        self._inductor = {"entry": entry.name, "reused": found is not None}
        self._inductor_env = os.environ.get(INDUCTOR_CACHE_ENV)
        os.environ[INDUCTOR_CACHE_ENV] = str(folder)

    def _build(self) -> torch.nn.Module:
        """The model from the artifact's weights, on the cell's device, dtype and layout."""
        spec = MODELS.get(self.artifact.model)
        model = as_graph(build_model(spec, str(self.artifact.weights_path), seed=0), spec)
        model = model.to(self.device, self.dtype).eval()
        return model.to(memory_format=self.memory_format)

    def _load_int8(self) -> None:
        """Quantize (or reuse the cached program), compile, and check int8 kernels were made."""
        batches = [
            self._to_device(b)
            for b in calibration_batches(self.artifact.inputs, self.cell.batch_size)
        ]
        self.model, self.program_path, self.program_reused = torch_int8.quantized_program(
            self._build, self.artifact, batches, self.channels_last
        )
        self.forward, self.int8_kernels, self.float_kernels = torch_int8.compile_int8(
            self.model, batches[0], self.compile_mode
        )

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(array).to(self.device, self.dtype, non_blocking=False)
        return x.contiguous(memory_format=self.memory_format)

    def _capture(self, x: torch.Tensor) -> None:
        """Record the model on static buffers; later runs copy into them and replay."""
        self.static_in = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):  # cuDNN autotuning and allocations happen before capture
                self.model(self.static_in)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.static_out = self.model(self.static_in)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        self._ran = True  # a compiled cell's caches are kept only once it ran
        if self.cuda_graphs:
            if self.graph is None or x.shape != self.static_in.shape:
                self._capture(x)
            self.static_in.copy_(x)
            self.graph.replay()
            return self.static_out
        with torch.inference_mode():
            return self.forward(x)

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        y = self._run(self._to_device(feed[self.artifact.input_name]))
        outputs = y if isinstance(y, tuple) else (y,)  # a detector gives several
        # .cpu() waits for the device: the copy back is part of this scope. Float outputs come
        # back as float32 whatever the precision ran (labels stay integers).
        return {
            name: (t.float() if t.is_floating_point() else t).cpu().numpy()
            for name, t in zip(self.artifact.output_names, outputs, strict=True)
        }

    def _stage(self, feed: dict[str, np.ndarray]) -> None:
        self.staged = self._to_device(feed[self.artifact.input_name])
        torch.cuda.synchronize(self.device)

    def _run_staged(self) -> None:
        self.output = self._run(self.staged)
        torch.cuda.synchronize(self.device)

    def profile_device_busy(self, runs: int) -> tuple[str, float | None]:
        return profile_device_busy(self._run_staged, runs)

    def model_files(self) -> list[Path]:
        return [self.artifact.weights_path] if self.artifact.weights_path else []

    def concurrency_serial_reason(self) -> str | None:
        if self.cuda_graphs:
            return "a CUDA graph replays into one set of static buffers"
        if self.compile_mode or self.cell.precision == "int8":
            return "a torch.compile'd module is not documented as safe to call from threads"
        return None

    def framework_version(self) -> str:
        return torch.__version__

    def _memory_format_read_back(self) -> dict[str, str]:
        """The layout the weights and inputs really have, from the tensors (not the option):
        the first convolution weight with a spatial extent, and a converted input."""

        def layout(t: torch.Tensor) -> str:
            if t.is_contiguous():
                return "contiguous (NCHW)"
            return (
                "channels_last (NHWC)"
                if t.is_contiguous(memory_format=torch.channels_last)
                else "other"
            )

        weight = next(
            (p for p in self.model.parameters() if p.dim() == 4 and p.shape[-1] > 1), None
        )
        sample = self._to_device(self.artifact.inputs[:1])
        return {
            "weights": "none" if weight is None else layout(weight),
            "inputs": layout(sample),
        }

    def _runtime_info(self) -> dict[str, object]:
        dtypes = {p.dtype for p in self.model.parameters()}
        only = next(iter(dtypes)) if len(dtypes) == 1 else None
        info: dict[str, object] = {
            # Read back from the model's parameters: what the kernels were given.
            "precision_run": PRECISION_OF.get(only) or ",".join(sorted(map(str, dtypes))),
            "threads": torch.get_num_threads(),
            # torch.set_flush_denormal is off unless called, which this project never does.
            "denormals": "IEEE (kept)",
            # Eager PyTorch takes whatever shape it is given; compiled code is specialised.
            "input_shape": static_input_shape(self.artifact, self.cell)
            if self.compile_mode or self.int8
            else {"mode": "eager", "dims": list(self.artifact.meta["inputs"][0]["shape"])},
            "interop_threads": torch.get_num_interop_threads(),
            "channels_last": self.channels_last,
            "memory_format": self._memory_format_read_back(),
            "compile_mode": self.compile_mode,
        }
        if self.compile_mode and not self.int8:
            info["inductor_cache"] = self._inductor_info()
        if self.int8:
            info.update(self._int8_info())
        if self.device.type == "cpu":
            info["mkldnn_enabled"] = torch.backends.mkldnn.is_available()
            info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
            return info
        props = torch.cuda.get_device_properties(self.device)
        info.update(
            gpu=props.name,
            compute_capability=f"{props.major}.{props.minor}",
            cuda_version=torch.version.cuda,
            cudnn_version=torch.backends.cudnn.version(),
            cudnn_benchmark=torch.backends.cudnn.benchmark,
            tf32=torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32,
            cuda_graphs=self.cuda_graphs,
            framework_peak_memory_mib=round(torch.cuda.max_memory_allocated() / 2**20, 1),
        )
        return info

    def _int8_info(self) -> dict[str, object]:
        fraction = integer_fraction(
            sum(self.int8_kernels.values()), sum(self.float_kernels.values())
        )
        return {
            # Read back from the code Inductor generated: the oneDNN int8 kernels it calls,
            # against the float convolution and matmul kernels it calls instead.
            "precision_run": int8_label(fraction),
            "integer_fraction": fraction,
            "compile_mode": self.compile_mode or "default",
            "inductor_freezing": True,
            "int8_kernels": self.int8_kernels,
            "float_kernels": self.float_kernels,
            "quantized_program": str(self.program_path),
            "quantized_program_reused": self.program_reused,
            "calibration": {
                **calibration_record(self.artifact, torch_int8.recipe()),
                "batch_size": self.cell.batch_size,
            },
        }

    def _inductor_info(self) -> dict[str, object]:
        from torch._dynamo.utils import counters

        inductor = counters["inductor"]
        return {
            **self._inductor,
            "fxgraph_cache_hits": int(inductor.get("fxgraph_cache_hit", 0)),
            "fxgraph_cache_misses": int(inductor.get("fxgraph_cache_miss", 0)),
        }

    def _close_inductor_cache(self) -> None:
        stack = getattr(self, "_inductor_stack", None)
        if stack is None:
            return
        self._inductor_stack = None
        if self._inductor_env is None:
            os.environ.pop(INDUCTOR_CACHE_ENV, None)
        else:
            os.environ[INDUCTOR_CACHE_ENV] = self._inductor_env
        if self._inductor["reused"] or not getattr(self, "_ran", False):
            # Nothing new to keep, or a cell that never ran: the copy is discarded.
            stack.__exit__(RuntimeError, RuntimeError("reused"), None)
        else:
            stack.close()  # publishes what Inductor compiled and autotuned

    def _close(self) -> None:
        self._close_inductor_cache()
        self.model = self.forward = self.graph = self.staged = self.output = None
        if self.cell.device == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()
