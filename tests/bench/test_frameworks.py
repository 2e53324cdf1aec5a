"""The framework table (bench/frameworks.py): option types and normalisation, refusals before
any work, and every consumer reading the same facts (backends, images, README)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.backends import BACKENDS
from bench.cell import Cell
from bench.errors import UsageError
from bench.frameworks import FRAMEWORKS, frameworks_table, options_table
from runner.images import IMAGES, image_for

README = Path(__file__).parents[2] / "README.md"


@pytest.mark.parametrize(
    ("value", "normal"),
    [(True, "1"), ("true", "1"), ("1", "1"), (1, "1"), (False, "0"), ("no", "0")],
)
def test_booleans_take_every_spelling_and_store_one(value, normal):
    cell = Cell(model="resnet50", framework="torch", threads=1, options=(("channels_last", value),))
    assert cell.options == (("channels_last", normal),)
    assert cell.id.endswith(f"channels_last={normal}")


@pytest.mark.parametrize(
    ("framework", "options", "message"),
    [
        ("torch", {"chanels_last": 1}, "torch has no option 'chanels_last'; valid: channels_last"),
        ("torch", {"channels_last": "maybe"}, "must be true or false (1 or 0)"),
        ("openvino", {"hint": "fast"}, "openvino option hint='fast': must be latency, throughput"),
        ("tvm", {"trials": -1}, "tvm option trials=-1: must be an integer >= 0"),
        ("tvm", {"trials": "lots"}, "must be an integer >= 0"),
        ("tvm", {"trials": True}, "must be an integer >= 0"),
        ("torch", {"cuda_graphs": 1}, "torch option cuda_graphs applies to cuda cells, not cpu"),
        ("openvino", {"quantizer": "qdq"}, "option quantizer applies to int8 cells, not fp32"),
    ],
)
def test_invalid_options_are_refused_with_the_valid_values(framework, options, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Cell(model="resnet50", framework=framework, threads=1, options=tuple(options.items()))


def test_more_threads_than_cpus_is_refused():
    usable = len(os.sched_getaffinity(0))
    with pytest.raises(UsageError, match=f"threads {usable + 1} > the {usable} CPUs"):
        Cell(model="resnet50", framework="torch", threads=usable + 1)
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--model", "resnet50", "--framework", "torch",
         "--threads", "999"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (
        proc.returncode == 2 and "threads 999 >" in proc.stderr and "Traceback" not in proc.stderr
    )


def test_every_backend_takes_its_devices_precisions_and_options_from_the_table():
    for name in FRAMEWORKS:
        entry = FRAMEWORKS.get(name)
        if not entry.importable():
            continue  # tensorrt here
        cls = BACKENDS.get(name).load_class()
        assert cls.precisions == entry.precisions, name
        assert cls.option_names == tuple(o.name for o in entry.options), name


def test_the_images_run_what_the_table_says():
    for name in FRAMEWORKS:
        for device, image in FRAMEWORKS.get(name).images.items():
            assert image_for(name, device).name == image
            assert name in IMAGES.get(image).frameworks
    assert IMAGES.get("ov-cpu").frameworks == ("openvino", "openvino-cpp", "openvino-ctypes")


def test_the_readme_shows_the_table_as_the_code_has_it():
    text = README.read_text()
    assert frameworks_table() in text, "README: paste `python -m bench frameworks` output"
    assert options_table() in text, "README: paste `python -m bench frameworks` output"


def test_torch_compile_can_autotune_without_cuda_graphs():
    """max-autotune captures CUDA graphs in torch 2.14; its -no-cudagraphs sibling is a mode of
    its own, accepted by the option check."""
    from bench.cell import Cell

    cell = Cell("mobilenet_v3_small", "torch", options=(("compile", "max-autotune-no-cudagraphs"),))
    assert cell.option("compile") == "max-autotune-no-cudagraphs"
