"""The run-failure alert: a clear summary in the log and Slack-compatible JSON to a webhook."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.workspace.context import WorkspaceProcessContext

from taxi_assets.automation import alert_outbox
from taxi_assets.automation.alerts import (
    FAILURE_SENSOR_REMARKS,
    MAX_TEXT_CHARS,
    REDELIVERIES_PER_TICK,
    REDELIVERY_SENSOR_NAME,
    SENSOR_NAME,
    AlertDeliveryError,
    AlertWebhookResource,
    FailureSummary,
    build_alert_sensors,
    redeliver_alerts,
    run_failure_event,
    send_failure_alert,
)
from taxi_assets.definitions import build_definitions
from taxi_assets_tests import retry_location
from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.pipeline import pipeline_resources, run
from taxi_assets_tests.webhook_receiver import Receiver, posted_runs


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


def failure_context(
    result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance
) -> dg.RunFailureSensorContext:
    assert not result.success
    return dg.build_run_status_sensor_context(
        sensor_name=SENSOR_NAME,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
    ).for_run_failure()


@pytest.fixture
def missing_month_failure(
    mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> dg.RunFailureSensorContext:
    """A real run of the project's raw asset for a month the mirror does not publish."""
    resources = pipeline_resources(mirror.url, tmp_path / "lake")
    result = run("raw/yellow_tripdata", resources, instance, "2021-03", raise_on_error=False)
    return failure_context(result, instance)


def test_failed_run_posts_a_slack_message_from_the_environment(
    missing_month_failure: dg.RunFailureSensorContext,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAXI_ALERT_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("TAXI_UI_URL", "http://127.0.0.1:3000/")
    sensor = build_alert_sensors()[0]
    sensor(missing_month_failure, alert_webhook=AlertWebhookResource())

    (body,) = receiver.bodies
    text = body["text"]
    run_id = missing_month_failure.dagster_run.run_id
    assert text.splitlines()[0] == (
        f"taxi_assets: run {run_id[:8]} of __ephemeral_asset_job__ for partition 2021-03 failed"
    )
    assert "Assets: raw/yellow_tripdata" in text
    assert "- raw__yellow_tripdata: Failure: yellow_tripdata_2021-03.csv.gz is" in text
    assert f"Run: http://127.0.0.1:3000/runs/{run_id}" in text
    assert body["blocks"] == [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]


def test_without_a_webhook_the_summary_is_only_logged(
    missing_month_failure: dg.RunFailureSensorContext, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    summary = send_failure_alert(missing_month_failure, AlertWebhookResource())
    assert summary.failed_steps[0][0] == "raw__yellow_tripdata"
    logged = capfd.readouterr().err
    assert f"ERROR - {summary.title}" in logged
    assert "raw__yellow_tripdata: Failure:" in logged


def test_failed_blocking_check_is_named_in_the_alert(
    instance: dg.DagsterInstance, receiver: Receiver
) -> None:
    @dg.asset(check_specs=[dg.AssetCheckSpec("rows_match_source", asset="trips", blocking=True)])
    def trips() -> dg.MaterializeResult:
        return dg.MaterializeResult(
            check_results=[
                dg.AssetCheckResult(
                    passed=False,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description="lake has 99 rows, the published file 100",
                )
            ]
        )

    result = dg.materialize([trips], instance=instance, raise_on_error=False)
    summary = send_failure_alert(
        failure_context(result, instance), AlertWebhookResource(url=receiver.url)
    )
    (check,) = summary.failed_checks
    assert (check.asset, check.check, check.severity, check.blocking) == (
        "trips",
        "rows_match_source",
        "ERROR",
        True,
    )
    text = receiver.bodies[0]["text"]
    assert "- trips rows_match_source (ERROR, blocking): lake has 99 rows" in text
    assert "blocking asset check failed" in text


def test_webhook_errors_are_retried_then_reported_without_the_secret(
    missing_month_failure: dg.RunFailureSensorContext,
) -> None:
    with Receiver([503, 200]) as flaky:
        webhook = AlertWebhookResource(url=flaky.url, backoff_seconds=0.01)
        send_failure_alert(missing_month_failure, webhook)
        assert len(flaky.bodies) == 2
    with Receiver([500, 500, 500]) as broken:
        webhook = AlertWebhookResource(url=broken.url, backoff_seconds=0.01)
        with pytest.raises(AlertDeliveryError) as raised:
            send_failure_alert(missing_month_failure, webhook)
        assert len(broken.bodies) == 3
    assert "HTTP 500" in str(raised.value) and "secret" not in str(raised.value)
    with Receiver([404]) as gone:
        with pytest.raises(AlertDeliveryError, match="HTTP 404"):
            send_failure_alert(missing_month_failure, AlertWebhookResource(url=gone.url))
        assert len(gone.bodies) == 1  # client errors are not retried


def test_credentials_in_the_webhook_url_are_never_said() -> None:
    """A relay's URL may carry basic-auth credentials (``https://user:token@host/``): the
    error (stored as the run's ``taxi/alert_error`` tag and logged) and ``describe()`` name
    the host only."""
    with Receiver([500]) as broken:
        url = broken.url.replace("http://", "http://relay:s3cr3t@")
        webhook = AlertWebhookResource(url=url, attempts=1)
        with pytest.raises(AlertDeliveryError) as raised:
            webhook.post({"text": "x"})
        assert len(broken.bodies) == 1
    host = f"127.0.0.1:{broken.server.server_port}"
    assert str(raised.value) == f"alert webhook on {host} did not accept the alert: HTTP 500"
    assert webhook.describe() == f"webhook on {host}"


def test_slack_markup_in_errors_is_escaped() -> None:
    summary = FailureSummary(
        run_id="0123456789",
        job_name="taxi_yellow_job",
        partition=None,
        assets=(),
        failed_steps=(("step", "Failure: x < 1 & y > 2"),),
    )
    payload = summary.slack_payload()
    assert "- step: Failure: x &lt; 1 &amp; y &gt; 2" in payload["text"]
    assert payload["blocks"][0]["text"]["text"] == payload["text"]


def test_the_sensor_is_part_of_the_definitions_and_on_by_default() -> None:
    defs = build_definitions("2019-01")
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    assert isinstance(sensor, dg.RunStatusSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    redelivery = defs.resolve_sensor_def(REDELIVERY_SENSOR_NAME)
    assert redelivery.default_status == dg.DefaultSensorStatus.RUNNING


def test_escaping_keeps_the_slack_text_within_its_cap(receiver: Receiver) -> None:
    """Escaping comes after the 2,900-character cut of the summary: an error full of `<`,
    `>` and `&` made a section text of 3,591 characters, over Slack's 3,000."""
    error = ("value <= 0 in column x & y; " * 30)[:600]
    summary = FailureSummary(
        run_id="0123456789",
        job_name="taxi_yellow_job",
        partition="2021-01",
        assets=("lake/yellow_tripdata",),
        failed_steps=tuple((f"step{i}", error) for i in range(6)),
    )
    assert len(summary.text()) == MAX_TEXT_CHARS
    AlertWebhookResource(url=receiver.url).post(summary.slack_payload())
    (body,) = receiver.bodies
    text = body["blocks"][0]["text"]["text"]
    assert len(text) <= MAX_TEXT_CHARS and text == body["text"]
    assert text.endswith("\u2026") and text.startswith("taxi_assets: run 01234567")
    assert "&lt;= 0 in column x &amp; y" in text
    assert not re.search(r"&[a-z]*\u2026$", text)  # no entity cut in half


@dg.asset
def broken_month() -> None:
    raise ValueError("the file has no rows")


def failed_run(instance: dg.DagsterInstance) -> str:
    result = dg.materialize([broken_month], instance=instance, raise_on_error=False)
    assert not result.success
    return result.run_id


def failure_context_of(instance: dg.DagsterInstance, run_id: str) -> dg.RunFailureSensorContext:
    """The failure sensor's context for failed run ``run_id``, as Dagster builds it."""
    failed, event = instance.get_run_by_id(run_id), run_failure_event(instance, run_id)
    assert failed is not None and event is not None
    return dg.build_run_status_sensor_context(
        sensor_name=SENSOR_NAME,
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=failed,
    ).for_run_failure()


def tick(
    sensor: dg.SensorDefinition,
    instance: dg.DagsterInstance,
    webhook: AlertWebhookResource,
    cursor: str | None = None,
) -> Any:  # Dagster's SensorExecutionData, not exported
    """One evaluation of the sensor as the daemon runs it (Dagster's cursor handling
    included), not a direct call of its function."""
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"alert_webhook": webhook}
    )
    return sensor.evaluate_tick(context)


def alert_tags(instance: dg.DagsterInstance, run_id: str) -> tuple[str | None, str | None]:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run.tags.get(alert_outbox.ALERT_TAG), run.tags.get(alert_outbox.ALERT_ERROR_TAG)


def test_an_alert_the_webhook_refused_is_posted_once_it_accepts_again(
    instance: dg.DagsterInstance,
) -> None:
    """Dagster's run-failure sensor moves its cursor past a run whose sensor function
    raised: the alert the webhook refused was never tried again."""
    failure_sensor, redelivery = build_alert_sensors()
    with Receiver([500, 500, 500]) as hook:
        webhook = AlertWebhookResource(url=hook.url, backoff_seconds=0.01)
        started = tick(failure_sensor, instance, webhook)  # Dagster sets the cursor
        run_id = failed_run(instance)
        refused = tick(failure_sensor, instance, webhook, started.cursor)
        (reaction,) = refused.dagster_run_reactions
        assert reaction.error is not None and "HTTP 500" in reaction.error.to_string()
        assert len(hook.bodies) == 3
        state, error = alert_tags(instance, run_id)
        assert state == "undelivered" and "HTTP 500" in (error or "")
        assert "secret" not in (error or "")
        # The failure sensor is past the run for good, as Dagster keeps it.
        assert not tick(failure_sensor, instance, webhook, refused.cursor).dagster_run_reactions
        assert len(hook.bodies) == 3

        # The webhook answers 200 again.
        redelivered = tick(redelivery, instance, webhook)
        assert redelivered.skip_message == "1 undelivered alert(s) posted"
        assert len(hook.bodies) == 4 and hook.bodies[3] == hook.bodies[0]
        assert f"run {run_id[:8]} of __ephemeral_asset_job__ failed" in hook.bodies[3]["text"]
        assert "caused by: ValueError: the file has no rows" in hook.bodies[3]["text"]
        assert alert_tags(instance, run_id)[0] == "delivered"
        assert tick(redelivery, instance, webhook).skip_message == "no undelivered alert"
        assert len(hook.bodies) == 4


def test_while_the_webhook_is_down_a_tick_tries_one_alert_and_none_is_lost(
    instance: dg.DagsterInstance,
) -> None:
    failure_sensor, redelivery = build_alert_sensors()
    with Receiver([503] * 6) as hook:
        webhook = AlertWebhookResource(url=hook.url, backoff_seconds=0.01)
        started = tick(failure_sensor, instance, webhook)
        first, second = failed_run(instance), failed_run(instance)
        refused = tick(failure_sensor, instance, webhook, started.cursor)
        assert [bool(r.error) for r in refused.dagster_run_reactions] == [True, False]
        assert len(hook.bodies) == 3  # the second alert joined the first unposted
        assert alert_tags(instance, second) == ("undelivered", "queued behind earlier")
        with pytest.raises(AlertDeliveryError, match=f"alert for run {first} still undelivered"):
            tick(redelivery, instance, webhook)
        assert len(hook.bodies) == 6  # one alert tried: the first, 3 attempts
        # It moved behind the second, which the next tick tries first.
        redelivered = tick(redelivery, instance, webhook)
        assert redelivered.skip_message == "2 undelivered alert(s) posted"
        titled = [body["text"].split()[2] for body in hook.bodies[6:]]  # "taxi_assets: run ID"
        assert titled == [second[:8], first[:8]]
        assert alert_tags(instance, first)[0] == alert_tags(instance, second)[0] == "delivered"


def test_an_alert_undelivered_for_too_long_is_abandoned_loudly(
    instance: dg.DagsterInstance,
) -> None:
    failure_sensor, redelivery = build_alert_sensors()
    with Receiver([500] * 3) as hook:
        webhook = AlertWebhookResource(url=hook.url, backoff_seconds=0.01)
        started = tick(failure_sensor, instance, webhook)
        run_id = failed_run(instance)
        tick(failure_sensor, instance, webhook, started.cursor)
        patient = AlertWebhookResource(url=hook.url, redeliver_for_hours=0)
        with pytest.raises(AlertDeliveryError, match=f"alert for run {run_id} abandoned"):
            tick(redelivery, instance, patient)
        assert len(hook.bodies) == 3
        assert alert_tags(instance, run_id)[0] == "abandoned"
        assert tick(redelivery, instance, patient).skip_message == "no undelivered alert"
    # Without a webhook nothing is posted and nothing changes.
    run_id = failed_run(instance)
    alert_outbox.mark(instance, run_id, alert_outbox.UNDELIVERED)
    waiting = tick(redelivery, instance, AlertWebhookResource())
    assert waiting.skip_message == "1 undelivered alert(s) wait: no webhook is configured"
    assert alert_tags(instance, run_id)[0] == "undelivered"


@pytest.fixture
def retrying(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[WorkspaceProcessContext, Receiver]]:
    """A code location with a failing job and the alert sensors, whose runs execute as
    they are submitted (the run-retry daemon's retries too), and its webhook, which
    refuses the first alert (three attempts)."""
    with Receiver([500] * 3) as hook, retry_location.sync_instance() as instance:
        monkeypatch.setenv("TAXI_ALERT_WEBHOOK_URL", hook.url)
        with retry_location.workspace(instance) as context:
            yield context, hook


def reacted(tick: Any) -> list[tuple[str | None, bool]]:
    """The runs a run-failure sensor's tick reacted to, and whether it failed for each."""
    return [
        (r.dagster_run.run_id if r.dagster_run else None, r.error is not None)
        for r in tick.dagster_run_reactions or []
    ]


def test_a_retried_run_gets_one_alert_of_its_own_not_its_parents_state(
    retrying: tuple[WorkspaceProcessContext, Receiver],
) -> None:
    """Dagster's run-retry daemon and the UI's re-execution give the new run its parent's
    tags, ``taxi/alert=undelivered`` included: the redelivery sensor took the retry's
    failure for an alert it had to post again, and the failure sensor posted it too (two
    alerts of the retry). Each failed run now gets exactly one delivered alert."""
    context, hook = retrying
    instance = context.instance
    started = retry_location.sensor_tick(context, SENSOR_NAME)
    parent = retry_location.launch_failing_run(context)
    refused = retry_location.sensor_tick(context, SENSOR_NAME, started.cursor)
    assert reacted(refused) == [(parent, True)]
    assert alert_tags(instance, parent)[0] == "undelivered"
    assert len(hook.bodies) == 3

    # Retried (or re-executed from the UI) while its alert waits; the retry fails too.
    child = retry_location.retry(context, parent)
    assert child.status == dg.DagsterRunStatus.FAILURE
    assert child.tags["dagster/parent_run_id"] == parent
    assert child.tags[alert_outbox.ALERT_TAG] == "undelivered"  # Dagster copied it
    assert "HTTP 500" in child.tags[alert_outbox.ALERT_ERROR_TAG]

    # The webhook accepts again. The redelivery sensor ticks first (it and the failure
    # sensor tick independently): it posts the parent's alert, not the retry's.
    redelivered = retry_location.sensor_tick(context, REDELIVERY_SENSOR_NAME)
    assert redelivered.skip_message == "1 undelivered alert(s) posted"
    assert posted_runs(hook.bodies[3:]) == [parent[:8]]
    # The failure sensor posts the retry's alert, once.
    seen = retry_location.sensor_tick(context, SENSOR_NAME, refused.cursor)
    assert reacted(seen) == [(child.run_id, False)]
    assert posted_runs(hook.bodies[3:]) == [parent[:8], child.run_id[:8]]
    again = retry_location.sensor_tick(context, REDELIVERY_SENSOR_NAME)
    assert again.skip_message == "no undelivered alert"
    assert len(hook.bodies) == 5
    assert alert_tags(instance, parent)[0] == "delivered"
    # The retry's tags now describe its own alert, not its parent's.
    assert alert_tags(instance, child.run_id) == ("delivered", "")
    retried = instance.get_run_by_id(child.run_id)
    assert retried is not None and retried.tags[alert_outbox.ALERT_RUN_TAG] == child.run_id


def retried_while_its_alert_waits(
    context: WorkspaceProcessContext,
    hook: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    retries: int,
) -> tuple[str, list[str]]:
    """A run that failed and whose alert the webhook refused, then ``retries`` real retries
    of it by Dagster's run-retry daemon, chained, the last succeeding, the failure sensor
    stopped meanwhile: each retry keeps its copy of the parent's ``undelivered`` tag.
    (The parent, the retries in order.)"""
    instance = context.instance
    started = retry_location.sensor_tick(context, SENSOR_NAME)
    parent = retry_location.launch_failing_run(context)
    retry_location.sensor_tick(context, SENSOR_NAME, started.cursor)
    assert alert_tags(instance, parent)[0] == "undelivered" and len(hook.bodies) == 3
    copies: list[str] = []
    last = parent
    for attempt in range(1, retries + 1):
        if attempt == retries:
            monkeypatch.setenv(retry_location.FIXED_ENV, "1")
        child = retry_location.retry(context, last)
        assert child.tags[alert_outbox.ALERT_TAG] == "undelivered"  # Dagster copied it
        assert child.tags[alert_outbox.ALERT_RUN_TAG] == parent
        copies.append(child.run_id)
        last = child.run_id
    assert child.status == dg.DagsterRunStatus.SUCCESS
    return parent, copies


def test_copied_undelivered_tags_are_re_marked_and_hide_no_waiting_alert(
    retrying: tuple[WorkspaceProcessContext, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster's retries copy ``taxi/alert=undelivered``: the UI's filter on it listed
    them for good (a retry that succeeded too), and the outbox read every run so tagged,
    with no limit, to drop the copies in Python (a limit would have let them hide the
    alerts that wait). The first read that meets a copy now re-marks it ``inherited``;
    every query of the read is bounded, and an alert waiting behind more copies than a
    tick's limit is posted in that tick."""
    context, hook = retrying
    instance = context.instance
    parent, copies = retried_while_its_alert_waits(
        context, hook, monkeypatch, REDELIVERIES_PER_TICK + 2
    )
    # Another run fails after them, its alert refused as the failure sensor tags it: it
    # waits behind every copy in the outbox's order (least recently tagged first).
    behind = failed_run(instance)
    alert_outbox.mark(instance, behind, alert_outbox.UNDELIVERED, "HTTP 500")

    limits: list[int | None] = []
    read = dg.DagsterInstance.get_run_records

    def observed(
        self: dg.DagsterInstance, filters: Any = None, limit: Any = None, **kw: Any
    ) -> Any:
        if filters is not None and alert_outbox.ALERT_TAG in (filters.tags or {}):
            limits.append(limit)
        return read(self, filters, limit, **kw)

    monkeypatch.setattr(dg.DagsterInstance, "get_run_records", observed)
    # The webhook accepts again: one tick of the redelivery sensor posts both alerts.
    redelivered = retry_location.sensor_tick(context, REDELIVERY_SENSOR_NAME)
    assert redelivered.skip_message == "2 undelivered alert(s) posted"
    assert posted_runs(hook.bodies[3:]) == [parent[:8], behind[:8]]
    assert limits and all(limit == REDELIVERIES_PER_TICK for limit in limits), limits
    for run_id in copies:
        retry = instance.get_run_by_id(run_id)
        assert retry is not None
        assert alert_tags(instance, run_id) == ("inherited", ""), run_id
        assert retry.tags[alert_outbox.ALERT_RUN_TAG] == run_id
    # The UI's filter lists no copy; nothing waits any more.
    listed = instance.get_run_records(dg.RunsFilter(tags={alert_outbox.ALERT_TAG: "undelivered"}))
    assert listed == []
    assert retry_location.sensor_tick(context, REDELIVERY_SENSOR_NAME).skip_message == (
        "no undelivered alert"
    )


def test_a_backlog_of_copies_is_re_marked_a_bounded_number_per_read(
    retrying: tuple[WorkspaceProcessContext, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copies of ``taxi/alert=undelivered`` left by older versions may number thousands:
    re-marked all in one read, a tick could outrun Dagster's 60 s. A read now re-marks at
    most its bound (here 2, ``REMARKS_PER_READ`` deployed) and the next read goes on; an
    alert behind the copies is found by a later tick and posted, none is lost."""
    context, hook = retrying
    instance = context.instance
    parent, copies = retried_while_its_alert_waits(context, hook, monkeypatch, 6)
    behind = failed_run(instance)  # refused too: it waits behind every copy
    alert_outbox.mark(instance, behind, alert_outbox.UNDELIVERED, "HTTP 500")

    def inherited() -> list[str]:
        return [run_id for run_id in copies if alert_tags(instance, run_id)[0] == "inherited"]

    webhook = AlertWebhookResource(url=hook.url)
    log = dg.get_dagster_logger()
    # The webhook accepts again. The first tick reads the parent and 4 copies (a page of
    # REDELIVERIES_PER_TICK), re-marks 2 and stops: the parent is posted, not ``behind``.
    first = redeliver_alerts(instance, webhook, log, remarks_per_read=2)
    assert first == (
        "1 undelivered alert(s) posted (more may wait behind copied tags: the next tick goes on)"
    )
    assert inherited() == copies[:2]
    assert posted_runs(hook.bodies[3:]) == [parent[:8]]
    # The next tick re-marks the next 2; ``behind`` is in its page now, and posted.
    second = redeliver_alerts(instance, webhook, log, remarks_per_read=2)
    assert second.startswith("1 undelivered alert(s) posted (more may wait"), second
    assert inherited() == copies[:4]
    assert posted_runs(hook.bodies[3:]) == [parent[:8], behind[:8]]
    # The third finishes: the last 2 copies, nothing more to post or re-mark.
    assert redeliver_alerts(instance, webhook, log, remarks_per_read=2) == "no undelivered alert"
    assert inherited() == copies
    listed = instance.get_run_records(dg.RunsFilter(tags={alert_outbox.ALERT_TAG: "undelivered"}))
    assert listed == []
    assert alert_tags(instance, behind)[0] == alert_tags(instance, parent)[0] == "delivered"
    assert len(hook.bodies) == 5


def test_a_read_with_only_copies_at_its_bound_says_the_next_tick_goes_on(
    retrying: tuple[WorkspaceProcessContext, Receiver],
) -> None:
    """A tick that re-marks its bound of copies and finds no waiting alert among them says
    so, not "no undelivered alert": more copies, and alerts behind them, may remain."""
    context, hook = retrying
    instance = context.instance
    started = retry_location.sensor_tick(context, SENSOR_NAME)
    parent = retry_location.launch_failing_run(context)
    retry_location.sensor_tick(context, SENSOR_NAME, started.cursor)
    copies: list[str] = []
    for _ in range(REDELIVERIES_PER_TICK):  # a page of copies: no waiting alert among them
        copies.append(retry_location.retry(context, copies[-1] if copies else parent).run_id)
    alert_outbox.mark(instance, parent, alert_outbox.DELIVERED)  # as if posted since
    behind = failed_run(instance)
    alert_outbox.mark(instance, behind, alert_outbox.UNDELIVERED, "HTTP 500")
    webhook = AlertWebhookResource(url=hook.url)
    log = dg.get_dagster_logger()
    assert redeliver_alerts(instance, webhook, log, remarks_per_read=1) == (
        "no undelivered alert found yet: 1 copied taxi/alert=undelivered tags re-marked "
        "inherited, the next tick goes on"
    )
    assert [alert_tags(instance, run_id)[0] for run_id in copies] == ["inherited"] + [
        "undelivered"
    ] * (REDELIVERIES_PER_TICK - 1)
    # The next read re-marks one more copy and finds ``behind`` in its page: posted.
    assert redeliver_alerts(instance, webhook, log, remarks_per_read=1).startswith(
        "1 undelivered alert(s) posted (more may wait"
    )
    assert posted_runs(hook.bodies[3:]) == [behind[:8]]
    with pytest.raises(ValueError, match="remarks_per_read must be at least 1, not 0"):
        alert_outbox.undelivered(instance, limit=2, remarks_per_read=0)


def test_without_a_webhook_a_read_at_its_bound_says_the_next_tick_goes_on(
    retrying: tuple[WorkspaceProcessContext, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no webhook configured, the redelivery sensor said how many alerts wait but not,
    as it does when it posts, that more may wait behind copies it has not re-marked yet."""
    context, hook = retrying
    instance = context.instance
    parent, copies = retried_while_its_alert_waits(context, hook, monkeypatch, 2)
    monkeypatch.delenv("TAXI_ALERT_WEBHOOK_URL")
    log = dg.get_dagster_logger()
    unset = AlertWebhookResource()
    assert redeliver_alerts(instance, unset, log, remarks_per_read=1) == (
        "1 undelivered alert(s) wait: no webhook is configured "
        "(more may wait behind copied tags: the next tick goes on)"
    )
    assert [alert_tags(instance, run_id)[0] for run_id in copies] == ["inherited", "undelivered"]
    # The next read re-marks the last copy: nothing more is said.
    assert redeliver_alerts(instance, unset, log, remarks_per_read=1) == (
        "1 undelivered alert(s) wait: no webhook is configured"
    )
    assert alert_tags(instance, parent)[0] == "undelivered" and len(hook.bodies) == 3


def test_the_failure_sensor_re_marks_few_copies_and_leaves_a_backlog_to_redelivery(
    retrying: tuple[WorkspaceProcessContext, Receiver],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The failure sensor reads the outbox only to tell whether a new alert joins waiting
    ones; it re-marked up to 200 copies for each failed run it saw (5 a tick), 2.4 s a run
    on SQLite and 4.7 s on PostgreSQL over a backlog. It now re-marks at most
    ``FAILURE_SENSOR_REMARKS``: an alert behind more copies is the redelivery sensor's,
    and the new alert is posted at once; behind fewer, the new alert still joins it."""
    context, hook = retrying
    instance = context.instance
    bound = FAILURE_SENSOR_REMARKS
    parent, copies = retried_while_its_alert_waits(context, hook, monkeypatch, bound + 2)
    alert_outbox.mark(instance, parent, alert_outbox.DELIVERED)  # as if posted since
    behind = failed_run(instance)  # refused: it waits behind every copy
    alert_outbox.mark(instance, behind, alert_outbox.UNDELIVERED, "HTTP 500")

    def inherited() -> list[str]:
        return [run_id for run_id in copies if alert_tags(instance, run_id)[0] == "inherited"]

    webhook = AlertWebhookResource(url=hook.url)  # it accepts again
    first = failed_run(instance)
    capfd.readouterr()
    send_failure_alert(failure_context_of(instance, first), webhook)
    assert inherited() == copies[:bound]
    assert posted_runs(hook.bodies[3:]) == [first[:8]]  # ``behind`` was not reached
    # Said in the tick's log: an alert may wait behind the copies left, posted later.
    assert f"Alert for run {first} posted without waiting for earlier ones" in (
        capfd.readouterr().err
    )
    assert alert_tags(instance, behind)[0] == "undelivered"
    # The next failed run's read re-marks the last 2 copies and finds ``behind``.
    second = failed_run(instance)
    send_failure_alert(failure_context_of(instance, second), webhook)
    assert "posted without waiting for earlier ones" not in capfd.readouterr().err
    assert inherited() == copies
    assert alert_tags(instance, second) == ("undelivered", "queued behind earlier")
    assert posted_runs(hook.bodies[3:]) == [first[:8]]
    # None is lost: the redelivery sensor posts both.
    redelivered = retry_location.sensor_tick(context, REDELIVERY_SENSOR_NAME)
    assert redelivered.skip_message == "2 undelivered alert(s) posted"
    assert posted_runs(hook.bodies[3:]) == [first[:8], behind[:8], second[:8]]


def test_an_undelivered_alert_tagged_before_alert_run_existed_is_still_posted(
    instance: dg.DagsterInstance, receiver: Receiver
) -> None:
    """Runs tagged by the version before ``taxi/alert_run`` carry only ``taxi/alert``:
    their alerts are theirs, and still posted."""
    run_id = failed_run(instance)
    instance.add_run_tags(run_id, {alert_outbox.ALERT_TAG: alert_outbox.UNDELIVERED})
    _, redelivery = build_alert_sensors()
    redelivered = tick(redelivery, instance, AlertWebhookResource(url=receiver.url))
    assert redelivered.skip_message == "1 undelivered alert(s) posted"
    assert posted_runs(receiver.bodies) == [run_id[:8]]
    assert alert_tags(instance, run_id)[0] == "delivered"
