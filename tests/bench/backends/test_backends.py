"""Both CPU backends on a real artifact: outputs, thread read-back, unsupported requests."""

from __future__ import annotations

import numpy as np
import pytest

from bench.backends import BACKENDS
from bench.cell import Cell
from bench.errors import Unsupported, UsageError

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
def test_a_precision_the_framework_lacks_is_unsupported(small_artifact, framework):
    with (
        _backend(small_artifact, framework, precision="fp16") as backend,
        pytest.raises(Unsupported, match="on cpu supports precision fp32, .*not fp16"),
    ):
        backend.load()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_an_unknown_option_is_refused_before_any_work(small_artifact, framework):
    with pytest.raises(UsageError, match=f"{framework} has no option 'turbo'; valid: "):
        _backend(small_artifact, framework, options=(("turbo", "1"),))


def test_infer_before_load_is_refused(small_artifact):
    backend = _backend(small_artifact, "onnxruntime")
    with pytest.raises(RuntimeError, match="before load"):
        backend.infer({"input": small_artifact.inputs[:1]})
