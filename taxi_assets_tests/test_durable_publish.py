"""A local publish survives a power cut once it returns: the file's data, its new name and
every folder made for it are on disk. A power cut cannot be caused here, so the test
watches the real system calls of a real process (strace) and checks the order that makes
the publish durable: the staged file fsynced before its rename, each new folder fsynced
into its parent, the folder fsynced after the rename."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# As the lake's IO manager publishes (staged beside the file, in a folder made for it), or
# a file written elsewhere; the raw revision store makes the month's folder with its lock.
PUBLISH = """
import sys
from pathlib import Path
from upath import UPath
from taxi_assets.storage.publish import local_staging_dir, publish_file, staging_name
from taxi_assets.storage.slot_lock import slot_lock
source, dest, how = Path(sys.argv[1]), UPath(sys.argv[2]), sys.argv[3]
if how == "staged-beside":
    staged = local_staging_dir(dest) / staging_name(dest)
    staged.write_bytes(source.read_bytes())
    publish_file(staged, dest)
elif how == "under-slot-lock":
    with slot_lock(dest.parent, "test"):
        publish_file(source, dest)
else:
    publish_file(source, dest)
"""

# strace -f -o: "PID  fsync(3</tmp/x/a>) = 0" (-y: each descriptor followed by its path)
_CALL = re.compile(r"^(?:\d+ +)?(\w+)\((.*)\) += 0")


def _traced_calls(tmp_path: Path, source: Path, dest: Path, how: str) -> list[tuple[str, str]]:
    trace = tmp_path / "trace.txt"
    subprocess.run(
        [
            "strace", "-f", "-y", "-o", str(trace),
            "-e", "trace=fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat",
            sys.executable, "-c", PUBLISH, str(source), str(dest), how,
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    calls = []
    for line in trace.read_text().splitlines():
        if match := _CALL.match(line):
            name, arguments = match.groups()
            if name in ("fsync", "fdatasync"):
                calls.append(("fsync", arguments.split("<", 1)[1].rstrip(">")))
            elif name.startswith("rename"):
                source, target = re.findall(r'"([^"]+)"', arguments)[-2:]
                calls.append(("renamed-from", source))
                calls.append(("rename", target))
            elif name.startswith("mkdir"):
                calls.append(("mkdir", re.findall(r'"([^"]+)"', arguments)[0]))
    return calls


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (apt install strace)")
@pytest.mark.parametrize("how", ["written-elsewhere", "staged-beside", "under-slot-lock"])
def test_a_local_publish_is_durable_once_it_returns(tmp_path: Path, how: str) -> None:
    source = tmp_path / "written-elsewhere.parquet"
    source.write_bytes(b"PAR1" * 1000)
    dest = tmp_path / "lake" / "yellow" / "2021" / "yellow_tripdata_2021-01.parquet"

    calls = _traced_calls(tmp_path, source, dest, how)

    assert dest.read_bytes() == b"PAR1" * 1000
    made = [path for call, path in calls if call == "mkdir"]
    assert made == [str(tmp_path / "lake"), str(dest.parent.parent), str(dest.parent)]
    renamed_at = calls.index(("rename", str(dest)))
    (_, renamed) = calls[renamed_at - 1]
    assert ("fsync", renamed) in calls[:renamed_at], calls  # its data on disk first
    for folder in made:
        made_at = calls.index(("mkdir", folder))
        assert ("fsync", str(Path(folder).parent)) in calls[made_at:renamed_at], (folder, calls)
    assert ("fsync", str(dest.parent)) in calls[renamed_at + 1 :], calls


STORE_REVISION = """
import hashlib, sys
from pathlib import Path
from taxi_assets.storage.revision_manifest import Revision, utc_now
from taxi_assets.storage.revision_updates import PinChange, make_current
from taxi_assets.storage.revisions import slot_for
from taxi_assets.storage.roots import resolve_root
staged, lake = Path(sys.argv[1]), sys.argv[2]
data = staged.read_bytes()
revision = Revision(hashlib.sha256(data).hexdigest(), staged.name, len(data), utc_now(), "download")
slot = slot_for(resolve_root(lake), ("raw", "yellow_tripdata"), "2021-01")
make_current(slot, revision, staged, PinChange.KEEP, None, print)
"""


def _other_filesystem_than(path: Path) -> Path | None:
    """A folder on another filesystem than ``path`` (/dev/shm, or the repository's
    git-ignored test-artifacts), or None."""
    device = os.stat(path).st_dev
    artifacts = Path(__file__).resolve().parents[1] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    for candidate in (Path("/dev/shm"), artifacts):
        if candidate.is_dir() and os.stat(candidate).st_dev != device:
            return candidate
    return None


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (apt install strace)")
def test_a_raw_revision_is_copied_into_the_lake_before_the_months_lock(tmp_path: Path) -> None:
    """The downloaded file lies on another filesystem than the lake (a temporary folder):
    storing it means a copy, seconds for a large month. The raw month's folder lock, which
    every run of the month waits on (the lake's publish too), is held only for the
    rename: no byte is copied between the lock's flock and its release."""
    elsewhere = _other_filesystem_than(tmp_path)
    if elsewhere is None:
        pytest.skip("no second filesystem to download to (/dev/shm, the repository's)")
    download = Path(tempfile.mkdtemp(prefix="taxi-test-download-", dir=elsewhere))
    try:
        staged = download / "yellow_tripdata_2021-01.csv.gz"
        staged.write_bytes(os.urandom(1 << 20))
        trace = tmp_path / "trace.txt"
        subprocess.run(
            [
                "strace", "-f", "-y", "-o", str(trace),
                "-e", "trace=flock,close,sendfile,copy_file_range,rename,renameat,renameat2",
                sys.executable, "-c", STORE_REVISION, str(staged), str(tmp_path / "lake"),
            ],
            check=True,
            timeout=60,
        )  # fmt: skip
    finally:
        shutil.rmtree(download, ignore_errors=True)
    lines = trace.read_text().splitlines()
    folder = str(tmp_path / "lake" / "raw" / "yellow_tripdata" / "2021-01")
    locked = [i for i, line in enumerate(lines) if "flock(" in line and f"<{folder}>" in line]
    assert locked, "no lock taken on the month's folder"
    descriptor = re.search(r"flock\((\d+)<", lines[locked[0]]).group(1)  # type: ignore[union-attr]
    released = next(
        i for i, line in enumerate(lines[locked[0] :], locked[0])
        if re.search(rf"close\({descriptor}<{re.escape(folder)}>\)", line)
    )  # fmt: skip
    under_lock = lines[locked[0] : released]
    copies = [line for line in lines if "sendfile(" in line or "copy_file_range(" in line]
    assert copies, "the file was not copied at all: the test lost its point"
    assert not [line for line in under_lock if line in copies], under_lock
    stored = f"{folder}/"
    assert any("rename" in line and stored in line for line in under_lock), under_lock
