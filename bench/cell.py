"""A cell of the matrix: one model through one framework on one device, batch and precision."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field

from bench.errors import UsageError
from bench.frameworks import FRAMEWORKS
from bench.models import check_model_name
from bench.scenario_spec import SINGLE_STREAM, check_scenario

DEVICES = ("cpu", "cuda")
# "auto": what the framework runs when nobody asks; the precision it ran is read back, and
# parity uses that precision's tier.
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "auto")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]*")
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


# Whether a cell's threads are bounded by this process's CPUs. A run on a pool of hosts turns it
# off (`check_local_threads(False)`): the cells run on other machines, and placement checks
# them against each host's CPU sets instead.
_CHECK_LOCAL_THREADS = [True]


def check_local_threads(enabled: bool) -> None:
    """False: this process's cells run on a pool's hosts, their threads are not checked here."""
    _CHECK_LOCAL_THREADS[0] = enabled


def local_threads_checked() -> bool:
    return _CHECK_LOCAL_THREADS[0]


def default_threads() -> int:
    """The CPUs this process may use: the same budget for every framework of a run."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Cell:
    """What to run. Validation raises `UsageError` listing the valid choices: of the model,
    framework, device, precision and every option (bench/frameworks.py)."""

    model: str
    framework: str
    device: str = "cpu"
    batch_size: int = 1
    precision: str = "fp32"
    threads: int = field(default_factory=default_threads)
    # Framework options as sorted (key, value) pairs, so a cell is hashable and comparable.
    options: tuple[tuple[str, str], ...] = ()
    # The framework version asked for (a matrix's `versions:` axis, a model's pin); None: the
    # one its default image pins. Read back in the cell: another installed version is
    # `unsupported`, never measured under this label.
    version: str | None = None
    # The pool host it runs on (runner/hosts.py's inventory name); None: the one engine or
    # process of a run without an inventory. Part of its identity: the same cell on two hosts
    # is two cells, and a speed-up is computed within one host.
    host: str | None = None
    # The load scenario (bench/scenario_spec.py) and its settings as sorted (key, value)
    # pairs. Every cell measures single-stream latency; the others add the load generator's.
    scenario: str = SINGLE_STREAM
    scenario_options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        check_model_name(self.model)
        framework = FRAMEWORKS.get(self.framework)
        if self.device not in DEVICES:
            raise UsageError(f"unknown device {self.device!r}; valid choices: {', '.join(DEVICES)}")
        if self.precision not in PRECISIONS:
            raise UsageError(
                f"unknown precision {self.precision!r}; valid choices: {', '.join(PRECISIONS)}"
            )
        if self.batch_size < 1:
            raise UsageError(f"batch size must be at least 1, not {self.batch_size}")
        if self.threads < 1:
            raise UsageError(f"threads must be at least 1, not {self.threads}")
        if local_threads_checked() and self.threads > (usable := default_threads()):
            raise UsageError(
                f"threads {self.threads} > the {usable} CPUs this process may use: more threads "
                "than CPUs would time the scheduler, not the framework"
            )
        if self.version is not None and not _VERSION.fullmatch(self.version):
            raise UsageError(
                f"framework version {self.version!r} is not a version such as 1.22.1 or 2025.4.1"
            )
        if self.host is not None and not _HOST.fullmatch(self.host):
            raise UsageError(f"host name {self.host!r} is not a name of letters, digits, _ . -")
        # Validated against the framework's option table and normalised (true -> "1"), so that
        # a misspelt option or value stops here and one setting has one spelling.
        options = framework.check_options(dict(self.options), self.device, self.precision)
        object.__setattr__(self, "options", options)
        settings = check_scenario(self.scenario, dict(self.scenario_options))
        object.__setattr__(self, "scenario_options", settings)

    @property
    def id(self) -> str:
        """A file-name-safe identifier, unique per distinct cell."""
        opts = "".join(f"-{k}={v}" for k, v in self.options)
        model = re.sub(r"[^A-Za-z0-9_.=-]", "_", self.model)
        framework = f"{self.framework}@{self.version}" if self.version else self.framework
        raw = f"{model}-{framework}-{self.device}-{self.precision}-b{self.batch_size}{opts}"
        if self.scenario != SINGLE_STREAM:
            raw += f"-{self.scenario}" + "".join(f"-{k}={v}" for k, v in self.scenario_options)
        if self.host:
            raw += f"-on-{self.host}"
        return re.sub(r"[^A-Za-z0-9_.=@-]", "_", raw)

    def option(self, key: str, default: str | None = None) -> str | None:
        return dict(self.options).get(key, default)

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["options"] = dict(self.options)
        d["scenario_options"] = dict(self.scenario_options)
        for key in ("version", "host"):  # absent, as in results written before they existed
            if d[key] is None:
                del d[key]
        if self.scenario == SINGLE_STREAM and not self.scenario_options:
            del d["scenario"], d["scenario_options"]
        return d


def parse_options(pairs: list[str]) -> tuple[tuple[str, str], ...]:
    """`key=value` strings from the command line -> option pairs."""
    options = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"option {pair!r} is not of the form key=value")
        options.append((key, value))
    return tuple(options)
