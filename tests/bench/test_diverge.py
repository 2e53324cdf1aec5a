"""`bench diverge` on real frameworks: a small seeded graph and a copy with one node altered
must be told apart at exactly that node, in both modes; a framework against itself must not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench.artifact import Artifact
from bench.diverge import (
    compare_tensor,
    expose_outputs,
    index_graph,
    localise,
    onnxruntime_runner,
    openvino_runner,
)
from bench.measure.parity import tolerance_for

CHANNELS = 4
PERTURBED = "conv_3"  # a middle node: 3 compared nodes before it, several after


def small_graph(seed: int = 0) -> onnx.ModelProto:
    """A chain of Conv/Relu/Add/Mul with seeded weights, plus int64 shape bookkeeping."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = "input"
    for i in range(5):
        w = (rng.standard_normal((CHANNELS, CHANNELS, 3, 3)) * 0.3).astype(np.float32)
        b = rng.standard_normal(CHANNELS).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(
            helper.make_node(
                "Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv_{i}", pads=[1] * 4
            )
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu_{i}"))
        x = f"r{i}"
        if i % 2 == 1:  # residual-ish arithmetic, so not every node is a Conv
            k = rng.standard_normal((1, CHANNELS, 1, 1)).astype(np.float32)
            inits.append(numpy_helper.from_array(k, f"k{i}"))
            nodes.append(helper.make_node("Mul", [x, f"k{i}"], [f"m{i}"], name=f"mul_{i}"))
            nodes.append(helper.make_node("Add", [f"m{i}", f"c{i}"], [f"a{i}"], name=f"add_{i}"))
            x = f"a{i}"
    nodes.append(helper.make_node("Shape", [x], ["shape"], name="shape"))
    nodes.append(
        helper.make_node(
            "Constant", [], ["flat"], name="flat", value=numpy_helper.from_array(np.array([1, -1]))
        )
    )
    nodes.append(helper.make_node("Reshape", [x, "flat"], ["output"], name="reshape"))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, CHANNELS, 8, 8])],
        [
            helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, CHANNELS * 64]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [4]),
        ],
        inits,
    )
    # IR 8 / opset 17: what this onnxruntime and OpenVINO read (onnx's default IR is newer).
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def perturbed(
    model: onnx.ModelProto, node: str = PERTURBED, scale: float = 1.01
) -> onnx.ModelProto:
    """The same graph with one node's weight scaled: that node is where outputs start to differ."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    weight = next(n.input[1] for n in out.graph.node if n.name == node)
    for i, init in enumerate(out.graph.initializer):
        if init.name == weight:
            scaled = numpy_helper.to_array(init) * np.float32(scale)
            out.graph.initializer[i].CopyFrom(numpy_helper.from_array(scaled, weight))
    return out


def feeds(n: int = 2) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [
        {"input": rng.standard_normal((1, CHANNELS, 8, 8)).astype(np.float32)} for _ in range(n)
    ]


def test_expose_outputs_adds_typed_intermediates_that_ort_returns():
    model = small_graph()
    exposed = expose_outputs(model, ["c1", "shape", "r2"])
    outputs = {o.name: o.type.tensor_type.elem_type for o in exposed.graph.output}
    assert outputs == {
        "output": TensorProto.FLOAT,
        "shape": TensorProto.INT64,
        "c1": TensorProto.FLOAT,
        "r2": TensorProto.FLOAT,
    }
    assert len(model.graph.output) == 2  # the original is left alone
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(
        zip([o.name for o in session.get_outputs()], session.run(None, feeds(1)[0]), strict=True)
    )
    assert got["c1"].shape == (1, CHANNELS, 8, 8)
    assert got["shape"].tolist() == [1, CHANNELS, 8, 8]


def test_expose_outputs_pruned_keeps_only_what_the_tensors_need():
    exposed = expose_outputs(small_graph(), ["r1"], keep_outputs=False)
    assert [o.name for o in exposed.graph.output] == ["r1"]
    assert [n.name for n in exposed.graph.node] == ["conv_0", "relu_0", "conv_1", "relu_1"]
    assert {i.name for i in exposed.graph.initializer} == {"w0", "b0", "w1", "b1"}
    onnx.checker.check_model(exposed)


def test_expose_outputs_untyped_tensor_is_declared_by_name_for_the_runtime_to_type():
    # ONNX's shape inference does not know ONNX Runtime's contrib ops: "g" has no inferred type.
    nodes = [
        helper.make_node("Gelu", ["x"], ["g"], domain="com.microsoft"),
        helper.make_node("Neg", ["g"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "contrib",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    exposed = expose_outputs(model, ["g"])
    assert not exposed.graph.output[-1].type.HasField("tensor_type")
    assert index_graph(model).candidates == {0: ["g"], 1: ["y"]}  # typed by the run
    x = {"x": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)}
    result = localise(model, [x], onnxruntime_runner())
    assert result.tensors_compared == 2 and not result.diverged
    with pytest.raises(ValueError, match="no node of the graph produces"):
        expose_outputs(model, ["nonexistent"])


def test_index_graph_skips_non_float_and_constants_and_cuts():
    index = index_graph(small_graph())
    assert index.skipped["shape"] == "not float (int64)"
    assert index.skipped["flat"] == "Constant"
    names = [index.nodes[i].name for i in index.candidate_nodes]
    assert names[:3] == ["conv_0", "relu_0", "conv_1"] and names[-1] == "reshape"
    cut = index_graph(small_graph(), cut_before=["Mul"])
    kept = [cut.nodes[i].name for i in cut.candidate_nodes]
    assert kept == ["conv_0", "relu_0", "conv_1", "relu_1"]  # mul_1 and all after it depend on it
    assert "after a cut op (Mul)" in cut.skipped["output"]


def test_compare_tensor_uses_the_parity_tier():
    tol = tolerance_for("fp32")
    ref = np.linspace(1, 2, 100, dtype=np.float32)
    assert not compare_tensor("t", ref * np.float32(1.0001), ref, tol).diverged
    bad = compare_tensor("t", ref * np.float32(1.01), ref, tol)
    assert bad.diverged and bad.rel_l2 == pytest.approx(0.01, rel=1e-3)
    assert compare_tensor("t", ref[:50], ref, tol).note.startswith("shape [50]")
    nan = ref.copy()
    nan[3] = np.nan
    assert compare_tensor("t", nan, ref, tol).diverged
    assert not compare_tensor("t", nan, nan, tol).diverged  # the same NaN is no divergence


@pytest.mark.parametrize("mode", ["all", "bisect"])
def test_the_perturbed_node_is_reported_first(mode):
    model = small_graph()
    result = localise(
        model, feeds(), onnxruntime_runner(), tested_model=perturbed(model), mode=mode
    )
    assert result.diverged
    first = result.first
    assert (first.name, first.op_type, first.worst.tensor) == (PERTURBED, "Conv", "c3")
    assert first.inputs == ["r2", "w3", "b3"]
    assert first.worst.rel_l2 > 1e-3
    states = {i["tensor"]: i["state"] for i in result.first_inputs}
    assert states["r2"].startswith("within the tier: rel L2 0")
    assert states["w3"] == "graph input or initializer"
    # the nodes before it were compared and agree exactly (the same runtime on the same weights)
    assert [n.name for n in result.context][-1] == "relu_2"
    assert all(not n.diverged and n.worst.rel_l2 == 0.0 for n in result.context)
    doc = json.loads(result.to_json())
    assert doc["first_divergence"]["name"] == PERTURBED
    assert doc["not_compared"]["not float (int64)"] == ["shape"]
    assert "FIRST DIVERGENCE: node #" in result.summary()
    if mode == "bisect":
        assert result.runs <= 2 * len(feeds()) * 4  # windows halve: about log2(n) probes


def test_bisect_with_a_window_finds_the_same_node_in_more_runs():
    model = small_graph()
    result = localise(
        model,
        feeds(1),
        onnxruntime_runner(),
        tested_model=perturbed(model),
        mode="bisect",
        window=2,
    )
    assert result.first.name == PERTURBED
    # windows of 2 nodes: four of them (conv_0 .. relu_2) agree, the fifth starts at conv_3
    assert result.runs == 5


@pytest.mark.parametrize("mode", ["all", "bisect"])
def test_onnxruntime_against_itself_finds_no_divergence(mode):
    result = localise(small_graph(), feeds(), onnxruntime_runner(), mode=mode)
    assert not result.diverged
    assert result.nodes_compared == len(index_graph(small_graph()).candidates)
    assert "no divergence" in result.summary()


def test_openvino_fp32_on_the_graph_finds_no_divergence():
    pytest.importorskip("openvino")
    result = localise(small_graph(), feeds(), openvino_runner("fp32"), framework="openvino")
    assert not result.diverged, result.summary()
    assert result.tensors_compared > 10  # OpenVINO kept the ONNX names of what it returned


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize(
    ("args", "listing"),
    [
        (["--framework", "torch"], "invalid choice: 'torch' (choose from 'onnxruntime', "),
        (["--framework", "onnxruntime", "--precision", "bf16"], "valid choices: fp32"),
        (["--framework", "onnxruntime", "--mode", "some"], "(choose from 'all', 'bisect')"),
        (["--framework", "onnxruntime", "--images", "0"], "at least 1"),
    ],
)
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, small_artifact, args, listing):
    out = tmp_path / "diverge.json"
    proc = bench("diverge", "--artifact", str(small_artifact.path), *args, "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert listing in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_cli_missing_artifact_exits_2(tmp_path):
    proc = bench("diverge", "--artifact", str(tmp_path / "none"), "--framework", "onnxruntime")
    assert proc.returncode == 2
    assert "is not an artifact" in proc.stderr


def test_cli_onnxruntime_on_a_real_artifact_finds_no_divergence(tmp_path, small_artifact: Artifact):
    out = tmp_path / "diverge.json"
    proc = bench(
        "diverge",
        "--artifact",
        str(small_artifact.path),
        "--framework",
        "onnxruntime",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "no divergence" in proc.stdout
    doc = json.loads(Path(out).read_text())
    assert doc["diverged"] is False and doc["nodes_compared"] > 50
    assert doc["framework"] == "onnxruntime" and doc["reference"] == "onnxruntime-cpu"


def test_tvm_fp32_agrees_and_finds_the_perturbed_node():
    pytest.importorskip("tvm")
    from bench.diverge import tvm_runner

    model = small_graph()
    same = localise(model, feeds(1), tvm_runner(), framework="tvm", mode="bisect")
    assert not same.diverged, same.summary()
    found = localise(model, feeds(1), tvm_runner(), tested_model=perturbed(model), framework="tvm")
    assert found.first.name == PERTURBED
