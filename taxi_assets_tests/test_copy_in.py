"""Binary COPY of dictionary-encoded text: the same bytes as the decoded text, and the
same rows in PostgreSQL."""

from __future__ import annotations

import pyarrow as pa
import pytest

from taxi_assets.contracts import STRING_DICTIONARY
from taxi_assets.pg import copy_in
from taxi_assets.pg.ddl import driver_cursor, ensure_table
from taxi_assets_tests.pipeline import engine_for

ROWS = 40_000  # more than one COPY chunk


def text_batch(with_nulls: bool) -> pa.RecordBatch:
    """Flags of one width, base numbers of two widths, an empty string, a double."""
    flags = pa.array((["N", "Y", " "] * ROWS)[:ROWS])
    bases = pa.array((["B02764", "B0251", "", "B02875"] * ROWS)[:ROWS])
    if with_nulls:
        flags = pa.array([None if i % 7 == 0 else v for i, v in enumerate(flags.to_pylist())])
        bases = pa.array([None if i % 5 == 0 else v for i, v in enumerate(bases.to_pylist())])
    miles = pa.array([float(i) for i in range(ROWS)])
    return pa.record_batch([flags, bases, miles], names=["flag", "base", "miles"])


def encoded(batch: pa.RecordBatch) -> pa.RecordBatch:
    return pa.record_batch(
        [
            batch.column(0).dictionary_encode().cast(STRING_DICTIONARY),
            batch.column(1).dictionary_encode().cast(STRING_DICTIONARY),
            batch.column(2),
        ],
        names=batch.schema.names,
    )


def stream_bytes(batch: pa.RecordBatch) -> bytes:
    reader = pa.RecordBatchReader.from_batches(batch.schema, [batch])
    chunks = copy_in._rechunk(reader, copy_in.COPY_CHUNK_ROWS)
    return b"".join(bytes(data) for chunk in chunks for data in copy_in._encode_binary(chunk))


@pytest.mark.parametrize("with_nulls", [False, True])
def test_dictionary_text_encodes_to_the_bytes_of_the_text(with_nulls: bool) -> None:
    plain = text_batch(with_nulls)
    assert stream_bytes(encoded(plain)) == stream_bytes(plain)


def test_dictionary_text_loads_the_same_rows(pg_url: str) -> None:
    plain = text_batch(with_nulls=True)
    schema = plain.schema
    engine = engine_for(pg_url)
    try:
        ensure_table(engine, "public", "plain", schema)
        ensure_table(engine, "public", "encoded", encoded(plain).schema)
        with engine.begin() as connection:
            for table, batch in (("plain", plain), ("encoded", encoded(plain))):
                reader = pa.RecordBatchReader.from_batches(batch.schema, [batch])
                loaded = copy_in.copy_arrow(
                    driver_cursor(connection), f'"public"."{table}"', reader
                )
                assert loaded == ROWS
        with engine.connect() as connection:
            types = connection.exec_driver_sql(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'public.encoded'::regclass AND attnum > 0"
            ).all()
            assert dict(types) == {"flag": "text", "base": "text", "miles": "double precision"}
            different = connection.exec_driver_sql(
                "SELECT count(*) FROM ((TABLE plain EXCEPT ALL TABLE encoded) "
                "UNION ALL (TABLE encoded EXCEPT ALL TABLE plain)) AS d"
            ).scalar_one()
            nulls = connection.exec_driver_sql(
                "SELECT count(*) FILTER (WHERE flag IS NULL), count(*) FILTER (WHERE base = '') "
                "FROM encoded"
            ).one()
    finally:
        engine.dispose()
    assert different == 0
    assert tuple(nulls) == (plain.column(0).null_count, ROWS // 4 - ROWS // 20)


# PostgreSQL's first timestamp (4714-11-24 00:00:00 BC) in microseconds since 1970.
PG_FIRST_TIMESTAMP_US = -210_866_803_200_000_000


@pytest.mark.parametrize(
    ("unit", "count"),
    [
        ("us", -(2**63) + 1),  # year -290308: wrapped around to 294247
        ("us", PG_FIRST_TIMESTAMP_US - 1),  # a microsecond before PostgreSQL's range
        ("ms", -(2**62)),  # times 1,000 overflows int64: wrapped around to 1970
        ("s", 10**16),  # times 1,000,000 overflows int64: wrapped around to year 61060
    ],
)
def test_a_timestamp_postgresql_cannot_hold_fails_naming_column_and_row(
    pg_url: str, unit: str, count: int
) -> None:
    """Binary COPY sends microseconds since 2000 as int64: a value outside PostgreSQL's
    range must fail the load, not wrap around into another, valid time."""
    times = pa.array([0, 0, count], pa.int64()).cast(pa.timestamp(unit))
    batch = pa.record_batch([times], names=["t"])
    engine = engine_for(pg_url)
    try:
        ensure_table(engine, "public", "times", batch.schema)
        with pytest.raises(ValueError, match=r"column t, row 3 of the stream") as caught:
            with engine.begin() as connection:
                copy_in.copy_arrow(
                    driver_cursor(connection),
                    '"public"."times"',
                    pa.RecordBatchReader.from_batches(batch.schema, [batch]),
                )
        assert f"{count} {unit} from 1970-01-01 is outside the range" in str(caught.value)
    finally:
        engine.dispose()


def test_the_first_timestamp_postgresql_holds_loads(pg_url: str) -> None:
    times = pa.array([PG_FIRST_TIMESTAMP_US, 2**63 - 1], pa.int64()).cast(pa.timestamp("us"))
    batch = pa.record_batch([times], names=["t"])
    engine = engine_for(pg_url)
    try:
        ensure_table(engine, "public", "times", batch.schema)
        with engine.begin() as connection:
            copy_in.copy_arrow(
                driver_cursor(connection),
                '"public"."times"',
                pa.RecordBatchReader.from_batches(batch.schema, [batch]),
            )
        with engine.connect() as connection:
            loaded = connection.exec_driver_sql("SELECT t::text FROM times").scalars()
            assert set(loaded) == {"4714-11-24 00:00:00 BC", "294247-01-10 04:00:54.775807"}
    finally:
        engine.dispose()
