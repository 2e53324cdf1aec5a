"""Apache TVM (Relax) on CPU, compiled for this CPU and, with a budget, tuned by MetaSchedule.

- The ONNX graph is imported by the Relax frontend with the batch fixed to the cell's size
  (static shapes are what TVM optimises best) and compiled for the host CPU's own `-mcpu`
  (TVM 0.27 takes targets only as dicts).
- Without a budget (`trials=0`) the cell runs TVM's default schedules, which on CPU are tens of
  times slower than PyTorch: the result says `tuned: false` and reports mark it UNTUNED.
- With `trials=N` (and `trials_per_task`), MetaSchedule tunes through the
  `static_shape_tuning_pipeline` with CPU weight prepacking (weights rewritten once, at load,
  into the layouts the tuned kernels want). The tuning database lives in a cache keyed by the
  artifact, the target and the batch size, and is reused: a later cell with a budget the
  database already covers does not tune again (`tuning_reused`). Tuning time is reported on
  its own (`tuning_s`), as is compilation (`compile_s`).
- The thread budget is given to TVM's runtime thread pool and read back from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import onnx
import tvm
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx

from bench.backends.base import Backend
from bench.errors import Unsupported

DEFAULT_TRIALS_PER_TASK = 64
_COMPLETE = "complete.json"  # written when a tuning run finished: {"trials": N}


def host_target(threads: int) -> dict[str, object]:
    """The LLVM target of this CPU, e.g. {"kind": "llvm", "mcpu": "znver4", "num-cores": 2}."""
    cpu = tvm.get_global_func("target.llvm_get_system_cpu")()
    return {"kind": "llvm", "mcpu": str(cpu) or "generic", "num-cores": threads}


def cache_root() -> Path:
    return Path(os.environ.get("DEPLOYBENCH_CACHE", Path.home() / ".cache" / "deploybench"))


def tuning_dir(artifact_key: str, target: dict, batch_size: int) -> Path:
    """Where the MetaSchedule database of this artifact, target and batch size lives."""
    what = json.dumps({"target": target, "batch": batch_size}, sort_keys=True).encode()
    return cache_root() / "tvm" / f"{artifact_key[:16]}-{hashlib.sha256(what).hexdigest()[:12]}"


class TvmBackend(Backend):
    name = "tvm"
    option_names = ("trials", "trials_per_task")

    def _import(self) -> tvm.IRModule:
        shape = [self.cell.batch_size, *self.artifact.meta["inputs"][0]["shape"][1:]]
        try:
            graph = onnx.load(str(self.artifact.onnx_path))
            return from_onnx(
                graph, shape_dict={self.artifact.input_name: shape}, keep_params_in_input=True
            )
        except Exception as exc:  # the frontend raises many types for an op it cannot convert
            raise Unsupported(f"tvm relax onnx frontend: {type(exc).__name__}: {exc}") from exc

    def _tune(self, mod: tvm.IRModule) -> tvm.IRModule:
        """Tune (or reuse the database), then apply it with weight prepacking."""
        work_dir = tuning_dir(self.artifact.key, self.target, self.cell.batch_size)
        done = work_dir / _COMPLETE
        covered = json.loads(done.read_text())["trials"] if done.is_file() else 0
        self.tuning_reused = covered >= self.trials
        work_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        mod = relax.pipeline.static_shape_tuning_pipeline(
            total_trials=0 if self.tuning_reused else self.trials,
            target=self.target,
            work_dir=str(work_dir),
            cpu_weight_prepack=True,
            max_trials_per_task=min(self.trials_per_task, self.trials),
        )(mod)
        self.tuning_s = 0.0 if self.tuning_reused else time.perf_counter() - start
        if not self.tuning_reused:
            done.write_text(json.dumps({"trials": self.trials}))
        self.tuning_database = str(work_dir)
        return mod

    def _load(self) -> None:
        try:
            self.trials = int(self.cell.option("trials", "0"))
            self.trials_per_task = int(
                self.cell.option("trials_per_task", str(DEFAULT_TRIALS_PER_TASK))
            )
        except ValueError as exc:
            raise Unsupported(
                f"tvm options trials and trials_per_task are integers: {exc}"
            ) from exc
        # The pool reads this when it starts; config_threadpool resizes one already running.
        os.environ["TVM_NUM_THREADS"] = str(self.cell.threads)
        tvm.get_global_func("runtime.config_threadpool")(1, self.cell.threads)
        self.target = host_target(self.cell.threads)
        self.tuning_s, self.tuning_reused, self.tuning_database = 0.0, False, None
        mod, params = relax.frontend.detach_params(self._import())
        if self.trials > 0:
            mod = self._tune(mod)
        start = time.perf_counter()
        executable = tvm.compile(mod, target=tvm.target.Target(self.target))
        self.vm = relax.VirtualMachine(executable, tvm.cpu())
        self.compile_s = time.perf_counter() - start
        weights = params.get("main", [])
        if self.trials > 0:  # the prepacked layouts: transformed once, here, not per call
            weights = self.vm["main_transform_params"](weights)
        self.weights = list(weights)

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = tvm.runtime.tensor(feed[self.artifact.input_name], tvm.cpu())
        out = self.vm["main"](x, *self.weights)
        outputs = out if isinstance(out, (list, tuple, tvm.ir.Array)) else [out]
        return {n: o.numpy() for n, o in zip(self.artifact.output_names, outputs, strict=True)}

    def framework_version(self) -> str:
        return tvm.__version__

    def _runtime_info(self) -> dict[str, object]:
        return {
            "precision_run": "fp32",  # the imported graph is float32 and nothing converts it
            "threads": int(tvm.get_global_func("runtime.NumThreads")()),
            "target": self.target,
            "tuned": self.trials > 0,
            "tuning_trials": self.trials,
            "tuning_trials_per_task": min(self.trials_per_task, self.trials) if self.trials else 0,
            "tuning_s": self.tuning_s,
            "tuning_reused": self.tuning_reused,
            "tuning_database": self.tuning_database,
            "compile_s": self.compile_s,
            "weight_prepack": self.trials > 0,
        }

    def _close(self) -> None:
        self.vm = None
        self.weights = []
