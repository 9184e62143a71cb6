"""Where trip files come from, and how hard to try: resolved when a run starts."""

from pathlib import Path

import dagster as dg
import requests
from pydantic import Field

from taxi_assets.settings import resolve_setting
from taxi_assets.upstream.bounded_head import probe_policy, within
from taxi_assets.upstream.download import (
    DownloadedFile,
    DownloadError,
    RemoteFile,
    RetryPolicy,
    SourceForbidden,
    SourceNotFound,
    download,
    head,
    make_session,
)
from taxi_assets.upstream.forbidden import ForbiddenVerdict, explain_forbidden
from taxi_assets.upstream.layout import (
    DEFAULT_DTC_URL,
    DEFAULT_TLC_URL,
    DEFAULT_ZONES_URL,
    SourceLayout,
)


class TaxiSourceResource(dg.ConfigurableResource):
    """The published files. Each URL field falls back to its environment variable, then
    to the public upstream: ``TAXI_SOURCE``, ``TAXI_DTC_URL``, ``TAXI_TLC_URL``,
    ``TAXI_ZONES_URL``."""

    source: str | None = Field(default=None, description="auto, dtc or tlc ($TAXI_SOURCE).")
    dtc_url: str | None = Field(default=None, description="Course mirror base ($TAXI_DTC_URL).")
    tlc_url: str | None = Field(default=None, description="TLC's file base ($TAXI_TLC_URL).")
    zones_url: str | None = Field(default=None, description="Zone lookup CSV ($TAXI_ZONES_URL).")
    attempts: int = Field(default=5, description="Tries per request (transient failures).")
    backoff_seconds: float = Field(
        default=1.0, description="First wait between tries; doubles each time, with jitter."
    )
    backoff_max_seconds: float = Field(
        default=60.0,
        description="Longest wait between tries, also for a server's Retry-After.",
    )
    connect_timeout_seconds: float = 15.0
    read_timeout_seconds: float = 60.0
    probe_timeout_seconds: float = Field(
        default=5.0,
        description="Timeout of a probe: the one HEAD attempt sensors and checks make.",
    )

    def layout(self) -> SourceLayout:
        return SourceLayout(
            source=resolve_setting(self.source, "TAXI_SOURCE", "auto") or "auto",
            dtc_url=resolve_setting(self.dtc_url, "TAXI_DTC_URL", DEFAULT_DTC_URL) or "",
            tlc_url=resolve_setting(self.tlc_url, "TAXI_TLC_URL", DEFAULT_TLC_URL) or "",
            zones_url=resolve_setting(self.zones_url, "TAXI_ZONES_URL", DEFAULT_ZONES_URL) or "",
        )

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=self.attempts,
            backoff_seconds=self.backoff_seconds,
            backoff_max_seconds=self.backoff_max_seconds,
            connect_timeout_seconds=self.connect_timeout_seconds,
            read_timeout_seconds=self.read_timeout_seconds,
        )

    def session(self) -> requests.Session:
        return make_session()

    def head(self, url: str, log=lambda _: None) -> RemoteFile:  # noqa: ANN001
        return head(url, self.retry_policy(), log=log)

    def probe(self, url: str) -> RemoteFile:
        """HEAD ``url`` once, never the download retry policy, its whole answer within the
        probe timeout (not each read of it: ``upstream/bounded_head.py``): for the new-month
        sensor (a tick must finish well within Dagster's 60 s) and the checks."""
        timeout = self.probe_timeout_seconds
        return within(
            url, timeout, lambda session: head(url, probe_policy(timeout), session=session)
        )

    def explain_forbidden(
        self,
        dataset: str,
        month: str,
        url: str,
        newest_loaded: str | None,
        ask_newest: bool = True,
    ) -> ForbiddenVerdict:
        """What a 403 for ``dataset``'s ``month`` at ``url`` means: "not published yet", or,
        when the newest loaded month answers 403 at TLC too, "the source refuses access".
        ``ask_newest=False``: the newest loaded month is not asked (the caller has just had
        its answer, not a 403, or has no time left), and TLC's 403 reads "not published"."""
        layout = self.layout()
        source = layout.source_for(month, dataset)
        newest_url, newest_forbidden = None, None
        if ask_newest and source == "tlc" and newest_loaded is not None and newest_loaded != month:
            newest_url, _ = layout.tlc_trip_file(dataset, newest_loaded)
            try:
                self.probe(newest_url)
                newest_forbidden = False
            except SourceForbidden:
                newest_forbidden = True
            except (SourceNotFound, DownloadError):
                newest_forbidden = None  # unknown: read TLC's 403 as "not published yet"
        return explain_forbidden(
            source=source,
            service=dataset.removesuffix("_tripdata"),
            month=month,
            url=url,
            newest_loaded=newest_loaded,
            newest_url=newest_url,
            newest_forbidden=newest_forbidden,
        )

    def download(self, url: str, name: str, dest_dir: Path, log=lambda _: None) -> DownloadedFile:  # noqa: ANN001
        return download(url, name, dest_dir, self.retry_policy(), log=log)
