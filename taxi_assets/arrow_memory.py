"""pyarrow's allocator for the processes that move trip data: jemalloc.

Measured on a 20M-row FHVHV month in one row group (TLC's layout), the ingest core of
``benchmarks.cases`` in its own process, one run each, same machine and hour: peak RSS
426-430 MB with jemalloc (3 runs), 468-489 MB with pyarrow's default mimalloc (2 runs) and
554 MB with the system allocator, at the same speed (48-54 s). The reader's page buffers
come and go by the thousand; jemalloc hands their memory back sooner.
"""

from __future__ import annotations

import os

import pyarrow as pa

SETTING = "ARROW_DEFAULT_MEMORY_POOL"  # Arrow's own; when set, it decides


def use_jemalloc() -> str:
    """Make jemalloc pyarrow's default pool unless ``ARROW_DEFAULT_MEMORY_POOL`` names one;
    the name of the pool in use."""
    if SETTING not in os.environ:
        try:
            pa.set_memory_pool(pa.jemalloc_memory_pool())
        except NotImplementedError:
            # A pyarrow built without jemalloc (its Windows wheels): its default stays.
            pass
    return pa.default_memory_pool().backend_name
