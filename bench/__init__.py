"""Benchmarks: `python -m bench` runs every `bench/<name>_bench.py`, `python -m bench <name>` one.

Each module exposes `main() -> None` and prints its figures; none asserts on timings.
"""
