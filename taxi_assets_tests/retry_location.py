"""A code location holding a job that fails and the project's alert sensors, with
Dagster's own re-execution of its runs, in process.

:func:`retry` is the run-retry daemon's ``retry_run`` (``dagster/_daemon/
auto_run_reexecution``), which makes the new run with ``create_reexecuted_run(...,
use_parent_run_tags=True)``, as the UI's re-execution does: the new run starts with its
parent's tags. :func:`sensor_tick` evaluates a sensor as the sensor daemon does, through
the code location (a run-failure sensor sees only the runs of its own code location).
Runs execute synchronously in this process (:func:`sync_instance`).
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from dagster._core.definitions.sensor_definition import SensorExecutionData
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.remote_representation.code_location import CodeLocation
from dagster._core.test_utils import InProcessTestWorkspaceLoadTarget
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._daemon.auto_run_reexecution.auto_run_reexecution import retry_run

from taxi_assets.automation.alerts import AlertWebhookResource, build_alert_sensors

JOB_NAME = "failing_job"
REPOSITORY = "__repository__"  # Dagster's name for the repository of a Definitions
FIXED_ENV = "RETRY_LOCATION_FILE_FIXED"  # "1": the job's runs succeed from then on


@dg.op
def load_month() -> None:
    if os.environ.get(FIXED_ENV) != "1":
        raise ValueError("the file has no rows")


@dg.job(name=JOB_NAME, executor_def=dg.in_process_executor)
def failing_job() -> None:
    load_month()


# The webhook's URL comes from $TAXI_ALERT_WEBHOOK_URL, as deployed.
defs = dg.Definitions(
    jobs=[failing_job],
    sensors=build_alert_sensors(),
    resources={"alert_webhook": AlertWebhookResource(backoff_seconds=0.01)},
)


@contextmanager
def sync_instance() -> Iterator[dg.DagsterInstance]:
    """A test instance whose submitted runs execute at once, in this process."""
    with dg.instance_for_test(
        synchronous_run_coordinator=True, synchronous_run_launcher=True
    ) as instance:
        yield instance


@contextmanager
def workspace(instance: dg.DagsterInstance) -> Iterator[WorkspaceProcessContext]:
    """This module as a code location, as the daemon and the UI see one."""
    origin = LoadableTargetOrigin(module_name=__name__, attribute="defs")
    target = InProcessTestWorkspaceLoadTarget(InProcessCodeLocationOrigin(origin))
    with WorkspaceProcessContext(instance, target) as context:
        yield context


def _location(context: WorkspaceProcessContext) -> CodeLocation:
    (entry,) = context.create_request_context().get_code_location_entries().values()
    assert entry.code_location is not None, entry.load_error
    return entry.code_location


def launch_failing_run(context: WorkspaceProcessContext) -> str:
    """A run of :data:`failing_job` launched from the code location (so it can be
    re-executed), executed to its failure; its id."""
    instance = context.instance
    location = _location(context)
    repository = location.get_repository(REPOSITORY)
    job = repository.get_full_job(JOB_NAME)
    plan = location.get_execution_plan(
        job, {}, step_keys_to_execute=None, known_state=None, instance=instance
    )
    run = instance.create_run(
        job_name=JOB_NAME,
        run_id=None,
        run_config={},
        resolved_op_selection=None,
        step_keys_to_execute=None,
        status=dg.DagsterRunStatus.NOT_STARTED,
        op_selection=None,
        root_run_id=None,
        parent_run_id=None,
        tags={},
        job_snapshot=job.job_snapshot,
        execution_plan_snapshot=plan.execution_plan_snapshot,
        parent_job_snapshot=None,
        remote_job_origin=job.get_remote_origin(),
        job_code_origin=job.get_python_origin(),
        asset_selection=None,
        asset_check_selection=None,
        asset_graph=repository.asset_graph,
    )
    instance.submit_run(run.run_id, context.create_request_context())
    return run.run_id


def retry(context: WorkspaceProcessContext, run_id: str) -> dg.DagsterRun:
    """The run-retry daemon's retry of failed run ``run_id``, executed to its end."""
    instance = context.instance
    failed = instance.get_run_by_id(run_id)
    assert failed is not None and failed.status == dg.DagsterRunStatus.FAILURE
    retry_run(failed, context)
    parent = instance.get_run_by_id(run_id)
    assert parent is not None
    child = instance.get_run_by_id(parent.tags["dagster/auto_retry_run_id"])
    assert child is not None and child.is_finished
    return child


def sensor_tick(
    context: WorkspaceProcessContext, name: str, cursor: str | None = None
) -> SensorExecutionData:
    """One evaluation of sensor ``name`` through the code location, as the daemon asks it;
    an error of the sensor's function is raised (a run-failure sensor's per-run errors
    are in the result's ``dagster_run_reactions``)."""
    location = _location(context)
    handle = location.get_repository(REPOSITORY).handle
    return location.get_sensor_execution_data(
        context.instance, handle, name, None, None, cursor, None, None
    )
