"""`python -m runner` — the host orchestrator.

    python -m runner run [--matrix quick] [--executor auto|docker|local]   run a matrix
    python -m runner plan [--matrix quick]                            validate it, list its cells
    python -m runner images [--cpu|--gpu|NAME ...]                    build the framework images
    python -m runner export [--matrix quick]                          export its models' artifacts
    python -m runner report [RUN ...]                                 report.md/.html, plots, csv
    python -m runner compare RUN_A RUN_B [--threshold 0.05]           regressions between runs
    python -m runner clean                                            remove orphan containers

Exit codes: 0 every cell ran (ok, unsupported or skipped); 1 some cell failed; 2 bad input
(an invalid matrix lists every problem); 3 no cell failed, but GPU cells were skipped because
this host has no GPU runtime (no NVIDIA GPU, or Docker without nvidia-container-toolkit);
75 another run holds the host lock and --no-wait was given; 130 / 143 / 129 interrupted by
SIGINT / SIGTERM / SIGHUP (resume with --resume --run-id ID).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from bench.cli import dispatch
from bench.errors import UsageError
from bench.fsutil import full_disk_message
from runner.executors import EXECUTORS, create_executor
from runner.hostlock import HOST_BUSY_EXIT_CODE, HostBusy, host_lock
from runner.matrix import Matrix, load_matrix, profiles, with_round_overrides
from runner.preflight import check_run
from runner.signals import exit_code as interrupted_exit_code
from runner.signals import interruptible

NO_GPU_EXIT_CODE = 3
AUTO = "auto"
LOCAL_CAVEAT = (
    "cells run as subprocesses of this Python environment: no container isolation, and the "
    "framework versions are this environment's, not the pinned images'"
)
# What --executor chooses; the pool is --hosts FILE.
SINGLE_EXECUTORS = tuple(n for n in EXECUTORS.names() if n != "pool")
DEFAULT_RESULTS = Path("results")
DEFAULT_ARTIFACTS = Path("artifacts")
DEFAULT_CACHE = Path("cache")


def log(message: str) -> None:
    # One write per line: a pool's slots log from several threads, and print() writes the
    # message and its newline separately (lines would interleave).
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()


def _add_matrix_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--matrix",
        default="quick",
        help=f"a built-in profile ({', '.join(profiles())}) or a YAML file (default quick)",
    )
    p.add_argument(
        "--framework",
        action="append",
        default=[],
        help="only the cells of this framework (repeatable)",
    )
    p.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS)


def _add_build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--base-image",
        help="base of every image (e.g. deploybench/base:bookworm "
        "from `make base-offline`); default: each Dockerfile's own",
    )
    p.add_argument(
        "--torch-index-url",
        help="index of the torch wheels; '' for PyPI's default "
        "(CUDA builds, which run on CPU) where the CPU index is unreachable",
    )
    p.add_argument("--rebuild", action="store_true", help="rebuild images even when up to date")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runner", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a matrix and print the comparison table")
    _add_matrix_args(run)
    _add_build_args(run)
    run.add_argument(
        "--executor",
        choices=(AUTO, *SINGLE_EXECUTORS),
        default=AUTO,
        help="where cells run: docker (a fresh container each), local (subprocesses of this "
        "environment), or auto (the default): docker when an engine answers, else local, "
        "said loudly and recorded",
    )
    run.add_argument(
        "--hosts",
        metavar="FILE",
        help="run across the Docker engines of this inventory (runner/hosts.py): cells placed "
        "on hosts that can run them, one per CPU set / GPU at a time, hosts in parallel",
    )
    run.add_argument(
        "--export-executor",
        choices=SINGLE_EXECUTORS,
        help="where the export stage runs (default: the same as --executor)",
    )
    run.add_argument(
        "--no-export",
        action="store_true",
        help="do not export: use the artifacts already in --artifacts",
    )
    run.add_argument(
        "--rounds",
        type=int,
        help="run every cell this many times, each in a fresh container or process, in a "
        "seeded random order within each round (default: the matrix's rounds)",
    )
    run.add_argument(
        "--target-ci",
        type=float,
        help="keep adding rounds until every compared ratio's 95%% interval is within "
        "±this fraction (e.g. 0.02), up to the matrix's max_rounds / time_budget_s",
    )
    run.add_argument("--order-seed", type=int, help="seed of the rounds' orders (recorded)")
    run.add_argument("--run-id", help="default: the matrix name and the UTC time")
    run.add_argument("--resume", action="store_true", help="continue the run --run-id")
    run.add_argument(
        "--no-wait",
        action="store_true",
        help=f"when another run measures on this host, refuse (exit {HOST_BUSY_EXIT_CODE}) "
        "instead of waiting for it",
    )
    run.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    run.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE,
        help="caches shared by cells, e.g. TVM tuning databases (default cache/)",
    )
    run.add_argument(
        "--slurm-partition", help="--executor slurm: the partition its jobs are submitted to"
    )
    run.add_argument(
        "--slurm-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="--executor slurm: one more sbatch argument, e.g. --slurm-arg=--account=X "
        "(repeatable)",
    )
    plan = sub.add_parser("plan", help="validate a matrix and list its cells")
    _add_matrix_args(plan)
    images = sub.add_parser("images", help="build the framework images")
    images.add_argument(
        "names",
        nargs="*",
        help="image names, or IMAGE@VERSION for another framework version (default: all CPU "
        "images)",
    )
    images.add_argument("--gpu", action="store_true", help="the GPU images")
    _add_build_args(images)
    export = sub.add_parser("export", help="export the artifacts of a matrix's models, here")
    _add_matrix_args(export)
    report = sub.add_parser("report", help="report.md, report.html, plots/, results.csv")
    report.add_argument(
        "runs",
        nargs="*",
        type=Path,
        help="run folders (default: the latest under results/); several are merged",
    )
    report.add_argument("--out", type=Path, help="where to write (default: the first run folder)")
    compare = sub.add_parser("compare", help="compare two runs cell by cell")
    compare.add_argument("run_a", type=Path)
    compare.add_argument("run_b", type=Path)
    compare.add_argument(
        "--threshold",
        type=float,
        default=0.05,
        help="a slowdown beyond this fraction is a regression (default 0.05)",
    )
    compare.add_argument(
        "--band",
        type=float,
        help="practical-equivalence band: a change smaller than this is no change "
        "(default: the runs' equivalence_band, else 0.02)",
    )
    clean = sub.add_parser("clean", help="remove containers left behind by interrupted runs")
    clean.add_argument(
        "--hosts",
        metavar="FILE",
        help="on every engine of this inventory that answers, not only the local one",
    )
    doctor = sub.add_parser(
        "doctor", help="check the Docker engine, NVIDIA runtime and base images"
    )
    doctor.add_argument(
        "--hosts",
        metavar="FILE",
        help="check every engine of this inventory (runner/hosts.py) instead of the local one",
    )
    return parser


def _matrix(args: argparse.Namespace) -> Matrix:
    matrix = load_matrix(args.matrix)
    overrides = {
        key: value
        for key, value in (
            ("rounds", getattr(args, "rounds", None)),
            ("target_ci", getattr(args, "target_ci", None)),
            ("order_seed", getattr(args, "order_seed", None)),
        )
        if value is not None
    }
    if overrides:
        matrix = with_round_overrides(matrix, overrides)
    if args.framework:
        unknown = sorted(set(args.framework) - {c.framework for c in matrix.cells})
        if unknown:
            raise UsageError(f"--framework {', '.join(unknown)}: not in matrix {matrix.name}")
        matrix = replace(matrix, cells=[c for c in matrix.cells if c.framework in args.framework])
    return matrix


def _settings(args: argparse.Namespace) -> object:
    from bench.measure.fingerprint import git_revision
    from runner.images import BuildSettings

    return BuildSettings(
        base_image=args.base_image,
        torch_index_url=args.torch_index_url,
        revision=git_revision() or "unknown",
    )


def cmd_run(args: argparse.Namespace) -> int:
    from runner.live import progress_for
    from runner.orchestrate import MatrixRun, RunOptions
    from runner.report import scenarios
    from runner.report.tables import terminal

    if args.hosts:  # the cells run on the pool's hosts: their CPU sets bound the threads
        from bench.cell import check_local_threads

        check_local_threads(False)
    matrix = _matrix(args)
    if args.resume and not args.run_id:
        raise UsageError("--resume needs the --run-id of the run to continue")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    frameworks = "".join(f"-{f}" for f in args.framework)
    run_id = args.run_id or f"{matrix.name}{frameworks}-{stamp}"
    check_run(matrix, run_id, args.results, args.artifacts, export=not args.no_export)
    if args.hosts:
        if args.executor not in (AUTO, "docker"):
            raise UsageError(
                f"--hosts runs cells on Docker engines, not --executor {args.executor}"
            )
        args.executor, executor_note = "pool", None
    else:
        args.executor, executor_note = _resolve_executor(args.executor)

    def executor(name: str) -> object:
        if name == "local":
            return create_executor("local")
        # Every other executor runs cells in the images, built with these settings.
        images = {"settings": _settings(args), "cache_dir": args.cache.resolve()}
        images["rebuild"] = args.rebuild
        if name == "pool":
            from runner.hosts import load_inventory

            return create_executor("pool", hosts=load_inventory(args.hosts), log=log, **images)
        if name == "slurm":
            extra = tuple(args.slurm_arg)
            return create_executor(
                "slurm", partition=args.slurm_partition, extra_args=extra, **images
            )
        return create_executor(name, **images)

    cells = executor(args.executor)
    export_name = args.export_executor or args.executor
    exporter = cells if export_name == args.executor else executor(export_name)
    if args.executor == "pool" and not args.export_executor:
        # The export stage runs once, on the inventory's local engine; the artifacts then
        # travel to the other hosts through the API.
        exporter = cells.source or _no_export_engine(args.no_export)
    opts = RunOptions(
        run_id=run_id,
        results_root=args.results,
        artifacts_dir=args.artifacts,
        resume=args.resume,
        export=not args.no_export,
        executor_note=executor_note,
    )
    log(
        f"run {run_id}: {len(matrix.cells)} cells, {matrix.threads} threads each, "
        f"executor {args.executor}; results in {opts.run_dir}"
    )
    where = f"--hosts {args.hosts}" if args.hosts else f"--executor {args.executor}"
    resume = f"python -m runner run --matrix {args.matrix} {where} --run-id {run_id} --resume"
    try:
        with interruptible(), host_lock(run_id, wait=not args.no_wait, log=log):
            progress = progress_for(len(matrix.cells), log)
            try:
                summary = MatrixRun(matrix, cells, exporter, opts, progress.log, progress).run()
            finally:
                progress.close()
    except KeyboardInterrupt as exc:
        log(f"\ninterrupted ({exc}); continue with: {resume}")
        return interrupted_exit_code(exc)
    except HostBusy as exc:
        log(f"error: {exc}")
        return HOST_BUSY_EXIT_CODE
    except OSError as exc:
        if (message := full_disk_message(exc)) is None:
            raise
        raise UsageError(f"{message}; then continue with: {resume}") from exc
    print(terminal(scenarios.single_stream_view(summary.results), matrix.equivalence_band))
    if load := scenarios.terminal(summary.results):
        print(f"\n{load}")
    if executor_note:
        log(f"\nNOTE: {executor_note}")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items()))
    log(f"\n{counts}; {summary.parity_failures} parity failures; results in {summary.run_dir}")
    if summary.any_failed:
        return 1
    if summary.gpu_cells_skipped:
        log(
            f"{summary.gpu_cells_skipped} GPU cells skipped: {summary.no_gpu_reason} "
            f"(exit code {NO_GPU_EXIT_CODE})"
        )
        return NO_GPU_EXIT_CODE
    return 0


def _no_export_engine(no_export: bool) -> object:
    if no_export:
        return None
    raise UsageError(
        "the export stage runs on a local engine: give the inventory a unix:// host, or "
        "export first (`python -m runner export`) and run with --no-export"
    )


def _resolve_executor(name: str) -> tuple[str, str | None]:
    """The executor `auto` stands for, and what a reader of the run must know about it: docker
    when an engine answers; else local, announced before anything runs."""
    if name != AUTO:
        return name, (LOCAL_CAVEAT if name == "local" else None)
    from runner.executors.docker import engine_unreachable_reason

    reason = engine_unreachable_reason()
    if reason is None:
        return "docker", None
    note = f"executor auto chose local: {reason}; {LOCAL_CAVEAT}"
    banner = "!" * 100
    log(
        f"{banner}\n{note}.\nEXECUTOR=docker (--executor docker) requires the engine; "
        f"`make engine` installs and starts it (root, Debian/Ubuntu).\n{banner}"
    )
    return "local", note


def cmd_doctor(args: argparse.Namespace) -> int:
    """Say plainly whether this host can run the containerized matrix, and how to fix it."""
    from runner.executors.docker import DockerExecutor
    from runner.images import DEFAULT_BASE, OFFLINE_BASE

    if args.hosts:
        from runner.hosts import check_engine, load_inventory

        checks = [check_engine(h, (DEFAULT_BASE, OFFLINE_BASE)) for h in load_inventory(args.hosts)]
        for check in checks:
            for line in check.lines():
                print(line)
        bad = [c.host.name for c in checks if c.problems]
        log(
            f"{len(checks) - len(bad)} of {len(checks)} hosts ready"
            + (f"; not ready: {', '.join(bad)}" if bad else "")
        )
        return 1 if bad else 0

    executor = DockerExecutor()
    version = executor.client.version().get("Version", "?")
    log(f"docker engine {version}: reachable")
    log(f"GPU cells: {executor.gpu_reason or 'NVIDIA runtime present'}")
    for base in (DEFAULT_BASE, OFFLINE_BASE):
        try:
            executor.client.images.get(base)
            log(f"base image {base}: present")
        except Exception:  # docker.errors.ImageNotFound; imported lazily with the SDK
            log(f"base image {base}: absent")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from runner.images import image_for, version_unavailable

    matrix = _matrix(args)
    for cell in matrix.cells:
        if why := version_unavailable(cell.framework, cell.device, cell.version):
            print(f"{cell.id}  [unsupported: {why}]")
            continue
        image = image_for(cell.framework, cell.device, cell.version).tag()
        print(f"{cell.id}  [{image}, {cell.threads} threads]")
    plan = matrix.round_plan
    rounds = f"{plan.rounds} rounds each" if plan.rounds > 1 else "one round each"
    if plan.target_ci:
        rounds += (
            f", then more until every ratio is within ±{plan.target_ci:.0%} (at most {plan.limit})"
        )
    log(f"{len(matrix.cells)} cells in matrix {matrix.name}, {rounds}")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    from runner.executors.docker import connect
    from runner.images import IMAGES, ensure_images, image_for, version_unavailable

    names = args.names or [
        n for n in IMAGES if IMAGES.get(n).device == ("cuda" if args.gpu else "cpu")
    ]
    specs = []
    for name in names:  # IMAGE or IMAGE@VERSION (another version of its framework)
        image, _, version = name.partition("@")
        spec = IMAGES.get(image)
        if version:
            framework = spec.frameworks[0]
            if why := version_unavailable(framework, spec.device, version):
                raise UsageError(why)
            spec = image_for(framework, spec.device, version)
        specs.append(spec)
    ids = ensure_images(connect(), specs, _settings(args), log, rebuild=args.rebuild)
    tags = {s.key: s.tag() for s in specs}
    for key, image_id in ids.items():
        print(f"{tags[key]} {image_id}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from bench.export import export

    matrix = _matrix(args)
    for model in matrix.models:
        artifact, reused = export(matrix.export_spec(model), args.artifacts)
        print(f"{'reused' if reused else 'exported'} {artifact.path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from runner.report.runs import latest_run, load_run
    from runner.report.write import write_report

    paths = args.runs or [latest_run()]
    runs = [load_run(p) for p in paths]
    written = write_report(runs, args.out or paths[0])
    for path in written:
        print(path)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from runner.report.compare import compare_runs, cpu_difference, environment_differences
    from runner.report.estimates import band_of
    from runner.report.runs import load_run

    a, b = load_run(args.run_a), load_run(args.run_b)
    if cpu := cpu_difference(a, b):
        log(f"WARNING: the two runs come from different CPUs ({cpu}): a change is the CPU's too")
    band = band_of([a.manifest, b.manifest]) if args.band is None else args.band
    changes = compare_runs(a, b, args.threshold, band)
    rows = [
        (
            c.key,
            "-" if c.ratio is None else f"{c.ratio:.3f}{'*' if c.one_slot else ''}",
            "-" if c.low is None else f"[{c.low:.3f}, {c.high:.3f}]",
            c.verdict,
            "REGRESSION" if c.regression else "",
            c.parity_change or "",
        )
        for c in changes
    ]
    print(
        f"B = {b.run_id} against A = {a.run_id}: ratio of latencies B/A with its 95% interval "
        f"over rounds (Welch); a change only beyond ±{band:.0%}"
    )
    print(
        tabulate(
            rows,
            ("cell", "B/A", "95% CI", "verdict", "", "parity"),
            tablefmt="simple",
            disable_numparse=True,
        )
    )
    if any(c.one_slot for c in changes):
        print(
            "* a run with one round: the interval is a bootstrap of its iterations and covers "
            "one time slot only, not the variation between runs; measure with --rounds 5"
        )
    differences = environment_differences(a, b)
    if differences:
        print("\nthe environments differ, so part of any change is the host's:")
        print("\n".join(f"  {d}" for d in differences))
    regressions = sum(c.regression for c in changes)
    log(f"\n{regressions} regressions beyond {args.threshold:.0%}")
    return 1 if regressions else 0


def cmd_clean(args: argparse.Namespace) -> int:
    if args.hosts:
        from runner.executors.pool import PoolExecutor
        from runner.hosts import load_inventory

        pool = PoolExecutor(load_inventory(args.hosts), log=log)
        for name, member in pool.members.items():
            log(f"{name}: removed {member.cleanup()} orphan containers")
        return 0
    from runner.executors.docker import DockerExecutor

    removed = DockerExecutor().cleanup()
    log(f"removed {removed} orphan containers")
    return 0


COMMANDS = {
    "run": cmd_run,
    "plan": cmd_plan,
    "images": cmd_images,
    "export": cmd_export,
    "clean": cmd_clean,
    "doctor": cmd_doctor,
    "report": cmd_report,
    "compare": cmd_compare,
}


def main(argv: list[str] | None = None) -> int:
    return dispatch(build_parser(), COMMANDS, argv)
