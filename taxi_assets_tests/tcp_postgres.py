"""A real PostgreSQL server listening on TCP, for what only a TCP connection has
(keepalives): a data folder made as the embedded server's is (pgserver's initdb, run as
pgserver's user under root; the product's settings), started by pg_ctl on an address and
port besides its Unix socket. Optionally in another network namespace (``nsenter``)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from taxi_assets.pg.embedded import embedded_url, stop
from taxi_assets.pg.embedded_start import socket_folder


def initialised_folder(folder: Path) -> Path:
    """A new data folder under ``folder``, its server stopped: its path."""
    data = folder / "pgdata"
    embedded_url(data)
    stop(data)
    return data


@contextmanager
def stopped_folder() -> Iterator[Path]:
    """A stopped server's new data folder, not under pytest's basetemp (see
    ``embedded_dir``), its server stopped at the end."""
    parent = Path(tempfile.mkdtemp(prefix="taxi-test-tcp-pg-"))
    try:
        yield initialised_folder(parent)
    finally:
        stop(parent / "pgdata")
        shutil.rmtree(parent, ignore_errors=True)


def trust_clients(data: Path, network: str) -> None:
    """Let clients of ``network`` (CIDR) in without a password, as initdb --auth=trust lets
    in those of 127.0.0.1 (read at the server's start)."""
    with open(data / "pg_hba.conf", "a") as rules:
        rules.write(f"host all all {network} trust\n")


def start_on_tcp(data: Path, host: str, port: int, netns_of: int | None = None) -> str:
    """Start the stopped server of ``data`` listening on ``host``:``port`` (and on its
    Unix socket), in the network namespace of the process ``netns_of`` (None: this one's);
    its ``postgresql://`` URL over TCP. Stop it with :func:`stop`."""
    from pgserver._commands import POSTGRES_BIN_PATH

    owner = data.stat()
    options = f"-h {host} -p {port} -k {socket_folder(data)}"
    command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(data), "-w", "-t", "30"]
    command += ["-l", str(data / "log"), "-o", options, "start"]
    user: int | None = None
    if netns_of is not None:
        # nsenter needs root to enter the namespace; it then becomes the folder's owner
        # (PostgreSQL refuses root).
        enter = [f"--net=/proc/{netns_of}/ns/net", "-S", str(owner.st_uid), "-G", str(owner.st_gid)]
        command = ["nsenter", *enter, *command]
    elif owner.st_uid != os.geteuid():
        user = owner.st_uid
    # Output to a file, not a pipe: the server pg_ctl leaves running would hold the pipe.
    with tempfile.TemporaryFile("w+") as output:
        done = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, user=user)
        output.seek(0)
        assert done.returncode == 0, (output.read(), (data / "log").read_text()[-2000:])
    return f"postgresql://postgres@{host}:{port}/postgres"


def unix_socket_url(data: Path, port: int) -> str:
    """The server's URL over its Unix socket (from any network namespace)."""
    return f"postgresql://postgres@/postgres?host={socket_folder(data)}&port={port}"


def tcp_options(fd: int) -> dict[str, int]:
    """The keepalive and user-timeout options of the TCP socket ``fd``, as the kernel
    applies them (a duplicate of it is read; ``fd`` stays open)."""
    with socket.socket(fileno=os.dup(fd)) as link:
        assert link.family in (socket.AF_INET, socket.AF_INET6)
        tcp = socket.IPPROTO_TCP
        return {
            "SO_KEEPALIVE": link.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            "TCP_KEEPIDLE": link.getsockopt(tcp, socket.TCP_KEEPIDLE),
            "TCP_KEEPINTVL": link.getsockopt(tcp, socket.TCP_KEEPINTVL),
            "TCP_KEEPCNT": link.getsockopt(tcp, socket.TCP_KEEPCNT),
            "TCP_USER_TIMEOUT": link.getsockopt(tcp, socket.TCP_USER_TIMEOUT),
        }
