"""Inputs: the sample photographs and the one preprocessing implementation.

Preprocessing happens once, at export; every framework then receives the same stored tensor,
so parity compares runtimes, not preprocessing.
"""
