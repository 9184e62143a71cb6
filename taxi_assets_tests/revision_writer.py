"""A process that stores revisions of one raw month in a loop, for the concurrency tests:

    python -m taxi_assets_tests.revision_writer LAKE_URL WRITER COUNT START_AT

Waits until ``START_AT`` (epoch seconds) so that the writers overlap, then stores COUNT
revisions: its own bytes, alternating with bytes every writer stores (the same revision).
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from pathlib import Path

from taxi_assets.storage.revision_manifest import Revision, utc_now
from taxi_assets.storage.revision_updates import PinChange, make_current
from taxi_assets.storage.revisions import slot_for
from taxi_assets.storage.roots import resolve_root

NAME = "yellow_tripdata_2021-01.csv.gz"
SHARED = b"the same bytes from every writer\n"


def contents(writer: str, count: int) -> list[bytes]:
    return [SHARED if n % 2 else f"writer {writer}, revision {n}\n".encode() for n in range(count)]


def main(argv: list[str]) -> int:
    lake_url, writer, count, start_at = argv[0], argv[1], int(argv[2]), float(argv[3])
    slot = slot_for(resolve_root(lake_url), ("raw", "yellow_tripdata"), "2021-01")
    time.sleep(max(0.0, start_at - time.time()))
    with tempfile.TemporaryDirectory() as scratch:
        for n, content in enumerate(contents(writer, count)):
            local = Path(scratch) / f"{n}" / NAME
            local.parent.mkdir()
            local.write_bytes(content)
            sha256 = hashlib.sha256(content).hexdigest()
            revision = Revision(sha256, NAME, len(content), utc_now(), "download", rows=1)
            make_current(slot, revision, local, PinChange.KEEP, None, lambda _: None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
