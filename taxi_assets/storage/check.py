"""Is the lake's bucket (or container) reachable and writable with these credentials?

The same steps on every store, through the code the runs use: build the root (settings
and credentials), list the bucket, publish a hidden probe object, delete it. Each step's
failure is explained: a missing bucket, refused credentials, or a missing permission.
A local lake (a path or ``file://`` URL, the default ``./data/lake``) gets the same
write-and-delete probe in its folder, created if missing, as the first run would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from upath import UPath

from taxi_assets.settings import resolve_setting
from taxi_assets.storage.errors import LakeAccessError, LakeConfigurationError
from taxi_assets.storage.leftovers import probe_name
from taxi_assets.storage.publish import publish_bytes
from taxi_assets.storage.roots import DEFAULT_LAKE_URL, refuse_unknown_store, resolve_root
from taxi_assets.storage.stores import ObjectStore, store_for_url
from taxi_assets.storage.transient import first_line, http_status, is_transient
from taxi_assets.storage.urls import bucket_of

# Where each store's requests go, when not to the provider's own endpoint.
ENDPOINT_SETTINGS = {
    "s3": "AWS_ENDPOINT_URL",
    "gs": "STORAGE_EMULATOR_HOST",
    "az": "the BlobEndpoint of AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME",
}

T = TypeVar("T")


def check(url: str | None = None) -> str:
    """Verify the lake bucket is reachable and writable; a summary (one line, then notes).

    Raises :class:`LakeConfigurationError` (or its :class:`LakeAccessError`) saying what
    is wrong; the message names no secret.
    """
    url = url or resolve_setting(None, "TAXI_LAKE_URL", None) or DEFAULT_LAKE_URL
    store = store_for_url(url)
    if store is None:
        root = resolve_root(url)
        refuse_unknown_store(root, url)
        return _check_local(root)
    root = resolve_root(url)
    bucket = bucket_of(root.path)
    notes = _step(store, bucket, f"list {store.bucket_word} {bucket!r}", store.probe_bucket, root)
    probe = root / probe_name()
    _step(store, bucket, "write a probe object", _write_probe, probe)
    _step(store, bucket, "delete the probe object", _delete, probe)
    summary = f"{root}: reachable and writable ({store.label}, {store.describe(root)})"
    notes = [*notes, *_staging_room()]
    return "\n".join([summary, *(f"note: {note}" for note in notes)])


# A run on an object-store lake stages one whole file at a time in the temporary folder
# (the download, then the lake file): ~0.6 GB for a 2026 FHVHV month.
STAGING_ROOM_BYTES = 1 << 30


def _staging_room() -> list[str]:
    """A note when the temporary folder, where runs stage their files before uploading
    them, has less room than the largest month needs."""
    import shutil
    import tempfile

    folder = tempfile.gettempdir()
    free = shutil.disk_usage(folder).free
    if free >= STAGING_ROOM_BYTES:
        return []
    return [
        f"the temporary folder {folder} has {free / 1e9:.2f} GB free: a run stages each "
        "file there before uploading it, ~0.6 GB for an FHVHV month (set TMPDIR to a "
        "larger disk)"
    ]


def _check_local(root: UPath) -> str:
    probe = root / probe_name()
    try:
        root.mkdir(parents=True, exist_ok=True)
        _write_probe(probe)
        _delete(probe)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise LakeAccessError(f"{root}: the local lake folder is not writable: {reason}") from error
    return f"{root}: writable (local folder)"


def _step(
    store: ObjectStore, bucket: str, what: str, action: Callable[[UPath], T], path: UPath
) -> T:
    try:
        return action(path)
    except LakeConfigurationError:
        raise
    except Exception as error:
        explanation = explain(store, error, bucket)
        if explanation is None:
            raise
        raise LakeAccessError(f"{path}: cannot {what}: {explanation}") from error


def explain(store: ObjectStore, error: BaseException, bucket: str) -> str | None:
    """The store's own explanation of ``error`` (a missing bucket, refused credentials),
    or that the store did not answer at all, even after the retries (a wrong endpoint, no
    network); None for anything else."""
    explanation = store.explain(error, bucket)
    if explanation is not None or not is_transient(error):
        return explanation
    status = http_status(error)
    if status is not None:
        # It answered, with an error of its own (throttling, an outage), every time.
        return (
            f"the store answered HTTP {status} every time it was asked "
            f"({type(error).__name__}: {first_line(error)}): an outage or throttling on "
            "its side; try again later"
        )
    where = ENDPOINT_SETTINGS.get(store.protocols[0], "its endpoint")
    return (
        f"the store did not answer ({type(error).__name__}: {first_line(error)}): "
        f"check where it is ({where}) and the network"
    )


def _write_probe(probe: UPath) -> None:
    publish_bytes(b"probe", probe)  # the runs' own upload path


def _delete(probe: UPath) -> None:
    probe.fs.rm_file(probe.path)
