"""A bound on waiting for a warehouse server that died or was cut off mid-connection.

A server host that crashed, a network partition, a managed PostgreSQL that failed over to
another machine: the old peer sends nothing more, not even a reset. A run waiting for a
statement's result (an index build, ANALYZE, the analytics query, a COPY TO) waited until
TCP keepalives found the peer gone, and libpq leaves those at the kernel's defaults
(Linux: the first probe after 2 hours idle, then 9 probes 75 s apart). Connections to a URL
given to :func:`with_keepalives` probe as ``KEEPALIVES`` says instead (each value
unless the URL sets it itself); a dead peer then fails the statement with "could not
receive data from server: Connection timed out" about 2 minutes after it went silent.

Not bounded here, on purpose: a healthy server that is slow, or stopped but alive (its
kernel answers the probes), is never cut off; run monitoring's ``max_runtime_seconds`` and
:mod:`taxi_assets.pg.interrupts` handle those. No ``tcp_user_timeout`` either: it would also
end a connection whose server is merely slow to take the data a COPY FROM sends (measured:
:mod:`taxi_assets.pg.silent_peer`). Data sent to a dead peer (a COPY FROM's rows) is not
covered by keepalives, which probe only an idle connection: the kernel gives up
retransmitting it after ``net.ipv4.tcp_retries2`` (958 s, measured);
:mod:`taxi_assets.pg.silent_peer` gives such a connection up after 300 s. A Unix socket (the embedded server) has no keepalives: libpq
ignores these parameters for it. The other way round, a client that dies while the server
runs its statement: :mod:`taxi_assets.pg.lost_client`.
"""

from __future__ import annotations

import sqlalchemy as sa

# A dead peer is declared after keepalives_idle + keepalives_interval * keepalives_count
# seconds of silence: 60 + 10 * 6 = 2 minutes, a small fraction of any run and far below
# the 2+ hours of the kernel's defaults. A connection idle for 60 s (a statement the server
# works on for minutes sends nothing meanwhile) costs one tiny packet a minute, which also
# keeps NAT gateways and load balancers (idle timeouts of 350 s and more) from dropping
# it. Six unanswered probes 10 s apart ride out a few lost packets or a congested link:
# a live server is not given up for a minute's hiccup.
KEEPALIVES: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 60,
    "keepalives_interval": 10,
    "keepalives_count": 6,
}


def with_keepalives(url: sa.URL) -> sa.URL:
    """``url`` with ``KEEPALIVES`` added to its parameters; a value the URL sets itself
    (``?keepalives_idle=SECONDS``) wins."""
    # In the URL rather than in a do_connect listener: listeners run in the order they were
    # added and the first returning a connection (bound_connects') ends the chain, an order
    # nothing would guard.
    missing = {name: str(value) for name, value in KEEPALIVES.items() if name not in url.query}
    return url.update_query_dict(missing)
