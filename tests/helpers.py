"""Helpers shared by the tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.result import validate

SMALL_MODEL = "mobilenet_v3_small"


def assert_valid_result_file(path: Path) -> dict:
    """Every result a test produces is validated against the JSON Schema."""
    doc = json.loads(Path(path).read_text())
    validate(doc)
    return doc
