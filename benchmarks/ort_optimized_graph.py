#!/usr/bin/env python3
"""What ONNX Runtime's graph optimiser makes of an artifact: the op types of the optimised
graph, to explain a speed difference between two ONNX Runtime versions.

    docker run --rm --network none --tmpfs /tmp -v $PWD/benchmarks:/b:ro \\
        -v $PWD/artifacts/<artifact>:/a:ro --entrypoint python3 deploybench/ort-cpu:<tag> \\
        /b/ort_optimized_graph.py /a/model.onnx

Builds a CPU session as the onnxruntime backend does for a batch-1 cell (all optimisations,
the batch fixed, 2 threads), saves the optimised graph to a temporary file and prints one JSON
line: the version, the node count and the count of each op type (NCHWc kernels and the layout
reorders between them included). The saved graph is ONNX Runtime's view for this CPU only.
"""

from __future__ import annotations

import collections
import json
import sys
import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort


def optimised_ops(model: str, threads: int = 2) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "optimised.onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = out
        options.intra_op_num_threads = threads
        options.add_free_dimension_override_by_name("batch", 1)
        options.log_severity_level = 3  # not the warning that the saved graph is CPU-specific
        ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        graph = onnx.load(out, load_external_data=False).graph
    ops = collections.Counter(
        f"{n.domain + '.' if n.domain else ''}{n.op_type}" for n in graph.node
    )
    return {
        "onnxruntime": ort.__version__,
        "nodes": sum(ops.values()),
        "ops": dict(sorted(ops.items())),
    }


if __name__ == "__main__":
    print(json.dumps({"model": sys.argv[1], **optimised_ops(sys.argv[1])}))
