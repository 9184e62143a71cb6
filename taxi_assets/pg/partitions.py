"""What PostgreSQL's catalog says about a range-partitioned table (its columns, indexes,
children and size), and the names of its children and staging tables.

Catalog reads take no lock on the tables they describe, so a load can look at a table
that a long query is reading without queueing behind it.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from taxi_assets.pg.ddl import MAX_IDENTIFIER, bounded_name, ident, qualified

# A staging table is named after the child it will become: "<child>__load_<random>".
STAGING_MARK = "__load_"
_STAGING_SUFFIX_BYTES = 8


def month_lock_key(schema: str, table: str, key: str) -> str:
    """The advisory lock a load holds on its months, from before its staging table exists
    to after its swap (``month_swap``)."""
    return f"{schema}.{table}/{key}"


def child_name(table: str, key: str) -> str:
    """The child table holding partition ``key`` (``yellow_tripdata`` + ``2021-01`` ->
    ``yellow_tripdata_2021_01``)."""
    return bounded_name(f"{table}_{re.sub(r'[^0-9A-Za-z]+', '_', key).strip('_').lower()}")


def staging_prefix(child: str) -> str:
    """What every staging table of ``child`` starts with; a random suffix of 8 characters
    completes it (long child names are shortened to a prefix and a digest, so that the
    prefix stays unique to the child)."""
    room = MAX_IDENTIFIER - len(STAGING_MARK) - _STAGING_SUFFIX_BYTES
    if len(child.encode()) > room:
        digest = hashlib.sha1(child.encode()).hexdigest()[:8]
        child = f"{child.encode()[: room - 9].decode(errors='ignore')}_{digest}"
    return f"{child}{STAGING_MARK}"


def staging_name(child: str) -> str:
    return staging_prefix(child) + uuid.uuid4().hex[:_STAGING_SUFFIX_BYTES]


@dataclass(frozen=True)
class Column:
    """A column as the catalog has it: ``alignment`` (pg_type.typalign: d, i, s or c) and
    ``width`` (pg_type.typlen: bytes, or negative for variable-width types like text)."""

    name: str
    sql_type: str
    not_null: bool
    alignment: str
    width: int

    def definition(self) -> str:
        return f"{ident(self.name)} {self.sql_type}{' NOT NULL' if self.not_null else ''}"


def table_columns(connection: sa.Connection, schema: str, table: str) -> list[Column]:
    """The table's live columns in order, with their exact types."""
    rows = connection.execute(
        sa.text(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "t.typalign, t.typlen FROM pg_attribute AS a JOIN pg_type AS t "
            "ON t.oid = a.atttypid WHERE a.attrelid = CAST(:table AS regclass) "
            "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
        ),
        {"table": qualified(schema, table)},
    ).all()
    return [
        Column(name, sql_type, bool(not_null), alignment, int(width))
        for name, sql_type, not_null, alignment, width in rows
    ]


_ALIGNMENT_BYTES = {"d": 8, "i": 4, "s": 2, "c": 1}


def storage_order(columns: Sequence[Column]) -> list[Column]:
    """``columns`` in the order a row stores them without alignment padding: fixed-width
    columns by alignment, widest first, then variable-width ones (text), each group in the
    order given. PostgreSQL pads each value to its type's alignment, so the contract's
    order (text between timestamps and doubles) wastes bytes in every row: measured with
    the tables' own columns, 14 bytes of a yellow 2021 row (205 -> 190) and 8 of an FHVHV
    2025 one (243 -> 234), space that COPY writes, and BRIN builds, ANALYZE and every scan
    read again. Partitions may order their columns differently from their parent, which
    keeps the order readers see (docs/performance.md)."""
    return sorted(
        columns,
        key=lambda c: (1, 0) if c.width < 0 else (0, -_ALIGNMENT_BYTES.get(c.alignment, 1)),
    )


@dataclass(frozen=True)
class IndexSpec:
    """A plain-column index: what a child needs so that ATTACH adopts it, not builds it."""

    name: str
    method: str
    columns: tuple[str, ...]
    unique: bool
    primary: bool


def table_indexes(connection: sa.Connection, schema: str, table: str) -> list[IndexSpec]:
    """The table's indexes on plain columns (expression or partial indexes are refused:
    nothing here creates them, and a child could not be given a matching one)."""
    rows = connection.execute(
        sa.text(
            "SELECT i.relname, am.amname, ix.indisunique, ix.indisprimary, "
            "  ix.indexprs IS NOT NULL OR ix.indpred IS NOT NULL, "
            "  ARRAY(SELECT a.attname FROM unnest(ix.indkey) WITH ORDINALITY AS k(attnum, n) "
            "        JOIN pg_attribute AS a ON a.attrelid = ix.indrelid AND a.attnum = k.attnum "
            "        ORDER BY k.n) "
            "FROM pg_index AS ix JOIN pg_class AS i ON i.oid = ix.indexrelid "
            "JOIN pg_am AS am ON am.oid = i.relam "
            "WHERE ix.indrelid = CAST(:table AS regclass) ORDER BY i.relname"
        ),
        {"table": qualified(schema, table)},
    ).all()
    specs = []
    for name, method, unique, primary, unusual, columns in rows:
        if unusual:
            raise ValueError(
                f"{schema}.{table} has an expression or partial index {name}: a month "
                "replace cannot give a new child a matching one; drop or replace it"
            )
        specs.append(IndexSpec(name, method, tuple(columns), bool(unique), bool(primary)))
    return specs


def is_partition_of(connection: sa.Connection, schema: str, child: str, parent: str) -> bool:
    return bool(
        connection.execute(
            sa.text(
                "SELECT EXISTS (SELECT 1 FROM pg_inherits AS i JOIN pg_class AS c "
                "ON c.oid = i.inhrelid JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :schema AND c.relname = :child "
                "AND i.inhparent = CAST(:parent AS regclass))"
            ),
            {"schema": schema, "child": child, "parent": qualified(schema, parent)},
        ).scalar()
    )


def partitions(connection: sa.Connection, schema: str, table: str) -> list[str]:
    """Names of the table's direct children, sorted."""
    return list(
        connection.execute(
            sa.text(
                "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST(:table AS regclass) ORDER BY 1"
            ),
            {"table": qualified(schema, table)},
        ).scalars()
    )


def staging_tables(connection: sa.Connection, schema: str, child: str) -> list[str]:
    """Staging tables of ``child`` that exist (committed, not attached anywhere); also one
    an earlier ``warehouse migrate`` made partitioned, taking it for an old month table."""
    prefix = staging_prefix(child)
    return list(
        connection.execute(
            sa.text(
                "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n "
                "ON n.oid = c.relnamespace WHERE n.nspname = :schema "
                "AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
                "AND left(c.relname, :length) = :prefix ORDER BY 1"
            ),
            {"schema": schema, "prefix": prefix, "length": len(prefix)},
        ).scalars()
    )


# A staging table's name when nothing was shortened: "<table>_<YYYY>_<MM>__load_<hex>".
_STAGING_OF_MONTH = re.compile(
    rf"^(?P<table>.+)_(?P<year>\d{{4}})_(?P<month>\d{{2}}){re.escape(STAGING_MARK)}[0-9a-f]+$"
)


def killed_load_tables(
    connection: sa.Connection, schemas: Sequence[str]
) -> list[tuple[str, str, int]]:
    """(schema, name, bytes) of every staging table in ``schemas`` whose month no load
    holds: what a load killed between its COPY's commit and its swap left (the month's
    next load drops it). A load under way holds its month's advisory lock from before its
    staging table exists to after the swap: its table is left out."""
    rows = connection.execute(
        sa.text(
            # By OID, not name: a role without USAGE on the schema may not resolve names.
            "SELECT n.nspname, c.relname, coalesce((SELECT sum(pg_total_relation_size(relid)) "
            "FROM pg_partition_tree(c.oid)), pg_total_relation_size(c.oid)) "
            "FROM pg_class AS c JOIN pg_namespace AS n "
            "ON n.oid = c.relnamespace WHERE n.nspname = ANY(:schemas) "
            "AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "AND strpos(c.relname, :mark) > 0 ORDER BY 1, 2"
        ),
        {"schemas": list(schemas), "mark": STAGING_MARK},
    ).all()
    return [
        (schema, name, int(size or 0))
        for schema, name, size in rows
        if not _month_held(connection, schema, name)
    ]


def _month_held(connection: sa.Connection, schema: str, staging: str) -> bool:
    """Whether a session holds the month lock of ``staging``'s month (``month_swap``'s
    ``month_lock_key``); a name shortened past reading counts as held (not called killed)."""
    match = _STAGING_OF_MONTH.match(staging)
    if match is None:
        return True
    key = month_lock_key(schema, match["table"], f"{match['year']}-{match['month']}")
    return bool(
        connection.execute(
            sa.text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) "
                "= hashtextextended(:key, 0))"
            ),
            {"key": key},
        ).scalar()
    )


def tree_bytes(connection: sa.Connection, schema: str, table: str) -> int:
    """Disk used by a table with its indexes and TOAST; for a partitioned table, by every
    partition (``pg_total_relation_size`` of a partitioned parent alone is 0). A plain
    table (the zones) has no partition tree: its own size (the sum over its tree was 0)."""
    size = connection.execute(
        sa.text(
            "SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) "
            "FROM pg_partition_tree(t.oid)), pg_total_relation_size(t.oid)) "
            "FROM (SELECT to_regclass(:table) AS oid) AS t"
        ),
        {"table": qualified(schema, table)},
    ).scalar()
    return int(size or 0)
