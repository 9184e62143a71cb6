"""Object store URLs: ``scheme://BUCKET/PREFIX``, checked before any request is sent."""

from __future__ import annotations

import re

from taxi_assets.storage.errors import LakeConfigurationError

# A URL's query string: where a SAS token (Azure's ``sig=``) or a presigned URL's
# signature travels, and what a transport's error quotes with the URL.
_QUERY = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s?#'\"]*)\?[^\s'\"]*")


def without_queries(text: str) -> str:
    """``text`` with every URL's query string replaced by ``***``."""
    return _QUERY.sub(lambda match: f"{match.group(1)}?***", text)


def split_bucket_url(
    url: str,
    protocols: tuple[str, ...],
    bucket_pattern: re.Pattern[str],
    bucket_word: str = "bucket",
    error: type[LakeConfigurationError] = LakeConfigurationError,
) -> tuple[str, str]:
    """``scheme://bucket/some/prefix`` -> ``("bucket", "some/prefix")``.

    ``protocols`` are the accepted schemes (the first is the canonical one, used in
    messages); ``bucket_pattern`` is the provider's naming rule.
    """
    canonical = f"{protocols[0]}://{bucket_word.upper()}/PREFIX"
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in protocols:
        raise error(f"{url!r} is not a {canonical} URL")
    bucket, _, prefix = rest.partition("/")
    if not bucket_pattern.match(bucket):
        raise error(f"{url!r}: {bucket!r} is not a valid {bucket_word} name (expected {canonical})")
    prefix = prefix.strip("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise error(f"{url!r}: the prefix must not hold empty, . or .. parts")
    return bucket, prefix


def bucket_of(path: str) -> str:
    """The bucket (container) of an fsspec path without scheme: ``bucket/key`` -> ``bucket``."""
    return path.split("/", 1)[0]
