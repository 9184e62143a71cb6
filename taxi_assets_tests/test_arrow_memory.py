"""Processes that import taxi_assets allocate Arrow memory from jemalloc, unless Arrow's own
setting names a pool (taxi_assets/__init__.py says why); processes they start inherit it."""

import os
import subprocess
import sys

import pytest

POOL = "import pyarrow as pa; print(pa.default_memory_pool().backend_name)"


def pool_of(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_loading_the_definitions_makes_jemalloc_the_pool() -> None:
    assert pool_of(f"import dagster, taxi_assets.definitions; {POOL}") == "jemalloc"


def test_a_process_started_by_one_that_imported_the_package_uses_it_too() -> None:
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {POOL!r}])"
    assert pool_of(f"import taxi_assets; {child}") == "jemalloc"


@pytest.mark.parametrize("pool", ["system", "mimalloc"])
def test_arrows_own_setting_decides_when_set(pool: str) -> None:
    assert (
        pool_of(f"import taxi_assets.definitions; {POOL}", ARROW_DEFAULT_MEMORY_POOL=pool) == pool
    )
