"""Shared fixtures: one real exported artifact of a small model, reused by the whole session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import SMALL_MODEL, onnx_artifact_of

from bench.artifact import Artifact
from bench.export import ExportSpec, export

_AFFINITY = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU-positive tests (`@pytest.mark.gpu`) run where a CUDA device is visible and are
    skipped, with the driver's reason, everywhere else."""
    from bench.backends.cuda import cuda_unavailable_reason

    gpu_tests = [item for item in items if "gpu" in item.keywords]
    if gpu_tests and (reason := cuda_unavailable_reason()):
        for item in gpu_tests:
            item.add_marker(pytest.mark.skip(reason=f"no CUDA device here: {reason}"))


@pytest.fixture(autouse=True)
def _restore_cpu_affinity():
    """A backend loaded in the test process may pin it (TVM's thread pool binds the calling
    thread to a core): every test starts with the CPUs the suite started with."""
    yield
    if _AFFINITY is not None:
        os.sched_setaffinity(0, _AFFINITY)


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def small_artifact(artifacts_dir: Path) -> Artifact:
    """mobilenet_v3_small, random weights, the sample photos: a real export (~15 s)."""
    artifact, _ = export(ExportSpec(model=SMALL_MODEL), artifacts_dir)
    return artifact


@pytest.fixture(scope="session")
def conv_artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """A small convolutional classifier with seeded weights, as a user ONNX artifact: int8
    passes its tier on it, so a failure means the quantization, not random weights."""
    import torch

    tmp = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, stride=4),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 10),
    )
    return onnx_artifact_of(net, tmp)


@pytest.fixture(scope="session")
def maskrcnn_artifact(artifacts_dir: Path) -> Artifact:
    """maskrcnn_resnet50_fpn, random weights, the sample photos: a real export (~25 s)."""
    artifact, _ = export(ExportSpec(model="maskrcnn_resnet50_fpn"), artifacts_dir)
    return artifact


@pytest.fixture(scope="session")
def resnet50_artifact(artifacts_dir: Path) -> Artifact:
    """resnet50, random weights, the sample photos (~30 s; test_cli's end-to-end export reuses
    it)."""
    artifact, _ = export(ExportSpec(model="resnet50"), artifacts_dir)
    return artifact
