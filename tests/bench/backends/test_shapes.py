"""The same problem for every framework: ONNX Runtime and OpenVINO compile for the cell's static
input shape by default (as TVM and TensorRT do), keep the dynamic batch with shape=dynamic, and
the result records which."""

from __future__ import annotations

import numpy as np
import pytest

from bench.backends import BACKENDS
from bench.cell import Cell


def _loaded(artifact, framework, **cell):
    # Two threads, as every in-process test: TVM's thread pool cannot grow once made.
    backend = BACKENDS.get(framework).load_class()(
        artifact, Cell(model=artifact.model, framework=framework, threads=2, **cell)
    )
    backend.load()
    return backend


@pytest.mark.parametrize("framework", ["onnxruntime", "openvino"])
def test_static_by_default_and_dynamic_on_request(small_artifact, framework):
    two = {"input": np.ascontiguousarray(small_artifact.inputs[:2])}
    with _loaded(small_artifact, framework, batch_size=2) as static:
        assert static.runtime_info()["input_shape"] == {"mode": "static", "dims": [2, 3, 224, 224]}
        static.infer(two)
        with pytest.raises(Exception):  # noqa: B017 - each runtime raises its own type
            static.infer({"input": np.ascontiguousarray(small_artifact.inputs[:3])})
    with _loaded(small_artifact, framework, batch_size=2, options=(("shape", "dynamic"),)) as dyn:
        assert dyn.runtime_info()["input_shape"]["mode"] == "dynamic"
        dyn.infer({"input": np.ascontiguousarray(small_artifact.inputs[:3])})  # any batch


def test_openvino_makes_one_synchronous_call_per_batch_unless_asked(small_artifact):
    with _loaded(small_artifact, "openvino", batch_size=4) as one:
        info = one.runtime_info()
        assert (info["performance_hint"], info["infer_requests"]) == ("latency", 1)
    with _loaded(
        small_artifact, "openvino", batch_size=4, options=(("hint", "throughput"),)
    ) as many:
        info = many.runtime_info()
        assert info["performance_hint"] == "throughput"
        assert info["input_shape"]["mode"] == "dynamic"  # the requests take chunks of the batch


@pytest.mark.parametrize("framework", ["tvm", "torch"])
def test_the_others_record_their_shape_too(small_artifact, framework):
    with _loaded(small_artifact, framework) as backend:
        mode = backend.runtime_info()["input_shape"]["mode"]
    assert mode == {"tvm": "static", "torch": "eager"}[framework]
