"""`python -m bench` — export an artifact, run one cell, or describe this environment.

    python -m bench export --model resnet50
    python -m bench run --model resnet50 --framework onnxruntime --batch 1
    python -m bench info
    python -m bench diverge --artifact artifacts/resnet50-<key> --framework openvino

Bad input (an unknown model, framework, device or precision; a missing artifact) prints a
message listing the valid choices and exits with status 2, writing nothing. A cell's own
outcome is in its result file; `run` exits 1 only when the cell failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from bench import __version__
from bench.backends import BACKENDS
from bench.cell import DEVICES, PRECISIONS, Cell, default_threads, parse_options
from bench.errors import USAGE_EXIT_CODE, UsageError
from bench.fsutil import full_disk_message, writable_folder
from bench.measure.timing import TimingConfig
from bench.models import MODELS
from bench.result import CellResult

DEFAULT_ARTIFACTS = os.environ.get("DEPLOYBENCH_ARTIFACTS", "artifacts")
DEFAULT_RESULTS = os.environ.get("DEPLOYBENCH_RESULTS", "results/local")


def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    from bench.export import DEFAULT_OPSET, EXPORTERS

    p = sub.add_parser(
        "export",
        help="build the model, its inputs and reference outputs, "
        "export ONNX into a content-addressed artifact folder",
    )
    p.add_argument(
        "--model",
        required=True,
        help=f"one of {', '.join(MODELS.names())}, or onnx:PATH for your own file",
    )
    p.add_argument(
        "--weights",
        default="random",
        help="random (seeded, BatchNorm calibrated), pretrained, or a state dict path",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of random weights (default 0)")
    p.add_argument(
        "--opset",
        type=int,
        default=None,
        help=f"ONNX opset (default: the model's own, {DEFAULT_OPSET} for classifiers)",
    )
    p.add_argument(
        "--exporter",
        choices=EXPORTERS,
        default=None,
        help="torch.onnx exporter (default: the model's own; dynamo for classifiers, "
        "torchscript for detectors and older opsets)",
    )
    p.add_argument("--images", help="a folder of your own photos (default: scikit-image's photos)")
    p.add_argument(
        "--result",
        help="also write the artifact's folder name, key and whether it was reused to this "
        "JSON file (how the runner learns where the artifact is)",
    )
    p.add_argument(
        "--artifacts",
        default=DEFAULT_ARTIFACTS,
        help=f"artifacts folder (default {DEFAULT_ARTIFACTS}, env DEPLOYBENCH_ARTIFACTS)",
    )


def _add_run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run one cell and write one result JSON")
    p.add_argument(
        "--cell",
        help="a cell file (JSON: cell, timing, artifact, out), as the "
        "runner writes; replaces the cell options below",
    )
    p.add_argument("--model", help="model name as exported (or onnx:PATH)")
    p.add_argument("--framework", choices=BACKENDS.names())
    p.add_argument("--device", choices=DEVICES, default="cpu")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument(
        "--threads",
        type=int,
        default=default_threads(),
        help="intra-op threads, the same for every framework (default: usable CPUs, "
        f"here {default_threads()})",
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a framework option, e.g. channels_last=1 for torch (repeatable)",
    )
    p.add_argument(
        "--scenario",
        default="single_stream",
        help="the load scenario: single_stream (default), offline, multi_stream or server",
    )
    p.add_argument(
        "--scenario-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a scenario setting, e.g. p99_ms=50 for server (repeatable; bench/scenario_spec.py)",
    )
    p.add_argument(
        "--framework-version",
        metavar="V",
        help="the framework version the cell must run (another installed one: unsupported)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--artifact", help="the artifact folder to run")
    where.add_argument(
        "--artifacts",
        default=DEFAULT_ARTIFACTS,
        help=f"folder searched for the model's artifact (default {DEFAULT_ARTIFACTS})",
    )
    p.add_argument("--out", help=f"result file (default {DEFAULT_RESULTS}/<cell id>.json)")
    p.add_argument("--run-id", help="run identifier recorded in the result")
    t = p.add_argument_group("timing bounds (each phase ends when both minimums are met)")
    t.add_argument("--warmup-iters", type=int, default=10)
    t.add_argument("--warmup-seconds", type=float, default=1.0)
    t.add_argument("--iters", type=int, default=30, help="minimum measured iterations")
    t.add_argument("--seconds", type=float, default=3.0, help="minimum measured duration")
    t.add_argument("--max-iters", type=int, default=10_000)
    t.add_argument("--max-seconds", type=float, default=60.0)


def _add_diverge_parser(sub: argparse._SubParsersAction) -> None:
    from bench.diverge import FRAMEWORK_PRECISIONS, MODES

    p = sub.add_parser(
        "diverge",
        help="find the first node of the ONNX graph whose output differs in a framework "
        "from ONNX Runtime's",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--artifact", help="the artifact folder")
    where.add_argument("--model", help="find the model's artifact in --artifacts instead")
    p.add_argument(
        "--artifacts",
        default=DEFAULT_ARTIFACTS,
        help=f"folder searched with --model (default {DEFAULT_ARTIFACTS})",
    )
    p.add_argument("--framework", required=True, choices=list(FRAMEWORK_PRECISIONS))
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="all",
        help="all: every intermediate in one run; bisect: halving windows, less memory",
    )
    p.add_argument("--window", type=int, help="bisect: at most this many nodes per run")
    p.add_argument("--images", type=int, default=1, help="the first N input photos (default 1)")
    p.add_argument(
        "--cut-before",
        action="append",
        default=[],
        metavar="OP",
        help="leave out nodes of this op type and all after them, e.g. Loop (repeatable)",
    )
    p.add_argument("--threads", type=int, default=default_threads())
    p.add_argument("--out", help="write the result as JSON here")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"deploybench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_export_parser(sub)
    _add_run_parser(sub)
    _add_diverge_parser(sub)
    native = sub.add_parser(
        "native-build",
        help="build a framework's native library and C++ runner (images do it at build time)",
    )
    native.add_argument("--framework", required=True, help="openvino, torch, onnxruntime or tvm")
    native.add_argument("--dest", required=True, help="folder; the build goes to DEST/FRAMEWORK")
    sub.add_parser(
        "frameworks", help="the framework table: devices, precisions, images, options (Markdown)"
    )
    info = sub.add_parser("info", help="this environment and which frameworks are importable")
    info.add_argument("--json", action="store_true", help="print JSON")
    check = sub.add_parser(
        "preprocess-check",
        help="the project's OpenCV preprocessing against PIL, torchvision v2 and nearest "
        "resizing: tensor differences and changed top-1 predictions",
    )
    check.add_argument("--model", required=True, help="a classifier of the model registry")
    check.add_argument("--images", help="folder of photos (default: the bundled sample photos)")
    check.add_argument(
        "--weights",
        default="random",
        help="random (seeded, BatchNorm calibrated on the photos), pretrained, or a state_dict",
    )
    check.add_argument("--no-model", action="store_true", help="tensor differences only")
    check.add_argument("--json", help="also write every photo's figures to this file")
    return parser


def cmd_export(args: argparse.Namespace) -> int:
    from bench.export import ExportSpec, export

    spec = ExportSpec(
        model=args.model,
        weights=args.weights,
        seed=args.seed,
        opset=args.opset,
        exporter=args.exporter,
        images=args.images,
    )
    from bench.fsutil import atomic_write_text

    writable_folder(args.artifacts, "artifacts folder")
    artifact, reused = export(spec, args.artifacts)
    print(f"{'reused' if reused else 'exported'} {artifact.path}")
    if args.result:  # the runner reads where the artifact is from here, not from the log
        doc = {"artifact": artifact.path.name, "key": artifact.key, "reused": reused}
        atomic_write_text(Path(args.result), json.dumps(doc) + "\n")
    return 0


def _cell_from_args(args: argparse.Namespace) -> tuple[Cell, TimingConfig]:
    cell = Cell(
        model=args.model,
        framework=args.framework,
        device=args.device,
        batch_size=args.batch,
        precision=args.precision,
        threads=args.threads,
        options=parse_options(args.option),
        version=args.framework_version,
        scenario=args.scenario,
        scenario_options=parse_options(args.scenario_option),
    )
    timing = TimingConfig(
        args.warmup_iters,
        args.warmup_seconds,
        args.iters,
        args.seconds,
        args.max_iters,
        args.max_seconds,
    )
    return cell, timing


def _cell_from_file(path: str) -> tuple[Cell, TimingConfig, dict]:
    """A cell file (how the runner hands a cell to a container): cell, timing, artifact, out."""
    try:
        doc = json.loads(Path(path).read_text())
        cell_doc = dict(doc["cell"])
        cell_doc["options"] = tuple(sorted(cell_doc.get("options", {}).items()))
        return Cell(**cell_doc), TimingConfig(**doc.get("timing", {})), doc
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UsageError(f"--cell {path}: not a valid cell file ({exc})") from exc


def cmd_run(args: argparse.Namespace) -> int:
    from bench.artifact import Artifact, find_artifact
    from bench.faults import inject_from_env
    from bench.result import write_result
    from bench.run import RoundInfo, run_cell

    where = RoundInfo()
    if args.cell:
        cell, timing, doc = _cell_from_file(args.cell)
        artifact = Artifact.load(doc["artifact"])
        out, run_id = Path(args.out or doc["out"]), doc.get("run_id")
        where = RoundInfo(**doc.get("round", {}))
    else:
        if not (args.model and args.framework):
            raise UsageError("run needs --model and --framework (or --cell FILE)")
        cell, timing = _cell_from_args(args)
        artifact = (
            Artifact.load(args.artifact)
            if args.artifact
            else find_artifact(args.artifacts, args.model)
        )
        out = Path(args.out) if args.out else Path(DEFAULT_RESULTS) / f"{cell.id}.json"
        run_id = args.run_id
    if artifact.model != cell.model:
        raise UsageError(f"artifact {artifact.path} holds {artifact.model!r}, not {cell.model!r}")
    writable_folder(out.parent, "--out folder", min_free=0)  # before any work, not after it
    inject_from_env(cell.framework)
    result = run_cell(cell, artifact, timing, run_id=run_id, where=where)
    write_result(result, out)
    print(_summary_line(result), file=sys.stderr)
    print(out)
    return 1 if result.status == "failed" else 0


def _summary_line(result: CellResult) -> str:
    c = result.cell
    head = f"{c['model']} {c['framework']} {c['device']} {c['precision']} b{c['batch_size']}"
    if result.status != "ok":
        return f"{head}: {result.status.upper()}: {result.reason}"
    stats = result.timing["stats"]
    if result.parity is None:  # a later round: parity is checked in the first
        index = result.timing["rounds"][0]["round"]
        return f"{head}: median {stats['median_ms']:.3f} ms (round {index})"
    verdict = result.parity["verdict"]
    flag = (
        "parity pass"
        if verdict == "pass"
        else "PARITY FAIL: " + "; ".join(result.parity["reasons"])
    )
    p = result.parity
    detail = (
        f"{p['matched']}/{p['reference_detections']} detections matched"
        if p.get("kind") == "detection"
        else f"rel L2 {p['worst_rel_l2']:.2g}"
    )
    return (
        f"{head}: median {stats['median_ms']:.3f} ms "
        f"[{stats['median_ci95_low_ms']:.3f}, {stats['median_ci95_high_ms']:.3f}] "
        f"p99 {stats['p99_ms']:.3f} ms, {result.timing['throughput_sps']:.1f} samples/s, "
        f"{result.runtime['threads']} threads, {flag} ({detail})"
    )


def cmd_frameworks(args: argparse.Namespace) -> int:
    """The framework table as the README shows it (bench/frameworks.py is its only source)."""
    from bench.frameworks import frameworks_table, options_table

    print(frameworks_table() + "\n\n" + options_table())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from bench.measure.fingerprint import fingerprint
    from bench.native import FRAMEWORKS as NATIVE_FRAMEWORKS
    from bench.native.build import native_status

    frameworks = {}
    for name in BACKENDS.names():
        entry = BACKENDS.get(name)
        frameworks[name] = {"module": entry.requires, "importable": entry.importable()}
    info = {"bench_version": __version__, "frameworks": frameworks, "environment": fingerprint()}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    env = info["environment"]
    print(f"deploybench {__version__}")
    cpu = env["cpu"]
    print(f"cpu: {cpu['summary']} ({cpu['affinity_cores']} usable cores)")
    if "flags_forced" in cpu:
        print(f"cpu flags forced by DEPLOYBENCH_CPU_FLAGS: {' '.join(cpu['flags_forced'])}")
    print(f"memory: {env['memory_total_gib']} GiB; os: {env['os']}; python {env['python']}")
    for name, fw in frameworks.items():
        version = env["packages"].get(fw["module"], "")
        print(
            f"framework {name}: {'importable ' + version if fw['importable'] else 'not installed'}"
        )
    for framework in NATIVE_FRAMEWORKS:
        print(f"native runners for {framework}: {native_status(framework)}")
    return 0


def cmd_diverge(args: argparse.Namespace) -> int:
    import onnx

    from bench.artifact import Artifact, find_artifact
    from bench.diverge import FRAMEWORK_PRECISIONS, artifact_feeds, localise, make_runner
    from bench.errors import Unsupported
    from bench.fsutil import atomic_write_text

    valid = FRAMEWORK_PRECISIONS[args.framework]
    if args.precision not in valid:
        raise UsageError(
            f"diverge runs {args.framework} at {', '.join(valid)}, not {args.precision}; "
            f"valid choices: {', '.join(valid)}"
        )
    if args.images < 1 or args.threads < 1 or (args.window is not None and args.window < 1):
        raise UsageError("--images, --threads and --window must be at least 1")
    if not BACKENDS.get(args.framework).importable():
        raise UsageError(f"{args.framework} is not installed here (see python -m bench info)")
    if not (args.artifact or args.model):
        raise UsageError("diverge needs --artifact DIR (or --model NAME)")
    artifact = (
        Artifact.load(args.artifact) if args.artifact else find_artifact(args.artifacts, args.model)
    )
    if args.images > len(artifact.inputs):
        raise UsageError(f"--images {args.images}: the artifact holds {len(artifact.inputs)}")
    try:
        result = localise(
            onnx.load(str(artifact.onnx_path)),
            artifact_feeds(artifact, args.images),
            make_runner(args.framework, args.precision, args.threads),
            framework=args.framework,
            precision=args.precision,
            mode=args.mode,
            window=args.window,
            cut_before=args.cut_before,
        )
    except Unsupported as exc:
        print(f"UNSUPPORTED: {exc}", file=sys.stderr)
        print(
            "(--cut-before OP compares the graph before an op it cannot convert)", file=sys.stderr
        )
        return 1
    if args.out:
        atomic_write_text(args.out, result.to_json())
    print(result.summary())
    return 0


def cmd_native_build(args: argparse.Namespace) -> int:
    from bench.errors import Unsupported
    from bench.native.build import build

    try:
        built = build(args.framework, Path(args.dest) / args.framework)
    except Unsupported as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"built {built.library} and {built.runner}")
    return 0


def cmd_preprocess_check(args: argparse.Namespace) -> int:
    from bench import preprocess_check
    from bench.data.images import resolve_images
    from bench.fsutil import atomic_write_text
    from bench.models import MODELS

    if args.model not in MODELS.names():
        raise UsageError(f"unknown model {args.model!r}; valid: {', '.join(MODELS.names())}")
    spec = MODELS.get(args.model)
    if spec.task != "classification":
        raise UsageError(f"preprocess-check compares classifiers' inputs, not a {spec.task} model")
    photos = [image.path for image in resolve_images(args.images)]
    model = None if args.no_model else _reference_logits(spec, args.weights, photos)
    rows = preprocess_check.check(photos, spec.preprocess, model)
    summary = preprocess_check.summary_rows(rows)
    weights = "no model" if args.no_model else args.weights
    print(preprocess_check.markdown(summary, args.model, weights))
    if args.json:
        doc = {
            "model": args.model,
            "weights": None if args.no_model else args.weights,
            "preprocess": spec.preprocess.to_dict(),
            "photos": [str(p) for p in photos],
            "summary": summary,
            "rows": [vars(r) for r in rows],
            "environment": fingerprint_light(),
        }
        atomic_write_text(Path(args.json), json.dumps(doc, indent=1) + "\n")
    return 0


def fingerprint_light() -> dict[str, object]:
    """The machine and the packages that preprocess (for a check's JSON)."""
    from bench.measure.fingerprint import fingerprint

    env = fingerprint()
    wanted = ("numpy", "opencv-python-headless", "opencv-python", "pillow", "torch", "torchvision")
    packages = {k: v for k, v in env["packages"].items() if k in wanted}
    return {"cpu": env["cpu"], "packages": packages}


def _reference_logits(spec: object, weights: str, photos: list[Path]) -> object:
    """The reference model (PyTorch eager, as an export builds it) as a batch -> logits map."""
    import torch

    from bench.data.preprocess import preprocess_files
    from bench.models.build import build_model

    calibration = torch.from_numpy(preprocess_files(photos, spec.preprocess))
    model = build_model(spec, weights, seed=0, calibration=calibration)

    def logits(batch: object) -> object:
        with torch.no_grad():
            return model(torch.from_numpy(batch)).numpy()

    return logits


COMMANDS = {
    "export": cmd_export,
    "run": cmd_run,
    "info": cmd_info,
    "frameworks": cmd_frameworks,
    "diverge": cmd_diverge,
    "native-build": cmd_native_build,
    "preprocess-check": cmd_preprocess_check,
}


def dispatch(parser: argparse.ArgumentParser, commands: dict, argv: list[str] | None) -> int:
    """Parse, run the chosen command; a usage error is one line on stderr and exit status 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    args = parser.parse_args(argv)
    try:
        return commands[args.command](args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_EXIT_CODE
    except OSError as exc:
        if (message := full_disk_message(exc)) is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return USAGE_EXIT_CODE


def main(argv: list[str] | None = None) -> int:
    return dispatch(build_parser(), COMMANDS, argv)
