"""The warehouse in BigQuery: ``bigquery://PROJECT[?location=LOCATION]``, resolved at run start."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qs, urlsplit

import dagster as dg
from pydantic import Field, PrivateAttr

from taxi_assets.bq.client import bigquery_client, emulator_host
from taxi_assets.bq.names import BigQueryNameError, check_project
from taxi_assets.production import require_setting
from taxi_assets.run_watch import RunWatchLease, watch_run
from taxi_assets.settings import resolve_setting

if TYPE_CHECKING:
    from google.cloud import bigquery

WAREHOUSE_URL_ENV = "TAXI_WAREHOUSE_URL"
MonthReplace = Literal["auto", "partition-copy", "transaction"]


@dataclass(frozen=True)
class BigQueryTarget:
    project: str
    location: str | None


def parse_bigquery_url(url: str) -> BigQueryTarget:
    """``bigquery://PROJECT`` with an optional ``?location=EU``; errors quote no URL (it is
    configuration, but the same variable holds PostgreSQL passwords elsewhere)."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "bigquery":
        raise ValueError(
            f"not a BigQuery URL (scheme {parts.scheme!r}): expected bigquery://PROJECT"
        )
    if parts.path not in ("", "/") or parts.username or parts.password or parts.fragment:
        raise ValueError("a BigQuery URL is bigquery://PROJECT[?location=LOCATION], nothing else")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"location"}
    if unknown:
        raise ValueError(f"unknown BigQuery URL option(s) {sorted(unknown)}: only location=")
    try:
        project = check_project(parts.netloc)
    except BigQueryNameError as error:
        raise ValueError(f"bigquery://PROJECT: {error}") from None
    location = (query.get("location") or [""])[-1].strip() or None
    return BigQueryTarget(project, location)


class BigQueryWarehouse(dg.ConfigurableResource):
    """The warehouse's BigQuery project: ``url`` or ``$TAXI_WAREHOUSE_URL``
    (``bigquery://PROJECT[?location=EU]``). Datasets are named after the asset key prefixes
    (``warehouse``, ``analytics``) and created in ``location`` when missing.

    ``month_replace`` says how a month becomes visible: ``partition-copy`` (a copy job that
    replaces the partition ``table$YYYYMM``), ``transaction`` (DELETE + INSERT in one
    multi-statement transaction, for servers that refuse partition decorators, such as
    the emulator), or ``auto``: ``transaction`` when ``BIGQUERY_EMULATOR_HOST`` is set,
    else ``partition-copy``.
    """

    url: str | None = Field(default=None, description="bigquery://PROJECT ($TAXI_WAREHOUSE_URL).")
    month_replace: MonthReplace = "auto"
    _run_watch: RunWatchLease | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        require_setting(self.url, WAREHOUSE_URL_ENV, "the warehouse (bigquery://PROJECT)")
        # A run ended by someone else (max_runtime, Terminate) stops here too (run_watch).
        self._run_watch = watch_run(context)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._run_watch is not None:
            self._run_watch.release()

    def target(self) -> BigQueryTarget:
        url = resolve_setting(self.url, WAREHOUSE_URL_ENV, None)
        if not url:
            raise ValueError(f"{WAREHOUSE_URL_ENV} is not set: expected bigquery://PROJECT")
        return parse_bigquery_url(url)

    @property
    def project(self) -> str:
        return self.target().project

    def replace_strategy(self) -> Literal["partition-copy", "transaction"]:
        if self.month_replace != "auto":
            return self.month_replace
        # The emulator refuses partition decorators ("Invalid table id"); BigQuery takes both.
        return "transaction" if emulator_host() else "partition-copy"

    @contextmanager
    def client(self) -> Iterator[bigquery.Client]:
        target = self.target()
        with bigquery_client(target.project, target.location) as client:
            yield client
