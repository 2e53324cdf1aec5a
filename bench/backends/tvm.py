"""Apache TVM (Relax) on CPU, compiled for this CPU and, with a budget, tuned by MetaSchedule.

- The ONNX graph goes through the Relax frontend with every input dimension fixed (the batch
  to the cell's size): TVM optimises static shapes best. It is compiled by the default Relax
  pipeline for an LLVM target with the host CPU's own `mcpu` (TVM 0.27 takes targets as dicts).
- Without a budget (`trials=0`, the default) TVM runs its unscheduled default loops, tens of
  times slower than ONNX Runtime (mobilenet_v3_small: ~40 ms against 1.5 ms); the result says
  `tuned: false`. (TVM's CPU dlight rules, GEMV and Reduction, were tried: no faster.)
- With `trials=N` (and `trials_per_task`, default 64) MetaSchedule tunes what TVM's
  `static_shape_tuning_pipeline` tunes, and that pipeline applies the database with CPU weight
  prepacking: the weights are rewritten once, at load, into the layouts the tuned kernels read.
  Tuning calls MetaSchedule itself only to give its builder a build function that skips
  `import tvm.s_tir.tensor_intrin` (~50 s, mostly CUDA intrinsics), which the default one does
  in every fresh build process and so times out every build on a small machine.
- The database is cached per artifact, target, batch size and TVM version (`DEPLOYBENCH_CACHE`,
  default ~/.cache/deploybench) and reused when an earlier run's budget covers this one's.
  `load_ms` includes tuning; `tuning_s` (0 when reused) and `compile_s` say how it splits.
- A database committed to the repository for this exact target, model and batch
  (bench/backends/tvm_database.py) is applied by default (`database=committed`), even at
  `trials=0`: the cell is then labelled with the committed budget and its provenance; a cell
  asking for more trials than it holds tunes further from a copy of it.
- The thread budget is TVM's runtime thread pool, read back from it; MetaSchedule's measuring
  processes inherit it (`TVM_NUM_THREADS`), so kernels are tuned for the threads they run with.
- On CUDA (bench/backends/tvm_cuda.py) the target is device 0's compute capability; untuned
  kernels get dlight's default GPU schedules (the result says which rules scheduled how many),
  tuning is the same MetaSchedule path and database cache (the target is part of its key) with
  dlight for what it did not reach and no weight prepacking (a CPU layout rewrite). Weights
  move to the GPU once, at load; the generated CUDA is compiled by NVRTC.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import tvm
from tvm import relax
from tvm.relax import transform as rx
from tvm.relax.frontend.onnx import from_onnx
from tvm.s_tir import meta_schedule as ms

from bench import cache
from bench.backends import tvm_cuda, tvm_database
from bench.backends.base import Backend, static_input_shape
from bench.backends.cuda import cuda_unavailable_reason
from bench.backends.tvm_database import (
    tasks_in_database,
    tuned_workloads,
    tuning_label,
    valid_records,
)
from bench.backends.tvm_search import tuning_progress, tuning_workers
from bench.errors import Unsupported
from bench.frameworks import FRAMEWORKS

# The framework table holds the default (bench/frameworks.py).
DEFAULT_TRIALS_PER_TASK = int(FRAMEWORKS.get("tvm").option("trials_per_task").default or 64)
_DONE = "deploybench_tuning.json"  # written when a tuning run has finished: its budget
# Why a TVM cell at a reduced precision is unsupported, said in its reason.
NOT_IMPLEMENTED = {
    "fp16": "TVM's fp16 mixed precision (Relax's ToMixedPrecision) is not applied here",
    "bf16": "Relax's mixed-precision pass converts to fp16 only, and nothing here converts to bf16",
    "int8": "TVM quantization (a quantized graph compiled to int8 kernels) is not implemented here",
}


def host_target(threads: int) -> dict[str, object]:
    """This CPU's LLVM target in TVM's canonical form, e.g. mcpu znver4, num-cores 2."""
    system_cpu = tvm.get_global_func("target.llvm_get_system_cpu", allow_missing=True)
    mcpu = str(system_cpu()) if system_cpu is not None else ""
    target = tvm.target.Target({"kind": "llvm", "mcpu": mcpu or "generic", "num-cores": threads})
    return json.loads(str(target))


def tuning_entry(
    artifact_key: str, target: dict[str, object], batch_size: int, seed: str | None = None
) -> cache.Entry:
    """The cache entry of the MetaSchedule database of this artifact, target and batch size
    (`seed`: the committed database it was tuned further from)."""
    what = {"target": target, "batch": batch_size, "tvm": tvm.__version__}
    if seed:
        what["seed"] = seed
    return cache.entry("tvm", artifact_key[:16], what=what)


def prepare_for_tuning(mod: tvm.IRModule, target: tvm.target.Target, prepack: bool) -> tvm.IRModule:
    """The passes static_shape_tuning_pipeline runs before it tunes (prepack: CPU only)."""
    with target:
        return tvm.transform.Sequential(
            [
                rx.DecomposeOpsForInference(),
                rx.CanonicalizeBindings(),
                relax.pipeline.zero_pipeline(),
                *([rx.AttachAttrLayoutFreeBuffers()] if prepack else []),
            ]
        )(mod)


def import_onnx(
    graph: onnx.ModelProto, shapes: dict[str, list[int]]
) -> tuple[tvm.IRModule, dict[str, list]]:
    """The Relax module of an ONNX graph with every input dimension fixed, its weights detached
    as parameters (`params["main"]`, passed after the inputs), for the backend and `diverge`.
    A graph the frontend cannot convert is `Unsupported`, naming the operator."""
    printed = io.StringIO()  # the frontend prints the operator it failed on, then raises
    try:
        with contextlib.redirect_stdout(printed):
            mod = from_onnx(graph, shape_dict=shapes, keep_params_in_input=True)
    except Exception as exc:  # the frontend raises many types for a graph it cannot convert
        failed_op = re.search(r"Error converting operator (\w+)", printed.getvalue())
        where = f"cannot convert {failed_op.group(1)}: " if failed_op else ""
        raise Unsupported(f"TVM's Relax ONNX frontend: {where}{exc}") from exc
    finally:
        sys.stdout.write(printed.getvalue())  # still the cell's log
    return relax.frontend.detach_params(mod)


def cpu_vm(mod: tvm.IRModule, threads: int) -> relax.VirtualMachine:
    """An untuned module compiled for this CPU (`host_target`), on the Relax VM."""
    target = tvm.target.Target(host_target(threads))
    return relax.VirtualMachine(tvm.compile(mod, target=target), tvm.cpu())


class TvmBackend(Backend):
    name = "tvm"
    # Decided: a Relax VirtualMachine keeps its registers in one object, so it is entered by
    # one call at a time; a VM per thread would hold the weights N times.
    serial_reason = "a TVM Relax VirtualMachine runs one call at a time"

    def _device_unavailable(self) -> str | None:
        return cuda_unavailable_reason() if self.cell.device == "cuda" else None

    def load(self) -> None:
        """The base checks; a reduced-precision cell is refused with the reason why."""
        supported = self.precisions.get(self.cell.device)
        if supported and (why := NOT_IMPLEMENTED.get(self.cell.precision)):
            raise Unsupported(
                f"tvm on {self.cell.device} supports precision {', '.join(supported)}, "
                f"not {self.cell.precision}: deploybench runs TVM in fp32 only; {why}"
            )
        super().load()

    def _load(self) -> None:
        start = time.perf_counter()
        self.trials, self.per_task = self._budget()
        # TVM sizes a thread's pool once, on first use, from TVM_NUM_THREADS (unset: half the
        # CPUs); config_threadpool then sets how many of its workers run (mode 1: TVM's default).
        os.environ["TVM_NUM_THREADS"] = str(self.cell.threads)
        tvm.get_global_func("runtime.config_threadpool")(1, self.cell.threads)
        if (threads := self._threads()) != self.cell.threads:
            raise RuntimeError(
                f"TVM's thread pool here was created earlier with {threads} threads and cannot "
                "grow; run cells with more threads in a new process"
            )
        self.on_cuda = self.cell.device == "cuda"
        if self.on_cuda:
            tvm_cuda.use_nvrtc_headers()
            self.cuda_math = tvm_cuda.use_nvrtc_math(self.precision)
            self.target, self.device = tvm_cuda.device_target(), tvm.cuda(0)
        else:
            self.target, self.device = host_target(self.cell.threads), tvm.cpu()
        self.committed, self.committed_note = None, None
        if self.cell.option("database", "committed") == "committed" and not self.on_cuda:
            self.committed, self.committed_note = tvm_database.find_committed(
                self.artifact.model, self.target, self.cell.batch_size, tvm.__version__
            )
        self.prepack = (self.trials > 0 or self.committed is not None) and not self.on_cuda
        target = tvm.target.Target(self.target)
        shape = [self.cell.batch_size, *self.artifact.inputs.shape[1:]]
        graph = onnx.load(str(self.artifact.onnx_path))  # an unreadable file is a failure
        mod, params = import_onnx(graph, {self.artifact.input_name: shape})
        self.tuning_s, self.tuning_reused, self.tuning_database = 0.0, False, None
        self.trials_run, self.records = 0, 0  # this load's successful trials; the database's
        self.tasks: int | None = None  # tuning tasks of the model, and those tuned (trials > 0)
        self.tuned_tasks: int | None = None
        self.schedule_rules: dict[str, int] = {}
        if self.trials or self.committed:
            mod = self._tune(mod, target)
        elif self.on_cuda:
            mod = prepare_for_tuning(mod, target, prepack=False)
        if self.on_cuda:  # a GPU kernel must be scheduled to build: dlight takes the rest
            mod, self.schedule_rules = tvm_cuda.default_gpu_schedule(mod, target)
        # NVRTC compiles for the arch of the current target (on CUDA, when the module loads).
        with target if self.on_cuda else contextlib.nullcontext():
            self.executable = tvm.compile(mod, target=target)
            self.vm = relax.VirtualMachine(self.executable, self.device)
        weights = self.params = params.get("main", [])
        if self.prepack:  # the prepacked layouts: transformed once, here, not in every call
            weights = self.vm["main_transform_params"](weights)
        if self.on_cuda:  # on the GPU once, not copied in every call
            weights = [w.copyto(self.device) for w in weights]
        self.weights, self.main = list(weights), self.vm["main"]
        self.staged = None
        self.compile_s = time.perf_counter() - start - self.tuning_s

    def export(self, folder: Path) -> dict[str, object]:
        """Write what this backend compiled for the native runners (bench/native): the library
        (`model.so`, linked by the system compiler), its weights as loaded, before prepacking
        (`params.bin`, named p00000, p00001, ... in argument order) and `meta.json` (whether to
        prepack, the tuning record); returns the meta."""
        if self.on_cuda:
            raise Unsupported("the native TVM runners run on the CPU only")
        self.executable.export_library(str(folder / "model.so"))
        names = {f"p{i:05d}": w for i, w in enumerate(self.params)}
        tvm.runtime.save_param_dict_to_file(names, str(folder / "params.bin"))
        info = self._runtime_info()
        meta = {
            "prepack": self.prepack,
            "weights": len(names),
            **{k: info[k] for k in ("target", "tuned", "tuning", "tuning_trials")},
            **{k: info[k] for k in ("tuning_source", "tuning_committed", "tuning_committed_note")},
            "tuning_trials_per_task": info["tuning_trials_per_task"],
            "tuning_database": info["tuning_database"],
            # when the library was compiled (a later cell loads it from the cache)
            "library_compile_s": info["compile_s"],
        }
        (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        return meta

    def _budget(self) -> tuple[int, int]:
        """(trials, trials per task): integers in range, as the framework table checked."""
        trials = int(self.cell.option("trials", "0"))
        per_task = int(self.cell.option("trials_per_task", str(DEFAULT_TRIALS_PER_TASK)))
        return trials, min(per_task, trials)

    def _tune(self, mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
        """Apply the committed database when it covers this budget; else tune unless the cached
        database covers it (from a copy of the committed one when there is one), then apply
        the database with prepacking."""
        prepared = prepare_for_tuning(mod, target, self.prepack)
        tasks = ms.relax_integration.extract_tasks(prepared, target)
        self.tasks = len(tasks)
        committed = self.committed
        if committed is not None and committed.records >= self.trials:
            self.tuning_reused = True
            with tempfile.TemporaryDirectory(prefix="deploybench-tvm-db-") as tmp:
                # Applied from a copy: the committed folder may be a read-only mount.
                work_dir = Path(shutil.copytree(committed.path, Path(tmp) / "db"))
                self.records = valid_records(work_dir)
                self.tuned_tasks = tasks_in_database(tasks, work_dir)
                self.tuning_database = str(committed.path)
                return relax.pipeline.static_shape_tuning_pipeline(
                    0, target, str(work_dir), cpu_weight_prepack=self.prepack
                )(mod)
        seed = committed.sha256[:16] if committed else None
        entry = tuning_entry(self.artifact.key, self.target, self.cell.batch_size, seed)
        found = entry.lookup()  # verified: a database is read back into compiled code
        done_file = found / _DONE if found else None
        done = json.loads(done_file.read_text()) if done_file and done_file.is_file() else {}
        self.tuning_reused = (
            done.get("trials", 0) >= self.trials and done.get("trials_per_task", 0) >= self.per_task
        )
        work_dir = found
        if not self.tuning_reused:
            # Tuned further in a copy of the database (the cached one, else the committed one),
            # which then replaces the cache entry whole.
            with entry.build(seed=found or (committed.path if committed else None)) as staging:
                self._tune_into(staging, prepared, target)
            work_dir = entry.path
        self.tuning_database, self.records = str(work_dir), valid_records(work_dir)
        self.tuned_tasks = tuned_workloads(work_dir)
        return relax.pipeline.static_shape_tuning_pipeline(
            0, target, str(work_dir), cpu_weight_prepack=self.prepack
        )(mod)

    def _tune_into(self, work_dir: Path, prepared: tvm.IRModule, target: tvm.target.Target) -> None:
        """Run MetaSchedule with this cell's budget on the prepared module, adding to the
        database in `work_dir`."""
        started = time.perf_counter()
        before = valid_records(work_dir)
        with tuning_progress(work_dir, self.trials):
            ms.relax_integration.tune_relax(
                prepared,
                {},
                target,
                str(work_dir),
                self.trials,
                max_trials_per_task=self.per_task,
                **tuning_workers(self.cell.threads),
                seed=0,
            )
        self.trials_run = valid_records(work_dir) - before
        if self.trials_run == 0:
            raise RuntimeError("no MetaSchedule candidate built and ran (its logs are above)")
        self.tuning_s = time.perf_counter() - started
        budget = {"trials": self.trials, "trials_per_task": self.per_task}
        (work_dir / _DONE).write_text(json.dumps(budget))

    def _source(self) -> str:
        """Whose trials the compiled kernels come from."""
        if self.committed is None:
            return "own" if self.trials else "none"
        return "committed" if self.committed.records >= self.trials else "committed+own"

    def _label(self) -> str:
        if self._source() != "committed":
            return tuning_label(self.trials, self.tasks, self.tuned_tasks, self.per_task)
        c = self.committed
        return tuning_label(c.records, self.tasks, self.tuned_tasks, c.per_task, c.budget_note())

    def _threads(self) -> int:
        return int(tvm.get_global_func("runtime.NumThreads")())

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = tvm.runtime.tensor(feed[self.artifact.input_name], device=self.device)
        out = self.main(x, *self.weights)
        outputs = list(out) if isinstance(out, tvm.ir.Array) else [out]
        # .numpy() copies to the host, after the device has finished.
        return {n: o.numpy() for n, o in zip(self.artifact.output_names, outputs, strict=True)}

    def _stage(self, feed: dict[str, np.ndarray]) -> None:
        self.staged = tvm.runtime.tensor(feed[self.artifact.input_name], device=self.device)

    def _run_staged(self) -> None:
        self.main(self.staged, *self.weights)  # outputs stay on the device
        self.device.sync()  # kernel launches are asynchronous

    def framework_version(self) -> str:
        return tvm.__version__

    def _runtime_info(self) -> dict[str, object]:
        return {
            "precision_run": "fp32",  # the imported graph is float32 and no pass converts it
            "threads": self._threads(),
            "input_shape": static_input_shape(self.artifact, self.cell),
            "denormals": "IEEE (kept: LLVM's code does not set flush-to-zero)",
            "target": self.target,
            "tuned": self.trials > 0 or self.committed is not None,
            "tuning": self._label(),
            "tuning_source": self._source(),
            "tuning_committed": self.committed.summary() if self.committed else None,
            "tuning_committed_note": self.committed_note,
            "tuning_tasks": self.tasks,
            "tuning_tasks_tuned": self.tuned_tasks,
            "tuning_trials": self.trials,
            "tuning_trials_per_task": self.per_task,
            "tuning_trials_run": self.trials_run,
            "tuning_records": self.records,
            "tuning_s": self.tuning_s,
            "tuning_reused": self.tuning_reused,
            "tuning_database": self.tuning_database,
            "weight_prepack": self.prepack,
            "compile_s": self.compile_s,
            **(self._cuda_info() if self.on_cuda else {}),
        }

    def _cuda_info(self) -> dict[str, object]:
        return {
            "device_name": self.device.device_name,
            "compute_version": self.device.compute_version,
            # Kernels per dlight rule; with tuning, those MetaSchedule's database did not cover.
            "schedule_rules": self.schedule_rules,
            "cuda_compiler": os.environ.get("TVM_CUDA_COMPILE_MODE", "nvrtc"),
            "cuda_math": self.cuda_math,
        }

    def _close(self) -> None:
        self.vm = self.main = self.staged = self.executable = None
        self.weights = self.params = []
