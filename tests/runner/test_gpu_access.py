"""GPU access read from `docker info` as engines report it: the NVIDIA runtime, CDI devices
only (a toolkit set up the CDI way), CDI on without GPU specs, neither."""

from __future__ import annotations

from runner.gpu_access import gpu_access


def test_the_nvidia_runtime_requests_gpus_by_capability():
    access = gpu_access({"Runtimes": {"runc": {}, "nvidia": {"path": "nvidia-container-runtime"}}})
    assert access.mode == "runtime" and access.reason is None
    every = access.device_request()
    assert every["Count"] == -1 and every["Capabilities"] == [["gpu"]] and not every["Driver"]
    one = access.device_request(("1",))
    assert one["DeviceIDs"] == ["1"] and one["Capabilities"] == [["gpu"]]


def test_a_cdi_only_engine_has_gpus_and_requests_them_by_cdi_name():
    info = {
        "Runtimes": {"runc": {}},
        "CDISpecDirs": ["/etc/cdi", "/var/run/cdi"],
        "DiscoveredDevices": [
            {"Source": "cdi", "ID": "nvidia.com/gpu=0"},
            {"Source": "cdi", "ID": "nvidia.com/gpu=all"},
            {"Source": "cdi", "ID": "vendor.example/fpga=0"},
        ],
    }
    access = gpu_access(info)
    assert access.mode == "cdi" and access.reason is None
    assert access.cdi_devices == ("nvidia.com/gpu=0", "nvidia.com/gpu=all")
    assert access.describe() == "CDI (nvidia.com/gpu=0, nvidia.com/gpu=all)"
    every = access.device_request()
    assert every["Driver"] == "cdi" and every["DeviceIDs"] == ["nvidia.com/gpu=all"]
    assert access.device_request(("0",))["DeviceIDs"] == ["nvidia.com/gpu=0"]


def test_cdi_without_a_gpu_spec_and_no_runtime_say_why():
    on = gpu_access({"Runtimes": {"runc": {}}, "CDISpecDirs": ["/etc/cdi"]})
    assert on.mode is None and "CDI is on (/etc/cdi) but lists no nvidia.com/gpu" in on.reason
    neither = gpu_access({"Runtimes": {"runc": {}}})
    assert neither.mode is None and "nvidia-container-toolkit" in neither.reason
    assert gpu_access({}).describe() == "absent"
