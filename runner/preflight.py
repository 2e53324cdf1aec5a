"""What `runner run` checks before any work, so that bad input is one message and exit 2 with
nothing written: the run id, the folders it writes (creatable, writable, not on a full disk),
the user's ONNX files, and with --no-export the artifacts it will read."""

from __future__ import annotations

import os
import re
from pathlib import Path

from bench.errors import UsageError
from bench.fsutil import writable_folder
from bench.models import ONNX_PREFIX, is_onnx_model
from runner.matrix import Matrix

# One path component: a run id names a folder under --results and nothing else.
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
COMPOSE_HINT = "with compose, export DEPLOYBENCH_UID=$(id -u) DEPLOYBENCH_GID=$(id -g)"


def check_run_id(run_id: str) -> str:
    if not RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise UsageError(
            f"run id {run_id!r}: use letters, digits, '.', '_' and '-' only (at most 128, no "
            "path separators, no '..'): it names one folder under --results"
        )
    return run_id


def check_results(results: Path, create: bool = True) -> Path:
    try:
        return writable_folder(results, "results folder", create=create)
    except UsageError as exc:
        if "not writable" in str(exc):
            raise UsageError(f"{exc}; {COMPOSE_HINT}") from exc
        raise


def check_models(matrix: Matrix) -> None:
    """The user's ONNX files parse (where onnx is installed; an image without it leaves that
    to the export stage, which refuses them in the same words)."""
    try:
        from bench.export import check_user_onnx
    except ImportError:
        return
    for model in matrix.models:
        if is_onnx_model(model):
            try:
                check_user_onnx(Path(model[len(ONNX_PREFIX) :]))
            except ImportError:
                return


def check_artifacts(matrix: Matrix, artifacts: Path, export: bool) -> None:
    """Exporting: the folder can take artifacts. Not exporting: every model's artifact is
    there, verified and of a format this code reads."""
    if export:
        writable_folder(artifacts, "artifacts folder", create=False)
        return
    from bench.artifact import find_artifact

    if not os.access(artifacts, os.R_OK | os.X_OK):
        raise UsageError(f"artifacts folder {artifacts} is not readable")
    for model in matrix.models:
        find_artifact(artifacts, model)


def check_run(matrix: Matrix, run_id: str, results: Path, artifacts: Path, export: bool) -> None:
    """Everything `runner run` can refuse before it writes anything."""
    check_run_id(run_id)
    check_models(matrix)
    check_artifacts(matrix, artifacts, export)
    check_results(results, create=False)
    # Only once everything holds is anything created.
    check_results(results)
