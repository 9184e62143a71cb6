"""A load log: rows describing a load, committed with the load itself.

An asset that wants a record of its loads (which source, how many rows, when, which run)
gives its table load a :class:`LoadLog`: the table the records go to, its columns, the
columns that identify a record, and the records of this load. The warehouse IO managers
write them in the same transaction that makes the load's rows visible (PostgreSQL: the
month swap's; BigQuery: the month replace's, see ``docs/fault_tolerance.md``), replacing
the records with the same key: one record per key, the latest load's, and a failed load
leaves the previous record. The IO managers know nothing about what the records mean:
``describe`` (the asset's) turns the previous and the new records into metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


class _TransactionTime:
    """A value the database fills in: its clock in the load's transaction."""

    def __repr__(self) -> str:
        return "TRANSACTION_TIME"


TRANSACTION_TIME = _TransactionTime()

Record = Mapping[str, Any]
# (records replaced, records written) -> metadata (values as ``dg.RawMetadataValue``)
Describe = Callable[[Sequence[Record], Sequence[Record]], Mapping[str, Any]]


def _nothing_to_say(_previous: Sequence[Record], _written: Sequence[Record]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class LoadLog:
    """Records of one load for table ``schema.table``.

    ``columns``: the log table's columns (it is created from them when missing);
    ``key``: the columns identifying a record (replaced on the next load of the same key);
    ``records``: a value for every column, :data:`TRANSACTION_TIME` where the database's
    clock goes; ``describe(previous, written)``: metadata from the records the load
    replaced and those it wrote (as stored: with the transaction's time).
    """

    schema: str
    table: str
    columns: pa.Schema
    key: tuple[str, ...]
    records: tuple[Record, ...]
    describe: Describe = field(default=_nothing_to_say)

    def __post_init__(self) -> None:
        names = set(self.columns.names)
        if not self.key or not set(self.key) <= names:
            raise ValueError(f"{self.qualified}: key {self.key} is not among {self.columns.names}")
        for record in self.records:
            if set(record) != names:
                raise ValueError(
                    f"{self.qualified}: a record has columns {sorted(record)}, "
                    f"expected {sorted(names)}"
                )
            missing = [k for k in self.key if record[k] is None]
            if missing:
                raise ValueError(f"{self.qualified}: a record has no value for key {missing}")

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    def key_of(self, record: Record) -> tuple[Any, ...]:
        return tuple(record[k] for k in self.key)
