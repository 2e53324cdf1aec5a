"""The report's scenario part from a real local run: every scenario through two frameworks,
one latency row per configuration, a table and a curve per scenario, the HTML in Chromium."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import pytest
from helpers import run_locally

from runner.report.runs import load_run
from runner.report.write import write_report

MATRIX = """
name: scenarios-test
models: [mobilenet_v3_small]
frameworks: [onnxruntime, openvino]
devices: [cpu]
batch_sizes: [1]
precisions: [fp32]
threads: 2
scenarios: [single_stream, offline, multi_stream, server]
scenario_options:
  offline: {max_batch: 4, point_queries: 4, point_seconds: 0.3}
  multi_stream: {max_streams: 2, point_queries: 8, point_seconds: 0.3}
  server: {p99_ms: 200, queries: 100, seconds: 0.5, bisections: 1}
timing: {warmup_iters: 2, warmup_seconds: 0.1, iters: 10, seconds: 0.3}
"""


@pytest.fixture(scope="module")
def scenario_run(tmp_path_factory, small_artifact):
    tmp = tmp_path_factory.mktemp("scenarios")
    (tmp / "m.yaml").write_text(MATRIX)
    run_dir = run_locally(tmp / "m.yaml", small_artifact, tmp / "results", "s").run_dir
    return run_dir, write_report([load_run(run_dir)], run_dir)


def test_every_scenario_has_its_table_and_latency_is_tabled_once(scenario_run):
    run_dir, written = scenario_run
    md = (run_dir / "report.md").read_text()
    for title in (
        "offline: samples/s at the best batch",
        "multi-stream: N requests in flight",
        "server: Poisson arrivals, p99 under a bound",
    ):
        assert f"## mobilenet_v3_small on cpu, {title}" in md
    # The latency table reads the single_stream cells only: one row per framework.
    latency = md.split("## mobilenet_v3_small on cpu\n", 1)[1].split("\n## ", 1)[0]
    assert latency.count("| onnxruntime ") == 1 and latency.count("| openvino ") == 1
    assert "OpenVINO async infer requests" in md and "thread(s) calling onnxruntime" in md
    assert "Scenarios (MLPerf LoadGen's)" in md
    for name in ("offline", "multi_stream", "server"):
        assert run_dir / "plots" / f"{name}.png" in written
    with (run_dir / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["scenario"] for r in rows) == sorted(
        ["single_stream", "offline", "multi_stream", "server"] * 2
    )
    assert all(r["status"] == "ok" for r in rows)
    server = [r for r in rows if r["scenario"] == "server"]
    assert all(float(r["server_max_valid_rate_per_s"]) > 0 for r in server)
    doc = json.loads((run_dir / "report.json").read_text())
    assert sorted(s["scenario"] for s in doc["scenarios"]) == sorted(
        ["offline", "multi_stream", "server"] * 2
    )
    assert len(doc["cells"]) == 2  # the single-stream view: one per framework
    assert all(s["verdict"] == "VALID" for s in doc["scenarios"] if s["scenario"] == "server")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="apt-get install chromium")
def test_the_scenario_tables_render_in_chromium(scenario_run, tmp_path):
    run_dir, _ = scenario_run
    page = tmp_path / "page.html"
    probe = (
        "<script>window.addEventListener('load', () => { document.body.dataset.server = "
        "[...document.querySelectorAll('h2')].filter(h => h.textContent.includes("
        "'server: Poisson') && h.nextElementSibling.offsetHeight > 0).length; "
        "document.body.dataset.images = "
        "[...document.images].filter(i => i.naturalWidth > 0).length; });</script>"
    )
    page.write_text((run_dir / "report.html").read_text().replace("</body>", probe + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    dom = subprocess.run(
        ["chromium", *flags, f"--user-data-dir={tmp_path / 'p'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert 'data-server="1"' in dom  # the server table, laid out
    # latency, rounds, distribution, parity (no torch: no speed-up) + the three scenarios'
    assert 'data-images="7"' in dom
