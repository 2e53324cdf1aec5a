"""Reports of a pool run, from hand-made results: tables per host, speed-ups within a host, the
same cell on each host side by side, one line per host (pure logic)."""

from __future__ import annotations

import copy
from pathlib import Path

from bench.result import SCHEMA_VERSION, load_result, validate
from runner.report import tables
from runner.report.hosts import hosts_section, pool_hosts
from runner.report.runs import Run
from runner.report.write import csv_text, markdown

FIXTURES = Path(__file__).parents[1] / "fixtures" / "results" / f"v{SCHEMA_VERSION}"


def _result(framework: str, host: str | None, value: float, cpu_model: str = "Xeon"):
    r = load_result(FIXTURES / "pool-ok-onnxruntime-on-host.json")
    r = copy.deepcopy(r)
    r.cell = {**r.cell, "framework": framework}
    if host is None:
        r.cell.pop("host", None)
    else:
        r.cell["host"] = host
    r.timing["estimate"].update(value=value, low=value * 0.9, high=value * 1.1)
    r.environment["cpu"] = {**r.environment["cpu"], "model": cpu_model, "summary": cpu_model}
    validate(r.to_dict())
    return r


def _pool_run(results):
    manifest = {
        "run_id": results[0].run_id,
        "host": {"hostname": "orchestrator"},
        "pool": {
            "hosts": {
                "here": {
                    "address": "unix:///var/run/docker.sock",
                    "labels": {"cpu": "spr"},
                    "state": "up",
                    "engine": {"version": "20.10.24"},
                    "images": {"ort-cpu": {"tag": "deploybench/ort-cpu:latest", "id": "sha256:ab"}},
                },
                "far": {
                    "address": "ssh://root@10.0.0.2",
                    "labels": {},
                    "state": "down",
                    "why": "lost during the run: ConnectionError",
                    "images": {},
                },
            }
        },
    }
    return Run(Path("/nowhere"), manifest, results)


def test_the_fixture_of_a_pool_cell_is_valid_and_names_its_host():
    r = load_result(FIXTURES / "pool-ok-onnxruntime-on-host.json")
    assert r.cell["host"] == "gpu-box"
    validate(r.to_dict())


def test_tables_are_per_host_and_the_reference_is_the_same_hosts_torch():
    here_torch, here_ort = _result("torch", "here", 10.0), _result("onnxruntime", "here", 5.0)
    far_torch, far_ort = _result("torch", "far", 20.0), _result("onnxruntime", "far", 6.0)
    results = [here_torch, here_ort, far_torch, far_ort]
    assert list(tables.groups(results)) == [
        ("cpu", "mobilenet_v3_small [host here]"),
        ("cpu", "mobilenet_v3_small [host far]"),
    ]
    assert tables.reference(here_ort, results) is here_torch
    assert tables.reference(far_ort, results) is far_torch
    # Without a host (a run on one engine) the tables are as before.
    plain = _result("onnxruntime", None, 5.0)
    assert list(tables.groups([plain])) == [("cpu", "mobilenet_v3_small")]


def test_the_same_cell_on_each_host_side_by_side():
    far = _result("onnxruntime", "far", 6.0)
    for record in far.timing["rounds"]:  # every round of far 1.25 times here's: the ratio
        record["stats"]["median_ms"] *= 1.25
    results = [_result("onnxruntime", "here", 5.0), far, _result("torch", "here", 10.0)]
    section = hosts_section([_pool_run(results)])
    assert section is not None and section.title == "The same cell on each host"
    assert section.headers[-3:] == (
        "here ms [95% CI]",
        "far ms [95% CI]",
        "far / here time [95% CI]",
    )
    ort, torch = section.rows
    assert ort[:7] == (
        "mobilenet_v3_small", "cpu", "onnxruntime", "fp32", "1",
        "5.000 [4.500, 5.500]", "6.000 [5.400, 6.600]",
    )  # fmt: skip
    # Paired by round: far's rounds are each 1.25 times here's, so the ratio is 1.25 with no
    # spread, beyond the band: slower (the estimates edited above are not what it pairs).
    assert ort[7] == "1.25x [1.25, 1.25] slower"
    assert torch[-3:] == ("10.000 [9.000, 11.000]", "-", "-")


def test_one_host_alone_has_no_cross_host_table():
    assert hosts_section([_pool_run([_result("onnxruntime", "here", 5.0)])]) is None


def test_each_pool_host_has_a_line_with_the_cpu_its_cells_saw():
    results = [_result("onnxruntime", "here", 5.0, cpu_model="Intel Xeon Platinum 8480+")]
    lines = pool_hosts([_pool_run(results)])
    here, far = lines
    assert here["host"] == "here" and here["cells"] == "1" and here["state"] == "up"
    assert "8480+" in here["cpu"] and here["engine"] == "docker 20.10.24"
    assert here["images"] == "ort-cpu sha256:ab" and here["labels"] == "cpu=spr"
    assert far["cpu"] == "? (no cell ran there)"
    assert far["state"] == "down (lost during the run: ConnectionError)"
    text = markdown([_pool_run(results)])
    assert "- host `here` of run" in text and "down (lost during the run" in text
    csv = csv_text([_pool_run(results)])
    assert csv.splitlines()[1].split(",")[1] == "here"  # the CSV's host is the pool host
