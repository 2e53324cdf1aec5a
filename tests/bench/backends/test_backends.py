"""Both CPU backends on a real artifact: outputs, thread read-back, unsupported requests."""

from __future__ import annotations

import numpy as np
import pytest

from bench.backends import BACKENDS
from bench.cell import Cell
from bench.errors import Unsupported

FRAMEWORKS = ["torch", "onnxruntime"]


def _backend(artifact, framework, **cell):
    cls = BACKENDS.get(framework).load_class()
    return cls(artifact, Cell(model=artifact.model, framework=framework, **cell))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_outputs_match_reference_and_threads_are_read_back(small_artifact, framework):
    with _backend(small_artifact, framework, threads=1, batch_size=2) as backend:
        backend.load()
        out = backend.infer({"input": small_artifact.inputs[:2]})
        info = backend.runtime_info()
    np.testing.assert_allclose(
        out["logits"], small_artifact.references["logits"][:2], rtol=1e-3, atol=1e-4
    )
    assert info["threads"] == 1
    assert info["precision_run"] == "fp32"
    assert info["framework_version"]


def test_torch_channels_last_gives_the_same_answers(small_artifact):
    with _backend(small_artifact, "torch", options=(("channels_last", "1"),)) as backend:
        backend.load()
        out = backend.infer({"input": small_artifact.inputs[:1]})
        assert backend.runtime_info()["channels_last"] is True
    np.testing.assert_allclose(
        out["logits"], small_artifact.references["logits"][:1], rtol=1e-3, atol=1e-4
    )


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ({"precision": "fp16"}, "on cpu supports precision fp32, .*not fp16"),
        ({"options": (("turbo", "1"),)}, "no option turbo"),
    ],
)
def test_unsupported_requests(small_artifact, framework, cell, message):
    with (
        _backend(small_artifact, framework, **cell) as backend,
        pytest.raises(Unsupported, match=message),
    ):
        backend.load()


def test_infer_before_load_is_refused(small_artifact):
    backend = _backend(small_artifact, "onnxruntime")
    with pytest.raises(RuntimeError, match="before load"):
        backend.infer({"input": small_artifact.inputs[:1]})
