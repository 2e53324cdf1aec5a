"""Runner fixtures: a small matrix over the session's real mobilenet_v3_small artifact."""

from __future__ import annotations

from pathlib import Path

import pytest

SMALL_MATRIX = """
name: small
models: [mobilenet_v3_small]
frameworks: {frameworks}
devices: {devices}
batch_sizes: [1]
precisions: [fp32]
threads: 1
memory_limit: {memory}
cell_timeout_s: {timeout}
timing: {{warmup_iters: 2, warmup_seconds: 0, iters: 5, seconds: 0}}
"""


@pytest.fixture
def small_matrix_file(tmp_path: Path):
    def write(frameworks=("onnxruntime",), devices=("cpu",), memory="4g", timeout=120) -> Path:
        path = tmp_path / "small.yaml"
        path.write_text(
            SMALL_MATRIX.format(
                frameworks=list(frameworks), devices=list(devices), memory=memory, timeout=timeout
            ).replace("'", "")
        )
        return path

    return write
