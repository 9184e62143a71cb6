"""``make demo``: the whole chain offline, from generated files to the warehouse.

Generates two months of every service (yellow, green, FHV, FHVHV) plus the zones, serves
them on 127.0.0.1, materializes raw -> lake -> warehouse into the embedded PostgreSQL with
the instance in ``$DAGSTER_HOME`` (so the runs show in ``make dev``), and prints a summary.
The source is ``auto``, as by default: the course's CSV.gz months for the taxis and FHV,
TLC's Parquet for FHVHV (the course's FHVHV files have no fares). Running it again gives
the same counts: every write replaces its partition. ``--summary-only`` prints the summary
of what the warehouse holds, running nothing.

Ctrl-C ends it at once, in one line (``interrupted``), as it does a CLI command: also
while the summary waits for a warehouse server that answers nothing (psycopg's own handler
of Ctrl-C would wait 10 s for it first, ``taxi_assets.pg.ctrl_c``).
"""

import argparse
import os
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from taxi_assets.assets.analytics import STATS_KEY
from taxi_assets.assets.analytics.stats_columns import ANALYTICS_SCHEMA, STATS_TABLE
from taxi_assets.cli.arguments import month_list, positive_int
from taxi_assets.cli.interrupted import report_ctrl_c_in_one_line
from taxi_assets.definitions import defs
from taxi_assets.devdata import MirrorServer, generate_mirror
from taxi_assets.devdata.mirror import AS_EACH_HOST
from taxi_assets.jobs import service_job_name
from taxi_assets.pg import embedded
from taxi_assets.pg.ctrl_c import ctrl_c_let_through_psycopg
from taxi_assets.pg.inspect import month_counts
from taxi_assets.pg.interrupts import dropped_if_interrupted
from taxi_assets.resources import PostgresResource
from taxi_assets.services import LAYERS, SERVICES, trip_keys, zone_key
from taxi_assets.storage.roots import lake_root

DEMO_MONTHS = ("2021-01", "2021-02")
QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
ZONE_KEYS = [zone_key(layer) for layer in LAYERS]


def run_demo(data_dir: Path, months: tuple[str, ...], rows: int) -> dict[str, dict[str, int]]:
    mirror_root = data_dir / "mirror"
    generate_mirror(mirror_root, months=list(months), rows=rows)
    os.environ.setdefault("DAGSTER_HOME", str((data_dir / "dagster_home").resolve()))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.get()
    with MirrorServer(mirror_root, missing_status=AS_EACH_HOST) as mirror:
        print(f"Serving generated TLC files from {mirror_root} at {mirror.url}")
        os.environ.update(
            {
                "TAXI_SOURCE": "auto",
                "TAXI_DTC_URL": mirror.url,
                "TAXI_TLC_URL": mirror.url,
                "TAXI_ZONES_URL": f"{mirror.url}/misc/taxi_zone_lookup.csv",
            }
        )
        everything = defs.resolve_implicit_global_asset_job_def()
        zones = everything.get_subset(asset_selection=set(ZONE_KEYS))
        if not zones.execute_in_process(instance=instance, run_config=QUIET).success:
            raise SystemExit("zones failed; see the log above")
        analytics = everything.get_subset(asset_selection={STATS_KEY})
        for month in months:
            for service in SERVICES:
                # One job per service: each service has its own partitions.
                job = defs.resolve_job_def(service_job_name(service))
                if not _has_month(job.partitions_def, month):
                    print(f"Skipping {service} {month}: not one of its months ({_span(job)})")
                    continue
                print(f"Materializing raw -> lake -> warehouse for {service} {month} ...")
                if not job.execute_in_process(
                    partition_key=month, instance=instance, run_config=QUIET
                ).success:
                    raise SystemExit(f"{service} {month} failed; see the log above")
            if not _has_month(analytics.partitions_def, month):
                print(f"Skipping the analytics of {month}: not one of their months")
                continue
            print(f"Computing analytics/monthly_zone_stats for {month} in PostgreSQL ...")
            if not analytics.execute_in_process(
                partition_key=month, instance=instance, run_config=QUIET
            ).success:
                raise SystemExit(f"analytics for {month} failed; see the log above")
    return warehouse_counts()


def _has_month(partitions: dg.PartitionsDefinition | None, month: str) -> bool:
    return partitions is not None and partitions.has_partition_key(month)


def _span(job: dg.JobDefinition) -> str:
    """A service's months, as "2019-02 on" (its first partition)."""
    keys = job.partitions_def.get_partition_keys() if job.partitions_def else []
    return f"{keys[0]} on" if keys else "none"


def warehouse_counts() -> dict[str, dict[str, int]]:
    engine = PostgresResource().engine()
    counts = {s.dataset: month_counts(engine, "warehouse", s.dataset) for s in SERVICES.values()}
    # Ctrl-C in a script or notebook: out at once, not after psycopg's 10 s of waiting.
    with engine.connect() as connection, dropped_if_interrupted(connection):
        if _exists(connection, "warehouse.taxi_zones"):
            zones = connection.exec_driver_sql("SELECT count(*) FROM warehouse.taxi_zones")
            counts["taxi_zones"] = {"-": int(zones.scalar() or 0)}
        else:
            counts["taxi_zones"] = {}  # not loaded (a trip month materialized by itself)
    return counts


def _exists(connection: sa.Connection, table: str) -> bool:
    found = connection.execute(sa.text("SELECT to_regclass(:name) IS NOT NULL"), {"name": table})
    return bool(found.scalar())


def analytics_totals() -> list[tuple[str, str, int, float | None]]:
    """(month, service, trips, revenue) of ``analytics.monthly_zone_stats``, summed over
    boroughs: each service's trips should equal its warehouse rows for the month."""
    with (
        PostgresResource().engine().connect() as connection,
        dropped_if_interrupted(connection),
    ):
        if not _exists(connection, f"{ANALYTICS_SCHEMA}.{STATS_TABLE}"):
            return []
        rows = connection.exec_driver_sql(
            f"SELECT to_char(partition_month, 'YYYY-MM'), service, sum(trips), sum(revenue) "
            f"FROM {ANALYTICS_SCHEMA}.{STATS_TABLE} GROUP BY 1, 2 ORDER BY 1, 2"
        ).all()
    return [
        (month, service, int(trips), None if revenue is None else float(revenue))
        for month, service, trips, revenue in rows
    ]


def print_summary(
    counts: dict[str, dict[str, int]],
    analytics: list[tuple[str, str, int, float | None]],
    lake: str,
) -> None:
    print("\nRows in the warehouse (PostgreSQL, schema `warehouse`):")
    print(f"  {'table':<20} {'month':<8} {'rows':>10}")
    for table, by_month in counts.items():
        for month, rows in by_month.items():
            print(f"  {table:<20} {month:<8} {rows:>10,}")
    print(f"\n{ANALYTICS_SCHEMA}.{STATS_TABLE} (per borough; summed here):")
    print(f"  {'month':<8} {'service':<8} {'trips':>10} {'revenue USD':>14}")
    for month, service, trips, revenue in analytics:
        paid = "(no fares)" if revenue is None else f"{revenue:,.2f}"
        print(f"  {month:<8} {service:<8} {trips:>10,} {paid:>14}")
    print(f"\nThe lake (raw files and Parquet) is in {lake}")
    print("Open the UI with `make dev`, then http://127.0.0.1:3000 (asset graph, runs, metadata).")
    print(f"Assets per month: {', '.join(k.to_user_string() for k in trip_keys())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data-dir",
        default="data",
        type=Path,
        help="the generated files and DAGSTER_HOME (the lake and the warehouse follow "
        "TAXI_LAKE_URL and TAXI_WAREHOUSE_URL: by default ./data/lake and ./data/warehouse)",
    )
    parser.add_argument("--rows", default=5000, type=positive_int, help="rows per generated month")
    parser.add_argument(
        "--months",
        default=list(DEMO_MONTHS),
        type=month_list,
        help="months to generate and load: 2021-01,2021-03 or 2021-01..2021-06 "
        f"(default {','.join(DEMO_MONTHS)}); a month before a service's first is skipped",
    )
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="print the summary of what the warehouse holds, generating and running nothing",
    )
    args = parser.parse_args()
    # Ctrl-C while a read waits for a warehouse server that answers nothing: out at once,
    # as in the CLI (cli.main), whichever read it is.
    with ctrl_c_let_through_psycopg():
        if args.summary_only:
            print_summary_only()
            return
        counts = run_demo(args.data_dir, tuple(args.months), args.rows)
        # Where the runs wrote, whatever --data-dir says.
        print_summary(counts, analytics_totals(), str(lake_root()))


def print_summary_only() -> None:
    """The summary of what the warehouse holds, the embedded one left as it was found (as
    ``months status`` leaves it): none is created, and one that was stopped is stopped
    again (it created a server where none was, and started a stopped one for good)."""
    folder = PostgresResource().embedded_dir
    embedded_only = not os.environ.get("TAXI_WAREHOUSE_URL")
    if embedded_only and not embedded.exists(folder):
        print(
            f"nothing loaded yet: no embedded warehouse at {Path(folder).resolve()} "
            "(`make demo` loads one)"
        )
        return
    started_here = embedded_only and not embedded.is_running(folder)
    try:
        counts, analytics = warehouse_counts(), analytics_totals()
    finally:
        if started_here:
            embedded.stop_if_unused(folder)
    print_summary(counts, analytics, str(lake_root()))


if __name__ == "__main__":
    report_ctrl_c_in_one_line()
    main()
