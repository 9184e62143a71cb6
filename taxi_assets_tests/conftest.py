"""Shared fixtures: a real PostgreSQL server, generated TLC files on a real HTTP mirror."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from taxi_assets_tests.postgres_server import fresh_database, throwaway_server

SHARED_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "tlc-samples"
# Environment variables the project reads; tests start from a clean slate.
PROJECT_ENV = (
    "TAXI_SOURCE",
    "TAXI_DTC_URL",
    "TAXI_TLC_URL",
    "TAXI_ZONES_URL",
    "TAXI_LAKE_URL",
    "TAXI_WAREHOUSE_URL",
    "TAXI_FIRST_MONTH",
)


@pytest.fixture(autouse=True)
def _clean_project_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROJECT_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with throwaway_server(tmp_path_factory.mktemp("pg") / "data") as url:
        yield url


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """An empty database of its own for each test."""
    with fresh_database(pg_server_url) as url:
        yield url


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as test_instance:
        yield test_instance


@pytest.fixture
def shared_samples() -> Path:
    if not SHARED_SAMPLES.is_dir():
        pytest.skip(f"real TLC samples not available at {SHARED_SAMPLES}")
    return SHARED_SAMPLES


def pytest_configure(config: pytest.Config) -> None:
    # gcsfs 2026.x stalls a minute per call against an emulator without this; set it before
    # anything imports gcsfs.
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
