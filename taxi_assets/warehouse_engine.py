"""Which engine holds the warehouse: PostgreSQL or BigQuery, a deployment choice.

``TAXI_WAREHOUSE_URL`` names the warehouse: ``postgresql://...`` (or unset: the embedded
PostgreSQL) or ``bigquery://PROJECT[?location=EU]``. Only the URL's scheme is read when
the definitions load (:func:`taxi_assets.definitions.warehouse_engine`), so asset kinds
and descriptions in the UI name the right engine; the URL itself, with any password,
is read by the resources when a run starts.

Both engines offer the same resource keys: ``warehouse`` (the connection) and
``warehouse_io_manager`` (tables per asset key, a partition replaced atomically, and
``partition_row_count`` for the checks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WarehouseEngine:
    """How the definitions describe one engine."""

    name: str  # "postgres" or "bigquery"
    label: str  # for descriptions: "PostgreSQL", "BigQuery"
    kind: str  # the asset kind shown in the UI (a Dagster-known kind, with its icon)


POSTGRES = WarehouseEngine("postgres", "PostgreSQL", "postgres")
BIGQUERY = WarehouseEngine("bigquery", "BigQuery", "bigquery")
_BY_SCHEME = {
    "postgresql": POSTGRES,
    "postgres": POSTGRES,
    "bigquery": BIGQUERY,
}
# A URL's scheme (RFC 3986: a letter, then letters, digits, "+", "-", "."), before "://".
# Only what matches this is ever quoted: the rest of the value may hold a password.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_EXPECTED = (
    "expected postgresql://USER:PASSWORD@HOST:PORT/DB or bigquery://PROJECT[?location=LOCATION]"
)


class UnknownWarehouseEngine(ValueError):
    """``TAXI_WAREHOUSE_URL`` has a scheme no engine serves (the message shows only it)."""


def engine_for_url(url: str | None) -> WarehouseEngine:
    """The engine a warehouse URL names, from its scheme alone (unset: PostgreSQL)."""
    if not url or not url.strip():
        return POSTGRES
    found = _SCHEME.match(url.strip())
    if found is None:
        # No scheme: a typo such as "postgresql:/" or a bare "USER:PASSWORD@HOST/DB". The
        # value is not quoted, not even in part: it may hold the password.
        raise UnknownWarehouseEngine(
            f"TAXI_WAREHOUSE_URL does not start with SCHEME://: {_EXPECTED}"
        )
    scheme = found.group(1).partition("+")[0].lower()
    try:
        return _BY_SCHEME[scheme]
    except KeyError:
        raise UnknownWarehouseEngine(
            f"TAXI_WAREHOUSE_URL has scheme {scheme!r}: {_EXPECTED}"
        ) from None


def warehouse_resources(engine: WarehouseEngine, warehouse: Any = None) -> dict[str, Any]:
    """``warehouse`` and ``warehouse_io_manager`` for ``engine``; ``warehouse`` overrides
    the connection resource (tests), else it is configured from the environment."""
    # Each engine's modules are imported only when it is the one deployed: the BigQuery
    # client library costs every run process ~0.7 s to import.
    if engine is BIGQUERY:
        from taxi_assets.io_managers.bigquery import BigQueryIOManager
        from taxi_assets.resources.bigquery import BigQueryWarehouse

        bigquery = warehouse or BigQueryWarehouse()
        if not isinstance(bigquery, BigQueryWarehouse):
            raise TypeError(f"the BigQuery engine needs a BigQueryWarehouse, not {bigquery!r}")
        return {
            "warehouse": bigquery,
            "warehouse_io_manager": BigQueryIOManager(warehouse=bigquery),
        }
    from taxi_assets.io_managers.postgres import PostgresIOManager
    from taxi_assets.resources.postgres import PostgresResource

    postgres = warehouse or PostgresResource()
    if not isinstance(postgres, PostgresResource):
        raise TypeError(f"the PostgreSQL engine needs a PostgresResource, not {postgres!r}")
    return {"warehouse": postgres, "warehouse_io_manager": PostgresIOManager(database=postgres)}
