"""Matrix files: built-in profiles, planning, exclusions, and every problem reported at once."""

from __future__ import annotations

import pytest

from bench.errors import UsageError
from runner.matrix import MatrixError, load_matrix, parse_matrix, profiles

VALID = """
name: t
models: [resnet50, mobilenet_v3_small]
frameworks: [torch, onnxruntime, openvino]
devices: [cpu]
batch_sizes: [1, 4]
precisions: [fp32, bf16]
threads: 2
exclude:
  - {framework: torch, precision: bf16}
  - {framework: onnxruntime, precision: bf16}
  - {model: resnet50, batch_size: 4}
framework_options:
  openvino: {hint: latency}
"""


def test_profiles_are_valid():
    assert {"quick", "full", "gpu"} <= set(profiles())
    for name in profiles():
        assert load_matrix(name).cells


def test_quick_profile_is_every_cpu_framework_on_two_models():
    m = load_matrix("quick")
    assert {c.framework for c in m.cells} == {"torch", "onnxruntime", "openvino", "tvm"}
    assert m.models == ["resnet50", "mobilenet_v3_large"]
    assert {c.threads for c in m.cells} == {m.threads}


def test_planning_applies_exclusions_and_options():
    m = parse_matrix(VALID)
    # 2 models x 3 frameworks x 2 batches x 2 precisions = 24; minus torch/ort bf16 (2 x 2 x 2 x
    # 2 = 8) = 16; minus resnet50 at batch 4 among those (3 frameworks' fp32 + openvino bf16 = 4)
    assert len(m.cells) == 12
    assert all(c.threads == 2 for c in m.cells)
    ov = [c for c in m.cells if c.framework == "openvino"]
    assert all(c.option("hint") == "latency" for c in ov)
    assert not any(c.precision == "bf16" and c.framework != "openvino" for c in m.cells)
    assert len({c.id for c in m.cells}) == len(m.cells)


def test_list_valued_options_are_variants():
    m = parse_matrix(
        VALID.replace("openvino: {hint: latency}", "openvino: {hint: [latency, throughput]}")
    )
    ov = [c for c in m.cells if c.framework == "openvino"]
    assert sorted({c.option("hint") for c in ov}) == ["latency", "throughput"]
    assert len(m.cells) == 12 + len(ov) // 2
    assert len({c.id for c in m.cells}) == len(m.cells)


def test_a_null_variant_is_the_cell_without_that_option():
    from runner.matrix import option_variants

    assert option_variants({"compile": [None, "max-autotune"], "channels_last": 1}) == [
        (("channels_last", "1"),),
        (("channels_last", "1"), ("compile", "max-autotune")),
    ]
    assert option_variants({"cuda_graphs": [None, 1], "compile": [None]}) == [
        (),
        (("cuda_graphs", "1"),),
    ]


def test_a_list_of_mappings_names_each_variant():
    from runner.matrix import option_variants

    variants = [{}, {"compile": "max-autotune"}, {"cuda_graphs": 1, "channels_last": [0, 1]}]
    assert option_variants(variants) == [
        (),
        (("compile", "max-autotune"),),
        (("channels_last", "0"), ("cuda_graphs", "1")),
        (("channels_last", "1"), ("cuda_graphs", "1")),
    ]
    m = parse_matrix(VALID.replace("openvino: {hint: latency}", "torch: [{}, {channels_last: 1}]"))
    torch_cells = [c for c in m.cells if c.framework == "torch"]
    assert {c.options for c in torch_cells} == {(), (("channels_last", "1"),)}


def test_every_problem_is_reported_at_once_with_its_location():
    text = """name: bad
models: [resnet5, resnet50]
frameworks: [torch, onnxruntim]
devices: [cpu, tpu]
batch_sizes: [0, 1]
precison: [fp32]
timing: {iters: 0, warmpu: 1}
exclude:
  - {framwork: tvm}
threads: many
"""
    with pytest.raises(MatrixError) as info:
        parse_matrix(text, "bad.yaml")
    problems = "\n".join(info.value.problems)
    expected = [
        "models[0] (line 2): unknown model 'resnet5'",
        "frameworks[1] (line 3): unknown framework 'onnxruntim'; valid: ",
        "devices[1] (line 4): unknown device 'tpu'; valid: cpu, cuda",
        "batch_sizes[0] (line 5): batch size must be a positive integer",
        "precison (line 6): unknown key; did you mean 'precisions'?",
        "precisions: missing",
        "timing.warmpu (line 7): unknown key; valid: warmup_iters, warmup_seconds",
        "timing (line 7): invalid timing bounds: min_iters must be at least 1",
        "exclude[0].framwork (line 9): unknown key; did you mean 'framework'?",
        "threads (line 10): must be a positive integer or 'auto'",
    ]
    for line in expected:
        assert line in problems
    assert len(info.value.problems) == len(expected)
    assert str(info.value).startswith("invalid matrix bad.yaml:")


def test_matrix_errors_are_usage_errors():
    with pytest.raises(UsageError):
        parse_matrix("[1, 2]")
    with pytest.raises(UsageError, match="not valid YAML"):
        parse_matrix("models: [resnet50")
    with pytest.raises(UsageError, match="every cell is excluded"):
        parse_matrix(VALID.replace("exclude:", "exclude:\n  - {device: cpu}"))
    with pytest.raises(UsageError, match="built-in profiles: full, gpu, quick"):
        load_matrix("fastest")


BAD_SETTINGS = """
models: [resnet50]
frameworks: [torch, openvino]
devices: [cpu]
batch_sizes: [1]
precisions: [fp32]
memory_limit: lots
cell_timeout_s: true
threads: 999
framework_options:
  torch: {chanels_last: 1, compile: fast}
  openvino: {hint: fast, quantizer: [nncf, pot]}
"""


def test_every_bad_setting_is_refused_by_plan_with_its_line_and_the_valid_values(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "bad.yaml"
    path.write_text(BAD_SETTINGS)
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "plan", "--matrix", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    for expected in (
        "memory_limit (line 7): must be a size such as 8g",
        "cell_timeout_s (line 8): must be a positive number of seconds, not True",
        "threads (line 9): 999 > the",
        "torch has no option 'chanels_last'; valid: channels_last, compile, cuda_graphs",
        "torch option compile='fast': must be default, reduce-overhead, max-autotune",
        "openvino option hint='fast': must be latency, throughput",
        "openvino option quantizer='pot': must be nncf, qdq",
    ):
        assert expected in proc.stderr, (expected, proc.stderr)


def test_a_batch_the_model_cannot_take_is_refused():
    text = (
        "models: [maskrcnn_resnet50_fpn]\nframeworks: [torch]\ndevices: [cpu]\n"
        "batch_sizes: [1, 8]\nprecisions: [fp32]\nthreads: 1\n"
    )
    with pytest.raises(UsageError, match="maskrcnn_resnet50_fpn takes batch 1 only"):
        parse_matrix(text, "m.yaml")


def test_scenarios_are_an_axis_with_settings_and_exclusions():
    text = (
        VALID.replace("batch_sizes: [1, 4]", "batch_sizes: [1]")
        + """scenarios: [single_stream, server, offline]
scenario_options:
  server: {p99_ms: 50}
"""
    ).replace(
        "  - {model: resnet50, batch_size: 4}", "  - {framework: openvino, scenario: offline}"
    )
    m = parse_matrix(text)
    # 2 models x (torch fp32, onnxruntime fp32, openvino fp32 + bf16) x 3 scenarios, less
    # openvino's offline cells (2 precisions x 2 models).
    assert len(m.cells) == 2 * 4 * 3 - 4
    server = [c for c in m.cells if c.scenario == "server"]
    assert len(server) == 8 and {c.scenario_options for c in server} == {(("p99_ms", "50.0"),)}
    assert not [c for c in m.cells if c.framework == "openvino" and c.scenario == "offline"]
    assert len({c.id for c in m.cells}) == len(m.cells)
    assert {c.scenario for c in parse_matrix(VALID).cells} == {"single_stream"}  # the default


def test_bad_scenarios_and_settings_are_refused_with_their_place():
    text = (
        VALID
        + """scenarios: [offline, batched]
scenario_options:
  offline: {max_batch: 0, depth: 2}
  server: {p99_ms: 10}
"""
    )
    with pytest.raises(MatrixError) as info:
        parse_matrix(text, "bad.yaml")
    problems = "\n".join(info.value.problems)
    assert "scenarios[1] (line " in problems and "unknown scenario 'batched'; valid:" in problems
    assert "scenario_options.server" in problems and "not a scenario of this matrix" in problems
    assert "scenario offline setting max_batch must be >= 1" in problems
