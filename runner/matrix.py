"""Matrix files (YAML) -> validated, planned cells.

A matrix names models x frameworks x devices x batch sizes x precisions, minus exclusions,
plus how every cell is run (threads, timing bounds, limits, export settings, framework
options). Validation reports every problem at once, each with its location (key path and
line), before any work starts.
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from bench.backends import BACKENDS
from bench.cell import DEVICES, PRECISIONS, Cell, default_threads, local_threads_checked
from bench.errors import UsageError
from bench.export import EXPORTERS, ExportSpec
from bench.frameworks import FRAMEWORKS
from bench.measure.rounds import DEFAULT_EQUIVALENCE_BAND
from bench.measure.timing import TimingConfig
from bench.models import MODELS, is_onnx_model
from bench.scenario_spec import SCENARIOS, SINGLE_STREAM, check_scenario
from runner.executors.base import parse_memory
from runner.images import built_versions
from runner.placement import HostsSpec
from runner.rounds import RoundPlan, check_rounds

PROFILES_DIR = Path(__file__).parent / "profiles"

AXES = {
    "models": "model",
    "frameworks": "framework",
    "devices": "device",
    "batch_sizes": "batch_size",
    "precisions": "precision",
}
TIMING_KEYS = {
    "warmup_iters": "warmup_min_iters",
    "warmup_seconds": "warmup_min_s",
    "iters": "min_iters",
    "seconds": "min_s",
    "max_iters": "max_iters",
    "max_seconds": "max_s",
}
EXPORT_KEYS = ("weights", "seed", "opset", "exporter", "images")
# How often every cell runs, in fresh processes, and how the report tells speeds apart.
ROUND_KEYS = (
    "rounds",
    "target_ci",
    "max_rounds",
    "time_budget_s",
    "order_seed",
    "equivalence_band",
)
TOP_KEYS = (
    *AXES,
    "name",
    "description",
    "threads",
    "memory_limit",
    "cell_timeout_s",
    "timing",
    "export",
    "framework_options",
    "versions",
    "exclude",
    "hosts",
    "scenarios",
    "scenario_options",
    *ROUND_KEYS,
)
HOSTS_KEYS = ("each", "names", "labels")


class ProblemsError(UsageError):
    """An invalid input file: every problem, one per line (`what`: what the file is)."""

    what = "file"

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"invalid {self.what} {source}:\n{lines}")


class MatrixError(ProblemsError):
    """An invalid matrix: every problem, one per line."""

    what = "matrix"


@dataclass(frozen=True)
class Matrix:
    """A validated matrix."""

    name: str
    cells: list[Cell]
    export_settings: dict[str, Any]  # shared by every model's export
    timing: TimingConfig
    threads: int
    memory_limit: str
    cell_timeout_s: float
    source: dict[str, Any] = field(repr=False, default_factory=dict)
    round_plan: RoundPlan = field(default_factory=RoundPlan)
    equivalence_band: float = DEFAULT_EQUIVALENCE_BAND
    hosts: HostsSpec = field(default_factory=HostsSpec)  # with an inventory (--hosts) only

    def export_spec(self, model: str) -> ExportSpec:
        return ExportSpec(model=model, **self.export_settings)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(c.model for c in self.cells))


def _with_lines(node: yaml.Node, path: tuple = (), lines: dict | None = None) -> tuple[Any, dict]:
    """Plain data from a composed YAML node, and the line of every key path (1-based)."""
    lines = {} if lines is None else lines
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node))
            out[key], _ = _with_lines(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return out, lines
    if isinstance(node, yaml.SequenceNode):
        return [_with_lines(v, (*path, i), lines)[0] for i, v in enumerate(node.value)], lines
    return yaml.safe_load(yaml.serialize(node)), lines


class _Checker:
    """Collects problems with their locations instead of stopping at the first."""

    def __init__(self, lines: dict) -> None:
        self.lines = lines
        self.problems: list[str] = []

    def add(self, path: tuple, message: str) -> None:
        where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path)
        where = where.replace(".[", "[") or "(top)"
        line = self.lines.get(path)
        self.problems.append(f"{where}{f' (line {line})' if line else ''}: {message}")

    def unknown_keys(self, path: tuple, mapping: dict, valid: tuple | list) -> None:
        for key in mapping:
            if key not in valid:
                close = difflib.get_close_matches(str(key), valid, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(valid)}"
                self.add((*path, key), f"unknown key{hint}")

    def choice(
        self, path: tuple, value: Any, valid: list[str] | tuple[str, ...], what: str
    ) -> bool:
        if value in valid:
            return True
        self.add(path, f"unknown {what} {value!r}; valid: {', '.join(valid)}")
        return False


def _axis_valid(axis: str, value: Any, check: _Checker, path: tuple) -> None:
    if axis == "models":
        if not isinstance(value, str) or not (value in MODELS or is_onnx_model(value)):
            check.add(
                path, f"unknown model {value!r}; valid: {', '.join(MODELS.names())}, or onnx:PATH"
            )
    elif axis == "frameworks":
        check.choice(path, value, BACKENDS.names(), "framework")
    elif axis == "devices":
        check.choice(path, value, DEVICES, "device")
    elif axis == "precisions":
        check.choice(path, value, PRECISIONS, "precision")
    elif axis == "scenarios":
        check.choice(path, value, list(SCENARIOS), "scenario")
    elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
        check.add(path, f"batch size must be a positive integer, not {value!r}")


def _check_axes(doc: dict, check: _Checker) -> dict[str, list]:
    axes = {}
    for axis in AXES:
        values = doc.get(axis)
        if values is None:
            check.add((axis,), "missing (a list of values)")
            continue
        if not isinstance(values, list) or not values:
            check.add((axis,), "must be a non-empty list")
            continue
        for i, value in enumerate(values):
            _axis_valid(axis, value, check, (axis, i))
        axes[axis] = values
    return axes


def _check_excludes(doc: dict, check: _Checker) -> list[dict]:
    excludes = doc.get("exclude", [])
    if not isinstance(excludes, list):
        check.add(("exclude",), "must be a list of {axis: value} mappings")
        return []
    singular = {**{v: k for k, v in AXES.items()}, "scenario": "scenarios"}
    for i, rule in enumerate(excludes):
        if not isinstance(rule, dict) or not rule:
            check.add(("exclude", i), "must be a non-empty mapping such as {framework: tvm}")
            continue
        check.unknown_keys(("exclude", i), rule, list(singular))
        for key, value in rule.items():
            if key in singular:
                _axis_valid(singular[key], value, check, ("exclude", i, key))
    return [r for r in excludes if isinstance(r, dict)]


def _check_settings(doc: dict, check: _Checker) -> tuple[TimingConfig | None, dict, int]:
    timing_doc = doc.get("timing", {}) or {}
    timing = None
    if not isinstance(timing_doc, dict):
        check.add(("timing",), "must be a mapping")
    else:
        check.unknown_keys(("timing",), timing_doc, list(TIMING_KEYS))
        try:
            timing = TimingConfig(
                **{TIMING_KEYS[k]: v for k, v in timing_doc.items() if k in TIMING_KEYS}
            )
        except (UsageError, TypeError) as exc:
            check.add(("timing",), str(exc))
    export_doc = doc.get("export", {}) or {}
    if not isinstance(export_doc, dict):
        check.add(("export",), "must be a mapping")
        export_doc = {}
    check.unknown_keys(("export",), export_doc, list(EXPORT_KEYS))
    if export_doc.get("exporter", "dynamo") not in EXPORTERS:
        check.choice(("export", "exporter"), export_doc["exporter"], EXPORTERS, "exporter")
    threads = doc.get("threads", "auto")
    if threads == "auto":
        threads = default_threads()
    elif not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        check.add(("threads",), f"must be a positive integer or 'auto', not {threads!r}")
        threads = 1
    elif local_threads_checked() and threads > default_threads():
        check.add(
            ("threads",),
            f"{threads} > the {default_threads()} CPUs this runner may use (more threads than "
            "CPUs would time the scheduler, not the frameworks)",
        )
        threads = 1
    opts = doc.get("framework_options", {}) or {}
    if not isinstance(opts, dict):
        check.add(("framework_options",), "must map framework -> {option: value}")
        opts = {}
    for fw, values in opts.items():
        if not check.choice(("framework_options", fw), fw, BACKENDS.names(), "framework"):
            continue
        variants = values if isinstance(values, list) else [values]
        if not variants or not all(isinstance(v, dict) for v in variants):
            check.add(
                ("framework_options", fw),
                "must be a mapping of option: value, or a list of such mappings (one per variant)",
            )
            continue
        _check_option_values(fw, values, check)
    timeout = doc.get("cell_timeout_s", 1800)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        check.add(("cell_timeout_s",), f"must be a positive number of seconds, not {timeout!r}")
    memory = doc.get("memory_limit", "8g")
    try:
        if isinstance(memory, bool) or parse_memory(str(memory)) <= 0:
            raise ValueError
    except ValueError:
        check.add(("memory_limit",), f"must be a size such as 8g, 512m or 1024k, not {memory!r}")
    return timing, {k: v for k, v in export_doc.items() if k in EXPORT_KEYS}, threads


def _check_option_values(framework: str, values: Any, check: _Checker) -> None:
    """Every option name and value of one framework's framework_options, against its table
    (bench/frameworks.py): the valid names or values in each problem."""
    spec = FRAMEWORKS.get(framework)
    mappings = values if isinstance(values, list) else [values]
    for i, mapping in enumerate(mappings):
        where = ("framework_options", framework) + ((i,) if isinstance(values, list) else ())
        for name, value in mapping.items():
            try:
                option = spec.option(str(name))
            except UsageError as exc:
                check.add((*where, name), str(exc))
                continue
            for v in value if isinstance(value, list) else [value]:
                if v is None:  # a variant without the option
                    continue
                try:
                    option.normalize(framework, v)
                except UsageError as exc:
                    check.add((*where, name), str(exc))


def _check_versions(doc: dict, check: _Checker, axes: dict[str, list]) -> dict[str, list[str]]:
    """`versions: {framework: [version, ...]}`: every version must have an image on every
    device the matrix runs the framework on (images/<image>/versions/)."""
    versions = doc.get("versions", {}) or {}
    if not isinstance(versions, dict):
        check.add(("versions",), "must map framework -> [version, ...]")
        return {}
    bases = [f for f in FRAMEWORKS if FRAMEWORKS.get(f).variant_of is None]
    out = {}
    for fw, listed in versions.items():
        if fw in FRAMEWORKS and FRAMEWORKS.get(fw).variant_of:
            base = FRAMEWORKS.get(fw).variant_of
            check.add(("versions", fw), f"a native variant runs its framework's versions: {base}")
            continue
        if not check.choice(("versions", fw), fw, bases, "framework"):
            continue
        if not isinstance(listed, list) or not listed:
            check.add(("versions", fw), "must be a non-empty list of versions")
            continue
        out[fw] = [str(v) for v in listed]
        devices = [d for d in axes.get("devices", []) if d in FRAMEWORKS.get(fw).devices]
        for device in devices:
            built = built_versions(fw, device)
            for i, version in enumerate(out[fw]):
                if version not in built:
                    check.add(
                        ("versions", fw, i),
                        f"no {device} image has {fw} {version}; versions with an image: "
                        f"{', '.join(built)} (images/<image>/versions/<version>/)",
                    )
    return out


def _check_hosts(doc: dict, check: _Checker) -> HostsSpec:
    """`hosts: {each: bool, names: [host, ...], labels: {key: value}}`: which inventory hosts
    may run the cells (runner/placement.py), and whether every cell runs on each of them."""
    spec = doc.get("hosts")
    if spec is None:
        return HostsSpec()
    if not isinstance(spec, dict):
        check.add(("hosts",), "must be a mapping with each, names and/or labels")
        return HostsSpec()
    check.unknown_keys(("hosts",), spec, HOSTS_KEYS)
    each = spec.get("each", False)
    if not isinstance(each, bool):
        check.add(("hosts", "each"), "must be true (every cell on every host) or false")
        each = False
    names = spec.get("names", []) or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        check.add(("hosts", "names"), "must be a list of the inventory's host names")
        names = []
    labels = spec.get("labels", {}) or {}
    if not isinstance(labels, dict) or not all(isinstance(v, (str, int)) for v in labels.values()):
        check.add(("hosts", "labels"), "must map label -> value, e.g. {cpu: sapphire-rapids}")
        labels = {}
    return HostsSpec(
        each=each,
        names=tuple(names),
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
    )


def _check_scenarios(doc: dict, check: _Checker) -> list[tuple[str, tuple]]:
    """`scenarios: [single_stream, offline, ...]` (default: single_stream) and
    `scenario_options: {scenario: {setting: value}}`: (scenario, its settings) per scenario."""
    names = doc.get("scenarios", [SINGLE_STREAM])
    if not isinstance(names, list) or not names:
        check.add(("scenarios",), f"must be a non-empty list of: {', '.join(SCENARIOS)}")
        return []
    settings = doc.get("scenario_options", {}) or {}
    if not isinstance(settings, dict):
        check.add(("scenario_options",), "must map scenario -> {setting: value}")
        settings = {}
    for name in settings:
        if name not in names:
            check.add(("scenario_options", name), f"not a scenario of this matrix: {names}")
    out = []
    for i, name in enumerate(names):
        if not check.choice(("scenarios", i), name, list(SCENARIOS), "scenario"):
            continue
        given = settings.get(name, {}) or {}
        if not isinstance(given, dict):
            check.add(("scenario_options", name), "must map setting -> value")
            continue
        try:
            out.append((name, check_scenario(name, given)))
        except UsageError as exc:
            check.add(("scenario_options", name), str(exc))
    return out


def _cell_versions(model: str, framework: str, versions: dict[str, list[str]]) -> list[str | None]:
    """The versions a (model, framework) pair runs at: the model's pin, else the axis, else
    the default image's (None)."""
    base = FRAMEWORKS.get(framework).base
    if not is_onnx_model(model) and (pin := dict(MODELS.get(model).framework_versions).get(base)):
        return [pin]
    return list(versions.get(base, [None]))


def option_variants(
    options: dict[str, Any] | list[dict[str, Any]],
) -> list[tuple[tuple[str, str], ...]]:
    """A list value is a variant axis: {trials: [0, 64], hint: latency} gives two cells.

    A null in a list is the variant without that option, so {compile: [null, max-autotune]}
    keeps the plain framework (the `vs torch` reference) beside the compiled one. A list of
    mappings names the variants one by one: [{}, {compile: max-autotune}, {cuda_graphs: 1}]."""
    if isinstance(options, list):
        every = [v for mapping in options for v in option_variants(mapping)]
        return list(dict.fromkeys(every))
    keys = sorted(options)
    choices = [v if isinstance(v, list) else [v] for v in (options[k] for k in keys)]
    variants = [
        tuple((k, str(v)) for k, v in zip(keys, combo, strict=True) if v is not None)
        for combo in itertools.product(*choices)
    ]
    return list(dict.fromkeys(variants))


def _fixed_batch(model: str) -> int | None:
    """The one batch a registered model's graph takes (None: any, or not known before export)."""
    return None if is_onnx_model(model) else MODELS.get(model).fixed_batch


def _excluded(values: dict[str, Any], rules: list[dict]) -> bool:
    return any(all(values.get(k) == v for k, v in rule.items()) for rule in rules)


def parse_matrix(text: str, source: str = "<matrix>") -> Matrix:
    """Validate a matrix document; raise `MatrixError` listing every problem."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise MatrixError(source, [f"not valid YAML: {exc}"]) from exc
    doc, lines = _with_lines(root) if root is not None else ({}, {})
    check = _Checker(lines)
    if not isinstance(doc, dict):
        raise MatrixError(source, ["(top): must be a mapping of matrix keys"])
    check.unknown_keys((), doc, list(TOP_KEYS))
    axes = _check_axes(doc, check)
    rules = _check_excludes(doc, check)
    timing, export_settings, threads = _check_settings(doc, check)
    versions = _check_versions(doc, check, axes)
    plan, band = check_rounds(doc, check)
    hosts = _check_hosts(doc, check)
    scenarios = _check_scenarios(doc, check)
    if check.problems:
        raise MatrixError(source, check.problems)

    options = doc.get("framework_options", {}) or {}
    cells = []
    for combo in itertools.product(*(axes[a] for a in AXES)):
        values = dict(zip(AXES.values(), combo, strict=True))
        if _excluded(values, rules):
            continue
        for variant, version, (scenario, settings) in itertools.product(
            option_variants(options.get(values["framework"], {})),
            _cell_versions(values["model"], values["framework"], versions),
            scenarios,
        ):
            if _excluded({**values, "scenario": scenario}, rules):
                continue
            try:
                cell = Cell(
                    threads=threads,
                    options=variant,
                    version=version,
                    scenario=scenario,
                    scenario_options=settings,
                    **values,
                )
                cells.append(cell)
            except UsageError as exc:  # an option of the wrong device or precision, a batch
                check.add(("framework_options", values["framework"]), str(exc))
        fixed = _fixed_batch(values["model"])
        if fixed is not None and values["batch_size"] != fixed:
            check.add(
                ("batch_sizes",),
                f"{values['model']} takes batch {fixed} only; exclude the others, e.g. "
                f"{{model: {values['model']}, batch_size: {values['batch_size']}}}",
            )
    if check.problems:
        raise MatrixError(source, list(dict.fromkeys(check.problems)))
    if not cells:
        raise MatrixError(source, ["exclude: every cell is excluded; nothing to run"])
    return Matrix(
        name=str(doc.get("name", Path(source).stem)),
        cells=cells,
        export_settings=export_settings,
        timing=timing,
        threads=threads,
        memory_limit=str(doc.get("memory_limit", "8g")),
        cell_timeout_s=float(doc.get("cell_timeout_s", 1800)),
        source=doc,
        round_plan=plan,
        equivalence_band=band,
        hosts=hosts,
    )


def with_round_overrides(matrix: Matrix, overrides: dict[str, Any]) -> Matrix:
    """The matrix with round settings from the command line (validated as the file's are,
    and written into its source, which the manifest records)."""
    source = {**matrix.source, **overrides}
    check = _Checker({})
    plan, band = check_rounds(source, check)
    if check.problems:
        raise MatrixError("(command line)", check.problems)
    return replace(matrix, round_plan=plan, equivalence_band=band, source=source)


def profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_matrix(name_or_path: str) -> Matrix:
    """A built-in profile by name (quick, full, gpu) or a matrix file by path."""
    path = Path(name_or_path)
    if not path.suffix and (PROFILES_DIR / f"{name_or_path}.yaml").is_file():
        path = PROFILES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise UsageError(
            f"no matrix file {name_or_path!r}; built-in profiles: "
            f"{', '.join(profiles())}, or a path to a YAML file"
        )
    return parse_matrix(path.read_text(), str(path))
