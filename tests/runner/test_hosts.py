"""The pool of Docker engines, first part: the inventory file by hand, and `runner doctor
--hosts` against real engines — the local one, a second dockerd in a network namespace of its
own reached over TCP with TLS certificates made here, and an address where nothing answers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from engines import Engine, engines_available, load_image, make_certificates, start_sshd
from helpers import docker_or_skip

from bench.errors import UsageError
from runner.hosts import InventoryError, parse_cpuset, parse_inventory


def _tls_files(tmp_path):
    for name in ("ca", "cert", "key"):
        (tmp_path / f"{name}.pem").write_text("x")
    return "{ca: ca.pem, cert: cert.pem, key: key.pem}"


def test_a_valid_inventory_gives_hosts_with_their_resources(tmp_path):
    tls = _tls_files(tmp_path)
    hosts = parse_inventory(
        f"""
hosts:
  - name: local
    address: "unix:///var/run/docker.sock"
    labels: {{cpu: spr}}
    cpusets: ["0-1", "2,3"]
  - {{name: gpu-box, address: "tcp://10.0.0.7:2376", tls: {tls}, gpus: [0, 1]}}
  - {{name: laptop, address: "ssh://bench@laptop.local"}}
""",
        base=tmp_path,
    )
    local, gpu, laptop = hosts
    assert local.cpusets == ((0, 1), (2, 3)) and local.label("cpu") == "spr"
    assert gpu.scheme == "tcp" and gpu.gpus == ("0", "1") and gpu.tls.ca == tmp_path / "ca.pem"
    assert laptop.scheme == "ssh" and laptop.cpusets == () and laptop.tls is None


def test_every_problem_of_an_inventory_is_reported_at_once_with_its_line(tmp_path):
    text = """hosts:
  - name: a
    address: http://x
  - name: b
    address: tcp://10.0.0.7:2376
  - name: c
    address: unix:///s
    cpusets: ["0-3", "3-4", "5-2"]
    colour: red
  - name: a
    address: ssh://me@there
    tls: {ca: nope.pem, cert: nope.pem, key: nope.pem}
"""
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, base=tmp_path)
    assert info.value.problems == [
        "hosts[0].address (line 3): must be unix:///path, tcp://host:port or ssh://user@host "
        "(not 'http://x')",
        "hosts[1].tls: a tcp:// engine needs TLS client certificates (tls: {ca, cert, key}); an "
        "engine socket without TLS gives root on its machine to anyone who reaches it",
        "hosts[2].colour (line 9): unknown key; valid: name, address, labels, cpusets, gpus, tls, "
        "reconnect_s",
        "hosts[2].cpusets[2] (line 8): CPU range '5-2' runs backwards",
        "hosts[2].cpusets (line 8): the CPU sets overlap: cells on them would share CPUs",
        f"hosts[3].tls.ca (line 12): no such file: {tmp_path / 'nope.pem'}",
        f"hosts[3].tls.cert (line 12): no such file: {tmp_path / 'nope.pem'}",
        f"hosts[3].tls.key (line 12): no such file: {tmp_path / 'nope.pem'}",
        "hosts[3].tls (line 12): applies to tcp:// engines, not ssh://",
    ]
    assert isinstance(info.value, UsageError)


def test_two_hosts_of_one_name_are_refused():
    with pytest.raises(InventoryError, match="host name 'a' is used twice"):
        parse_inventory("hosts: [{name: a, address: 'unix:///s'}, {name: a, address: 'unix:///t'}]")


def test_cpusets_by_hand():
    assert parse_cpuset("0-3,8") == (0, 1, 2, 3, 8)
    assert parse_cpuset("5") == (5,)
    for bad in ("", "a-b", "1-", "0,0", "3-1"):
        with pytest.raises(UsageError):
            parse_cpuset(bad)


@pytest.fixture(scope="module")
def tls_engine(tmp_path_factory):
    """A second Docker engine in its own network namespace, over TCP with TLS, holding the
    offline base image (copied through the Engine API); stopped at the end."""
    why = engines_available()
    if why:
        if os.environ.get("DEPLOYBENCH_REQUIRE_DOCKER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    local, _ = docker_or_skip()
    root = tmp_path_factory.mktemp("engine")
    engine = Engine(index=41, root=root)
    certs = make_certificates(root / "certs", [engine.ip])
    engine.start(certs)
    try:
        yield engine, certs, local
    finally:
        engine.stop()
        local.close()


def _doctor(path):
    return subprocess.run(
        [sys.executable, "-m", "runner", "doctor", "--hosts", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.docker
def test_doctor_checks_every_engine_and_says_what_is_wrong_with_each(tls_engine, tmp_path):
    engine, certs, local = tls_engine
    from runner.images import DEFAULT_BASE, OFFLINE_BASE

    # The base this machine has: the offline one (`make base`) or the registry's.
    base = OFFLINE_BASE if local.images.list(name=OFFLINE_BASE) else DEFAULT_BASE

    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(
        f"""hosts:
  - {{name: here, address: "unix:///var/run/docker.sock"}}
  - name: ns41
    address: "{engine.address}"
    tls: {{ca: "{certs["ca"]}", cert: "{certs["cert"]}", key: "{certs["key"]}"}}
    gpus: [0]
  - name: nobody
    address: "tcp://{engine.ip}:2399"
    tls: {{ca: "{certs["ca"]}", cert: "{certs["cert"]}", key: "{certs["key"]}"}}
"""
    )
    before = _doctor(inventory)
    assert before.returncode == 1, before.stderr
    out = before.stdout
    here = [line for line in out.splitlines() if line.startswith("here ")]
    assert here[0].startswith("here (unix:///var/run/docker.sock): docker ")
    assert "GiB free" in here[0] and not any(
        line.startswith("here: PROBLEM") for line in out.splitlines()
    )
    assert f"ns41 ({engine.address}): docker " in out
    assert "ns41: PROBLEM: no base image" in out  # a fresh engine holds no images
    assert (
        "ns41: PROBLEM: the inventory lists GPUs but the engine cannot give them: this Docker "
        "engine has no NVIDIA runtime and no CDI devices" in out
    )
    assert f"nobody (tcp://{engine.ip}:2399): UNREACHABLE: " in out
    assert "not ready: ns41, nobody" in before.stderr

    # The base image copied over the Engine API (no registry): that problem goes away.
    load_image(local, engine.address, certs, base)
    after = _doctor(inventory)
    ns41 = [line for line in after.stdout.splitlines() if line.startswith("ns41")]
    assert f"{base} present" in ns41[0] and "GiB free" in ns41[0]
    assert not any("no base image" in line for line in ns41)


@pytest.mark.docker
def test_a_client_without_the_right_certificate_is_refused_by_the_tls_engine(tls_engine, tmp_path):
    """The engine's TCP socket answers only clients holding a certificate of its CA."""
    engine, certs, _ = tls_engine
    other = make_certificates(tmp_path / "other-ca", [engine.ip])
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(
        f"""hosts:
  - name: stranger
    address: "{engine.address}"
    tls: {{ca: "{certs["ca"]}", cert: "{other["cert"]}", key: "{other["key"]}"}}
"""
    )
    proc = _doctor(inventory)
    assert proc.returncode == 1
    assert f"stranger ({engine.address}): UNREACHABLE: " in proc.stdout


@pytest.mark.docker
def test_doctor_reaches_an_engine_over_ssh(tls_engine, tmp_path):
    """ssh://root@<namespace address>: an sshd the test starts in the engine's namespace (key
    only), the SDK's paramiko client with its key, known host and config in ~/.ssh."""
    import shutil

    if shutil.which("sshd") is None and not os.path.exists("/usr/sbin/sshd"):
        if os.environ.get("DEPLOYBENCH_REQUIRE_DOCKER") == "1":
            pytest.fail("sshd is not installed (apt-get install openssh-server)")
        pytest.skip("sshd is not installed")
    engine, _, _ = tls_engine
    sshd = start_sshd(engine, tmp_path)
    try:
        inventory = tmp_path / "hosts.yaml"
        inventory.write_text(f'hosts:\n  - {{name: viassh, address: "ssh://root@{engine.ip}"}}\n')
        env = {**os.environ, "HOME": str(tmp_path)}
        proc = subprocess.run(
            [sys.executable, "-m", "runner", "doctor", "--hosts", str(inventory)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        line = proc.stdout.splitlines()[0]
        assert line.startswith(f"viassh (ssh://root@{engine.ip}): docker "), proc.stdout
        assert "UNREACHABLE" not in line
        # A client whose key the server does not know is refused.
        (tmp_path / ".ssh" / "id_ed25519").rename(tmp_path / ".ssh" / "other")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(tmp_path / ".ssh" / "id_ed25519")], check=True)  # fmt: skip
        refused = subprocess.run(
            [sys.executable, "-m", "runner", "doctor", "--hosts", str(inventory)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert refused.returncode == 1 and "UNREACHABLE" in refused.stdout
    finally:
        sshd.terminate()
        sshd.wait(timeout=30)


def test_make_passes_the_inventory_to_the_runner():
    """`make bench-cpu HOSTS=FILE` (and bench-gpu, doctor) run on the pool; without HOSTS, on
    the executor asked for (make -n: the commands, not run)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def commands(*args: str) -> str:
        proc = subprocess.run(["make", "-n", *args], cwd=root, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "-m runner run --matrix quick --hosts pool.yaml " in commands(
        "bench-cpu", "HOSTS=pool.yaml"
    )
    assert "-m runner run --matrix gpu --hosts pool.yaml " in commands(
        "bench-gpu", "HOSTS=pool.yaml"
    )
    assert "-m runner run --matrix quick --executor auto " in commands("bench-cpu")
    assert "-m runner doctor --hosts pool.yaml" in commands("doctor", "HOSTS=pool.yaml")
