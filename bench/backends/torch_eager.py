"""PyTorch eager on CPU: the reference framework, run the way a PyTorch user would deploy it.

inference_mode (no autograd bookkeeping), an explicit intra-op thread count and a single
inter-op thread, and an optional channels_last memory format (option ``channels_last=1``),
which lets oneDNN pick blocked convolution kernels without reorders.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from bench.backends.base import Backend
from bench.errors import Unsupported
from bench.models import MODELS
from bench.models.build import build_model


class TorchEagerBackend(Backend):
    name = "torch"
    option_names = ("channels_last",)

    def _load(self) -> None:
        weights = self.artifact.weights_path
        if weights is None:
            raise Unsupported("the artifact holds no PyTorch model (it came from an ONNX file)")
        torch.set_num_threads(self.cell.threads)
        # Only settable before the first parallel work; a second cell in one process keeps it.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
        self.channels_last = self.cell.option("channels_last", "0") == "1"
        model = build_model(MODELS.get(self.artifact.model), str(weights), seed=0)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.eval()

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = torch.from_numpy(feed[self.artifact.input_name])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            y = self.model(x)
        return {self.artifact.output_names[0]: y.numpy()}

    def framework_version(self) -> str:
        return torch.__version__

    def _runtime_info(self) -> dict[str, object]:
        dtypes = {str(p.dtype) for p in self.model.parameters()}
        return {
            "precision_run": "fp32" if dtypes == {"torch.float32"} else ",".join(sorted(dtypes)),
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "channels_last": self.channels_last,
            "mkldnn_enabled": torch.backends.mkldnn.is_available(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        }

    def _close(self) -> None:
        self.model = None
