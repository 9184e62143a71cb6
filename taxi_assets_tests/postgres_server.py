"""A real, throwaway PostgreSQL server for tests: the embedded one, in a temp folder.

``TEST_DATABASE_URL`` points the suite at an existing server instead. Each test gets
its own database, so tests never see each other's tables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def throwaway_server(folder: Path) -> Iterator[str]:
    """A ``postgresql://`` URL of a server that lives as long as the context."""
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        yield explicit
        return
    import pgserver

    server = pgserver.get_server(folder, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
