"""The matrix across a pool of real Docker engines: this machine's own (unix socket), one in a
network namespace reached over TCP with TLS, and one in another namespace reached over ssh (an
sshd started here, key only). The remote engines share no files with the runner: images are
loaded into them through the API, artifacts copied into volumes, results read back. The tests
kill an engine mid-run, press Ctrl-C, and resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from engines import Engine, engines_available, make_certificates, start_sshd
from helpers import docker_or_skip

from bench.result import load_result
from runner.hosts import Host, Tls
from runner.images import IMAGES, BuildSettings, ensure_images

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
RUN_LABEL = "ai.deploybench.run"

MATRIX = """
name: pool
models: [mobilenet_v3_small]
frameworks: [onnxruntime]
devices: [cpu]
batch_sizes: {batches}
precisions: [fp32]
threads: 1
cell_timeout_s: 300
timing: {{warmup_iters: 2, warmup_seconds: 0, iters: 5, seconds: {seconds}}}
{hosts}
"""


def _require(why: str) -> None:
    if os.environ.get("DEPLOYBENCH_REQUIRE_DOCKER") == "1":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """Three engines and an inventory of them; the ort-cpu image current on the local one
    (the pool loads it into the others itself)."""
    if why := engines_available():
        _require(why)
    if shutil.which("sshd") is None and not os.path.exists("/usr/sbin/sshd"):
        _require("sshd is not installed (apt-get install openssh-server)")
    local, base = docker_or_skip()
    ensure_images(local, [IMAGES.get("ort-cpu")], BuildSettings(base_image=base), log=print)
    root = tmp_path_factory.mktemp("pool")
    tcp, viassh = Engine(index=42, root=root / "tcp"), Engine(index=43, root=root / "ssh")
    certs = make_certificates(root / "certs", [tcp.ip, viassh.ip])
    tcp.start(certs)
    viassh.start(certs)
    home = root / "home"  # the ssh client's key, known host and config (HOME of the runner)
    sshd = start_sshd(viassh, home)
    tls = f'tls: {{ca: "{certs["ca"]}", cert: "{certs["cert"]}", key: "{certs["key"]}"}}'
    inventory = root / "hosts.yaml"
    inventory.write_text(
        f"""hosts:
  - {{name: here, address: "unix:///var/run/docker.sock", cpusets: ["0"], labels: {{site: a}}}}
  - name: tcp42
    address: "{tcp.address}"
    {tls}
    cpusets: ["1"]
    reconnect_s: 3
    labels: {{site: b}}
  - {{name: ssh43, address: "ssh://root@{viassh.ip}", cpusets: ["0"], labels: {{site: b}}}}
"""
    )
    try:
        yield {
            "inventory": inventory,
            "home": home,
            "engines": {"tcp42": tcp, "ssh43": viassh},
            "certs": certs,
            "local": local,
            "base": base,
        }
    finally:
        sshd.terminate()
        sshd.wait(timeout=30)
        tcp.stop()
        viassh.stop()


def _client(pool, name):
    """A client of one engine of the pool, as the test's own observer."""
    if name == "here":
        return pool["local"]
    engine = pool["engines"][name]
    c = pool["certs"]
    return Host(name, engine.address, tls=Tls(c["ca"], c["cert"], c["key"])).client()


def _containers(pool, run_id, names=("here", "tcp42", "ssh43")):
    found = {}
    for name in names:
        client = _client(pool, name)
        found[name] = client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})
    return found


def _matrix(tmp_path, batches=(1,), seconds=0, hosts="hosts: {each: true}"):
    path = tmp_path / "pool.yaml"
    path.write_text(MATRIX.format(batches=list(batches), seconds=seconds, hosts=hosts))
    return path


def _runner(pool, tmp_path, small_artifact, matrix, run_id, *extra, **popen):
    cmd = [
        sys.executable, "-m", "runner", "run", "--matrix", str(matrix),
        "--hosts", str(pool["inventory"]), "--base-image", pool["base"],
        "--no-export", "--artifacts", str(small_artifact.path.parent),
        "--results", str(tmp_path / "results"), "--run-id", run_id, *extra,
    ]  # fmt: skip
    caches = os.environ.get("DEPLOYBENCH_CACHE", str(Path.home() / ".cache" / "deploybench"))
    # HOME: the ssh client's key, known host and config; the host's caches stay where they are.
    env = {
        **os.environ,
        "HOME": str(pool["home"]),
        "PYTHONPATH": str(REPO),
        "DEPLOYBENCH_CACHE": caches,
    }
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def _results(tmp_path, run_id):
    cells = tmp_path / "results" / run_id / "cells"
    return {p.stem: load_result(p) for p in sorted(cells.glob("*.json"))}


def _manifest(tmp_path, run_id):
    return json.loads((tmp_path / "results" / run_id / "manifest.json").read_text())


def test_a_matrix_runs_on_three_engines_one_over_ssh_in_parallel(pool, tmp_path, small_artifact):
    """`each`: the cell on every host — three cells, three hosts at once; the image loaded
    into the remote engines from the local one (the same image id), every result back."""
    proc = _runner(pool, tmp_path, small_artifact, _matrix(tmp_path), "each")
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out
    results = _results(tmp_path, "each")
    assert sorted(r.cell["host"] for r in results.values()) == ["here", "ssh43", "tcp42"]
    assert all(r.status == "ok" and r.parity_passed for r in results.values()), out
    assert sorted(results) == [
        f"mobilenet_v3_small-onnxruntime-cpu-fp32-b1-on-{h}" for h in ("here", "ssh43", "tcp42")
    ]
    # In parallel: every cell started before the first one ended.
    lines = [line for line in out.splitlines() if line.startswith("[")]
    # a cell's end: its outcome, then its time and the run's ETA
    first_end = next(i for i, line in enumerate(lines) if "parity pass (" in line or "FAIL" in line)
    assert sum(line.endswith(" ...") for line in lines[:first_end]) == 3, out
    manifest = _manifest(tmp_path, "each")
    hosts = manifest["pool"]["hosts"]
    assert {h: hosts[h]["state"] for h in hosts} == {"here": "up", "tcp42": "up", "ssh43": "up"}
    ids = {h: hosts[h]["images"]["ort-cpu"]["id"] for h in hosts}
    assert len(set(ids.values())) == 1, ids  # loaded, not rebuilt: the same image everywhere
    for cell_id, result in results.items():
        name = result.cell["host"]
        assert result.environment["container"]["image_digest"] == ids[name]
        assert manifest["cells"][cell_id]["host"] == name
    assert "loading from here" in out
    assert not any(_containers(pool, "each").values())


def test_a_lost_host_fails_its_running_cell_requeues_the_rest_and_resume_finishes(
    pool, tmp_path, small_artifact
):
    """Six comparison groups spread over three hosts; tcp42's engine is killed while its first
    cell runs: that cell is failed with the reason, tcp42's queued cell is placed on another
    host, the run ends (exit 1). With the engine back, --resume reruns the failed cell there and
    keeps the rest; no container of the run remains on any engine."""
    matrix = _matrix(tmp_path, batches=(1, 2, 3, 4, 5, 6), seconds=4, hosts="")
    proc = _runner(pool, tmp_path, small_artifact, matrix, "lost")
    tcp = pool["engines"]["tcp42"]
    client = _client(pool, "tcp42")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        running = client.containers.list(filters={"label": f"{RUN_LABEL}=lost"})
        if running:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"no cell ran on tcp42: {proc.communicate()[0]}")
    time.sleep(1)
    tcp.kill()
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1, out
    results = _results(tmp_path, "lost")
    assert len(results) == 6, out
    failed = [k for k, r in results.items() if r.status == "failed"]
    assert len(failed) == 1 and results[failed[0]].cell["host"] == "tcp42", out
    assert "engine went away" in results[failed[0]].reason
    ok = [r for r in results.values() if r.status == "ok"]
    assert len(ok) == 5 and all(r.cell["host"] in ("here", "ssh43") for r in ok)
    manifest = _manifest(tmp_path, "lost")
    assert manifest["pool"]["hosts"]["tcp42"]["state"] == "down"
    moved = manifest["pool"]["requeued"]
    assert len(moved) == 1 and moved[0]["from"] == "tcp42", moved
    assert moved[0]["to"] in ("here", "ssh43")
    assert "placed again on" in out

    tcp.start(pool["certs"])  # the same data-root: the image is still there
    # The killed cell's container is still on it (its runner is gone): `clean --hosts` finds it.
    cleaned = subprocess.run(
        [sys.executable, "-m", "runner", "clean", "--hosts", str(pool["inventory"])],
        cwd=REPO,
        env={**os.environ, "HOME": str(pool["home"])},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cleaned.returncode == 0, cleaned.stderr
    assert "tcp42: removed 1 orphan containers" in cleaned.stderr, cleaned.stderr
    assert not _containers(pool, "lost", names=("tcp42",))["tcp42"]
    again = _runner(pool, tmp_path, small_artifact, matrix, "lost", "--resume")
    out2, _ = again.communicate(timeout=900)
    assert again.returncode == 0, out2
    after = _results(tmp_path, "lost")
    rerun = after[failed[0]]
    assert rerun.status == "ok" and rerun.cell["host"] == "tcp42"
    kept = [r for k, r in after.items() if k != failed[0]]
    assert [r.created_at for r in kept] == [r.created_at for r in ok]  # not measured again
    assert "kept from the earlier attempt" in out2
    assert not any(_containers(pool, "lost").values())  # the killed one removed as well


def test_ctrl_c_stops_the_cells_on_every_host_and_resume_completes(pool, tmp_path, small_artifact):
    matrix = _matrix(tmp_path, batches=(1, 2, 3), seconds=30, hosts="")
    proc = _runner(
        pool,
        tmp_path,
        small_artifact,
        matrix,
        "intr",
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        busy = [
            h
            for h, cs in _containers(pool, "intr").items()
            if any(c.status == "running" for c in cs)
        ]
        if len(busy) == 3:
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"the cells did not all start: {proc.communicate()[0]}")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "--resume" in out
    assert not any(_containers(pool, "intr").values()), "containers left after Ctrl-C"
    assert _manifest(tmp_path, "intr")["state"] == "interrupted"
    assert _results(tmp_path, "intr") == {}  # a killed cell is not a result

    fast = _matrix(tmp_path, batches=(1, 2, 3), seconds=1, hosts="")  # the same cells
    again = _runner(pool, tmp_path, small_artifact, fast, "intr", "--resume")
    out2, _ = again.communicate(timeout=900)
    assert again.returncode == 0, out2
    assert sorted(r.status for r in _results(tmp_path, "intr").values()) == ["ok"] * 3
