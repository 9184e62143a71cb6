"""Arrow schemas as BigQuery schemas.

TLC publishes local New York times without a zone, and the lake keeps them naive
(``timestamp[us]``): they become ``DATETIME`` (a civil date and time, no zone), never
``TIMESTAMP`` (an instant, which BigQuery would take as UTC, shifting every trip by 4-5
hours). Every integer width becomes ``INT64``, floats ``FLOAT64``.
"""

from __future__ import annotations

import pyarrow as pa
from google.cloud import bigquery

from taxi_assets.sql_types import looked_up


def bigquery_type(arrow_type: pa.DataType) -> str:
    """The BigQuery column type for an Arrow type (naive timestamps are DATETIME)."""
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMP" if arrow_type.tz else "DATETIME"
    if pa.types.is_decimal(arrow_type):
        fits = arrow_type.precision - arrow_type.scale <= 29 and arrow_type.scale <= 9
        return "NUMERIC" if fits else "BIGNUMERIC"
    return looked_up(arrow_type, "BigQuery")


def column_type(column: bigquery.SchemaField) -> str:
    """A table column's type by its standard SQL name: the API reports legacy names for
    some (INTEGER, FLOAT, BOOLEAN)."""
    legacy = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}
    return legacy.get(column.field_type, column.field_type)


def schema_field(field: pa.Field) -> bigquery.SchemaField:
    description = (field.metadata or {}).get(b"description", b"").decode()
    mode = "NULLABLE" if field.nullable else "REQUIRED"
    if description:
        # By keyword: the fourth positional parameter is default_value_expression (SQL).
        return bigquery.SchemaField(
            field.name, bigquery_type(field.type), mode, description=description
        )
    return bigquery.SchemaField(field.name, bigquery_type(field.type), mode)


def bigquery_schema(schema: pa.Schema) -> list[bigquery.SchemaField]:
    return [schema_field(field) for field in schema]
