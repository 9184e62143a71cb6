"""A local BigQuery for the tests: bqemulator in a subprocess, one per test session.

The server (:mod:`taxi_assets_tests.bq_emulator_server`) listens on 127.0.0.1 at a free
port and stops when this process closes its stdin or dies. Each test gets a project of
its own (the emulator creates projects on first use), so tests never see each other's
datasets; the datasets are deleted after the test to keep the emulator small.

Load jobs naming ``gs://BUCKET/OBJECT`` are read by the emulator from the folder
``<gcs_root>/BUCKET/OBJECT`` (BigQuery reads them from GCS itself). ``gcs_data_dir`` is
where a GCS emulator on disk (:class:`taxi_assets_tests.gcs_emulator.GcsEmulator`) keeps
its objects as exactly such files, so what gcsfs uploads to it, the BigQuery emulator
loads.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.cloud import bigquery

REPO = Path(__file__).resolve().parents[1]
_PROJECTS = itertools.count(1)
# google-auth never probes the GCE metadata server (169.254.169.254) in the tests.
NO_METADATA_SERVER = {"NO_GCE_CHECK": "true", "GCE_METADATA_HOST": "127.0.0.1:9"}


class BigQueryEmulator:
    def __init__(self, folder: Path) -> None:
        from taxi_assets_tests.gcs_emulator import object_root

        self.gcs_data_dir = folder / "gcs"
        self.gcs_root = object_root(self.gcs_data_dir)
        self.gcs_root.mkdir(parents=True, exist_ok=True)
        self._log = (folder / "emulator.log").open("w")
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "taxi_assets_tests.bq_emulator_server",
                "--gcs-root",
                str(self.gcs_root),
                "--staging-dir",
                str(folder / "uploads"),
            ],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            code = self._process.wait()
            raise RuntimeError(f"bqemulator exited with {code}; see {self._log.name}")
        self.url: str = json.loads(line)["rest_url"]

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                stream.close()
        self._log.close()

    def env(self) -> dict[str, str]:
        """What a process needs to use the emulator (the client's own variable)."""
        return {"BIGQUERY_EMULATOR_HOST": self.url, **NO_METADATA_SERVER}

    def client(self, project: str) -> bigquery.Client:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.url),
        )


@dataclass
class EmulatedProject:
    """One test's project on the emulator; the environment points at the emulator."""

    emulator: BigQueryEmulator
    project: str

    @property
    def url(self) -> str:
        """The warehouse URL, as ``TAXI_WAREHOUSE_URL`` holds it."""
        return f"bigquery://{self.project}"

    def client(self) -> bigquery.Client:
        return self.emulator.client(self.project)

    def rows(self, sql: str) -> list[dict]:
        """Rows of a query (``{project}`` in ``sql`` is replaced by the project)."""
        with self.client() as client:
            # Not query_and_wait: against the emulator it reports failed queries as empty.
            job = client.query(sql.replace("{project}", self.project))
            return [dict(row) for row in job.result()]

    def table(self, table_id: str) -> bigquery.Table:
        with self.client() as client:
            return client.get_table(f"{self.project}.{table_id}")

    def tables(self, dataset: str) -> list[str]:
        with self.client() as client:
            return sorted(t.table_id for t in client.list_tables(f"{self.project}.{dataset}"))

    def month_counts(self, table: str) -> dict[str, int]:
        """Rows of ``warehouse.<table>`` by partition month (``YYYY-MM``)."""
        rows = self.rows(
            f"SELECT FORMAT_DATE('%Y-%m', partition_month) AS month, COUNT(*) AS n "
            f"FROM `{{project}}.warehouse.{table}` GROUP BY 1 ORDER BY 1"
        )
        return {row["month"]: row["n"] for row in rows}

    def drop_datasets(self) -> None:
        with self.client() as client:
            for dataset in client.list_datasets():
                client.delete_dataset(dataset.reference, delete_contents=True, not_found_ok=True)


@contextmanager
def session_emulator(folder: Path) -> Iterator[BigQueryEmulator]:
    emulator = BigQueryEmulator(folder)
    try:
        yield emulator
    finally:
        emulator.stop()


@contextmanager
def emulated_project(
    emulator: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch, project: str | None = None
) -> Iterator[EmulatedProject]:
    for name, value in emulator.env().items():
        monkeypatch.setenv(name, value)
    emulated = EmulatedProject(emulator, project or f"test-{os.getpid()}-{next(_PROJECTS)}")
    try:
        yield emulated
    finally:
        emulated.drop_datasets()
