"""Processes that load the definitions allocate Arrow memory from jemalloc, unless Arrow's
own setting names a pool (arrow_memory.py says why)."""

import os
import subprocess
import sys

import pytest

PRINT_POOL = (
    "import taxi_assets.definitions, pyarrow as pa; print(pa.default_memory_pool().backend_name)"
)


def pool_after_loading_definitions(**env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run(
        [sys.executable, "-c", PRINT_POOL],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_loading_the_definitions_makes_jemalloc_the_pool() -> None:
    assert pool_after_loading_definitions() == "jemalloc"


@pytest.mark.parametrize("pool", ["system", "mimalloc"])
def test_arrows_own_setting_decides_when_set(pool: str) -> None:
    assert pool_after_loading_definitions(ARROW_DEFAULT_MEMORY_POOL=pool) == pool
