"""deploybench's `bench` package: everything that runs inside a framework image.

The three axes a newcomer should see:
- what runs: `bench.models` (what is benchmarked) and `bench.backends` (which runtime runs it);
- how it is measured: `bench.measure` (timing, statistics, parity, fingerprint: pure functions);
- where it runs: the `runner` package (host orchestration) calls `python -m bench run` per cell.
"""

__version__ = "0.1.0"
