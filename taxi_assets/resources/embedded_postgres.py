"""The embedded PostgreSQL server used when no ``TAXI_WAREHOUSE_URL`` is set.

Why ``pgserver`` (PyPI): it ships PostgreSQL binaries in a wheel, so a fresh machine
needs only Python and pip; it runs the server as a dedicated system user when started
as root (PostgreSQL refuses to run as root); it listens on a unix socket only (no TCP
port to collide with, nothing reachable from the network); and it serialises
concurrent starts from several run processes with a file lock. The server keeps running
after the first run that needed it, so later runs connect in milliseconds;
``python -m taxi_assets.resources.embedded_postgres stop`` (``make stop``) stops it.
"""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_EMBEDDED_DIR = "./data/warehouse"


def embedded_url(data_dir: str | Path = DEFAULT_EMBEDDED_DIR) -> str:
    """Start (or find) the embedded server for ``data_dir``; a ``postgresql://`` URL to it."""
    import pgserver

    folder = Path(data_dir).expanduser().resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(folder, cleanup_mode=None)
    return server.get_uri()


def stop(data_dir: str | Path = DEFAULT_EMBEDDED_DIR) -> bool:
    """Stop the embedded server of ``data_dir`` if one runs; True if it was running."""
    from pgserver._commands import pg_ctl
    from pgserver.utils import PostmasterInfo

    folder = Path(data_dir).expanduser().resolve()
    info = PostmasterInfo.read_from_pgdata(folder) if folder.exists() else None
    if info is None or not info.is_running():
        return False
    owner = folder.owner()
    user = owner if owner != _current_user() else None
    pg_ctl(["-w", "stop", "-m", "fast"], pgdata=folder, user=user)
    return True


def _current_user() -> str:
    import getpass

    return getpass.getuser()


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    data_dir = argv[1] if len(argv) > 1 else DEFAULT_EMBEDDED_DIR
    if command == "start":
        url = embedded_url(data_dir)
        print(f"embedded PostgreSQL running for {Path(data_dir).resolve()} ({url.split('?')[0]})")
    elif command == "stop":
        print("stopped" if stop(data_dir) else "not running")
    else:
        print(f"usage: python -m {__spec__.name if __spec__ else __name__} start|stop [DATA_DIR]")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
