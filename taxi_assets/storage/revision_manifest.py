"""The manifest of a revision slot: which revisions of a file exist, which is current, which
is pinned. A small JSON object, replaced in one step (no Dagster here).

    {"format": 1, "current": "<sha256>", "pinned": null, "updated_at": "...Z",
     "revisions": [{"sha256": "...", "name": "yellow_tripdata_2021-01.csv.gz",
                    "bytes": 123, "rows": 2000, "added_at": "...Z", "origin": "download",
                    "source": {"url": "...", "etag": "...", "last_modified": "..."},
                    "columns": [["VendorID", "int64"], ...]}, ...]}

``revisions`` is oldest first; retention removes from the front.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from upath import UPath

from taxi_assets.storage.publish import local_staging_dir, publish_file, staging_name
from taxi_assets.storage.read_retries import again

MANIFEST_NAME = "revisions.json"
FORMAT = 1
SHA256 = re.compile(r"[0-9a-f]{64}")
# Where the revision came from: a download, a file of the flat layout adopted on first
# touch, or a revision folder found on storage but missing from the manifest.
ORIGINS = ("download", "adopted", "found")


class ManifestError(ValueError):
    """A manifest that cannot be read as one: never guessed around."""


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Revision:
    """One stored version of a file, named by the sha256 of its bytes."""

    sha256: str
    name: str
    bytes: int
    added_at: str
    origin: str
    rows: int | None = None
    source: dict[str, str] = field(default_factory=dict)
    columns: tuple[tuple[str, str], ...] | None = None

    @property
    def short(self) -> str:
        return self.sha256[:12]

    def merged(self, newer: Revision) -> Revision:
        """This revision with what ``newer`` (same bytes) knows and it did not."""
        return replace(
            self,
            rows=self.rows if self.rows is not None else newer.rows,
            source={**self.source, **newer.source},
            columns=self.columns if self.columns is not None else newer.columns,
        )


@dataclass
class Manifest:
    revisions: list[Revision] = field(default_factory=list)
    current: str | None = None
    pinned: str | None = None

    def find(self, sha256: str | None) -> Revision | None:
        return next((r for r in self.revisions if r.sha256 == sha256), None)

    def put(self, revision: Revision) -> None:
        """Add ``revision``, or merge it into the listed one with the same bytes."""
        for index, listed in enumerate(self.revisions):
            if listed.sha256 == revision.sha256:
                self.revisions[index] = listed.merged(revision)
                return
        self.revisions.append(revision)


def read_manifest(path: UPath) -> Manifest | None:
    """The manifest at ``path``; None when there is none. Raises :class:`ManifestError`
    naming the object when it is not a manifest this code wrote."""
    try:
        # One request for the whole object: opening it would size the read with a first
        # request and fetch that many bytes with a second, and a manifest another writer
        # replaced in between (object stores have no lock) would come back cut.
        text = again(lambda: path.fs.cat_file(path.path), path)
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        return _parse(data)
    except (ValueError, KeyError, TypeError) as error:
        raise ManifestError(
            f"{path} is not a readable revision manifest ({error}); move it aside and "
            "re-materialize the asset to rebuild it from the revision folders present"
        ) from error


def _parse(data: Any) -> Manifest:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"expected a JSON object with format {FORMAT}")
    revisions = [_revision(item) for item in data["revisions"]]
    manifest = Manifest(revisions, data.get("current"), data.get("pinned"))
    for name in ("current", "pinned"):
        value = getattr(manifest, name)
        if value is not None and not SHA256.fullmatch(value):
            raise ValueError(f"{name} {value!r} is not a sha256")
    return manifest


def _revision(item: dict[str, Any]) -> Revision:
    sha256 = item["sha256"]
    if not isinstance(sha256, str) or not SHA256.fullmatch(sha256):
        raise ValueError(f"revision {sha256!r} is not a sha256")
    if item["origin"] not in ORIGINS:
        raise ValueError(f"revision {sha256[:12]}: unknown origin {item['origin']!r}")
    columns = item.get("columns")
    return Revision(
        sha256=sha256,
        name=str(item["name"]),
        bytes=int(item["bytes"]),
        added_at=str(item["added_at"]),
        origin=item["origin"],
        rows=None if item.get("rows") is None else int(item["rows"]),
        source={str(k): str(v) for k, v in (item.get("source") or {}).items()},
        columns=None if columns is None else tuple((str(n), str(t)) for n, t in columns),
    )


def manifest_json(manifest: Manifest) -> bytes:
    data = {
        "format": FORMAT,
        "current": manifest.current,
        "pinned": manifest.pinned,
        "updated_at": utc_now(),
        "revisions": [asdict(revision) for revision in manifest.revisions],
    }
    return json.dumps(data, indent=1).encode() + b"\n"


def write_manifest(path: UPath, manifest: Manifest) -> None:
    """Replace the manifest in one step: a rename locally, one object upload elsewhere
    (on object stores the last writer wins; the slot lock serialises writers locally)."""
    local = local_staging_dir(path) / staging_name(path)
    try:
        local.write_bytes(manifest_json(manifest))
        publish_file(local, path)
    finally:
        local.unlink(missing_ok=True)
