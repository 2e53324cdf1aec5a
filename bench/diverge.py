"""Divergence localisation: the first node of the ONNX graph whose output differs in a framework.

Parity says *that* a framework's outputs differ from the reference; this says *where*. The graph
is rewritten so that its intermediate tensors become graph outputs (`expose_outputs`), run in the
framework under test and in the reference (ONNX Runtime, CPU EP), and each float tensor is
compared with `bench.measure.parity` at the tier of the cell's precision. The first diverging
node is the earliest in the graph's node order (ONNX requires it to be topological) with a float
output that fails the tier.

- `all` exposes every float intermediate in one run per image.
- `bisect` exposes windows of nodes that halve (n/2, n/4, ...) after the nodes already known to
  agree, and stops at the first window holding a divergence: at most about log2(n) + 1 runs,
  exact (every node before the answer was compared), each run holding at most half the tensors
  (or `window` of them). The exposed graph is pruned to what its outputs need, so later nodes
  a framework cannot convert do not stop the search; `cut_before` drops the nodes of the named
  op types and everything after them (an operator a framework cannot convert).

Exposing a tensor can stop a framework fusing the node that produces it; what is compared is the
framework's result for that tensor when it has to produce it. Nested graphs (If/Loop bodies) are
not entered: those nodes are compared by their outputs, and the result lists them. The logic is
framework-neutral; each runner imports its framework only when it is built.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.errors import Unsupported
from bench.measure.parity import Tolerance, compare_output, tolerance_for

if TYPE_CHECKING:  # onnx is imported where it is used: `python -m bench` builds its parser
    import onnx  # from this module, and a framework image need not have onnx

MODES = ("all", "bisect")
REFERENCE = "onnxruntime-cpu"
# Which precisions each framework runs the artifact's fp32 graph at in `diverge`: ONNX Runtime
# and TVM compute what the graph says; OpenVINO takes an inference-precision hint.
FRAMEWORK_PRECISIONS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("fp32",),
    "openvino": ("fp32", "bf16", "fp16"),
    "tvm": ("fp32",),
}
# onnx.TensorProto's FLOAT, FLOAT16, DOUBLE, BFLOAT16 (numbers fixed by the ONNX standard)
_FLOAT_TYPES = {1, 10, 11, 16}
_GRAPH, _GRAPHS = 5, 10  # onnx.AttributeProto's GRAPH and GRAPHS
_CONTEXT_NODES = 5

Feed = dict[str, np.ndarray]
# A runner takes the (exposed) graph and the feeds, and returns, per feed, the tensors it
# produced by ONNX name; a tensor it could not produce is simply absent.
Runner = Callable[["onnx.ModelProto", Sequence[Feed]], list[dict[str, np.ndarray]]]


# -- the graph ---------------------------------------------------------------------------------
def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    graphs = []
    for attr in node.attribute:
        if attr.type == _GRAPH:
            graphs.append(attr.g)
        elif attr.type == _GRAPHS:
            graphs.extend(attr.graphs)
    return graphs


def _names_used(node: onnx.NodeProto) -> set[str]:
    """The tensors a node reads, including those its nested graphs take from the outer scope
    (a superset: every input of every nested node, which is harmless for pruning)."""
    used = {i for i in node.input if i}
    for graph in _subgraphs(node):
        for inner in graph.node:
            used |= _names_used(inner)
    return used


@dataclass(frozen=True)
class GraphIndex:
    """A graph's nodes in order and which of their outputs can be compared."""

    nodes: list[onnx.NodeProto]
    # node index -> its outputs to compare (float, or of unknown type until a run says)
    candidates: dict[int, list[str]]
    types: dict[str, int]  # tensor -> ONNX element type, where inference found one
    skipped: dict[str, str]  # tensor -> why it is not compared
    nested: list[dict[str, str]]  # nodes with nested graphs, not entered

    @property
    def candidate_nodes(self) -> list[int]:
        return sorted(self.candidates)


def index_graph(model: onnx.ModelProto, cut_before: Iterable[str] = ()) -> GraphIndex:
    """Classify every node output: compared (float), or skipped with the reason."""
    import onnx

    cut = set(cut_before)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is best effort: untyped tensors get their type from a run
        inferred = model
    g = inferred.graph
    types = {
        vi.name: vi.type.tensor_type.elem_type
        for vi in [*g.value_info, *g.output, *g.input]
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type
    }
    nodes = list(model.graph.node)
    candidates: dict[int, list[str]] = {}
    skipped: dict[str, str] = {}
    nested = []
    after_cut: set[str] = set()  # tensors computed from a cut node
    for i, node in enumerate(nodes):
        outputs = [o for o in node.output if o]
        if _subgraphs(node):
            nested.append({"name": node.name, "op_type": node.op_type, "index": str(i)})
        if node.op_type in cut or _names_used(node) & after_cut:
            after_cut.update(outputs)
            skipped.update({o: f"after a cut op ({', '.join(sorted(cut))})" for o in outputs})
            continue
        if node.op_type == "Constant":  # a value, not a computation: its consumers show it
            skipped.update({o: "Constant" for o in outputs})
            continue
        keep = []
        for o in outputs:
            t = types.get(o)
            if t is None or t in _FLOAT_TYPES:
                keep.append(o)
            else:
                skipped[o] = f"not float ({onnx.TensorProto.DataType.Name(t).lower()})"
        if keep:
            candidates[i] = keep
    return GraphIndex(nodes, candidates, types, skipped, nested)


def expose_outputs(
    model: onnx.ModelProto, names: Sequence[str], keep_outputs: bool = True
) -> onnx.ModelProto:
    """A copy of `model` whose graph outputs also include the tensors `names`.

    Each exposed tensor is declared with its inferred element type and rank but no dimensions
    (a declared size could disagree with a data-dependent one); a tensor whose type inference
    did not find is declared by name only, which ONNX Runtime and OpenVINO accept.
    With `keep_outputs=False` the graph's outputs are `names` alone and the nodes they do not
    need are removed, so a node a framework cannot convert after them is no obstacle.
    """
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    types = {
        vi.name: vi.type.tensor_type
        for vi in [*inferred.graph.value_info, *inferred.graph.output]
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type
    }
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    produced = {o for n in g.node for o in n.output if o}
    missing = [n for n in names if n not in produced]
    if missing:
        raise ValueError(f"no node of the graph produces {missing[:5]}")
    originals = list(g.output) if keep_outputs else []
    del g.output[:]
    g.output.extend(originals)
    declared = {o.name for o in originals}
    for name in names:
        if name in declared:
            continue
        declared.add(name)
        if name in types:
            t = types[name]
            # The rank when inference knows it (ONNX's checker wants a shape), no dim values.
            rank = [None] * len(t.shape.dim) if t.HasField("shape") else None
            g.output.append(onnx.helper.make_tensor_value_info(name, t.elem_type, rank))
        else:
            g.output.append(onnx.ValueInfoProto(name=name))
    if not keep_outputs:
        _prune(g)
    return out


def _prune(g: onnx.GraphProto) -> None:
    """Remove the nodes and initializers the graph's outputs do not need (inputs stay)."""
    needed = {o.name for o in g.output}
    keep = []
    for node in reversed(g.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed |= _names_used(node)
    kept = list(reversed(keep))
    del g.node[:]
    g.node.extend(kept)
    inits = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    # Stale value_info is harmless but the inferred shapes of removed tensors are dropped too.
    infos = [v for v in g.value_info if v.name in needed]
    del g.value_info[:]
    g.value_info.extend(infos)


# -- comparison --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorError:
    """One tensor's error against the reference, worst over the images compared."""

    tensor: str
    rel_l2: float | None  # None where the tensors cannot be compared element-wise
    max_abs_err: float | None
    allclose: bool
    diverged: bool
    note: str = ""


def compare_tensor(name: str, out: np.ndarray, ref: np.ndarray, tol: Tolerance) -> TensorError:
    """The parity rule of the tier: a tensor diverges when it is not allclose or its relative
    L2 error exceeds the tier; a different shape or different non-finite values diverge too."""
    out, ref = np.asarray(out), np.asarray(ref)
    if out.shape != ref.shape:
        note = f"shape {list(out.shape)}, reference {list(ref.shape)}"
        return TensorError(name, None, None, False, True, note)
    finite = np.isfinite(ref)
    same_nonfinite = np.array_equal(np.isnan(out), np.isnan(ref)) and np.array_equal(
        np.where(np.isinf(ref), ref, 0), np.where(np.isinf(out), out, 0)
    )
    if not same_nonfinite:
        return TensorError(name, None, None, False, True, "non-finite values differ")
    m = compare_output(name, out[finite], ref[finite], tol)
    rel = m.rel_l2 if math.isfinite(m.rel_l2) else None
    diverged = not m.allclose or rel is None or rel > tol.max_rel_l2
    return TensorError(name, rel, m.max_abs_err, m.allclose, diverged)


def _worse(a: TensorError, b: TensorError) -> TensorError:
    """The worse of one tensor's errors on two images."""
    if a.diverged != b.diverged:
        return a if a.diverged else b
    if a.rel_l2 is None or b.rel_l2 is None:
        return a if a.rel_l2 is None else b
    return a if a.rel_l2 >= b.rel_l2 else b


@dataclass(frozen=True)
class NodeError:
    """The compared outputs of one node."""

    index: int
    name: str
    op_type: str
    inputs: list[str]
    outputs: list[TensorError]

    @property
    def diverged(self) -> bool:
        return any(o.diverged for o in self.outputs)

    @property
    def worst(self) -> TensorError:
        ranked = [o for o in self.outputs if o.diverged] or self.outputs
        return max(ranked, key=lambda o: math.inf if o.rel_l2 is None else o.rel_l2)

    def to_dict(self) -> dict[str, object]:
        w = self.worst
        return {
            "index": self.index,
            "name": self.name,
            "op_type": self.op_type,
            "inputs": self.inputs,
            "output": w.tensor,
            "rel_l2": w.rel_l2,
            "max_abs_err": w.max_abs_err,
            "allclose": w.allclose,
            "diverged": self.diverged,
            "note": w.note,
            "outputs": [asdict(o) for o in self.outputs],
        }


@dataclass
class Divergence:
    """Where a framework's outputs start to differ from the reference (or that they do not)."""

    framework: str
    precision: str
    mode: str
    tolerance: dict[str, object]
    images: int
    runs: int
    nodes_total: int
    nodes_compared: int
    tensors_compared: int
    first: NodeError | None
    context: list[NodeError]  # the compared nodes right before `first`, in order
    # The first node's inputs: float ones by their error, the others (indices, shapes) by
    # exact equality in one more run, since a differing index makes its consumer diverge.
    first_inputs: list[dict[str, object]]
    not_compared: dict[str, list[str]]  # reason -> tensors
    nested: list[dict[str, str]]
    reference: str = REFERENCE
    notes: list[str] = field(default_factory=list)

    @property
    def diverged(self) -> bool:
        return self.first is not None

    def to_dict(self) -> dict[str, object]:
        return {
            "framework": self.framework,
            "reference": self.reference,
            "precision": self.precision,
            "mode": self.mode,
            "tolerance": self.tolerance,
            "images": self.images,
            "runs": self.runs,
            "diverged": self.diverged,
            "first_divergence": self.first.to_dict() if self.first else None,
            "first_inputs": self.first_inputs,
            "context": [n.to_dict() for n in self.context],
            "nodes_total": self.nodes_total,
            "nodes_compared": self.nodes_compared,
            "tensors_compared": self.tensors_compared,
            "not_compared": self.not_compared,
            "nested_graphs_not_inspected": self.nested,
            "notes": self.notes,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def summary(self) -> str:
        """A few lines for a person."""
        tol = self.tolerance
        head = (
            f"{self.framework} {self.precision} vs {self.reference}, mode {self.mode}, "
            f"{self.images} image(s), {self.runs} run(s); tier: rel L2 <= {tol['max_rel_l2']:g}, "
            f"|out-ref| <= {tol['atol_scale']:g}*max|ref| + {tol['rtol']:g}*|ref|"
        )
        lines = [head]
        if self.first is None:
            lines.append(
                f"no divergence: {self.nodes_compared} of {self.nodes_total} nodes compared "
                f"({self.tensors_compared} tensors), all within the tier"
            )
        else:
            f, w = self.first, self.first.worst
            err = w.note or f"rel L2 {w.rel_l2:.3g}, max abs err {w.max_abs_err:.3g}"
            lines.append(
                f"FIRST DIVERGENCE: node #{f.index} {f.name!r} ({f.op_type}) output "
                f"{w.tensor!r}: {err}"
            )
            for i in self.first_inputs:
                lines.append(f"  its input {i['tensor']!r}: {i['state']}")
            for n in self.context:
                c = n.worst
                shown = c.note or f"rel L2 {c.rel_l2:.3g}, max abs err {c.max_abs_err:.3g}"
                lines.append(f"  before it: #{n.index} {n.name!r} ({n.op_type}) {shown}")
            lines.append(f"{self.nodes_compared} of {self.nodes_total} nodes compared")
        if self.not_compared:
            counts = ", ".join(f"{len(v)} {k}" for k, v in sorted(self.not_compared.items()))
            lines.append(f"tensors not compared: {counts}")
        if self.nested:
            ops = ", ".join(sorted({n["op_type"] for n in self.nested}))
            lines.append(
                f"{len(self.nested)} node(s) with nested graphs ({ops}): bodies not inspected"
            )
        lines.extend(self.notes)
        return "\n".join(lines)


# -- the search --------------------------------------------------------------------------------
class _Search:
    """Runs probes (a set of tensors exposed in both graphs) and keeps every error seen."""

    def __init__(
        self,
        reference_model: onnx.ModelProto,
        tested_model: onnx.ModelProto,
        index: GraphIndex,
        reference_runner: Runner,
        runner: Runner,
        feeds: Sequence[Feed],
        tol: Tolerance,
    ) -> None:
        self.reference_model, self.tested_model = reference_model, tested_model
        self.index, self.reference_runner, self.runner = index, reference_runner, runner
        self.feeds, self.tol = feeds, tol
        self.errors: dict[str, TensorError] = {}
        self.not_compared: dict[str, str] = {}
        self.runs = 0

    def probe(self, node_ids: Sequence[int]) -> None:
        names = [t for i in node_ids for t in self.index.candidates[i]]
        ref_graph = expose_outputs(self.reference_model, names, keep_outputs=False)
        test_graph = expose_outputs(self.tested_model, names, keep_outputs=False)
        refs = self.reference_runner(ref_graph, self.feeds)
        outs = self.runner(test_graph, self.feeds)
        self.runs += len(self.feeds)
        for ref, out in zip(refs, outs, strict=True):
            for name in names:
                if name in self.not_compared:
                    continue
                if name not in ref:
                    self.not_compared[name] = "not produced by the reference"
                elif not np.issubdtype(np.asarray(ref[name]).dtype, np.floating):
                    self.not_compared[name] = f"not float ({np.asarray(ref[name]).dtype})"
                elif name not in out:
                    self.not_compared[name] = "not kept as an output by the framework"
                else:
                    err = compare_tensor(name, out[name], ref[name], self.tol)
                    prev = self.errors.get(name)
                    self.errors[name] = err if prev is None else _worse(prev, err)
        for name in names:  # a tensor missing on one image is not compared on any
            if name in self.not_compared:
                self.errors.pop(name, None)

    def node_error(self, i: int) -> NodeError | None:
        compared = [self.errors[t] for t in self.index.candidates[i] if t in self.errors]
        if not compared:
            return None
        node = self.index.nodes[i]
        return NodeError(i, node.name, node.op_type, [x for x in node.input if x], compared)

    def inputs_state(self, node: NodeError) -> list[dict[str, object]]:
        """What is known of a node's inputs; its non-float computed inputs compared exactly."""
        produced = {o for n in self.index.nodes for o in n.output if o}
        exact = [
            t
            for t in node.inputs
            if t in produced and t not in self.errors and self.index.skipped.get(t) != "Constant"
        ]
        found: dict[str, str] = {}
        if exact:
            refs = self.reference_runner(
                expose_outputs(self.reference_model, exact, False), self.feeds
            )
            outs = self.runner(expose_outputs(self.tested_model, exact, False), self.feeds)
            self.runs += len(self.feeds)
            for name in exact:
                differ = total = 0
                for ref, out in zip(refs, outs, strict=True):
                    if name not in ref or name not in out:
                        found[name] = "not returned by both runtimes"
                        break
                    a, b = np.asarray(out[name]), np.asarray(ref[name])
                    if a.shape != b.shape:
                        found[name] = f"DIFFERS: shape {list(a.shape)}, reference {list(b.shape)}"
                        break
                    differ += int(np.count_nonzero(a != b))
                    total += b.size
                else:
                    kind = f"{np.asarray(refs[0][name]).dtype}"
                    found[name] = (
                        f"DIFFERS ({kind}): {differ} of {total} elements"
                        if differ
                        else f"equal ({kind}, {total} elements)"
                    )
        states = []
        for t in node.inputs:
            if t in self.errors:
                e = self.errors[t]
                state = e.note or f"rel L2 {e.rel_l2:.3g}, max abs err {e.max_abs_err:.3g}"
                state = ("DIVERGED: " if e.diverged else "within the tier: ") + state
            elif t in found:
                state = found[t]
            elif t in produced:
                state = self.index.skipped.get(t) or self.not_compared.get(t, "not compared")
            else:
                state = "graph input or initializer"
            states.append({"tensor": t, "state": state})
        return states

    def first_diverged(self, node_ids: Sequence[int]) -> NodeError | None:
        for i in node_ids:
            e = self.node_error(i)
            if e is not None and e.diverged:
                return e
        return None


def localise(
    reference_model: onnx.ModelProto,
    feeds: Sequence[Feed],
    runner: Runner,
    *,
    tested_model: onnx.ModelProto | None = None,
    reference_runner: Runner | None = None,
    framework: str = "",
    precision: str = "fp32",
    mode: str = "all",
    window: int | None = None,
    cut_before: Iterable[str] = (),
) -> Divergence:
    """Find the first node whose float outputs in `runner` differ from `reference_runner`'s.

    `tested_model` (default: the reference model) must have the reference's topology and tensor
    names; it lets a test run an altered copy. The reference runner defaults to ONNX Runtime's
    CPU EP.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}; valid: {', '.join(MODES)}")
    if window is not None and window < 1:
        raise ValueError("window must be at least 1")
    tested_model = reference_model if tested_model is None else tested_model
    index = index_graph(reference_model, cut_before)
    tested_names = {o for n in tested_model.graph.node for o in n.output}
    absent = [t for ts in index.candidates.values() for t in ts if t not in tested_names]
    if absent:
        raise ValueError(f"the tested graph lacks the reference's tensors {absent[:5]}")
    tol = tolerance_for(precision)
    search = _Search(
        reference_model,
        tested_model,
        index,
        reference_runner or onnxruntime_runner(),
        runner,
        feeds,
        tol,
    )
    order = index.candidate_nodes
    first = None
    if mode == "all":
        if order:
            search.probe(order)
        first = search.first_diverged(order)
    else:
        lo = 0
        while lo < len(order) and first is None:
            # Halve what is left, so a divergence near the end costs about log2(n) runs.
            size = max(1, (len(order) - lo + 1) // 2)
            size = min(size, window) if window else size
            chunk = order[lo : lo + size]
            search.probe(chunk)
            first = search.first_diverged(chunk)
            lo += size
    compared = [e for i in order if (e := search.node_error(i)) is not None]
    first_inputs = search.inputs_state(first) if first is not None else []
    context = []
    if first is not None:
        before = [e for e in compared if e.index < first.index]
        context = before[-_CONTEXT_NODES:]
    not_compared: dict[str, list[str]] = {}
    for name, reason in [*index.skipped.items(), *search.not_compared.items()]:
        not_compared.setdefault(reason, []).append(name)
    notes = []
    if mode == "bisect" and first is not None:
        notes.append(
            "bisect stopped at the first window holding a divergence; nodes after it "
            "were not compared"
        )
    return Divergence(
        framework=framework,
        precision=precision,
        mode=mode,
        tolerance=tol.to_dict(),
        images=sum(len(next(iter(f.values()))) for f in feeds) if feeds else 0,
        runs=search.runs,
        nodes_total=len(index.nodes),
        nodes_compared=len(compared),
        tensors_compared=len(search.errors),
        first=first,
        context=context,
        first_inputs=first_inputs,
        not_compared=not_compared,
        nested=index.nested,
        notes=notes,
    )


# -- inputs ------------------------------------------------------------------------------------
def artifact_feeds(artifact: object, images: int) -> list[Feed]:
    """The artifact's first `images` photos, in batches of its fixed batch size (else 1)."""
    inputs = artifact.inputs  # type: ignore[attr-defined]
    fixed = artifact.meta["inputs"][0]["shape"][0]  # type: ignore[attr-defined]
    batch = fixed if isinstance(fixed, int) else 1
    feeds = []
    for start in range(0, images, batch):
        idx = (start + np.arange(batch)) % len(inputs)  # wrap, as a cell's batches do
        feeds.append({artifact.input_name: np.ascontiguousarray(inputs[idx])})  # type: ignore[attr-defined]
    return feeds


# -- runners -----------------------------------------------------------------------------------
def onnxruntime_runner(
    threads: int = 1, providers: Sequence[str] = ("CPUExecutionProvider",)
) -> Runner:
    """ONNX Runtime with the backend's session settings (bench/backends/ort_loader.py)."""

    def run(model: onnx.ModelProto, feeds: Sequence[Feed]) -> list[dict[str, np.ndarray]]:
        from bench.backends.ort_loader import OrtSettings, open_session

        try:
            session = open_session(
                model.SerializeToString(), OrtSettings(threads=threads), list(providers)
            )
        except Unsupported:
            raise
        except Exception as exc:  # a probed sub-graph ORT cannot load at all
            raise Unsupported(f"onnxruntime: {exc}") from exc
        names = [o.name for o in session.get_outputs()]
        return [dict(zip(names, session.run(names, feed), strict=True)) for feed in feeds]

    return run


def openvino_runner(precision: str = "fp32", threads: int = 1) -> Runner:
    """OpenVINO on CPU with the backend's compile properties, the precision read back. OpenVINO
    keeps the ONNX tensor names on the outputs it makes of them: outputs are mapped by those."""

    def run(model: onnx.ModelProto, feeds: Sequence[Feed]) -> list[dict[str, np.ndarray]]:
        import onnx
        import openvino as ov
        import openvino.properties.hint as hints

        from bench.backends.openvino import OV_PRECISIONS, compile_properties

        core = ov.Core()
        with tempfile.TemporaryDirectory(prefix="deploybench-diverge-") as tmp:
            path = Path(tmp) / "model.onnx"
            onnx.save(model, str(path))
            try:
                properties = compile_properties("latency", threads, precision)
                compiled = core.compile_model(core.read_model(str(path)), "CPU", properties)
            except RuntimeError as exc:
                raise Unsupported(f"openvino: {exc}") from exc
        ran = compiled.get_property(hints.inference_precision)
        if ran.to_string() != OV_PRECISIONS[precision]:
            raise Unsupported(f"asked for {precision}, OpenVINO on this CPU runs {ran} instead")
        request = compiled.create_infer_request()
        results = []
        for feed in feeds:
            out = request.infer(feed)
            got: dict[str, np.ndarray] = {}
            for port in compiled.outputs:
                value = np.array(out[port], copy=True)  # the request reuses its buffers
                for name in port.get_names():
                    got[name] = value
            results.append(got)
        return results

    return run


def tvm_runner(threads: int = 1) -> Runner:
    """TVM as the backend imports and compiles an untuned graph (bench/backends/tvm.py), at
    the feeds' static shapes; its outputs come back in graph-output order."""

    def run(model: onnx.ModelProto, feeds: Sequence[Feed]) -> list[dict[str, np.ndarray]]:
        os.environ.setdefault("TVM_NUM_THREADS", str(threads))
        import tvm

        from bench.backends.tvm import cpu_vm, import_onnx

        inputs = [i.name for i in model.graph.input]
        shapes = {n: list(feeds[0][n].shape) for n in inputs if n in feeds[0]}
        mod, params = import_onnx(model, shapes)
        vm, weights = cpu_vm(mod, threads), params.get("main", [])
        names = [o.name for o in model.graph.output]
        results = []
        for feed in feeds:
            args = [tvm.runtime.tensor(feed[n]) for n in inputs if n in feed]
            out = vm["main"](*args, *weights)
            values = list(out) if isinstance(out, tvm.ir.Array) else [out]
            results.append({n: v.numpy() for n, v in zip(names, values, strict=True)})
        return results

    return run


def make_runner(framework: str, precision: str, threads: int) -> Runner:
    """The runner of a framework `diverge` supports (see FRAMEWORK_PRECISIONS)."""
    if framework == "onnxruntime":
        return onnxruntime_runner(threads)
    if framework == "openvino":
        return openvino_runner(precision, threads)
    if framework == "tvm":
        return tvm_runner(threads)
    raise ValueError(f"diverge runs {', '.join(FRAMEWORK_PRECISIONS)}, not {framework!r}")
