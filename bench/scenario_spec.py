"""The four load scenarios (MLPerf LoadGen's) and their settings, as data.

A cell runs one scenario. `single_stream` is what every cell measures: one request after
another (bench/run.py's timing loop). The other three also run the load generator
(bench/measure/loadgen.py, driven by bench/scenarios.py) after it, in the same process, on
the same loaded model. Their settings are part of the cell (`scenario_options`), so two cells
measured under different bounds never share an id or a row.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.errors import UsageError


@dataclass(frozen=True)
class Setting:
    name: str
    kind: type  # int or float
    default: float
    minimum: float
    help: str


@dataclass(frozen=True)
class Scenario:
    name: str
    question: str
    settings: tuple[Setting, ...] = ()


def _point(queries: int, seconds: float) -> tuple[Setting, ...]:
    return (
        Setting("point_queries", int, queries, 1, "requests at least, per point of the sweep"),
        Setting("point_seconds", float, seconds, 0.0, "seconds at least, per point"),
    )


_GAIN = Setting(
    "gain_threshold", float, 0.05, 0.0, "stop when doubling gains less samples/s than this"
)

SCENARIOS = {
    s.name: s
    for s in (
        Scenario("single_stream", "latency of one request after another"),
        Scenario(
            "offline",
            "samples/s at most, at the best batch (a batch sweep)",
            (_GAIN, Setting("max_batch", int, 64, 1, "the largest batch tried"), *_point(8, 2.0)),
        ),
        Scenario(
            "multi_stream",
            "latency and samples/s with N requests in flight (a sweep of N)",
            (_GAIN, Setting("max_streams", int, 8, 1, "the largest N tried"), *_point(32, 2.0)),
        ),
        Scenario(
            "server",
            "p50/p99/p99.9 at Poisson arrival rates; the highest rate with p99 under a bound",
            (
                Setting("p99_ms", float, 100.0, 0.001, "the latency bound a VALID run keeps"),
                Setting("queries", int, 256, 1, "requests at least, per rate"),
                Setting("seconds", float, 5.0, 0.0, "seconds at least, per rate (MLPerf: 600)"),
                Setting(
                    "max_seconds",
                    float,
                    60.0,
                    0.1,
                    "seconds at most, per rate, beyond its arrival schedule's length",
                ),
                Setting("bisections", int, 3, 0, "halvings of the rate bracket"),
                Setting(
                    "in_flight",
                    int,
                    0,
                    0,
                    "requests the framework runs at once; 0: its own choice (OpenVINO's optimal "
                    "number of infer requests, one for the others)",
                ),
                Setting("seed", int, 0, 0, "seed of the arrival schedule"),
            ),
        ),
    )
}
SINGLE_STREAM = "single_stream"


def check_scenario(name: str, options: dict[str, object]) -> tuple[tuple[str, str], ...]:
    """The scenario's options validated and normalised to sorted string pairs; raises
    `UsageError` naming the valid scenarios or settings."""
    if name not in SCENARIOS:
        raise UsageError(f"unknown scenario {name!r}; valid choices: {', '.join(SCENARIOS)}")
    known = {s.name: s for s in SCENARIOS[name].settings}
    pairs = []
    for key, value in options.items():
        if key not in known:
            valid = ", ".join(known) or "none"
            raise UsageError(f"scenario {name} has no setting {key!r}; valid: {valid}")
        setting = known[key]
        try:
            number = setting.kind(str(value))
        except ValueError:
            raise UsageError(
                f"scenario {name} setting {key}={value!r} is not {setting.kind.__name__}"
            ) from None
        if number < setting.minimum:
            raise UsageError(f"scenario {name} setting {key} must be >= {setting.minimum:g}")
        pairs.append((key, str(number)))
    return tuple(sorted(pairs))


def scenario_settings(name: str, options: tuple[tuple[str, str], ...]) -> dict[str, float]:
    """Every setting of the scenario: the cell's, else the default, typed."""
    given = dict(options)
    return {
        s.name: s.kind(given[s.name]) if s.name in given else s.kind(s.default)
        for s in SCENARIOS[name].settings
    }
