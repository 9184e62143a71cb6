"""A local publish survives a power cut once it returns: the file's data, its new name and
every folder made for it are on disk. A power cut cannot be caused here, so the test
watches the real system calls of a real process (strace) and checks the order that makes
the publish durable: the staged file fsynced before its rename, each new folder fsynced
into its parent, the folder fsynced after the rename."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
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
                calls.append(("rename", re.findall(r'"([^"]+)"', arguments)[-1]))
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
    staged_fsyncs = [
        i for i, (call, path) in enumerate(calls) if call == "fsync" and ".tmp" in path
    ]
    assert staged_fsyncs and staged_fsyncs[-1] < renamed_at, calls
    for folder in made:
        made_at = calls.index(("mkdir", folder))
        assert ("fsync", str(Path(folder).parent)) in calls[made_at:renamed_at], (folder, calls)
    assert ("fsync", str(dest.parent)) in calls[renamed_at + 1 :], calls
