"""What the new-month sensor asks for: one service at a time, at most two HEAD requests.

For each service: the month after the newest loaded one (or, with nothing loaded, the
month that should just have been published), and the newest loaded month again in case
TLC republished it. A request's key holds service, month and the upstream ETag, so each
upstream version is requested once; a failed run of a version (whichever step failed) may
be retried on later ticks, up to ``MAX_ATTEMPTS`` runs of a version in all.

Each HEAD is one attempt with a short timeout (``TaxiSourceResource.probe``), and no HEAD
starts after the tick's deadline: a tick must end well within Dagster's 60 s. A 403 from
TLC means "not published yet" unless the newest loaded month answers 403 too (then the
source refuses access: see ``upstream/forbidden.py``).
"""

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

import dagster as dg
from upath import UPath

from taxi_assets.automation.run_partitions import covers
from taxi_assets.automation.schedules import schedule_name
from taxi_assets.instance_reads import (
    backfill_pending,
    check_outcomes_of,
    latest_materialization,
    latest_metadata,
    metadata_values,
    newest_loaded_partition,
    runs,
)
from taxi_assets.jobs import service_job_name
from taxi_assets.partitions import add_months, lagged_month
from taxi_assets.raw_zone import pinned_revision
from taxi_assets.resources.source import TaxiSourceResource
from taxi_assets.services import SERVICES
from taxi_assets.storage.revision_manifest import ManifestError
from taxi_assets.upstream.download import DownloadError, SourceForbidden, SourceNotFound
from taxi_assets.upstream.forbidden import explain_forbidden
from taxi_assets.upstream.shown_url import shown_url

MAX_ATTEMPTS = 3
SCHEDULE_NAME_TAG = "dagster/schedule_name"  # Dagster's tag on a schedule's runs
VERSION_TAG = "taxi/upstream_version"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dataclass(frozen=True)
class MonthRequest:
    month: str
    version: str  # service:month:etag
    run_key: str


@dataclass
class ServicePlan:
    requests: list[MonthRequest] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class InFlight:
    """What is loading or about to: queued and running runs (a backfill's, the schedule's,
    a user's), and the months unfinished asset backfills will still run."""

    runs: Sequence[dg.DagsterRun]
    backfill_pending: frozenset[tuple[dg.AssetKey, str]] = frozenset()


def runs_in_flight(instance: dg.DagsterInstance) -> InFlight:
    """What is in flight, read once per tick.

    Runs of asset backfills carry a partition range, not `dagster/partition`, so they are
    filtered by status in the database (few runs are in flight) and by month in Python. A
    backfill submitted (`months backfill`, the UI) has no run until the backfill daemon's
    next pass: its months count too, or the sensor loaded them a second time.
    """
    return InFlight(runs(instance, dg.RunsFilter(statuses=IN_FLIGHT)), backfill_pending(instance))


def is_loading(in_flight: InFlight, month: str, raw_key: dg.AssetKey, job_name: str) -> bool:
    """A run in flight covers ``month`` and materializes ``raw_key``: its asset selection
    holds it (sensor requests, asset backfills), or it runs the service's whole job; or an
    unfinished backfill will run it."""
    return (raw_key, month) in in_flight.backfill_pending or any(
        covers(run.tags, month)
        and (
            raw_key in run.asset_selection
            if run.asset_selection is not None
            else run.job_name == job_name
        )
        for run in in_flight.runs
    )


def _request_for_version(
    service: str,
    month: str,
    version: str,
    earlier: Sequence[dg.DagsterRun],
    success_superseded: bool = False,
) -> tuple[MonthRequest | None, str | None]:
    """``earlier``: the sensor's runs of ``version`` (``VERSION_TAG``), newest first.
    ``success_superseded``: a successful run of ``version`` no longer counts as done, as
    the loaded month's latest raw materialization came after it: it made a pinned
    revision current (the pin is lifted now, or the month would not be probed), or its
    run failed after storing it (``_stored_but_failed``)."""
    in_progress = any(not run.is_finished for run in earlier)
    done = not success_superseded and any(run.is_success for run in earlier)
    if in_progress or done:
        return None, None  # requested already; in progress or done
    failed = sum(1 for run in earlier if not run.is_success)
    if failed >= MAX_ATTEMPTS:
        return None, f"{service} {month}: {failed} runs failed for this file; re-run it by hand"
    # Every run key of the sensor is used once: a suffix per earlier run of the version.
    suffix = f"#retry{len(earlier)}" if earlier else ""
    return MonthRequest(month, version, f"{version}{suffix}"), None


def _went_back_to(
    instance: dg.DagsterInstance,
    raw_key: dg.AssetKey,
    month: str,
    earlier: Sequence[dg.DagsterRun],
) -> bool:
    """Upstream serves again a version loaded before (A, then B, then A's bytes restored:
    the same ETag as A's) while the month holds another: A's earlier success does not
    describe what is loaded. Only when the month's latest raw materialization came from
    none of A's successful runs, so a version whose HEAD and GET answers disagree on the
    ETag is not loaded again at every tick."""
    stored = latest_materialization(instance, raw_key, month)
    succeeded = {run.run_id for run in earlier if run.is_success}
    return bool(succeeded) and stored is not None and stored.run_id not in succeeded


def _stored_but_failed(
    instance: dg.DagsterInstance,
    raw_key: dg.AssetKey,
    month: str,
    earlier: Sequence[dg.DagsterRun],
    service: str,
    blocking_checks: Mapping[dg.AssetKey, Sequence[dg.AssetCheckKey]],
    notes: list[str],
) -> bool:
    """The run of the month's latest raw materialization stored the file (the month counts
    as loaded) and then failed, in its lake or warehouse step, and nothing else would load
    the month: the automation sensor leaves it to the run that targeted it (see
    ``automation/conditions.py``). That run is one of the sensor's runs of the file
    (``earlier``: retried like one that failed earlier) or the monthly schedule's (which
    does not retry: its next run is next month's; ``run_retries`` re-runs crashed runs
    only). Not a run from the UI or the CLI: whoever started it saw it fail. Runs of the
    file that failed after it without storing it (a download that failed) leave the month
    as it was: it is still to be retried, within ``MAX_ATTEMPTS`` runs of the file (they
    count). A warehouse built from the stored file since by a run that succeeded (the
    lake from any run, the failed one's included), each layer of it passing its blocking
    checks, finishes what the failed run left: nothing is owed (:func:`_rebuilt_since`,
    which adds to ``notes`` why a rebuild does not count)."""
    stored = latest_materialization(instance, raw_key, month)
    if stored is None:
        return False
    stored_by = next((run for run in earlier if run.run_id == stored.run_id), None)
    if stored_by is None:
        found = runs(instance, dg.RunsFilter(run_ids=[stored.run_id]), limit=1)
        if found and found[0].tags.get(SCHEDULE_NAME_TAG) == schedule_name(service):
            stored_by = found[0]
    if stored_by is None or stored_by.status != dg.DagsterRunStatus.FAILURE:
        return False
    return not _rebuilt_since(instance, service, month, raw_key, stored, blocking_checks, notes)


def _rebuilt_since(
    instance: dg.DagsterInstance,
    service: str,
    month: str,
    raw_key: dg.AssetKey,
    stored: dg.EventLogRecord,
    blocking_checks: Mapping[dg.AssetKey, Sequence[dg.AssetCheckKey]],
    notes: list[str],
) -> bool:
    """The service's last asset (the warehouse) was materialized for ``month`` after the
    raw materialization ``stored`` (``raw_storage_id``) by a run that succeeded, from
    layers built from that raw file: walking back from it, each layer between (the lake)
    has a materialization after ``raw_storage_id`` and before the one of the layer after
    it; the warehouse holds the raw revision ``stored`` stored, as far as its metadata
    tells; and no materialization of the walk failed a blocking check
    (``blocking_checks``).

    Such runs do not store the file again: a run of lake and warehouse, or of the
    warehouse alone, from the UI, or the failed run's re-execution from its failure (which
    runs the failed steps only, with the parent's tags, the sensor's ``VERSION_TAG``
    included). So the latest raw materialization stays the failed run's, and the month
    used to count as stored but failed: the sensor requested a whole run of it again.

    A layer between may have been materialized by any run, the failed one included (its
    lake step succeeded before its warehouse step failed): Dagster records a
    materialization only once its step's output was stored. The warehouse must come from
    a run that succeeded (a failed run may have stored it and then failed its checks).
    The walk is backward, from the warehouse, so that a warehouse built from a lake older
    than the raw file (the failed run's lake step failed, the warehouse was rebuilt from
    the previous lake, the lake only after it) is still owed. A raw file stored since
    makes a newer ``raw_storage_id``: every layer is then older than it, and the month is
    owed (or not, by its own run: ``_stored_but_failed``).

    A blocking check that failed stops the later steps of its own run only: Dagster
    records the lake month, and a later run (the warehouse alone, from the UI) builds the
    warehouse from it and succeeds. So each materialization of the walk is looked up in
    its checks' history: the latest evaluation of each blocking check that looked at it,
    in its own run or in a later "Execute checks", must not have failed as Dagster's
    blocking checks fail (not passed, severity ERROR). If one did, the month is owed, and
    ``notes`` names the check. So does a check whose latest execution raised (no
    evaluation: :func:`taxi_assets.instance_reads.check_outcomes_of`): it never passed.

    The walk assumes that a step read the layer before it as last recorded before its own
    materialization. Two overlapping runs of the month break that: a run from the UI
    whose lake step read the previous raw file before the failed run stored the new one,
    and wrote the month's lake file (one path per month) after the failed run's, leaves
    the previous file's lake month, recorded last (its blocking ``rows_match_raw`` fails,
    so its own warehouse step does not run; a run of the warehouse alone loads it), and
    every event is in the order of a rebuild. So the raw revision the warehouse loaded (its ``source_sha256``, read from the footer of the
    lake file it loaded) must be the one ``stored`` stored (its ``sha256``), where both
    are recorded (a load of several months records a table instead)."""
    raw_storage_id = stored.storage_id
    *between, last = [key for key in SERVICES[service].keys() if key != raw_key]
    built = latest_materialization(instance, last, month)
    if built is None or built.storage_id <= raw_storage_id:
        return False
    found = runs(instance, dg.RunsFilter(run_ids=[built.run_id]), limit=1)
    if not found or not found[0].is_success:
        return False
    held, raw_sha = _metadata(built, "source_sha256"), _metadata(stored, "sha256")
    if held and raw_sha and held != raw_sha:
        notes.append(
            f"{service} {month}: owed: the {last.path[0]} month of run {built.run_id[:8]} "
            f"holds raw revision {held[:12]}, not {raw_sha[:12]}, which run "
            f"{stored.run_id[:8]} stored"
        )
        return False
    walked = [(last, built)]
    read_from = built.storage_id
    for key in reversed(between):
        # The layer as the step after it read it, when no two runs of the month overlap.
        record = latest_materialization(instance, key, month, before_storage_id=read_from)
        if record is None or record.storage_id <= raw_storage_id:
            return False
        walked.append((key, record))
        read_from = record.storage_id
    for key, record in walked:
        failed = _failed_blocking_checks(instance, blocking_checks.get(key, ()), month, record)
        if failed:
            layer, run_id = key.path[0], record.run_id[:8]
            checks = ", ".join(failed)
            notes.append(
                f"{service} {month}: owed: the {layer} month of run {run_id} failed its "
                f"blocking check {checks}"
                if key == last
                else f"{service} {month}: owed: the {last.path[0]} was built from the "
                f"{layer} month of run {run_id}, whose blocking check {checks} failed"
            )
            return False
    return True


def _metadata(record: dg.EventLogRecord, name: str) -> str | None:
    """A text value of the materialization's metadata; None when absent or unknown."""
    value = metadata_values(record).get(name)
    return value if isinstance(value, str) and value not in ("", "unknown", "none") else None


def _failed_blocking_checks(
    instance: dg.DagsterInstance,
    check_keys: Sequence[dg.AssetCheckKey],
    month: str,
    record: dg.EventLogRecord,
) -> list[str]:
    """Names of the checks among ``check_keys`` whose latest execution about the
    materialization ``record`` did not pass as a blocking check must: it failed in a way
    that stops a run (not passed, blocking, severity ERROR: Dagster's own condition, in
    its step execution), or it ended without an evaluation (it raised, in the
    materialization's own run or in a later "Execute checks")."""
    failed = []
    for outcome in check_outcomes_of(instance, check_keys, month, record):
        evaluation = outcome.evaluation
        if evaluation is None:
            failed.append(f"{outcome.check_name} (raised in run {outcome.run_id[:8]})")
        elif (
            not evaluation.passed
            and evaluation.blocking
            and evaluation.severity == dg.AssetCheckSeverity.ERROR
        ):
            failed.append(outcome.check_name)
    return failed


def _pin_reason(lake_root: UPath | None, service: str, month: str) -> str | None:
    """Why ``month`` is not probed because of its pin (None: not pinned, or no lake given)."""
    if lake_root is None:
        return None
    try:
        pinned = pinned_revision(lake_root, service, month)
    except ManifestError as error:
        return f"{service} {month}: not probed, its revision manifest is unreadable ({error})"
    if pinned is None:
        return None
    return (
        f"{service} {month}: pinned to revision {pinned[:12]}, not re-fetched "
        f"(python -m taxi_assets.cli raw unpin {service} {month})"
    )


def plan_service_requests(
    instance: dg.DagsterInstance,
    source: TaxiSourceResource,
    service: str,
    partitions_def: dg.PartitionsDefinition,
    lag: int,
    in_flight: InFlight,
    blocking_checks: Mapping[dg.AssetKey, Sequence[dg.AssetCheckKey]],
    today: date | None = None,
    lake_root: UPath | None = None,
    deadline: float | None = None,
) -> ServicePlan:
    """``deadline`` (``time.monotonic()``): no HEAD request starts after it.
    ``blocking_checks``: each asset's blocking checks (``checks.blocking_check_keys``)."""
    plan = ServicePlan()
    dataset = SERVICES[service].dataset
    raw_key = SERVICES[service].key("raw")
    # A month whose re-download (a republished file) failed is still loaded: what the
    # earlier run stored stays current. Dagster's status calls it failed; counting it as
    # not loaded would make it "the next month" and leave every later month unprobed.
    newest = newest_loaded_partition(instance, raw_key, partitions_def)
    layout = source.layout()
    # (month, whether it is loaded, the ETag of the loaded file, whether the loaded month's
    # latest raw materialization made a pinned revision current)
    candidates: list[tuple[str, bool, str | None, bool]] = []
    if newest is not None:
        latest = latest_metadata(instance, raw_key, newest)
        held = latest.get("etag")
        from_pin = latest.get("pinned_sha256") not in (None, "none")
        candidates.append((newest, True, str(held) if held else None, from_pin))
        candidates.append((add_months(newest, 1), False, None, False))
    else:
        candidates.append((lagged_month(today or date.today(), lag), False, None, False))
    answered: set[str] = set()  # URLs that answered with the file in this loop
    for month, is_loaded, held_etag, rebuilt_from_pin in candidates:
        if is_loaded and held_etag is None:
            plan.reasons.append(f"{service} {month}: loaded (no ETag recorded to compare)")
            continue
        if not partitions_def.has_partition_key(month):
            plan.reasons.append(f"{service} {month}: not a partition yet")
            continue
        if is_loading(in_flight, month, raw_key, service_job_name(service)):
            plan.reasons.append(f"{service} {month}: a queued or running run is loading it")
            continue
        # A month pinned to a stored revision is rebuilt from that revision, not
        # re-fetched: no HEAD, no request, until someone unpins it.
        pin_reason = _pin_reason(lake_root, service, month)
        if pin_reason is not None:
            plan.reasons.append(pin_reason)
            continue
        if deadline is not None and time.monotonic() > deadline:
            plan.reasons.append(f"{service} {month}: not checked, the tick's time is used up")
            continue
        url, _ = layout.trip_file(dataset, month)
        try:
            remote = source.probe(url)
        except SourceNotFound:
            if is_loaded:
                # Loaded from this URL's source before: a 404 now is not "nothing new yet"
                # (TAXI_SOURCE or the mirror changed, or the file was withdrawn).
                plan.reasons.append(
                    f"{service} {month}: loaded, but {shown_url(url)} answers 404 now: this "
                    "source does not have the file (withdrawn, or the month came from another "
                    "source: check TAXI_SOURCE and the source's URL); the loaded month is kept"
                )
                continue
            plan.reasons.append(f"{service} {month} not published yet")
            continue
        except SourceForbidden:
            if is_loaded:
                verdict = explain_forbidden(
                    source=layout.source_for(month, dataset),
                    service=service,
                    month=month,
                    url=url,
                    newest_loaded=month,
                    newest_forbidden=True,
                )
            else:
                # The newest loaded month is asked only if it has not answered in this
                # loop, and only within the tick's time.
                # The newest loaded month is asked at TLC's URL (it may have been loaded from
                # the course's mirror, the URL asked above).
                newest_at_tlc = layout.tlc_trip_file(dataset, newest)[0] if newest else None
                ask_newest = newest_at_tlc not in answered and (
                    deadline is None or time.monotonic() <= deadline
                )
                verdict = source.explain_forbidden(
                    dataset, month, url, newest, ask_newest=ask_newest
                )
            plan.reasons.append(verdict.message)
            if is_loaded:
                break  # the source refuses access: the next month would say the same
            continue
        except DownloadError as error:
            plan.reasons.append(f"{service} {month}: source unreachable ({error})")
            continue
        answered.add(url)
        etag = remote.etag or f"size-{remote.size}"
        version = f"{service}:{month}:{etag}"  # the sensor's VERSION_TAG; its run key's stem
        earlier = runs(instance, dg.RunsFilter(tags={VERSION_TAG: version}))
        stored_but_failed = is_loaded and _stored_but_failed(
            instance, raw_key, month, earlier, service, blocking_checks, plan.reasons
        )
        if is_loaded and held_etag == remote.etag and not stored_but_failed:
            plan.reasons.append(f"{service} {month}: loaded, upstream unchanged")
            continue
        # After an unpin, the run that follows upstream again may store the file and then
        # fail: the success of the version from before the pin must not make that final.
        request, reason = _request_for_version(
            service,
            month,
            version,
            earlier,
            rebuilt_from_pin
            or stored_but_failed
            or (is_loaded and _went_back_to(instance, raw_key, month, earlier)),
        )
        if request is not None:
            plan.requests.append(request)
        elif reason is not None:
            plan.reasons.append(reason)
        else:
            plan.reasons.append(f"{service} {month}: already requested")
    return plan
