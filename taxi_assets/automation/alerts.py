"""Alerts: run-failure summaries in the log and, when configured, to a webhook.

A run-failure sensor (on by default) turns every failed run of this code location into a
short summary: job, partition, assets, each failed step with its error, and each failed
asset check (a failed blocking check fails its step, hence the run). The summary always
goes to the sensor's log; when ``$TAXI_ALERT_WEBHOOK_URL`` (or ``AlertWebhookResource.url``)
is set, it is also POSTed as Slack-compatible JSON (``text`` plus one ``mrkdwn`` block), which
Slack incoming webhooks, Mattermost and most chat relays accept. Settings are read when the
sensor evaluates, like every other setting of the project (see ``taxi_assets.settings``).

An alert the webhook does not accept is not lost: Dagster's run-failure sensor would never
see its run again, so the run is tagged undelivered (``automation/alert_outbox.py``) and
the redelivery sensor posts it again every minute, least recently tried first, until the
webhook accepts it or ``redeliver_for_hours`` after the run ended (then it is tagged
abandoned). Both sensors' ticks fail meanwhile, naming the runs. While alerts wait, a newly
failed run's alert joins them unposted: a tick of either sensor tries at most one post
that fails, however many runs fail while the webhook is down (unless a backlog of copied
tags stands before the waiting alerts: ``FAILURE_SENSOR_REMARKS``).
"""

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import requests

from taxi_assets.automation import alert_outbox
from taxi_assets.automation.run_partitions import describe_partitions
from taxi_assets.instance_reads import run_check_evaluations, run_events, run_planned_assets
from taxi_assets.settings import resolve_setting

SENSOR_NAME = "taxi_run_failure_alert"
REDELIVERY_SENSOR_NAME = "taxi_alert_redelivery"
REDELIVERIES_PER_TICK = 5  # a tick of the redelivery sensor stops at its first failed post
# Copied tags the failure sensor's read of the outbox re-marks at most, for each failed run
# (Dagster reacts to at most 5 a tick), not the 200 of the redelivery sensor's reads. This
# read only tells whether a new alert joins waiting ones, and the redelivery sensor's read,
# every minute, re-marks every copy before the alerts it reads (an alert moves behind a
# copy only when tried, and it is tried only once read): copies stand before a waiting
# alert here only in a backlog that the redelivery sensor drains 200 a tick, while it is
# stopped, or when a copy's run ended during its post. Over 1,200 copies, 200 took
# 2.4 s a failed run on SQLite and 4.7 s on PostgreSQL (a tick of 5: 11.6 s, 32.7 s);
# 5 keep this answer exact for a few copies. Past them, the new alert is posted at once:
# while the webhook is down, that is a failed post for each failed run until the backlog
# is drained (as it was past 200 copies).
FAILURE_SENSOR_REMARKS = 5
MAX_ERROR_CHARS = 600
MAX_TEXT_CHARS = 2900  # Slack caps a section block at 3000 characters
_QUALIFIED_CLASS = re.compile(r"^(?:[A-Za-z_][\w]*\.)+([A-Za-z_]\w*): ")


@dataclass(frozen=True)
class FailedCheck:
    asset: str
    check: str
    severity: str
    blocking: bool
    description: str | None


class AlertDeliveryError(Exception):
    """The webhook did not accept the alert after every attempt."""


@dataclass(frozen=True, kw_only=True)
class FailureSummary:
    run_id: str
    run_url: str | None = None  # a link to the run in the UI, when its address is known
    job_name: str
    partition: str | None
    assets: tuple[str, ...]
    failed_steps: tuple[tuple[str, str], ...]  # (step key, first lines of the error)
    failed_checks: tuple[FailedCheck, ...] = field(default=())

    @property
    def title(self) -> str:
        where = f" for partition {self.partition}" if self.partition else ""
        return f"taxi_assets: run {self.run_id[:8]} of {self.job_name}{where} failed"

    def text(self) -> str:
        lines = [self.title]
        if self.assets:
            shown = ", ".join(self.assets[:10])
            more = f" (+{len(self.assets) - 10} more)" if len(self.assets) > 10 else ""
            lines.append(f"Assets: {shown}{more}")
        if self.failed_steps:
            lines.append("Failed steps:")
            lines += [f"- {step}: {error}" for step, error in self.failed_steps]
        else:
            lines.append("No step failed: the run failed outside the steps (see its event log).")
        if self.failed_checks:
            lines.append("Failed checks:")
            for c in self.failed_checks:
                kind = f"{c.severity}{', blocking' if c.blocking else ''}"
                lines.append(
                    f"- {c.asset} {c.check} ({kind})"
                    + (f": {c.description}" if c.description else "")
                )
        lines.append(f"Run: {self.run_url or self.run_id}")
        return _truncate("\n".join(lines), MAX_TEXT_CHARS)

    def slack_payload(self) -> dict[str, Any]:
        # Slack reads `<`, `>` and `&` as markup in both fields: escape them, then keep the
        # escaped text within the cap (each escape adds characters).
        text = self.text().replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if len(text) > MAX_TEXT_CHARS:
            cut = text[: MAX_TEXT_CHARS - 1]
            entity = cut.rfind("&")
            if entity >= 0 and ";" not in cut[entity:]:
                cut = cut[:entity]  # never half an entity
            text = cut + "\u2026"
        return {
            "text": text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
        }


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _first_lines(message: str, lines: int = 3) -> str:
    kept = " ".join(line.strip() for line in message.strip().splitlines()[:lines] if line.strip())
    return _truncate(_QUALIFIED_CLASS.sub(r"\1: ", kept), MAX_ERROR_CHARS)


def _error_text(error: object) -> str:
    """An error and its causes, outermost first (Dagster wraps user errors in its own)."""
    parts: list[str] = []
    while error is not None and len(parts) < 3:
        parts.append(_first_lines(getattr(error, "message", "") or ""))
        error = getattr(error, "cause", None)
    return _truncate(" <- caused by: ".join(p for p in parts if p), MAX_ERROR_CHARS)


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[FailedCheck]:
    """Asset check evaluations of the run that did not pass."""
    return [
        FailedCheck(
            asset=evaluation.asset_key.to_user_string(),
            check=evaluation.check_name,
            severity=evaluation.severity.value,
            blocking=bool(evaluation.blocking),
            description=evaluation.description,
        )
        for evaluation in run_check_evaluations(instance, run_id)
        if not evaluation.passed
    ]


def run_assets(instance: dg.DagsterInstance, run: dg.DagsterRun) -> set[dg.AssetKey]:
    """The assets a run set out to materialize (its selection, else its planned events)."""
    if run.asset_selection:
        return set(run.asset_selection)
    return run_planned_assets(instance, run.run_id)


def summarize_failure(context: dg.RunFailureSensorContext, ui_url: str | None) -> FailureSummary:
    return summarize_run(context.instance, context.dagster_run, context.failure_event, ui_url)


def summarize_run(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    failure_event: dg.DagsterEvent | None,
    ui_url: str | None,
) -> FailureSummary:
    """The summary of a failed run, from what it recorded (its step failures, its failed
    checks and, when no step failed, its run failure event)."""
    steps = []
    for entry in run_events(instance, run.run_id, dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        if event is None:
            continue
        error = getattr(event.event_specific_data, "error", None)
        message = _error_text(error) if error is not None else _first_lines(event.message or "")
        steps.append((event.step_key or "?", message))
    if not steps and failure_event is not None and failure_event.message:
        steps = [("run", _first_lines(failure_event.message))]
    assets = tuple(sorted(key.to_user_string() for key in run_assets(instance, run)))
    return FailureSummary(
        run_id=run.run_id,
        job_name=run.job_name,
        partition=describe_partitions(run.tags),
        assets=assets,
        failed_steps=tuple(steps),
        failed_checks=tuple(failed_checks(instance, run.run_id)),
        run_url=f"{ui_url.rstrip('/')}/runs/{run.run_id}" if ui_url else None,
    )


def run_failure_event(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterEvent | None:
    """The run's RUN_FAILURE event (the last, should there be several)."""
    events = run_events(instance, run_id, dg.DagsterEventType.RUN_FAILURE)
    return events[-1].dagster_event if events else None


def _host(url: str) -> str:
    """The webhook's host and port, for messages: not ``netloc``, which holds the URL's
    credentials (``https://user:token@relay/``), and the messages are logged and stored
    as run tags."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


class AlertWebhookResource(dg.ConfigurableResource):
    """Where alerts go besides the log.

    ``url`` (or ``$TAXI_ALERT_WEBHOOK_URL``): a Slack-compatible incoming webhook; unset,
    alerts are only logged. The URL usually embeds a secret, so it is never logged: only
    its host is. ``ui_url`` (or ``$TAXI_UI_URL``) adds a link to the failed run. An alert
    the webhook did not accept is posted again until ``redeliver_for_hours`` after its
    run ended.
    """

    url: str | None = None
    ui_url: str | None = None
    timeout_seconds: float = 10.0
    attempts: int = 3
    backoff_seconds: float = 1.0
    redeliver_for_hours: float = 24.0

    def webhook_url(self) -> str | None:
        return resolve_setting(self.url, "TAXI_ALERT_WEBHOOK_URL", None)

    def resolved_ui_url(self) -> str | None:
        return resolve_setting(self.ui_url, "TAXI_UI_URL", None)

    def describe(self) -> str:
        url = self.webhook_url()
        return f"webhook on {_host(url)}" if url else "no webhook configured"

    def post(self, payload: dict[str, object]) -> None:
        """POST ``payload`` as JSON; retries 5xx and connection errors, then raises."""
        url = self.webhook_url()
        if not url:
            return
        host = _host(url)
        problem = ""
        for attempt in range(1, max(1, self.attempts) + 1):
            try:
                response = requests.post(url, json=payload, timeout=self.timeout_seconds)
            except requests.RequestException as error:
                problem = f"{type(error).__name__}"
            else:
                if response.status_code < 300:
                    return
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    break  # a client error will not go away by retrying
            if attempt < self.attempts:
                time.sleep(self.backoff_seconds * attempt)
        raise AlertDeliveryError(f"alert webhook on {host} did not accept the alert: {problem}")


def build_alert_sensors() -> list[dg.SensorDefinition]:
    """The run-failure alert sensor and the redelivery sensor of the alerts it could not
    deliver; both post through the ``alert_webhook`` resource."""

    @dg.run_failure_sensor(
        name=SENSOR_NAME,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description=(
            "Logs a summary of every failed run (failed steps, failed asset checks) and posts "
            "it to $TAXI_ALERT_WEBHOOK_URL when set."
        ),
    )
    def taxi_run_failure_alert(
        context: dg.RunFailureSensorContext, alert_webhook: AlertWebhookResource
    ) -> None:
        send_failure_alert(context, alert_webhook)

    @dg.sensor(
        name=REDELIVERY_SENSOR_NAME,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
        description=(
            "Posts again the failure alerts the webhook did not accept (runs tagged "
            f"{alert_outbox.ALERT_TAG}={alert_outbox.UNDELIVERED}); its tick fails while "
            "one stays undelivered."
        ),
    )
    def taxi_alert_redelivery(
        context: dg.SensorEvaluationContext, alert_webhook: AlertWebhookResource
    ) -> dg.SkipReason:
        return dg.SkipReason(redeliver_alerts(context.instance, alert_webhook, context.log))

    return [taxi_run_failure_alert, taxi_alert_redelivery]


def send_failure_alert(
    context: dg.RunFailureSensorContext, webhook: AlertWebhookResource
) -> FailureSummary:
    """Log the run's summary and post it; an alert the webhook does not accept is kept on
    its run for :func:`redeliver_alerts`, and the error raised fails the sensor's tick."""
    summary = summarize_failure(context, webhook.resolved_ui_url())
    context.log.error(summary.text())
    if not webhook.webhook_url():
        return summary
    instance, run_id = context.instance, summary.run_id
    found = alert_outbox.read(instance, limit=2, remarks_per_read=FAILURE_SENSOR_REMARKS)
    waiting = [
        record.dagster_run.run_id for record in found.records if record.dagster_run.run_id != run_id
    ]
    if waiting:
        # The webhook refused the last alert tried: this one joins the waiting ones, so
        # a tick does not spend minutes on a webhook that is down (3 attempts each).
        alert_outbox.mark(instance, run_id, alert_outbox.UNDELIVERED, "queued behind earlier")
        context.log.warning(
            f"Alert for run {run_id} queued: earlier alerts are still undelivered "
            f"(run {waiting[0]}, ...); {REDELIVERY_SENSOR_NAME} posts it with them"
        )
        return summary
    if found.copies_left:
        # Said, so that an operator who sees alerts arrive out of order knows why.
        context.log.info(
            f"Alert for run {run_id} posted without waiting for earlier ones: the outbox "
            f"still holds copied tags past the {FAILURE_SENSOR_REMARKS} this read re-marks "
            f"(a backlog {REDELIVERY_SENSOR_NAME} drains), and an alert waiting behind "
            "them is posted after this one"
        )
    try:
        webhook.post(summary.slack_payload())
    except AlertDeliveryError as error:
        alert_outbox.mark(instance, run_id, alert_outbox.UNDELIVERED, str(error))
        raise AlertDeliveryError(
            f"{error}; run {run_id} is tagged {alert_outbox.ALERT_TAG}="
            f"{alert_outbox.UNDELIVERED} and {REDELIVERY_SENSOR_NAME} posts it again every "
            f"minute for {webhook.redeliver_for_hours:g} h"
        ) from error
    if alert_outbox.ALERT_TAG in context.dagster_run.tags:
        # Tags copied from the run this one re-executes (this sensor sees a run once): they
        # now say this run's alert was delivered, and no longer show the parent's error.
        alert_outbox.mark(instance, run_id, alert_outbox.DELIVERED, error="")
    context.log.info(f"Alert for run {run_id} posted ({webhook.describe()})")
    return summary


def redeliver_alerts(
    instance: dg.DagsterInstance,
    webhook: AlertWebhookResource,
    log: logging.Logger | dg.DagsterLogManager,
    now: float | None = None,
    remarks_per_read: int = alert_outbox.REMARKS_PER_READ,
) -> str:
    """Post the undelivered alerts, least recently tried first, stopping at the first the
    webhook does not accept (it is likely down: one failed post per tick). Raises
    :class:`AlertDeliveryError` naming the alert it could not post and any it gave up, so
    the tick fails visibly; returns what it did otherwise. ``remarks_per_read``: copied
    tags the outbox's read re-marks at most (:func:`alert_outbox.read`)."""
    found = alert_outbox.read(instance, REDELIVERIES_PER_TICK, remarks_per_read)
    pending = found.records
    if not pending and found.copies_left:
        return (
            f"no undelivered alert found yet: {remarks_per_read} copied "
            f"{alert_outbox.ALERT_TAG}={alert_outbox.UNDELIVERED} tags re-marked "
            f"{alert_outbox.INHERITED}, the next tick goes on"
        )
    if not pending:
        return "no undelivered alert"
    if not webhook.webhook_url():
        unposted = f"{len(pending)} undelivered alert(s) wait: no webhook is configured"
        return unposted + _more_may_wait(found)
    now = time.time() if now is None else now
    delivered: list[str] = []
    problems: list[str] = []
    for record in pending:
        run = record.dagster_run
        ended = record.end_time or record.create_timestamp.timestamp()
        if now - ended > webhook.redeliver_for_hours * 3600:
            alert_outbox.mark(instance, run.run_id, alert_outbox.ABANDONED)
            problems.append(
                f"alert for run {run.run_id} abandoned: not delivered within "
                f"{webhook.redeliver_for_hours:g} h of the run's end (tagged "
                f"{alert_outbox.ALERT_TAG}={alert_outbox.ABANDONED})"
            )
            continue
        summary = summarize_run(
            instance, run, run_failure_event(instance, run.run_id), webhook.resolved_ui_url()
        )
        try:
            webhook.post(summary.slack_payload())
        except AlertDeliveryError as error:
            alert_outbox.mark(instance, run.run_id, alert_outbox.UNDELIVERED, str(error))
            problems.append(f"alert for run {run.run_id} still undelivered: {error}")
            break
        alert_outbox.mark(instance, run.run_id, alert_outbox.DELIVERED)
        delivered.append(run.run_id)
        log.info(f"Alert for run {run.run_id} posted on redelivery ({webhook.describe()})")
    done = f"{len(delivered)} undelivered alert(s) posted" + _more_may_wait(found)
    if problems:
        raise AlertDeliveryError(f"{done}; " + "; ".join(problems))
    return done


def _more_may_wait(found: alert_outbox.OutboxRead) -> str:
    """What a tick that found alerts adds when its read stopped at its bound of re-marked
    copies: more alerts may wait behind the copies left, for the next tick."""
    return " (more may wait behind copied tags: the next tick goes on)" if found.copies_left else ""
