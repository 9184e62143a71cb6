"""Benchmarks of the raw -> lake -> warehouse path (``make bench``, ``python -m benchmarks``),
and of a 12-month backfill through dagster-daemon (``python -m benchmarks.backfill``).

See docs/performance.md for what each case measures and the latest results.
"""
