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
