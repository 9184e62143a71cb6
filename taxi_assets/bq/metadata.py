"""What the UI shows of a BigQuery table: its columns with BigQuery types."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa

from taxi_assets.bq.types import bigquery_type


def bigquery_column_schema(schema: pa.Schema) -> dg.TableSchema:
    """Dagster's column schema of the table created from ``schema`` (BigQuery types, the
    fields' descriptions)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=field.name,
                type=bigquery_type(field.type),
                description=(field.metadata or {}).get(b"description", b"").decode() or None,
            )
            for field in schema
        ]
    )
