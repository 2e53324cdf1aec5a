#!/usr/bin/env bash
# Before a GPU window: the wheels benchmarks/device_check.sh needs that the GPU machine lacks
# (it has PyTorch, numpy, onnx, onnxruntime, PyYAML, Jinja2, matplotlib, pytest, nvidia-ml-py,
# scikit-image, opencv; not jsonschema or tabulate), for its Python 3.12, into .whl/ (ignored
# by git; name it in the device call's carry). Run here, where PyPI is reachable.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]/#/--platform=}" -d .whl \
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 \
  tabulate==0.10.0
ls -la .whl
