#!/usr/bin/env bash
# Benchmark (not a test): resnet50 batch 1 fp32 through torch, onnxruntime, openvino and tvm on
# this CPU, printing the comparison table. Extra arguments go to `python -m runner run`, e.g.
#   benchmarks/resnet50_cpu.sh --executor docker
set -euo pipefail
cd "$(dirname "$0")/.."
make --quiet install
exec .venv/bin/python -m runner run --matrix benchmarks/resnet50-cpu.yaml --executor local "$@"
