"""Is the lake's bucket reachable and writable with the configured credentials?"""

from __future__ import annotations

import uuid

from taxi_assets.settings import resolve_setting
from taxi_assets.storage.gcs import GcsConfigurationError, gcs_client, split_gcs_url
from taxi_assets.storage.roots import resolve_root


def check(url: str | None = None) -> str:
    """Verify the lake bucket is reachable and writable; a one-line summary."""
    url = url or resolve_setting(None, "TAXI_LAKE_URL", None) or ""
    bucket_name, prefix = split_gcs_url(url)
    client = gcs_client()
    if client.lookup_bucket(bucket_name) is None:
        raise GcsConfigurationError(
            f"bucket {bucket_name!r} does not exist or is not visible to these credentials"
        )
    root = resolve_root(url)
    probe = root / f".taxi-probe-{uuid.uuid4().hex[:12]}"
    root.fs.pipe_file(probe.path, b"probe")  # one single-request upload
    root.fs.rm_file(probe.path)
    return f"gs://{bucket_name}/{prefix}: reachable and writable (project {root.fs.project})"
