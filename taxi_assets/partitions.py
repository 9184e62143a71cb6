"""Monthly partitions (keys ``YYYY-MM``), one definition per service, and month arithmetic.

Each service's partitions start at its first published month, bounded below by the
configured first month (``TAXI_FIRST_MONTH``): months before a service existed are not
partitions of it at all, so the UI never shows them as missing.
"""

from __future__ import annotations

import os
import re
from datetime import date

import dagster as dg

from taxi_assets.services import SERVICES

PARTITION_FORMAT = "%Y-%m"
DEFAULT_FIRST_MONTH = "2019-01"
_MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def parse_month(key: str) -> date:
    """The first day of month ``key`` (``YYYY-MM``); a clear error for anything else.

    Partition keys reach asset code from the CLI and the API: nothing builds a path
    or SQL from one before it has passed through here.
    """
    match = _MONTH_RE.match(key)
    if match is None:
        raise ValueError(f"partition key {key!r} is not a month in YYYY-MM form")
    return date(int(match.group(1)), int(match.group(2)), 1)


def monthly_partitions(first_month: str = DEFAULT_FIRST_MONTH) -> dg.MonthlyPartitionsDefinition:
    """Months from ``first_month`` to the last complete month (``end_offset=0``)."""
    start = parse_month(first_month)
    return dg.MonthlyPartitionsDefinition(
        start_date=start.strftime(PARTITION_FORMAT), fmt=PARTITION_FORMAT, end_offset=0
    )


def first_partition_month() -> str:
    """``TAXI_FIRST_MONTH`` (``YYYY-MM``, default 2019-01), read once at load time: no
    service's partitions start before it (each starts at its own first month otherwise)."""
    month = os.environ.get("TAXI_FIRST_MONTH", "").strip() or DEFAULT_FIRST_MONTH
    try:
        parse_month(month)
    except ValueError:
        raise ValueError(f"TAXI_FIRST_MONTH={month!r} is not a month in YYYY-MM form") from None
    today = date.today()
    last_complete = add_months(f"{today.year:04d}-{today.month:02d}", -1)
    if month > last_complete:
        # No service would have a partition: the sensor would say "not a partition yet"
        # for ever, and a backfill fail inside Dagster.
        raise ValueError(
            f"TAXI_FIRST_MONTH={month} is after the last complete month ({last_complete}): "
            "no month would be a partition"
        )
    return month


def first_month_of(service_first_month: str, configured_first_month: str) -> str:
    """The first partition of a service: its first published month, or the configured first
    month when that is later. Both are ``YYYY-MM`` keys, which sort as months do."""
    parse_month(service_first_month)
    parse_month(configured_first_month)
    return max(service_first_month, configured_first_month)


def add_months(month: str, count: int) -> str:
    first = parse_month(month)
    index = first.year * 12 + first.month - 1 + count
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def lagged_month(today: date, lag: int) -> str:
    """The newest month TLC has surely published by ``today``, when it publishes a month
    during the ``lag``-th month after it (January in March): the month before.

    TLC publishes month M around the 20th of M+2, not on its 1st (2023-2024, the files'
    modification times: between the 17th and the 26th, and twice on the 1st or 2nd of M+3),
    so on 5 March the month surely out is December, not January."""
    return add_months(f"{today.year:04d}-{today.month:02d}", -(lag + 1))


def service_partitions(first_month: str) -> dict[str, dg.MonthlyPartitionsDefinition]:
    """Each service's monthly partitions: from its first published month (or ``first_month``
    when that is later) to the last complete month."""
    return {
        name: monthly_partitions(first_month_of(service.first_published_month, first_month))
        for name, service in SERVICES.items()
    }


def earliest_partitions(first_month: str) -> dg.MonthlyPartitionsDefinition:
    """From the earliest service's first partition: for what spans every service (analytics)."""
    earliest = min(service.first_published_month for service in SERVICES.values())
    return monthly_partitions(first_month_of(earliest, first_month))
