"""How a cell is measured: timing loops, statistics, parity and the environment fingerprint.

Everything here is framework-neutral and, except the timing loop itself, pure functions of
numpy arrays, so it is unit-tested against hand-computed values.
"""
