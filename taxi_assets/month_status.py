"""``months status``: where each month of each service stands in raw, lake and warehouse.

Every layer records where its month came from, so the layers can be compared without
Dagster's instance: the raw month's manifest names its current revision (the sha256 of the
published bytes, and the rows counted while downloading); the lake file's Parquet footer
names the revision it was parsed from (``source_sha256``) and holds its row count; the
warehouse's ``warehouse.loads`` row names the revision the month was loaded from and its
rows. A month is "in step" when all three name the same revision and the same rows.

:func:`judge` is the rule, a plain function; :func:`collect` reads the three layers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from upath import UPath

from taxi_assets.assets.load_records import LOADS_TABLE, lake_lineage
from taxi_assets.contracts import CONTRACTS
from taxi_assets.io_managers.lake_files import LakeFiles, is_damaged_parquet
from taxi_assets.io_managers.parquet_lake import (
    HIVE_FORMAT,
    arrow_filesystem,
    month_file,
    month_of_path,
)
from taxi_assets.partitions import first_month_of, first_partition_month
from taxi_assets.raw_zone import raw_slot, stored_months
from taxi_assets.services import SERVICES, Service
from taxi_assets.storage.revision_manifest import ManifestError
from taxi_assets.storage.revisions import inspect

IN_STEP = "in step"

# A month costs about ten reads (the raw manifest, its folder listings, the lake file's
# footer). On an object store each is a round trip, so the whole history (~700 months)
# read one month after another takes minutes; months are read this many at a time.
CONCURRENT_MONTH_READS = 16


@dataclass(frozen=True)
class Layer:
    """What one layer holds for a month: the raw revision it stems from, and its rows."""

    sha256: str | None
    rows: int | None


@dataclass(frozen=True)
class MonthStatus:
    service: str
    month: str
    raw: Layer | None  # the current revision; None: nothing stored
    pinned: bool
    lake: Layer | None
    warehouse: Layer | None
    problems: tuple[str, ...] = ()  # what the raw slot's manifest and files disagree on
    lake_problem: str | None = None  # why the lake file could not be read (lake: rows None)
    # The contract version the lake file was written by (its footer); None: not recorded.
    lake_contract: str | None = None

    @property
    def state(self) -> str:
        return judge(self)


def judge(status: MonthStatus) -> str:
    """The first thing that is out of step, going downstream, or :data:`IN_STEP`."""
    raw, lake, warehouse = status.raw, status.lake, status.warehouse
    if status.problems:
        return f"raw revisions need attention (raw list {status.service} {status.month})"
    if raw is None:
        return "no raw file" if lake is None and warehouse is None else "raw file missing"
    if lake is None:
        return "lake missing"
    if status.lake_problem is not None:
        return f"lake file unreadable: {status.lake_problem}"
    if lake.sha256 != raw.sha256:
        return "lake built from another revision than raw's current"
    if raw.rows is not None and lake.rows != raw.rows:
        return f"lake has {lake.rows:,} rows, the raw file {raw.rows:,}"
    current = CONTRACTS[status.service].version
    if status.lake_contract is not None and status.lake_contract != current:
        # The UI marks such lake months stale, but not what was built from them.
        return f"lake written by contract v{status.lake_contract}, the current is v{current}"
    if warehouse is None:
        return "warehouse missing"
    if warehouse.sha256 != lake.sha256:
        return "warehouse loaded from another revision than the lake's"
    if warehouse.rows != lake.rows:
        return f"warehouse has {warehouse.rows:,} rows, the lake {lake.rows:,}"
    return IN_STEP


def collect(
    lake_root: UPath,
    loads: Mapping[tuple[str, str], Layer],
    services: Iterable[str] | None = None,
    months: Iterable[str] | None = None,
    hive_format: str = HIVE_FORMAT,
    first_month: str | None = None,
) -> list[MonthStatus]:
    """Each service's (``services``, else all) months (``months``, except those before the
    service's first partition: its first published month, or ``first_month``
    (``TAXI_FIRST_MONTH`` by default) when later; else every month some layer holds) as stored under
    ``lake_root``, with ``loads``: ``{(dataset, YYYY-MM): Layer}`` of the warehouse.
    ``hive_format``: the lake IO manager's, which decides the months' lake folders. Without
    ``months``, the months between the first and last held by some layer are listed too."""
    wanted: list[tuple[Service, str]] = []
    configured_first = first_month or first_partition_month()
    # Every month's lake file names, from one listing per service, when all months are
    # wanted: then no month asks the store whether its file exists (a request each).
    listed: dict[str, dict[str, set[str]]] = {}
    for name in services if services is not None else SERVICES:
        service = SERVICES[name]
        if months is not None:
            # A month before the service existed (FHVHV 2019-01), or before TAXI_FIRST_MONTH,
            # has nothing to be in step with: it is no partition and can never be loaded.
            first = first_month_of(service.first_published_month, configured_first)
            chosen = sorted(m for m in set(months) if m >= first)
        else:
            listed[name] = lake_files(lake_root, service, hive_format)
            held = {*stored_months(lake_root, name), *listed[name]} | {
                month for dataset, month in loads if dataset == service.dataset
            }
            # Every month from the first held to the last: a month no layer holds between
            # them (a run that failed before storing its file) is a hole to list, not to
            # leave out of the check.
            from taxi_assets.devdata.layouts import month_range  # as cli.arguments does

            chosen = month_range(min(held), max(held)) if held else []
        wanted.extend((service, month) for month in chosen)

    def read(item: tuple[Service, str]) -> MonthStatus:
        service, month = item
        raw, pinned, problems = _raw(lake_root, service.name, month)
        known = listed[service.name].get(month, set()) if service.name in listed else None
        lake, lake_problem, lake_contract = _lake(lake_root, service, month, hive_format, known)
        return MonthStatus(
            service=service.name,
            month=month,
            raw=raw,
            pinned=pinned,
            lake=lake,
            warehouse=loads.get((service.dataset, month)),
            problems=problems,
            lake_problem=lake_problem,
            lake_contract=lake_contract,
        )

    # map keeps the order asked for and raises a month's exception here, as a serial loop would
    with ThreadPoolExecutor(CONCURRENT_MONTH_READS, thread_name_prefix="month-status") as pool:
        return list(pool.map(read, wanted))


def _raw(lake_root: UPath, service: str, month: str) -> tuple[Layer | None, bool, tuple[str, ...]]:
    try:
        state = inspect(raw_slot(lake_root, service, month))
    except ManifestError as error:  # this month's state, not the command's end
        return None, False, (str(error),)
    current = state.manifest.find(state.manifest.current)
    layer = Layer(current.sha256, current.rows) if current is not None else None
    problems = list(state.problems)
    if current is None and state.legacy:
        # An earlier version's layout: the file is there, not yet a revision.
        problems += [
            f"{path.name}: a raw file of the flat layout, made a revision when the month is "
            "next materialized"
            for path in state.legacy
        ]
    return layer, state.manifest.pinned is not None, tuple(problems)


def lake_files(
    lake_root: UPath, service: Service, hive_format: str = HIVE_FORMAT
) -> dict[str, set[str]]:
    """The lake files of the service's months, by month: each where the lake IO manager
    keeps it (its ``hive_format`` folder, e.g. ``year=YYYY/month=MM/``)."""
    folder = lake_root.joinpath(*service.key("lake").path)
    if not folder.exists():
        return {}
    prefix = folder.path.rstrip("/") + "/"
    found: dict[str, set[str]] = {}
    # One recursive listing: an object store answers it in one request per 1,000 files,
    # where a glob lists each year's folder in turn. fsspec lists in the form of the path
    # it was given; a file elsewhere (a copy in a nested folder) is no month's.
    for path in folder.fs.find(folder.path):
        if not path.startswith(prefix):
            continue
        relative = path[len(prefix) :]
        if month := month_of_path(relative, folder.name, hive_format):
            found.setdefault(month, set()).add(relative.rpartition("/")[2])
    return found


def _lake(
    lake_root: UPath,
    service: Service,
    month: str,
    hive_format: str = HIVE_FORMAT,
    known: set[str] | None = None,
) -> tuple[Layer | None, str | None, str | None]:
    """The lake month's layer and the contract version that wrote it, or (an unknown
    layer, why, None) when its file is not Parquet. ``known``: the month's lake file
    names, when listed already (else asked for)."""
    path = month_file(lake_root.joinpath(*service.key("lake").path), month, hive_format)
    if (path.name not in known) if known is not None else not path.exists():
        return None, None, None
    filesystem, native = arrow_filesystem(path)
    try:
        files = LakeFiles.at(filesystem, native)
        lineage = lake_lineage(files)
        recorded = (files.arrow_schema(native).metadata or {}).get(b"contract_version")
    except (pa.ArrowInvalid, OSError) as error:
        if not is_damaged_parquet(error):
            raise
        # A damaged file is this month's state, not the command's end.
        return Layer(None, None), f"{path}: {error}", None
    return Layer(lineage.source_sha256, lineage.rows), None, recorded.decode() if recorded else None


def loads_from_rows(rows: Iterable[tuple[Any, ...]]) -> dict[tuple[str, str], Layer]:
    """``warehouse.loads`` rows ``(table_name, YYYY-MM, source_sha256, row_count)`` by
    (dataset, month)."""
    return {
        (str(table).removeprefix("warehouse."), str(month)): Layer(sha256, int(count))
        for table, month, sha256, count in rows
        if str(table).startswith("warehouse.")  # the trip tables, not analytics'
    }


LOADS_QUERY = "SELECT table_name, {month}, source_sha256, row_count FROM {table}"


def postgres_loads(engine: Any) -> dict[tuple[str, str], Layer]:
    """The warehouse's load log in PostgreSQL (empty when nothing was loaded yet)."""
    import sqlalchemy as sa

    with engine.connect() as connection:
        if not sa.inspect(connection).has_table(LOADS_TABLE, schema="warehouse"):
            return {}
        query = LOADS_QUERY.format(
            month="to_char(partition_month, 'YYYY-MM')", table=f"warehouse.{LOADS_TABLE}"
        )
        return loads_from_rows(connection.exec_driver_sql(query).all())


# How long a status read retries a BigQuery that does not answer (google's own default,
# 600 s, is a run's: a person waiting at a prompt is told sooner).
STATUS_RETRY_S = 30.0


def bigquery_loads(client: Any) -> dict[tuple[str, str], Layer]:
    """The warehouse's load log in BigQuery (empty when nothing was loaded yet)."""
    from google.api_core.exceptions import NotFound
    from google.cloud.bigquery import DEFAULT_RETRY

    from taxi_assets.bq.query import run_query

    table_id = f"{client.project}.warehouse.{LOADS_TABLE}"
    try:
        client.get_table(table_id, retry=DEFAULT_RETRY.with_deadline(STATUS_RETRY_S))
    except NotFound:
        return {}
    month = "FORMAT_DATE('%Y-%m', partition_month)"
    rows = run_query(client, LOADS_QUERY.format(month=month, table=f"`{table_id}`"))
    return loads_from_rows(tuple(row.values()) for row in rows)


def as_record(status: MonthStatus) -> dict[str, Any]:
    """One month as plain values (``months status --json``)."""

    def layer(prefix: str, found: Layer | None) -> dict[str, Any]:
        return {
            f"{prefix}_sha256": found.sha256 if found else None,
            f"{prefix}_rows": found.rows if found else None,
        }

    return {
        "service": status.service,
        "month": status.month,
        **layer("raw", status.raw),
        "pinned": status.pinned,
        **layer("lake", status.lake),
        **layer("warehouse", status.warehouse),
        "state": status.state,
        "in_step": status.state == IN_STEP,
    }


def format_statuses(statuses: list[MonthStatus]) -> list[str]:
    """A table: one line per month, a blank line between services."""
    header = (
        f"{'service':<7} {'month':<7}  {'raw revision':<19} {'raw rows':>11} "
        f"{'lake rows':>11} {'warehouse rows':>14}  state"
    )
    lines = [header]
    previous = None
    for s in statuses:
        if previous is not None and s.service != previous:
            lines.append("")
        previous = s.service
        revision = "-" if s.raw is None else (s.raw.sha256 or "?")[:12]
        revision += " pinned" if s.pinned else ""
        lines.append(
            f"{s.service:<7} {s.month:<7}  {revision:<19} {_rows(s.raw):>11} "
            f"{_rows(s.lake):>11} {_rows(s.warehouse):>14}  {s.state}"
        )
    return lines


def _rows(layer: Layer | None) -> str:
    if layer is None:
        return "-"
    return "?" if layer.rows is None else f"{layer.rows:,}"
