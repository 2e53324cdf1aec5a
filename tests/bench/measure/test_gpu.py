"""The GPU section's logic with hand-written readings: throttle reasons, clock drops,
nvidia-smi parsing, and what a cell records on a host without a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.measure.gpu import (
    GpuMonitor,
    GpuSample,
    clock_drop,
    decode_throttle_reasons,
    parse_smi_sample,
)
from bench.result import SCHEMA_VERSION, validate

FIXTURES = Path(__file__).parents[2] / "fixtures" / "results" / f"v{SCHEMA_VERSION}"


def _sample(sm: int | None, reasons: tuple[str, ...] = ()) -> GpuSample:
    return GpuSample(sm, 2619, 40, 120.0, 1024.0, reasons)


@pytest.mark.parametrize(
    ("mask", "names"),
    [
        (0x0, ()),
        (0x1, ("gpu_idle",)),
        (0x24, ("sw_power_cap", "sw_thermal_slowdown")),  # 0x04 + 0x20
        (0x1008, ("hw_slowdown", "0x1000")),  # a bit nvml.h does not name (yet)
    ],
)
def test_throttle_reason_bits(mask, names):
    assert decode_throttle_reasons(mask) == names


def test_a_clock_drop_beyond_five_percent_is_flagged():
    assert clock_drop(_sample(1980), _sample(1980)) is None
    assert clock_drop(_sample(1980), _sample(1890)) is None  # 4.5% lower: within tolerance
    assert clock_drop(_sample(1980), _sample(1800)) == "SM clock fell from 1980 to 1800 MHz"


def test_slowdown_reasons_are_flagged_and_idle_ones_are_not():
    assert clock_drop(_sample(1980), _sample(1980, ("gpu_idle",))) is None
    note = clock_drop(_sample(1980), _sample(1700, ("sw_power_cap", "hw_thermal_slowdown")))
    assert note == (
        "SM clock fell from 1980 to 1700 MHz; throttled at the end: sw_power_cap, "
        "hw_thermal_slowdown"
    )


def test_unknown_clocks_are_not_a_drop():
    assert clock_drop(_sample(None), _sample(1500)) is None


def test_parse_nvidia_smi_line():
    sample = parse_smi_sample("1980, 3201, 41, 118.52, 1210, 0x0000000000000004")
    assert sample == GpuSample(1980, 3201, 41, 118.52, 1210.0, ("sw_power_cap",))
    na = parse_smi_sample("[N/A], [N/A], 35, [N/A], 0, [Not Supported]")
    assert na == GpuSample(None, None, 35, None, 0.0, ())


def test_gpu_section_with_samples_is_schema_valid():
    doc = json.loads(next(FIXTURES.glob("ok*.json")).read_text())
    start, end = _sample(1980), _sample(1800, ("hw_slowdown",))
    doc["gpu"] = {
        "source": "nvml",
        "index": 0,
        "before_cell": _sample(345).to_dict(),
        "measure_start": start.to_dict(),
        "measure_end": end.to_dict(),
        "clocks_dropped": True,
        "clock_note": clock_drop(start, end),
        "peak_memory_mib": 512.0,
        "memory_method": "device memory used (NVML)",
        "cuda_version": "13.0",
        "cudnn_version": 91400,
    }
    validate(doc)


def test_monitor_on_a_host_without_a_gpu_says_why():
    monitor = GpuMonitor()
    monitor.start()
    monitor.loop_started("host_end_to_end")
    monitor.loop_ended("host_end_to_end")
    section = monitor.finish()
    if monitor.reader is not None:
        pytest.skip("this host has a GPU")
    assert section["source"] is None
    assert section["error"].startswith("NVML: ")


def _fake_nvml(monkeypatch, **functions):
    """A stand-in for nvidia-ml-py (no GPU here): an older or broken binding, to test that the
    monitor's failures never end a cell. Only what `functions` names exists in it."""
    import sys
    import types

    fake = types.ModuleType("pynvml")
    fake.nvmlInit = lambda: None
    fake.nvmlShutdown = lambda: None
    fake.nvmlDeviceGetHandleByIndex = lambda index: f"gpu{index}"
    for name, fn in functions.items():
        setattr(fake, name, fn)
    monkeypatch.setitem(sys.modules, "pynvml", fake)


def _section_is_valid(section):
    result = json.loads(next(FIXTURES.glob("ok-*.json")).read_text())
    result["gpu"] = section
    validate(result)


def test_an_older_nvml_binding_reads_what_it_lacks_as_unknown(monkeypatch):
    """No NVMLError, no clock or power functions (an old nvidia-ml-py: AttributeError on
    access): the monitor reads them as unknown and keeps the memory it can read."""
    from types import SimpleNamespace

    _fake_nvml(monkeypatch, nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(used=2**30))
    monitor = GpuMonitor(interval_s=0.001)
    monitor.start()
    monitor.loop_started("host_end_to_end")
    monitor.loop_ended("host_end_to_end")
    section = monitor.finish()
    assert section["source"] == "nvml" and section["error"] is None
    assert section["measure_start"]["memory_used_mib"] == 1024.0
    assert section["measure_start"]["sm_clock_mhz"] is None
    assert section["clocks_dropped"] is False and section["peak_memory_mib"] == 0.0
    _section_is_valid(section)


def test_a_monitor_that_fails_records_why_and_the_cell_goes_on(monkeypatch):
    """A reading that raises what no binding should (here a RuntimeError at the first sample):
    start() and the marks do not raise; the section says what failed, once, and where."""

    def broken(handle, *args):
        raise RuntimeError("driver went away")

    _fake_nvml(monkeypatch, nvmlDeviceGetClockInfo=broken)
    monitor = GpuMonitor(interval_s=0.001)
    monitor.start()  # must not raise
    monitor.loop_started("host_end_to_end")
    monitor.loop_ended("host_end_to_end")
    section = monitor.finish()
    assert section["source"] == "nvml"
    assert section["error"] == (
        "the GPU monitor failed at the start: RuntimeError: driver went away"
    )
    assert section["measure_start"] is None and section["measure_end"] is None
    _section_is_valid(section)


class _CountingNvml:
    """A fake NVML whose SM clock is set by the test and which counts its readings."""

    def __init__(self, monkeypatch, **extra):
        from types import SimpleNamespace

        self.clock, self.calls = 1980, 0

        def clock(handle, which):
            self.calls += 1
            return self.clock

        _fake_nvml(
            monkeypatch,
            NVML_CLOCK_SM=0,
            NVML_CLOCK_MEM=1,
            nvmlDeviceGetClockInfo=clock,
            nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(used=2**30),
            **extra,
        )


def test_the_poller_is_paused_during_a_timed_loop(monkeypatch):
    """Between loop_started and loop_ended the sampling thread makes no NVML call (it would
    compete with the timed calls for the GIL); outside the loops it samples again."""
    import time

    nvml = _CountingNvml(monkeypatch)
    monitor = GpuMonitor(interval_s=0.001)
    monitor.start()
    time.sleep(0.05)
    assert nvml.calls > 4  # polling before the loop (two clock reads per sample)
    monitor.loop_started("host_end_to_end")
    during = nvml.calls
    time.sleep(0.1)  # about 100 polls' worth
    assert nvml.calls == during
    monitor.loop_ended("host_end_to_end")
    after = nvml.calls
    time.sleep(0.05)
    assert nvml.calls > after  # polling again
    section = monitor.finish()
    assert section["poller"] == "paused during the timed loops"
    _section_is_valid(section)


def test_clocks_are_read_at_each_loops_ends_and_a_drop_inside_one_is_flagged(monkeypatch):
    """Two loops: the clock fell within the compute loop only; its own verdict says so and the
    cell is flagged, with the host loop's verdict clean."""
    nvml = _CountingNvml(monkeypatch)
    monitor = GpuMonitor(interval_s=0.001)
    monitor.start()
    monitor.loop_started("host_end_to_end")
    monitor.loop_ended("host_end_to_end")
    monitor.loop_started("device_compute_only")
    nvml.clock = 1600
    monitor.loop_ended("device_compute_only")
    section = monitor.finish()
    assert section["measure_start"]["sm_clock_mhz"] == 1980
    assert section["measure_end"]["sm_clock_mhz"] == 1600
    assert section["loops"]["host_end_to_end"]["clocks_dropped"] is False
    compute = section["loops"]["device_compute_only"]
    assert compute["clocks_dropped"] is True
    assert compute["clock_note"] == "SM clock fell from 1980 to 1600 MHz"
    assert section["clocks_dropped"] is True
    assert section["clock_note"] == "SM clock fell from 1980 to 1600 MHz"


def test_the_temperature_comes_from_nvmls_successor_call_first(monkeypatch):
    """nvmlDeviceGetTemperature is deprecated in NVML 13: its V successor is asked first, the
    old call only where the binding lacks it."""
    _CountingNvml(
        monkeypatch,
        NVML_TEMPERATURE_GPU=0,
        nvmlDeviceGetTemperatureV=lambda h, sensor: 51,
        nvmlDeviceGetTemperature=lambda h, sensor: 99,
    )
    monitor = GpuMonitor(interval_s=0.001)
    monitor.start()
    assert monitor.before.temperature_c == 51
    monitor.finish()


def test_an_older_binding_reads_the_temperature_the_old_way(monkeypatch):
    _CountingNvml(
        monkeypatch, NVML_TEMPERATURE_GPU=0, nvmlDeviceGetTemperature=lambda h, sensor: 47
    )
    monitor = GpuMonitor(interval_s=0.001)
    monitor.start()
    assert monitor.before.temperature_c == 47
    monitor.finish()
