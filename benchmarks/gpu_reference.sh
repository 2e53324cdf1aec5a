#!/usr/bin/env bash
# Benchmark (not a test): the GPU reference run of PyTorch on CUDA (benchmarks/gpu-reference.yaml)
# without Docker, then its report. Needs an NVIDIA GPU and a Python environment with this
# package's torch extra (`make install`, or an existing CUDA PyTorch plus `pip install -e .`).
#   benchmarks/gpu_reference.sh [RUN_ID]       results in results/reference/<RUN_ID>/
# Exit code 3: this host has no GPU; every cell was recorded as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
RUN_ID=${1:-gpu-reference-$(date -u +%Y%m%dT%H%M%SZ)}
status=0
"$PYTHON" -m runner run --matrix benchmarks/gpu-reference.yaml --executor local \
  --results results/reference --run-id "$RUN_ID" || status=$?
if [ -f "results/reference/$RUN_ID/manifest.json" ]; then
  "$PYTHON" -m runner report "results/reference/$RUN_ID"
fi
exit "$status"
