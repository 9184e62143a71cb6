"""Values written into BigQuery SQL as literals (``bq.names.sql_literal``): hostile text,
non-ASCII text, NaN and infinity.

Two checks for each value: the literal read back by the emulator, and the literal's text
decoded by GoogleSQL's documented lexical rules (``googlesql_lexical``). The
second is needed because the emulator (sqlglot over DuckDB) is more lenient than
BigQuery: it takes a raw newline inside a quoted literal and unknown or malformed escapes
(``\\q``, ``\\x4``, ``\\ud800``, ``\\U00110000``: the backslash dropped), all of which
BigQuery refuses.
"""

import math
import re

import numpy as np
import pyarrow as pa
import pytest

from taxi_assets.bq.names import (
    BigQueryNameError,
    TableName,
    column_sql,
    sql_literal,
    string_literal,
)
from taxi_assets.bq.replace import _nullable, script
from taxi_assets.bq.tables import TableLayout, add_column_sql, add_missing_columns, ensure_table
from taxi_assets.bq.types import schema_field
from taxi_assets_tests.bq_emulator import EmulatedProject
from taxi_assets_tests.googlesql_lexical import decode_string_literal

HOSTILE = [
    "plain",
    "",
    "O'Brien",
    "it''s",
    "back\\slash",
    "ends with a backslash\\",
    "\\'",
    "'; DROP TABLE x; --",
    "a;\nCOMMIT TRANSACTION;",
    "new\nline",
    "carriage\r\nreturn",
    "tab\tand vertical\x0btab",
    'double "quotes" and `backticks`',
    "''' triple '''",
    '""" triple """',
    "x -- comment",
    "x /* comment",
    "x # comment",
    "@parameter ?",
    "\\x41 \\u0041 \\n (escapes as text)",
    "\x00 NUL, \x07 bell, \x7f DEL",
    "Crème brûlée, Zürich, Straße, ñandú",
    "Bronx – Hunts Point “quoted”",
    "\u0085 NEL \u2028 LS \u2029 PS",
    "€ ₩ 中央公园 Центральный парк",
    "taxi 🚕 and a flag 🇺🇸",
    "\U0010ffff (the last code point)",
]


def test_the_rules_checker_refuses_what_bigquery_refuses() -> None:
    """The checker is strict where the emulator is not (else the next test proves little)."""
    for bad in ("'a\nb'", "'a\\qb'", "'\\x4'", "'\\ud800'", "'\\U00110000'", "'it's'", "'a\\'"):
        with pytest.raises(ValueError):
            decode_string_literal(bad)
    assert decode_string_literal("'\\x41\\101\\u00e9\\U0001F695\\''") == "AAé🚕'"


@pytest.mark.parametrize("value", HOSTILE)
def test_text_literals_follow_googlesql_lexical_rules(value: str) -> None:
    literal = string_literal(value)
    assert literal.isascii(), literal  # no encoding question between here and BigQuery
    assert decode_string_literal(literal) == value
    assert sql_literal(value) == literal


def test_text_bigquery_cannot_store_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="lone surrogate at position 4"):
        string_literal("bad \udcff.csv")  # a file name decoded with surrogateescape


def test_numbers_are_literals_bigquery_parses() -> None:
    assert sql_literal(1.5) == "1.5" and sql_literal(1e16) == "1e+16"
    assert sql_literal(np.float64(2.25)) == "2.25"  # not "np.float64(2.25)"
    assert sql_literal(float("inf")) == "CAST('+inf' AS FLOAT64)"
    assert sql_literal(float("-inf")) == "CAST('-inf' AS FLOAT64)"
    assert sql_literal(float("nan")) == "CAST('nan' AS FLOAT64)"
    assert sql_literal(True) == "TRUE" and sql_literal(-(2**63)) == str(-(2**63))
    with pytest.raises(ValueError, match="INT64"):
        sql_literal(2**63)


def test_a_column_name_is_refused_as_a_column() -> None:
    with pytest.raises(BigQueryNameError, match="not a column name"):
        column_sql("zone name")


def test_literals_reach_bigquery_intact_alone_and_inside_a_script(
    bq_project: EmulatedProject,
) -> None:
    """Each value read back as written: from a SELECT, and stored by an INSERT inside the
    multi-statement transaction that the month replace and the load log use."""
    numbers = [1.5, 1e16, -0.0, float("inf"), float("-inf"), float("nan")]
    table = TableName(bq_project.project, "literals", "t")
    with bq_project.client() as client:
        client.create_dataset(f"{table.project}.{table.dataset}")
        client.query(f"CREATE TABLE {table.sql()} (i INT64, s STRING, f FLOAT64)").result()
        inserts = [
            f"INSERT INTO {table.sql()} (i, s) VALUES ({i}, {sql_literal(v)})"
            for i, v in enumerate(HOSTILE)
        ] + [
            f"INSERT INTO {table.sql()} (i, f) VALUES ({1000 + i}, {sql_literal(v)})"
            for i, v in enumerate(numbers)
        ]
        client.query(script(inserts)).result()
        for value in HOSTILE:
            selected = list(client.query(f"SELECT {sql_literal(value)} AS v").result())
            assert selected[0]["v"] == value
    stored = {row["i"]: row for row in bq_project.rows(f"SELECT * FROM {table.sql()}")}
    assert [stored[i]["s"] for i in range(len(HOSTILE))] == HOSTILE
    floats = [stored[1000 + i]["f"] for i in range(len(numbers))]
    assert floats[:5] == numbers[:5] and math.copysign(1, floats[2]) == -1
    assert math.isnan(floats[5])


def test_a_column_description_reaches_the_api_as_a_description_not_as_sql() -> None:
    """google-cloud-bigquery's fourth positional SchemaField parameter is the column's
    default value expression, which BigQuery parses as SQL: a description passed there
    (any contract's, with its quotes and colons) was sent as one and never shown."""
    text = HOSTILE[-3]  # Cyrillic, CJK and symbols
    described = schema_field(pa.field("zone", pa.string(), False, {"description": text}))
    for field in (described, _nullable(described)):
        resource = field.to_api_repr()
        assert resource["description"] == text
        assert "defaultValueExpression" not in resource


def test_a_column_added_later_gets_its_description_in_the_alter_statement(
    bq_project: EmulatedProject,
) -> None:
    """BigQuery applies ALTER TABLE ... ADD COLUMN to the table's metadata, so the
    statement carries the description; the emulator takes the OPTIONS but applies the
    statement to its storage only, and the column reaches its metadata through the API
    (described too). The statement's literal is checked by GoogleSQL's rules."""
    text = 'Zürich\'s "zone" \\ 🚕\nsecond line'
    name = TableName(bq_project.project, "added", "t")
    field = schema_field(field_of(text))
    statement = add_column_sql(name, field)
    found = re.fullmatch(
        r"ALTER TABLE `[^`]+` ADD COLUMN IF NOT EXISTS `zone_name` STRING "
        r"OPTIONS\(description=('(?:[^'\\]|\\.)*')\)",
        statement,
    )
    assert found is not None, statement
    assert decode_string_literal(found.group(1)) == text
    with bq_project.client() as client:
        before = pa.schema([pa.field("zone", pa.int64())])
        table = ensure_table(client, name, before, TableLayout())
        table = add_missing_columns(client, table, name, before.append(field_of(text)))
    assert {f.name: f.description for f in table.schema} == {"zone": None, "zone_name": text}


def field_of(description: str) -> pa.Field:
    return pa.field("zone_name", pa.string(), True, {"description": description})
