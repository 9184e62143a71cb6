"""When lake, warehouse and analytics follow their upstream, and the sensor that decides it.

They follow DATA, not events. A month is requested when a dependency's month got a new
data version (or will be requested in the same tick), once every dependency's blocking
checks pass:

- The raw assets report the sha256 of the file as their data version, so re-downloading
  (or re-materializing) unchanged bytes changes nothing and nothing cascades. Lake,
  warehouse and analytics report no version of their own: Dagster computes theirs from
  their code version and their inputs' data versions, so they too change only when what
  they were built from changed (`docs/revisions.md`, "Automation").
- A dependency whose blocking check failed holds the month back. The trigger is
  remembered until the month is handled (requested or materialized), so the month
  follows as soon as a re-run passes, even when that re-run changed no data version
  (a check fixed and run again).
- A code version change (a contract bump) is NOT a trigger (`code_version_changed` is
  not part of the condition): the UI marks the months built by the old code stale, and
  nobody rebuilds ten years of history by accident. Re-materialize the months you want
  rebuilt; each cascades like any other change.

Starting point: the composition verified on Dagster 1.13.27 (issue 15),
``(any_deps_match(will_be_requested()) | (any_deps_match(data_version_changed()) &
all_deps_blocking_checks_passed())).since_last_handled() & ~any_deps_missing() &
~any_deps_in_progress() & ~in_progress()``, changed in four ways, each tested
(taxi_assets_tests/test_automation_data_versions.py, test_analytics.py):

1. The blocking checks are tested outside ``since_last_handled()``: inside it, a month
   whose check failed was never requested after a passing re-run that kept the data
   version (the trigger had been consumed while the check failed).
2. :func:`blocking_checks_passed` instead of ``all_deps_blocking_checks_passed()``, which
   is false for a month a dependency does not have (FHVHV 2019-01 for the analytics).
3. ``not_same_tick`` (analytics only): see :func:`follow_upstream`.
4. A dependency's new data version is no trigger when the run that made it also targeted
   the asset (``~executed_with_root_target()``, as in Dagster's ``any_deps_updated()``):
   that run builds the month itself. Without it, the lake month's step could end in
   the middle of one evaluation: ``since_last_handled()`` looked for its materialization
   before, ``in_progress()`` (a month is in progress until its own materialization,
   not until its run ends) after, so the tick saw raw's new version, no handling and
   nothing running, and requested the lake month a second time (seen once in CI,
   test_daemon.py). If that run fails, the month is left to what started it, as for
   any failed run: the new-month sensor retries its failed runs on later ticks (also
   one that stored the raw file and failed later, and such a run of the monthly
   schedule), a failed backfill month is re-run from the UI (README, "Operations").

One limit of Dagster 1.13.27 stays: when the asset itself was materialized (by another
run) in the same tick interval as the dependency's change, ``since_last_handled()``
counts the change as handled (a trigger without a timestamp loses the tie to the reset);
``eager()`` has the same limit.
"""

from __future__ import annotations

import dagster as dg

# How often the automation sensor evaluates the conditions (by default; see definitions.py).
DEFAULT_AUTOMATION_INTERVAL_SECONDS = 30


def follow_upstream(not_same_tick: dg.AssetSelection | None = None) -> dg.AutomationCondition:
    """Requested when a dependency's data version changed (in a run that did not also
    target this asset) or the dependency will be requested in this tick; then only once
    every dependency is present, idle and passes its blocking checks, and the asset is
    not running.

    ``not_same_tick``: dependencies followed only once materialized, never in the tick
    that requests them. Dagster launches one run per partitions definition (or an asset
    backfill when a tick requests several partitions of an asset); two runs of one tick
    have no order, so an asset whose dependency has other partitions would run beside
    the dependency's run instead of after it.
    """
    condition = dg.AutomationCondition
    requested_now = condition.any_deps_match(condition.will_be_requested())
    if not_same_tick is not None:
        requested_now = requested_now.ignore(not_same_tick)
    changed = condition.any_deps_match(
        condition.data_version_changed() & ~condition.executed_with_root_target()
    )
    return (
        (requested_now | changed).since_last_handled()
        & blocking_checks_passed()
        & ~condition.any_deps_missing()
        & ~condition.any_deps_in_progress()
        & ~condition.in_progress()
    ).with_label("follows upstream data versions")


def blocking_checks_passed() -> dg.AutomationCondition:
    """No dependency's month has a blocking check that neither passed nor will run in
    this tick (with its asset, which it then guards inside the run).

    ``all_deps_blocking_checks_passed()`` with one difference: a dependency that has no
    partition for the month (FHVHV before 2019-02, for the analytics) counts as passed,
    as ``any_deps_missing()`` counts it as present; Dagster's own is false for it."""
    condition = dg.AutomationCondition
    passed = condition.all_checks_match(
        condition.check_passed() | condition.will_be_requested(), blocking_only=True
    )
    return (~condition.any_deps_match(~passed)).with_label("blocking checks of dependencies passed")


# Lake and warehouse (their dependency has their own partitions) and the zone assets.
FOLLOW_UPSTREAM = follow_upstream()

# When TLC's zone lookup is fetched again: the 5th of each month, with the schedules.
ZONE_LOOKUP_CRON = "0 6 5 * *"


def zone_lookup_condition() -> dg.AutomationCondition:
    """The zone lookup (the one raw asset no schedule or sensor loads) is fetched when it
    was never loaded, and again each month. Without it, nothing loaded the zones, and no
    analytics month (which needs them) was ever computed on a deployment run by its
    schedules and sensors alone.

    A failed fetch is not tried again at every tick: the failure alert reports it, and
    the month's fetch (or a run by hand) tries again. The monthly fetch runs with the
    lake and warehouse zones (they follow a dependency requested in the same tick: one
    run of 265 rows); unchanged bytes keep the data versions (the raw one is the file's
    sha256), so no analytics month follows."""
    condition = dg.AutomationCondition
    never_loaded = condition.missing() & ~condition.execution_failed()
    cron_tick: dg.AutomationCondition = condition.cron_tick_passed(
        ZONE_LOOKUP_CRON, "America/New_York"
    )
    monthly = cron_tick.since_last_handled()
    return ((never_loaded | monthly) & ~condition.in_progress()).with_label(
        "fetched when missing, then monthly"
    )


def build_automation_sensor(
    interval_seconds: int = DEFAULT_AUTOMATION_INTERVAL_SECONDS,
) -> dg.AutomationConditionSensorDefinition:
    """Evaluates every asset's condition. A tick requesting several months of an asset
    becomes ONE asset backfill (all it requested; watched and cancelled in the UI under
    Runs > Backfills, its runs one month each); a tick requesting one month becomes one
    run per partitions definition (Dagster's rule)."""
    return dg.AutomationConditionSensorDefinition(
        "taxi_automation_sensor",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval_seconds,
        emit_backfills=True,
        description=(
            "Lake, warehouse and analytics follow their upstream's data version (a new raw "
            "revision), once its blocking checks pass; cascades over several months are "
            "asset backfills."
        ),
    )
