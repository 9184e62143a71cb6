"""Can this machine fetch the published files? One HEAD per service, before the first run.

``lake check`` and ``warehouse check`` say whether a run could write; this says whether it
could read: for each service the first month the platform loads (a month published long
ago, so its file must be there) and the zone lookup, one HEAD each with the sensor's
short timeout, never the download's retries. What fails is said as a run would meet it:
a host unknown to DNS, a TLS certificate the system does not trust (a proxy that re-signs
TLS: ``REQUESTS_CA_BUNDLE``), a source that does not answer, a 404, and TLC's 403, which
for a month published long ago means the source refuses access (a wrong URL), not "not
published yet".
"""

from __future__ import annotations

from dataclasses import dataclass

from taxi_assets.partitions import first_month_of
from taxi_assets.resources.source import TaxiSourceResource
from taxi_assets.services import SERVICES
from taxi_assets.upstream.download import DownloadError, SourceForbidden, SourceNotFound
from taxi_assets.upstream.shown_url import shown_url


@dataclass(frozen=True)
class Probed:
    """One file HEADed: what, where, and what came of it (``problem`` None: found)."""

    what: str
    url: str
    found: str = ""
    problem: str | None = None
    skipped: str | None = None  # why nothing was asked (a month before the service)

    def line(self) -> str:
        if self.skipped is not None:
            return f"skipped  {self.what}: {self.skipped}"
        if self.problem is None:
            return f"ok       {self.what}: {self.found} at {shown_url(self.url)}"
        return f"PROBLEM  {self.what}: {self.problem}"


def check_source(
    source: TaxiSourceResource, first_month: str, month: str | None = None
) -> list[Probed]:
    """HEAD each service's file for ``month`` (default: the first month it loads, given
    ``first_month``, ``TAXI_FIRST_MONTH``) and the zone lookup."""
    layout = source.layout()
    probed = []
    for name, service in SERVICES.items():
        wanted = month or first_month_of(service.first_published_month, first_month)
        if wanted < service.first_published_month:
            # TLC has no such file (FHVHV before 2019-02): no month of the service to load.
            reason = f"the service starts at {service.first_published_month}"
            probed.append(Probed(f"{name} {wanted}", "", skipped=reason))
            continue
        url, _ = layout.trip_file(service.dataset, wanted)
        origin = layout.source_for(wanted, service.dataset)
        published_long_ago = month is None
        probed.append(
            _probe(source, f"{name} {wanted} ({origin})", url, origin, published_long_ago)
        )
    zones_url, _ = layout.zones_file()
    probed.append(_probe(source, "zone lookup", zones_url, "zones", published_long_ago=True))
    return probed


def _probe(
    source: TaxiSourceResource, what: str, url: str, origin: str, published_long_ago: bool
) -> Probed:
    setting = {"tlc": "TAXI_TLC_URL", "dtc": "TAXI_DTC_URL"}.get(origin, "TAXI_ZONES_URL")
    try:
        remote = source.probe(url)
    except SourceNotFound as missing:
        return Probed(what, url, problem=f"{missing}: check {setting}")
    except SourceForbidden:
        if published_long_ago:
            problem = (
                f"HTTP 403 at {shown_url(url)}: the source refuses access (TLC's host answers "
                f"403 for every file under a wrong base URL): check {setting}"
            )
        else:
            problem = (
                f"HTTP 403 at {shown_url(url)}: not published yet (TLC's host answers 403 for "
                f"a month it has not published), or a wrong {setting}"
            )
        return Probed(what, url, problem=problem)
    except DownloadError as error:  # DNS, TLS, a source that does not answer in time
        return Probed(what, url, problem=str(error))
    size = f"{remote.size / 1e6:,.1f} MB" if remote.size is not None else "size unknown"
    return Probed(what, url, found=size)
