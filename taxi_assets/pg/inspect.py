"""What a warehouse table holds, month by month (the demo, tests and benchmarks read it)."""

from __future__ import annotations

import sqlalchemy as sa

from taxi_assets.pg.ddl import ident, qualified
from taxi_assets.pg.interrupts import dropped_if_interrupted


def month_counts(
    engine: sa.Engine, schema: str, table: str, month_column: str = "partition_month"
) -> dict[str, int]:
    """Rows of ``schema.table`` per ``YYYY-MM`` of ``month_column``, in month order; none
    when the table does not exist (a service never loaded)."""
    column = ident(month_column)
    # Ctrl-C in a script or notebook: out at once, not after psycopg's 10 s of waiting.
    with engine.connect() as connection, dropped_if_interrupted(connection):
        exists = connection.execute(
            sa.text("SELECT to_regclass(:name) IS NOT NULL"),
            {"name": qualified(schema, table)},
        ).scalar()
        if not exists:
            return {}
        rows = connection.exec_driver_sql(
            f"SELECT to_char({column}, 'YYYY-MM'), count(*) FROM {qualified(schema, table)} "
            "GROUP BY 1 ORDER BY 1"
        ).all()
    return {month: int(count) for month, count in rows}
