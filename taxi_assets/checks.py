"""Asset checks: reconciliation, schema contract, quality signals, freshness.

They run with every materialization of their asset (Dagster adds an asset's checks to
every run that materializes it) and read the month's lake file where the lake IO manager
keeps it (the file the warehouse step reads), the row count of the published file it
came from (counted while downloading, kept with the raw revision), and the warehouse
table itself. Blocking checks stop downstream assets. A failed check's description says
what differs, for the UI and the alerts.
"""

import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import dagster as dg

from taxi_assets.assets.contract_stream import SOURCE_SHA256_KEY
from taxi_assets.assets.trips import LakeMonthPaths, stored_lake_month, warehouse_metadata
from taxi_assets.contracts import CONTRACTS
from taxi_assets.instance_reads import latest_metadata, materialized_partitions
from taxi_assets.io_managers.lake_files import LakeFiles
from taxi_assets.partitions import add_months, parse_month
from taxi_assets.quality import DEFAULT_THRESHOLDS, measure, signal_columns, signals_for
from taxi_assets.resources import LakeResource, TaxiSourceResource
from taxi_assets.services import SERVICES, Service
from taxi_assets.storage.revision_manifest import read_manifest
from taxi_assets.storage.revisions import slot_for
from taxi_assets.upstream.download import DownloadError, SourceForbidden, SourceNotFound

FRESHNESS_MONTHS = 3
FRESHNESS_CHECK = "freshness"


class PartitionRowCounter(Protocol):
    """What the checks need from the warehouse IO manager of either engine."""

    def partition_row_count(
        self, asset_key: dg.AssetKey, metadata: Mapping[str, Any], window: tuple[datetime, datetime]
    ) -> int: ...


class QualityThresholds(dg.ConfigurableResource):
    """Share of rows above which a quality signal warns (defaults: ``quality.DEFAULT_THRESHOLDS``)."""

    pickup_outside_month: float = DEFAULT_THRESHOLDS["pickup_outside_month"]
    dropoff_before_pickup: float = DEFAULT_THRESHOLDS["dropoff_before_pickup"]
    negative_fare_or_total: float = DEFAULT_THRESHOLDS["negative_fare_or_total"]
    null_block: float = DEFAULT_THRESHOLDS["null_block"]
    zero_distance: float = DEFAULT_THRESHOLDS["zero_distance"]
    location_out_of_range: float = DEFAULT_THRESHOLDS["location_out_of_range"]
    passenger_count_zero: float = DEFAULT_THRESHOLDS["passenger_count_zero"]
    absurd_distance: float = DEFAULT_THRESHOLDS["absurd_distance"]
    negative_trip_time_or_driver_pay: float = DEFAULT_THRESHOLDS["negative_trip_time_or_driver_pay"]
    pickup_before_request: float = DEFAULT_THRESHOLDS["pickup_before_request"]
    non_finite_number: float = DEFAULT_THRESHOLDS["non_finite_number"]
    huge_number: float = DEFAULT_THRESHOLDS["huge_number"]
    freshness_months: int = FRESHNESS_MONTHS

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in DEFAULT_THRESHOLDS}


def lake_month_files(lake_io_manager: LakeMonthPaths, key: dg.AssetKey, month: str) -> LakeFiles:
    """The month's lake file as the warehouse reads it: where the lake IO manager keeps it
    (not the path a materialization recorded, which a moved lake leaves behind), read row
    group by row group, without pre-buffering. (pyarrow's ParquetFile pre-buffers by
    default: reading 8 columns of a 20M-row month then held ~400 MB, which set a run's
    peak memory.)"""
    stored = stored_lake_month(lake_io_manager, key, month)
    if stored is None:
        raise FileNotFoundError(
            f"no lake file for {key.to_user_string()} {month} at "
            f"{lake_io_manager.month_path(key, month)}, where the lake IO manager keeps it: "
            "materialize that month of the lake asset first"
        )
    return stored


def published_rows(
    instance: dg.DagsterInstance,
    lake: LakeResource,
    raw_key: dg.AssetKey,
    month: str,
    source_sha256: str | None,
) -> tuple[int | None, str]:
    """Rows of the published file the lake month was parsed from (``source_sha256``, from
    the lake file's footer), and where the count comes from. The raw asset's latest
    materialization counts only if it reported those bytes; else the revision's own
    record in the lake (a new DAGSTER_HOME over an existing lake has no materialization)."""
    reported = latest_metadata(instance, raw_key, month)
    rows = reported.get("source_rows")
    if isinstance(rows, int) and (not source_sha256 or reported.get("sha256") == source_sha256):
        return rows, "the raw asset's materialization"
    if source_sha256:
        manifest = read_manifest(slot_for(lake.root(), raw_key.path, month).manifest_path)
        revision = manifest.find(source_sha256) if manifest else None
        if revision is not None and revision.rows is not None:
            return revision.rows, f"raw revision {revision.short}'s record"
    return None, "unknown"


def _midnight(month: str) -> datetime:
    return datetime.combine(parse_month(month), datetime.min.time())


def build_service_checks(
    service: Service, partitions_def: dg.PartitionsDefinition
) -> list[dg.AssetChecksDefinition]:
    contract = CONTRACTS[service.name]
    signals = signals_for(contract.column_names)
    raw_key = service.key("raw")
    lake_key = service.key("lake")
    warehouse_key = service.key("warehouse")

    def monthly_check(
        asset: dg.AssetKey, description: str, blocking: bool = False
    ) -> Callable[[Callable[..., dg.AssetCheckResult]], dg.AssetChecksDefinition]:
        """A check of one month of ``asset``, named after its function."""
        return dg.asset_check(
            asset=asset, blocking=blocking, partitions_def=partitions_def, description=description
        )

    @monthly_check(
        lake_key,
        blocking=True,
        description="Rows in the lake file = rows in the published file (counted while downloading).",
    )
    def rows_match_raw(
        context: dg.AssetCheckExecutionContext,
        lake: LakeResource,
        lake_io_manager: dg.ResourceParam[LakeMonthPaths],
    ) -> dg.AssetCheckResult:
        month = context.partition_key
        lake_month = lake_month_files(lake_io_manager, lake_key, month)
        lake_rows = lake_month.count_rows()
        source = (lake_month.schema.metadata or {}).get(SOURCE_SHA256_KEY, b"").decode() or None
        raw_rows, counted_by = published_rows(context.instance, lake, raw_key, month, source)
        metadata: dict[str, dg.RawMetadataValue] = {
            "raw_rows": raw_rows if raw_rows is not None else "unknown",
            "raw_rows_from": counted_by,
            "lake_rows": lake_rows,
            "source_sha256": source or "unknown",
        }
        if raw_rows is None:
            # A revision stored before rows were recorded with it, and no materialization
            # of those bytes: nothing to compare with. Passed (the lake asset parsed the
            # file whole), and said so rather than shown as a match.
            return dg.AssetCheckResult(
                passed=True,
                description="not compared: the published file's row count is unknown",
                metadata=metadata,
            )
        return dg.AssetCheckResult(
            passed=raw_rows == lake_rows,
            description=None
            if raw_rows == lake_rows
            else f"the lake has {lake_rows:,} rows, the published file {raw_rows:,}",
            metadata=metadata,
        )

    @monthly_check(
        lake_key,
        blocking=True,
        description=f"The lake file has exactly the {service.name} contract's columns and types.",
    )
    def schema_matches_contract(
        context: dg.AssetCheckExecutionContext,
        lake_io_manager: dg.ResourceParam[LakeMonthPaths],
    ) -> dg.AssetCheckResult:
        schema = lake_month_files(lake_io_manager, lake_key, context.partition_key).schema
        found = {field.name: str(field.type) for field in schema}
        expected = {field.name: str(field.type) for field in contract.schema}
        version = (schema.metadata or {}).get(b"contract_version", b"").decode()
        differences = sorted(
            f"{name}: expected {expected.get(name, 'absent')}, found {found.get(name, 'absent')}"
            for name in set(found) | set(expected)
            if found.get(name) != expected.get(name)
        )
        if version != contract.version:
            differences.append(
                f"contract version: expected {contract.version}, found {version or 'none'}"
            )
        return dg.AssetCheckResult(
            passed=not differences,
            description="; ".join(differences) or None,
            metadata={
                "contract_version": contract.version,
                "file_contract_version": version or "missing",
                "differences": "; ".join(differences) or "none",
            },
        )

    @monthly_check(
        lake_key,
        description="Rows that look wrong, counted not removed: "
        + ", ".join(signal.name.replace("_", " ") for signal in signals)
        + ".",
    )
    def quality_signals(
        context: dg.AssetCheckExecutionContext,
        quality_thresholds: QualityThresholds,
        lake_io_manager: dg.ResourceParam[LakeMonthPaths],
    ) -> dg.AssetCheckResult:
        month = context.partition_key
        window = (_midnight(month), _midnight(add_months(month, 1)))
        lake_month = lake_month_files(lake_io_manager, lake_key, month)
        columns = signal_columns(signals, lake_month.schema.names)
        batches = lake_month.to_batches(columns, batch_size=256 * 1024)
        report = measure(batches, window, signals)
        thresholds = quality_thresholds.as_dict()
        exceeded = report.exceeded(thresholds)
        metadata: dict[str, dg.RawMetadataValue] = {"rows": report.rows}
        for name, count in report.counts.items():
            metadata[name] = count
            metadata[f"{name}_share"] = round(report.share(name), 6)
        metadata["exceeded"] = ", ".join(exceeded) or "none"
        return dg.AssetCheckResult(
            passed=not exceeded,
            severity=dg.AssetCheckSeverity.WARN,
            description=", ".join(
                f"{name} {report.share(name):.2%} (over {thresholds[name]:.2%})"
                for name in exceeded
            )
            or None,
            metadata=metadata,
        )

    @monthly_check(
        warehouse_key,
        blocking=True,
        description="Rows of the month in the warehouse table = rows in the lake file.",
    )
    def rows_match_lake(
        context: dg.AssetCheckExecutionContext,
        warehouse_io_manager: dg.ResourceParam[PartitionRowCounter],
        lake_io_manager: dg.ResourceParam[LakeMonthPaths],
    ) -> dg.AssetCheckResult:
        month = context.partition_key
        lake_rows = lake_month_files(lake_io_manager, lake_key, month).count_rows()
        window = (_midnight(month), _midnight(add_months(month, 1)))
        warehouse_rows = warehouse_io_manager.partition_row_count(
            warehouse_key, warehouse_metadata(service), window
        )
        return dg.AssetCheckResult(
            passed=warehouse_rows == lake_rows,
            description=None
            if warehouse_rows == lake_rows
            else f"the warehouse has {warehouse_rows:,} rows of the month, the lake {lake_rows:,}",
            metadata={"lake_rows": lake_rows, "warehouse_rows": warehouse_rows},
        )

    # Of the asset, not of a month: it runs with every month's load and on its own
    # (taxi_freshness_schedule), and its latest result is the asset's state. As a check of
    # each month it ran only when a month was loaded, so it never failed once loading
    # stopped, and a month that failed it kept that result after later months were loaded.
    @dg.asset_check(
        asset=warehouse_key,
        name=FRESHNESS_CHECK,
        description=f"The newest loaded month is at most N (default {FRESHNESS_MONTHS}) months "
        "behind the newest month the source has published (HEAD request, no download).",
    )
    def freshness(
        context: dg.AssetCheckExecutionContext,
        source: TaxiSourceResource,
        quality_thresholds: QualityThresholds,
        warehouse: dg.ResourceParam[Any],
    ) -> dg.AssetCheckResult:
        loaded = materialized_partitions(context.instance, warehouse_key, partitions_def)
        if not loaded:
            # A new DAGSTER_HOME over a loaded warehouse knows no load: the warehouse's own
            # load log does (as `months status` reads it).
            loaded = logged_months(warehouse, service.dataset)
        if not loaded:
            # Not a pass: nothing loaded is not fresh.
            return dg.AssetCheckResult(
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description="no month of it is loaded (Dagster's records, the load log)",
                metadata={"newest_loaded": "none", "published": "not probed"},
            )
        newest = loaded[-1]
        limit = quality_thresholds.freshness_months
        probe = add_months(newest, limit + 1)
        metadata: dict[str, dg.RawMetadataValue] = {"newest_loaded": newest, "probed": probe}
        if not partitions_def.has_partition_key(probe):
            return dg.AssetCheckResult(
                passed=True, metadata={**metadata, "published": "not due yet"}
            )
        url, _ = source.layout().trip_file(service.dataset, probe)
        try:
            source.probe(url)
        except SourceNotFound:
            return dg.AssetCheckResult(passed=True, metadata={**metadata, "published": "no"})
        except SourceForbidden:
            verdict = source.explain_forbidden(service.dataset, probe, url, newest)
            if verdict.not_published:
                return dg.AssetCheckResult(passed=True, metadata={**metadata, "published": "no"})
            return dg.AssetCheckResult(
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description=verdict.message,
                metadata={**metadata, "published": f"unknown: {verdict.message}"},
            )
        except DownloadError as error:
            return dg.AssetCheckResult(
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={**metadata, "published": f"unknown: {error}"},
            )
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{probe} is published but the newest loaded month is {newest}",
            metadata={**metadata, "published": "yes"},
        )

    return [rows_match_raw, schema_matches_contract, quality_signals, rows_match_lake, freshness]


def build_asset_checks(
    partitions: Mapping[str, dg.PartitionsDefinition],
) -> list[dg.AssetChecksDefinition]:
    """Every service's checks, partitioned like that service's assets."""
    with warnings.catch_warnings():
        # Partitioned asset checks are a preview feature in Dagster 1.13; they are what lets
        # each month's checks run with that month's materialization.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            check
            for name, service in SERVICES.items()
            for check in build_service_checks(service, partitions[name])
        ]


def logged_months(warehouse: Any, dataset: str) -> list[str]:
    """The months of ``dataset`` in the warehouse's load log (PostgreSQL's or BigQuery's,
    by the resource given), in order."""
    from taxi_assets.month_status import bigquery_loads, postgres_loads
    from taxi_assets.resources.postgres import PostgresResource

    if isinstance(warehouse, PostgresResource):
        loads = postgres_loads(warehouse.engine())
    else:
        with warehouse.client() as client:
            loads = bigquery_loads(client)
    return sorted(month for table, month in loads if table == dataset)


def freshness_check_keys() -> list[dg.AssetCheckKey]:
    """Every service's freshness check (``taxi_freshness_job`` runs them alone)."""
    return [
        dg.AssetCheckKey(service.key("warehouse"), FRESHNESS_CHECK) for service in SERVICES.values()
    ]


def blocking_check_keys(
    checks: Sequence[dg.AssetChecksDefinition],
) -> dict[dg.AssetKey, list[dg.AssetCheckKey]]:
    """The blocking checks of each asset among ``checks``."""
    found: dict[dg.AssetKey, list[dg.AssetCheckKey]] = {}
    for definition in checks:
        for spec in definition.check_specs:
            if spec.blocking:
                found.setdefault(spec.asset_key, []).append(spec.key)
    return found
