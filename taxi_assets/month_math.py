"""Month arithmetic on ``YYYY-MM`` keys."""

from datetime import date

from taxi_assets.partitions import parse_month


def add_months(month: str, count: int) -> str:
    first = parse_month(month)
    index = first.year * 12 + first.month - 1 + count
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def lagged_month(today: date, lag: int) -> str:
    """The month that should have been published by ``today`` with a ``lag``-month delay."""
    return add_months(f"{today.year:04d}-{today.month:02d}", -lag)
