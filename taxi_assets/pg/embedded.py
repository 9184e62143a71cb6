"""The embedded PostgreSQL server used when no ``TAXI_WAREHOUSE_URL`` is set.

Why ``pgserver`` (PyPI): it ships PostgreSQL binaries in a wheel, so a fresh machine
needs only Python and pip; it runs the server as a dedicated system user when started
as root (PostgreSQL refuses to run as root); it listens on a unix socket only (no TCP
port to collide with, nothing reachable from the network); and it serialises
concurrent starts from several run processes with a file lock. The server keeps running
after the first run that needed it, so later runs connect in milliseconds;
``python -m taxi_assets.cli warehouse stop`` (``make stop``) stops it.
"""

from __future__ import annotations

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
    # pgserver builds its command wrappers at import time: mypy cannot see them.
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]
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
