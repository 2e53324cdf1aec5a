"""A cell of the matrix: one model through one framework on one device, batch and precision."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field

from bench.errors import UsageError
from bench.frameworks import FRAMEWORKS
from bench.models import check_model_name

DEVICES = ("cpu", "cuda")
# "auto": what the framework runs when nobody asks; the precision it ran is read back, and
# parity uses that precision's tier.
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "auto")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]*")


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
        if self.threads > (usable := default_threads()):
            raise UsageError(
                f"threads {self.threads} > the {usable} CPUs this process may use: more threads "
                "than CPUs would time the scheduler, not the framework"
            )
        if self.version is not None and not _VERSION.fullmatch(self.version):
            raise UsageError(
                f"framework version {self.version!r} is not a version such as 1.22.1 or 2025.4.1"
            )
        # Validated against the framework's option table and normalised (true -> "1"), so that
        # a misspelt option or value stops here and one setting has one spelling.
        options = framework.check_options(dict(self.options), self.device, self.precision)
        object.__setattr__(self, "options", options)

    @property
    def id(self) -> str:
        """A file-name-safe identifier, unique per distinct cell."""
        opts = "".join(f"-{k}={v}" for k, v in self.options)
        model = re.sub(r"[^A-Za-z0-9_.=-]", "_", self.model)
        framework = f"{self.framework}@{self.version}" if self.version else self.framework
        raw = f"{model}-{framework}-{self.device}-{self.precision}-b{self.batch_size}{opts}"
        return re.sub(r"[^A-Za-z0-9_.=@-]", "_", raw)

    def option(self, key: str, default: str | None = None) -> str | None:
        return dict(self.options).get(key, default)

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["options"] = dict(self.options)
        if self.version is None:  # absent, as in results written before versions existed
            del d["version"]
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
