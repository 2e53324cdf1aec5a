#!/usr/bin/env bash
# The GPU window's one script (issue 20): everything this project's GPU code must show on a
# real GPU, in under 9 minutes, on the GPU machine as it is: one NVIDIA GPU, PyTorch with CUDA
# preinstalled (not this project's pin), a CPU-only onnxruntime, no TensorRT, no TVM, no
# Docker, no network. The local executor runs every cell; nothing is built.
#
#   benchmarks/device_check.sh OUTDIR
#
# Stages, each under its own deadline (a stage that runs out keeps every cell it finished:
# the runner writes each cell's result as it ends and stops on SIGTERM), in order of worth:
#   export   resnet50 and mobilenet_v3_large with the machine's own torch
#   core     torch CUDA eager and cuda_graphs, fp32/fp16/bf16, batch 1 and 32 (24 cells)
#   probe    host-timed vs CUDA events vs profiler busy time vs graph replay; the NVML
#            poller's cost (benchmarks/gpu_probe.py)
#   tests    the GPU-positive tests (tests/gpu, pytest -m gpu)
#   layouts  channels_last at batch 32 (6 cells)
#   compile  torch.compile default / reduce-overhead, fp16/bf16 (16 cells)
#   scenarios offline, multi-stream and server on torch CUDA fp16 (3 cells)
#   report   one report of the three runs
# OUTDIR gets at most 8 files: log.txt, environment.txt, stages.json, probe.json,
# gpu-tests.txt, report.md, report.html and runs.tar.gz (the run folders with their manifests,
# and the report's plots). Wheels for packages the machine lacks (jsonschema, tabulate) are
# installed from .whl/ when that folder is there.
# On a host without a GPU (the CPU dry run CI makes) every GPU cell is skipped, the probe and
# the GPU tests say why, and the script still ends 0 with all of its files.
# Exit status: 0 when every stage ended as expected (done, no GPU, or stopped at its deadline);
# 1 when one failed (stages.json says which).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
OUT=${1:?usage: benchmarks/device_check.sh OUTDIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo "$REPO/.venv/bin/python" || echo python3 )}
BUDGET_S=${DEVICE_CHECK_BUDGET_S:-510}  # under 9 minutes, with the archive's time to spare
WORK=${DEVICE_CHECK_WORK:-$(mktemp -d /tmp/device-check.XXXXXX)}
mkdir -p "$WORK"
exec > >(tee -a "$OUT/log.txt") 2>&1
START=$(date +%s)

if [ -d .whl ] && compgen -G ".whl/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/device-check-site .whl/*.whl && export PYTHONPATH=/tmp/device-check-site
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export DEPLOYBENCH_CACHE="$WORK/cache" DEPLOYBENCH_ARTIFACTS="$WORK/artifacts"

STAGES="$WORK/stages.jsonl"
: > "$STAGES"
# stage NAME LIMIT_S OK_CODES COMMAND...: run COMMAND under min(LIMIT_S, what is left of the
# budget), SIGTERM at the deadline; record its exit code, time and whether it is one of
# OK_CODES (comma-separated; 124: stopped at its deadline, always acceptable).
stage() {
  local name=$1 limit=$2 ok=$3; shift 3
  local left=$(( BUDGET_S - ($(date +%s) - START) ))
  (( limit > left )) && limit=$left
  if (( limit < 10 )); then
    echo "== $name: not started, the budget is spent"
    echo "{\"stage\": \"$name\", \"rc\": null, \"seconds\": 0, \"ok\": true, \"note\": \"budget spent\"}" >> "$STAGES"
    return
  fi
  echo "== $name (deadline ${limit} s): $*"
  local t0=$(date +%s) rc=0
  timeout -s TERM -k 20 "$limit" "$@" || rc=$?
  local seconds=$(( $(date +%s) - t0 )) good=false
  [[ ",$ok,124," == *",$rc,"* ]] && good=true
  echo "== $name: exit $rc after ${seconds} s"
  echo "{\"stage\": \"$name\", \"rc\": $rc, \"seconds\": $seconds, \"ok\": $good}" >> "$STAGES"
}

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  uname -a
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit \
    --format=csv 2>&1 || echo "nvidia-smi: not here"
  "$PYTHON" -m bench info 2>&1 || true
} > "$OUT/environment.txt"

RUNNER=("$PYTHON" -m runner)
RUN=(--executor local --results "$WORK/results" --artifacts "$WORK/artifacts")
stage export 120 0 "${RUNNER[@]}" export --matrix benchmarks/device-check/core.yaml \
  --artifacts "$WORK/artifacts"
# exit 3: no GPU here, every cell recorded as skipped (the CPU dry run)
stage core 150 0,3 "${RUNNER[@]}" run --matrix benchmarks/device-check/core.yaml "${RUN[@]}" \
  --run-id core
stage probe 60 0 "$PYTHON" benchmarks/gpu_probe.py "$OUT/probe.json" --deadline-s 45
stage tests 90 0 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests/gpu -rs \
  --junit-xml="$WORK/gpu-tests.xml"
[ -f "$OUT/probe.json" ] || echo '{"skipped": "the probe did not start"}' > "$OUT/probe.json"
stage layouts 60 0,3 "${RUNNER[@]}" run --matrix benchmarks/device-check/layouts.yaml \
  "${RUN[@]}" --run-id layouts
stage compile 150 0,3 "${RUNNER[@]}" run --matrix benchmarks/device-check/compile.yaml \
  "${RUN[@]}" --run-id compile
stage scenarios 60 0,3 "${RUNNER[@]}" run --matrix benchmarks/device-check/scenarios.yaml \
  "${RUN[@]}" --run-id scenarios

mkdir -p "$WORK/results"
runs=()
for r in core layouts compile scenarios; do [ -f "$WORK/results/$r/manifest.json" ] && runs+=("$WORK/results/$r"); done
if (( ${#runs[@]} )); then
  stage report 40 0 "${RUNNER[@]}" report "${runs[@]}" --out "$WORK/report"
  for f in report.md report.html; do
    [ -f "$WORK/report/$f" ] && cp "$WORK/report/$f" "$OUT/$f"
  done
fi
# The GPU tests' outcome, one line per test, from pytest's own JUnit file.
"$PYTHON" - "$WORK/gpu-tests.xml" > "$OUT/gpu-tests.txt" <<'PY' || echo "no test report" > "$OUT/gpu-tests.txt"
import sys, xml.etree.ElementTree as ET
for case in ET.parse(sys.argv[1]).iter("testcase"):
    outcome = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
    detail = next((c.get("message", "") for c in case if c.tag != "system-out"), "")
    print(f"{outcome:8} {case.get('name')}  {detail[:300]}")
PY

"$PYTHON" -c 'import json, sys; print(json.dumps([json.loads(l) for l in open(sys.argv[1])], indent=1))' \
  "$STAGES" > "$OUT/stages.json"
tar -czf "$OUT/runs.tar.gz" -C "$WORK" results $( [ -d "$WORK/report" ] && echo report ) \
  gpu-tests.xml 2>/dev/null || tar -czf "$OUT/runs.tar.gz" -C "$WORK" results
echo "== done in $(( $(date +%s) - START )) s; files in $OUT:"
ls -la "$OUT"
grep -q '"ok": false' "$OUT/stages.json" && exit 1
exit 0
