"""Shared fixtures: one real exported artifact of a small model, reused by the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import SMALL_MODEL

from bench.artifact import Artifact
from bench.export import ExportSpec, export


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def small_artifact(artifacts_dir: Path) -> Artifact:
    """mobilenet_v3_small, random weights, the sample photos: a real export (~15 s)."""
    artifact, _ = export(ExportSpec(model=SMALL_MODEL), artifacts_dir)
    return artifact
