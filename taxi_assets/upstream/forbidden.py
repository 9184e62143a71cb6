"""What an HTTP 403 from a source means (plain functions: no Dagster, no requests).

TLC's file host is S3 behind CloudFront: for a key that does not exist it answers
``403 Forbidden`` (S3 ``AccessDenied``), not 404, so a 403 on a trip file is how TLC says
"not published yet", the most common answer at the live source. A HEAD response has no
body to read the S3 error code from, so the status decides. The same 403 comes back for
every file when ``TAXI_TLC_URL`` points at the wrong place; to tell the two apart, the
caller asks again for the newest month already loaded, which TLC has published: a 403
there too means the source refuses access, and must not look like "nothing new".

The course mirror (GitHub releases) answers 404 for a missing file; a 403 there is a
refusal (e.g. rate limiting). 404 means "not published" for both sources.
"""

from __future__ import annotations

from dataclasses import dataclass

from taxi_assets.upstream.shown_url import shown_url

SOURCE_SETTING = {"tlc": "TAXI_TLC_URL", "dtc": "TAXI_DTC_URL"}


@dataclass(frozen=True)
class ForbiddenVerdict:
    """``not_published``: the month is not published yet (else the source refuses access)."""

    not_published: bool
    message: str


def explain_forbidden(
    *,
    source: str,
    service: str,
    month: str,
    url: str,
    newest_loaded: str | None = None,
    newest_url: str | None = None,
    newest_forbidden: bool | None = None,
) -> ForbiddenVerdict:
    """The meaning of a 403 for ``service``'s ``month`` at ``url`` of ``source``.

    ``newest_forbidden`` is whether the newest loaded month (``newest_loaded``, asked at
    ``newest_url`` of the same source) answered 403 as well; None when nothing is loaded or
    the answer is unknown, in which case TLC's 403 is read as "not published yet".
    """
    what = f"{service} {month}"
    url = shown_url(url)
    newest_url = shown_url(newest_url) if newest_url else newest_url
    setting = SOURCE_SETTING.get(source, "the source URL")
    refused = f"{what}: the source refuses access (check {setting}): HTTP 403 at {url}"
    if source != "tlc":
        return ForbiddenVerdict(False, refused)
    if newest_forbidden and newest_loaded == month:
        return ForbiddenVerdict(False, f"{refused}, for a month already loaded")
    if newest_forbidden:
        return ForbiddenVerdict(
            False,
            f"{refused}, and at {newest_url} for the newest loaded month {newest_loaded}, "
            "which TLC has published",
        )
    return ForbiddenVerdict(
        True, f"{what} not published yet (TLC answers HTTP 403 at {url} until it is)"
    )
