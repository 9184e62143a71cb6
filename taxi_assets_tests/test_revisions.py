"""Revision slots without Dagster: layout, manifest, adoption, pins, retention, and a
manifest that disagrees with the files, on a local folder, GCS, S3 and Azure alike."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from upath import UPath

from taxi_assets.bounded_lock import LockWaitTimeout
from taxi_assets.storage.publish import publish_file
from taxi_assets.storage.revision_guard import RevisionSuperseded, while_current
from taxi_assets.storage.revision_manifest import ManifestError, Revision, read_manifest, utc_now
from taxi_assets.storage.revision_updates import (
    PinChange,
    make_current,
    parse_keep,
    prune,
    repair,
    set_pin,
)
from taxi_assets.storage.revisions import RevisionError, inspect, slot_for
from taxi_assets.storage.roots import resolve_root
from taxi_assets.storage.slot_lock import WAIT_ENV
from taxi_assets_tests.lake_stores import LakeStore

NAME = "yellow_tripdata_2021-01.csv.gz"
KEY = ("raw", "yellow_tripdata")


@pytest.fixture
def root(lake_store: LakeStore) -> UPath:
    """The lake root on each store: a local folder, GCS, S3 and Azure (emulators)."""
    return resolve_root(lake_store.url)


def staged(tmp_path: Path, content: bytes, name: str = NAME) -> tuple[Revision, Path]:
    """A local file about to be stored, and its revision record."""
    folder = tmp_path / f"staging-{hashlib.sha256(content).hexdigest()[:8]}"
    folder.mkdir(exist_ok=True)
    local = folder / name
    local.write_bytes(content)
    sha256 = hashlib.sha256(content).hexdigest()
    revision = Revision(
        sha256, name, len(content), utc_now(), "download", rows=content.count(b"\n")
    )
    return revision, local


def store(root: UPath, tmp_path: Path, content: bytes, **kwargs: object):  # noqa: ANN201
    slot = slot_for(root, KEY, "2021-01")
    revision, local = staged(tmp_path, content)
    options = {"pin": PinChange.KEEP, "keep": None, **kwargs}
    return make_current(slot, revision, local, log=lambda _: None, **options)  # type: ignore[arg-type]


def read(path: UPath) -> bytes:
    with path.open("rb") as handle:
        return handle.read()


def test_each_revision_is_kept_under_its_sha256_and_the_manifest_names_the_current(
    root: UPath, tmp_path: Path
) -> None:
    first = store(root, tmp_path, b"a\nb\n")
    slot = first.state.slot
    assert first.added and first.previous is None
    assert first.path.path == slot.folder / first.revision.sha256 / NAME
    assert read(first.path.path) == b"a\nb\n"

    again = store(root, tmp_path, b"a\nb\n")  # the same bytes, downloaded again
    assert not again.added
    assert again.previous is not None and again.previous.sha256 == first.revision.sha256
    assert len(again.state.manifest.revisions) == 1

    second = store(root, tmp_path, b"a\nb\nc\n")
    assert second.added and second.previous == again.revision
    manifest = json.loads(read(slot.manifest_path))
    assert manifest["current"] == second.revision.sha256
    assert [r["sha256"] for r in manifest["revisions"]] == [
        first.revision.sha256,
        second.revision.sha256,
    ]
    assert [r["rows"] for r in manifest["revisions"]] == [2, 3]
    current, stored = inspect(slot).current()
    assert current.sha256 == second.revision.sha256 and read(stored.path) == b"a\nb\nc\n"


def test_files_of_the_flat_layout_are_adopted_on_first_touch(root: UPath, tmp_path: Path) -> None:
    legacy = tmp_path / "legacy"
    legacy.write_bytes(b"old layout\n")
    publish_file(legacy, root / "raw" / "yellow_tripdata" / NAME)
    other_month = tmp_path / "other"
    other_month.write_bytes(b"another month\n")
    publish_file(other_month, root / "raw" / "yellow_tripdata" / "yellow_tripdata_2021-02.csv.gz")
    slot = slot_for(root, KEY, "2021-01")
    assert inspect(slot).legacy  # found, not yet moved: inspecting changes nothing

    heard: list[str] = []
    state = repair(slot, heard.append)
    sha256 = hashlib.sha256(b"old layout\n").hexdigest()
    revision, stored = state.current()
    assert (revision.sha256, revision.origin, revision.name) == (sha256, "adopted", NAME)
    assert read(stored.path) == b"old layout\n"
    assert not (root / "raw" / "yellow_tripdata" / NAME).exists()  # moved, not copied
    assert (root / "raw" / "yellow_tripdata" / "yellow_tripdata_2021-02.csv.gz").exists()
    assert "adopted as revision" in heard[0]
    assert repair(slot, heard.append).problems == []  # once


def test_an_unpartitioned_asset_has_one_slot(root: UPath, tmp_path: Path) -> None:
    legacy = tmp_path / "zones"
    legacy.write_bytes(b"LocationID,Borough\n1,EWR\n")
    publish_file(legacy, root / "raw" / "taxi_zone_lookup" / "taxi_zone_lookup.csv")
    slot = slot_for(root, ("raw", "taxi_zone_lookup"), None)
    adopted, _ = repair(slot, lambda _: None).current()
    revision, local = staged(
        tmp_path, b"LocationID,Borough\n1,EWR\n2,Queens\n", "taxi_zone_lookup.csv"
    )
    commit = make_current(slot, revision, local, PinChange.KEEP, None, lambda _: None)
    assert commit.previous == adopted
    assert commit.path.path == root / "raw" / "taxi_zone_lookup" / revision.sha256 / revision.name
    assert len(inspect(slot).manifest.revisions) == 2


def test_pins_hold_and_a_missing_revision_lists_those_that_exist(
    root: UPath, tmp_path: Path
) -> None:
    first = store(root, tmp_path, b"1\n").revision
    second = store(root, tmp_path, b"1\n2\n").revision
    slot = slot_for(root, KEY, "2021-01")
    state, pinned = set_pin(slot, first.sha256[:8], lambda _: None)  # a unique prefix
    assert pinned == first and state.manifest.current == second.sha256  # not current yet

    with pytest.raises(RevisionError) as missing:
        set_pin(slot, "ffff0000", lambda _: None)
    assert first.sha256 in str(missing.value) and second.sha256 in str(missing.value)
    with pytest.raises(RevisionError, match="not a sha256"):
        set_pin(slot, "../x", lambda _: None)

    # A download finishing while the month is pinned to another revision: kept, not current.
    with pytest.raises(RevisionError, match="pinned to revision"):
        store(root, tmp_path, b"1\n2\n3\n")
    after = inspect(slot)
    assert (after.manifest.current, after.manifest.pinned) == (second.sha256, first.sha256)
    assert len(after.manifest.revisions) == 3

    commit = make_current(slot, first, None, PinChange.KEEP, None, lambda _: None)
    assert commit.revision.sha256 == first.sha256 and commit.previous == second
    _, unpinned = set_pin(slot, None, lambda _: None)
    assert unpinned is None and inspect(slot).manifest.pinned is None


def test_retention_keeps_the_last_n_but_never_the_current_or_pinned(
    root: UPath, tmp_path: Path
) -> None:
    versions = [f"v{n}\n".encode() for n in range(1, 6)]
    shas = [hashlib.sha256(v).hexdigest() for v in versions]
    for version in versions[:4]:
        store(root, tmp_path, version)  # keep=None: every revision stays
    slot = slot_for(root, KEY, "2021-01")
    assert len(inspect(slot).manifest.revisions) == 4

    last = store(root, tmp_path, versions[4], keep=2)
    assert [r.sha256 for r in last.pruned] == shas[:3]
    assert [r.sha256 for r in last.state.manifest.revisions] == shas[3:]
    assert sorted(last.state.files) == sorted(shas[3:])  # the files went too
    assert last.state.problems == []

    # Pinned and current are never removed, even beyond the count.
    set_pin(slot, shas[3], lambda _: None)  # the older one; current stays v5
    manifest = inspect(slot).manifest
    assert prune(manifest, 1) == [] and len(manifest.revisions) == 2
    kept = make_current(slot, last.revision, None, PinChange.CLEAR, 1, lambda _: None)
    assert [r.sha256 for r in kept.pruned] == [shas[3]]  # unpinned: now it may go
    assert list(kept.state.files) == [shas[4]]


def test_on_an_object_store_a_pin_set_during_a_runs_upload_is_kept_and_its_file_too(
    object_store: LakeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No lock on an object store: `raw pin V` lands while a run uploads X with a retention
    of 1. The run wrote its manifest read before the upload: the pin was gone, and V's
    file deleted for good, though `raw pin` had said it was pinned."""
    from taxi_assets.storage import revision_updates

    root = resolve_root(object_store.url)
    slot = slot_for(root, KEY, "2021-01")
    v = store(root, tmp_path, b"h\nversion V\n").revision.sha256
    store(root, tmp_path, b"h\nversion W\n")
    uploading = revision_updates.publish_file

    def pinned_meanwhile(source: Path, target: UPath) -> None:
        set_pin(slot, v[:12], lambda _: None)  # another process, during the upload
        uploading(source, target)

    monkeypatch.setattr(revision_updates, "publish_file", pinned_meanwhile)
    # As on a local lake, whose lock orders the two: the pin wins, X is kept but not current.
    with pytest.raises(RevisionError, match="pinned to revision .* meanwhile; revision"):
        store(root, tmp_path, b"h\nversion X\n", keep=1)
    state = inspect(slot)
    assert state.manifest.pinned == v
    assert v in state.files and len(state.manifest.revisions) == 3  # V, W and X: nothing gone


def test_parse_keep() -> None:
    assert parse_keep(None) is None and parse_keep("all") is None and parse_keep(" 3 ") == 3
    for bad in ("0", "-1", "two"):
        with pytest.raises(ValueError, match="expected 'all' or a whole number"):
            parse_keep(bad)


def test_a_manifest_that_disagrees_with_the_files_is_reported_never_trusted(
    root: UPath, tmp_path: Path
) -> None:
    first = store(root, tmp_path, b"one\n").revision
    second = store(root, tmp_path, b"one\ntwo\n").revision
    third = store(root, tmp_path, b"one\ntwo\nthree\n").revision
    slot = slot_for(root, KEY, "2021-01")

    # A listed revision whose file is gone: reported, then forgotten (not current).
    slot.revision_path(first).unlink()
    assert any(first.short in p and "missing" in p for p in inspect(slot).problems)
    state = repair(slot, lambda _: None)
    assert any("forgotten" in p for p in state.problems)
    assert [r.sha256 for r in state.manifest.revisions] == [second.sha256, third.sha256]

    # A revision file the manifest does not list: its bytes are checked, then it is listed.
    extra, local = staged(tmp_path, b"found later\n")
    publish_file(local, slot.revision_path(extra))
    assert any("does not list" in p for p in inspect(slot).problems)
    state = repair(slot, lambda _: None)
    assert state.manifest.find(extra.sha256) is not None
    assert state.manifest.find(extra.sha256).origin == "found"  # type: ignore[union-attr]
    # ... unless its bytes do not match its name: reported, never used.
    fake = Revision("ab" * 32, NAME, 4, utc_now(), "download")
    (tmp_path / "fake").write_bytes(b"fake")
    publish_file(tmp_path / "fake", slot.revision_path(fake))
    state = repair(slot, lambda _: None)
    assert any("hash to" in p and "not used" in p for p in state.problems)
    assert state.manifest.find(fake.sha256) is None
    with pytest.raises(RevisionError, match="no revision"):
        state.resolve("abab")

    # The current revision's file replaced by other bytes (another size): no load.
    (tmp_path / "short").write_bytes(b"one\n")
    publish_file(tmp_path / "short", slot.revision_path(third))
    with pytest.raises(RevisionError) as wrong:
        inspect(slot).current()
    assert "the manifest says" in str(wrong.value) and second.sha256 in str(wrong.value)
    # ... and gone: still no load, and the message lists what can be pinned instead.
    slot.revision_path(third).unlink()
    state = repair(slot, lambda _: None)
    assert state.manifest.current == third.sha256  # current stays listed, and failing
    with pytest.raises(RevisionError) as gone:
        state.current()
    assert "is missing" in str(gone.value) and second.sha256 in str(gone.value)

    # A manifest that is not one: an error naming it, never guessed around.
    (tmp_path / "garbage").write_bytes(b"{not json")
    publish_file(tmp_path / "garbage", slot.manifest_path)
    with pytest.raises(ManifestError, match="revisions.json is not a readable revision manifest"):
        inspect(slot)


def test_partition_keys_that_cannot_name_a_folder_are_refused(root: UPath) -> None:
    for key in ("../2021-01", "2021/01", "", "a" * 64):
        with pytest.raises(ValueError, match="cannot name a folder"):
            slot_for(root, KEY, key)


def test_a_block_runs_only_while_the_revision_it_was_made_from_is_current(
    root: UPath, tmp_path: Path
) -> None:
    """What a lake month is published under: its raw revision still current, else a
    failure naming the month, the revision read and the one current now."""
    slot = slot_for(root, KEY, "2021-01")
    first = store(root, tmp_path, b"a,b\n1,2\n").revision
    ran = []
    with while_current(slot, first.sha256, "the lake month"):
        ran.append("first")
    second = store(root, tmp_path, b"a,b\n1,2\n3,4\n").revision
    with (
        pytest.raises(RevisionSuperseded) as raised,
        while_current(slot, first.sha256, "the lake month"),
    ):
        ran.append("superseded")
    assert ran == ["first"]
    assert str(raised.value).startswith(
        "yellow_tripdata 2021-01: the raw month changed while this run converted it: it "
        f"read revision {first.sha256}, and {second.sha256} is current now ("
    )
    assert str(raised.value).endswith(
        "the lake month was not published (the lake keeps what it had). Run it again."
    )


def test_locally_no_revision_becomes_current_while_the_block_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On local disk the check and the block hold the month's folder lock, the one every
    manifest change takes: a revision stored meanwhile waits (here: times out)."""
    root = resolve_root(str(tmp_path / "lake"))
    slot = slot_for(root, KEY, "2021-01")
    first = store(root, tmp_path, b"a,b\n1,2\n").revision
    monkeypatch.setenv(WAIT_ENV, "0.3")
    with while_current(slot, first.sha256, "the lake month"):
        with pytest.raises(LockWaitTimeout, match="2021-01"):
            store(root, tmp_path, b"a,b\n1,2\n3,4\n")
        assert read_manifest(slot.manifest_path).current == first.sha256  # type: ignore[union-attr]
    second = store(root, tmp_path, b"a,b\n1,2\n3,4\n").revision
    assert read_manifest(slot.manifest_path).current == second.sha256  # type: ignore[union-attr]


def test_on_an_object_store_a_revision_made_current_during_the_publish_fails_it(
    object_store: LakeStore, tmp_path: Path
) -> None:
    """An object store has no lock to hold the manifest still while the lake month
    uploads: a revision stored meanwhile (another run's, in the block here) is found by a
    second read of the manifest after the upload, and the step fails saying the lake may
    hold the superseded revision. Before, it succeeded, and its run went on to load it."""
    root = resolve_root(object_store.url)
    slot = slot_for(root, KEY, "2021-01")
    first = store(root, tmp_path, b"a,b\n1,2\n").revision
    with (
        pytest.raises(RevisionSuperseded) as raised,
        while_current(slot, first.sha256, "the lake month"),
    ):
        second = store(root, tmp_path, b"a,b\n1,2\n3,4\n").revision
    said = str(raised.value)
    assert said.startswith(
        "yellow_tripdata 2021-01: the raw month changed while this run uploaded the lake "
        f"month: it was made from revision {first.sha256}, and {second.sha256} is current now"
    ), said
    assert "The lake may hold the lake month of the superseded revision" in said


def test_an_unpartitioned_slot_says_its_raw_file_changed(tmp_path: Path) -> None:
    """The zone lookup's lake file is guarded too; its slot has no month."""
    root = resolve_root(str(tmp_path / "lake"))
    slot = slot_for(root, ("raw", "taxi_zone_lookup"), None)
    shas = []
    for content in (b"LocationID\n1\n", b"LocationID\n1\n2\n"):
        revision, local = staged(tmp_path, content, "taxi_zone_lookup.csv")
        make_current(slot, revision, local, PinChange.KEEP, None, lambda _: None)
        shas.append(revision.sha256)
    with (
        pytest.raises(
            RevisionSuperseded,
            match=(
                f"^taxi_zone_lookup: the raw file changed .* {shas[0]}, and {shas[1]} is "
                "current now .* the lake file was not published"
            ),
        ),
        while_current(slot, shas[0], "the lake file"),
    ):
        pass
