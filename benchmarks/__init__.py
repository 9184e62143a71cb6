"""Benchmarks of the raw -> lake -> warehouse path (``make bench``, ``python -m benchmarks``).

See docs/performance.md for what each case measures and the latest results.
"""
