"""``warehouse.loads``: which raw revision each warehouse month holds, one row per table
and month, written in the same transaction as the month (:mod:`taxi_assets.io_managers.load_log`).

The revision comes from the lake file's Parquet key-value metadata (``source_file``,
``source_sha256``, written when the lake file was parsed from the raw revision), so the
warehouse step never reads the raw zone. A reload replaces the month's row: the table
says what the warehouse holds now; earlier loads are in the materializations' metadata.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import pyarrow as pa

from taxi_assets.assets.contract_stream import SOURCE_SHA256_KEY
from taxi_assets.io_managers.lake_files import LakeFiles
from taxi_assets.io_managers.load_log import TRANSACTION_TIME, LoadLog, Record

LOADS_TABLE = "loads"
LOADS_KEY = ("table_name", "partition_month")


def _column(
    name: str, arrow_type: pa.DataType, description: str, nullable: bool = True
) -> pa.Field:
    return pa.field(name, arrow_type, nullable, metadata={"description": description})


LOADS_COLUMNS = pa.schema(
    [
        _column("table_name", pa.string(), "The table loaded: schema.table.", False),
        _column("partition_month", pa.date32(), "The month loaded (the file's month).", False),
        _column("source_file", pa.string(), "The published file the month was parsed from."),
        _column(
            "source_sha256",
            pa.string(),
            "sha256 of the raw revision (the published bytes) the month was built from; "
            "null for lake files written before revisions were recorded.",
        ),
        _column("row_count", pa.int64(), "Rows of the month in the table.", False),
        _column(
            "loaded_at",
            pa.timestamp("us", tz="UTC"),
            "When the load committed (the database's clock).",
            False,
        ),
        _column("run_id", pa.string(), "The Dagster run that loaded it.", False),
    ]
)


@dataclass(frozen=True)
class LakeLineage:
    """What a month's lake file(s) say about their origin, from the footers alone."""

    source_file: str | None
    source_sha256: str | None
    rows: int


def lake_lineage(data: LakeFiles) -> LakeLineage:
    """The source file, raw revision and rows of a lake partition (several files: their
    distinct values, comma-separated)."""
    files: list[str] = []
    revisions: list[str] = []
    rows = 0
    for path in data.paths:
        metadata = data.arrow_schema(path).metadata or {}
        rows += data.footer(path).num_rows
        for found, key in ((files, b"source_file"), (revisions, SOURCE_SHA256_KEY)):
            value = metadata.get(key, b"").decode()
            if value and value not in found:
                found.append(value)
    return LakeLineage(", ".join(files) or None, ", ".join(revisions) or None, rows)


def month_loads(
    schema: str, table: str, months: Mapping[date, LakeLineage], run_id: str
) -> LoadLog:
    """The ``<schema>.loads`` rows of loading ``months`` into ``<schema>.<table>``."""
    records = tuple(
        {
            "table_name": f"{schema}.{table}",
            "partition_month": month,
            "source_file": lineage.source_file,
            "source_sha256": lineage.source_sha256,
            "row_count": lineage.rows,
            "loaded_at": TRANSACTION_TIME,
            "run_id": run_id,
        }
        for month, lineage in sorted(months.items())
    )
    return LoadLog(schema, LOADS_TABLE, LOADS_COLUMNS, LOADS_KEY, records, describe_loads)


def describe_loads(
    previous: Sequence[Record], written: Sequence[Record]
) -> dict[str, dg.RawMetadataValue]:
    """The revision loaded, the one it replaced and the change in rows: flat for one
    month, a table for several."""
    before = {(r["table_name"], _month(r["partition_month"])): r for r in previous}
    if len(written) == 1:
        (record,) = written
        return _one_month(
            record, before.get((record["table_name"], _month(record["partition_month"])))
        )
    lines = ["| month | source_sha256 | previous | rows | change |", "|---|---|---|---:|---:|"]
    for record in sorted(written, key=lambda r: _month(r["partition_month"])):
        old = before.get((record["table_name"], _month(record["partition_month"])))
        change = f"{record['row_count'] - old['row_count']:+d}" if old else "new"
        lines.append(
            f"| {_month(record['partition_month']):%Y-%m} | {_short(record['source_sha256'])} "
            f"| {_short(old['source_sha256']) if old else 'none'} | {record['row_count']} "
            f"| {change} |"
        )
    return {"loads": dg.MetadataValue.md("\n".join(lines))}


def _one_month(record: Record, old: Record | None) -> dict[str, dg.RawMetadataValue]:
    metadata: dict[str, dg.RawMetadataValue] = {
        "source_sha256": record["source_sha256"] or "unknown",
        "source_file": record["source_file"] or "unknown",
        "previous_source_sha256": (old["source_sha256"] or "unknown") if old else "none",
        "revision_changed": old is None or old["source_sha256"] != record["source_sha256"],
        "loaded_at": _timestamp(record["loaded_at"]),
        "loads_table": record["table_name"].split(".")[0] + f".{LOADS_TABLE}",
    }
    if old is not None:
        metadata["previous_source_file"] = old["source_file"] or "unknown"
        metadata["previous_row_count"] = dg.MetadataValue.int(int(old["row_count"]))
        metadata["row_count_change"] = dg.MetadataValue.int(
            int(record["row_count"]) - int(old["row_count"])
        )
        metadata["previous_loaded_at"] = _timestamp(old["loaded_at"])
        metadata["previous_run_id"] = str(old["run_id"])
    return metadata


def _month(value: Any) -> date:
    # PostgreSQL and BigQuery hand back ``date``; a datetime would compare unequal.
    return value.date() if hasattr(value, "date") and callable(value.date) else value


def _short(sha256: str | None) -> str:
    return sha256[:12] if sha256 else "unknown"


def _timestamp(value: Any) -> str:
    """In UTC, as documented, whatever the database session's TimeZone (a server or role
    set to America/New_York showed -05:00 times beside BigQuery's UTC ones)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
