"""Every service for one month (or a range): one asset backfill, submitted from the CLI.

Each service has its own partitions, and Dagster refuses a job over assets with different
partitions definitions, so "every service for one month" cannot be one job. It is one
asset backfill instead: for each service, its raw, lake and warehouse assets over the
months of the range that are partitions of that service (a month before a service existed
is left out for that service only). The backfill is sent as the UI's "Materialize ->
Launch backfill" sends it (the ``launchPartitionBackfill`` GraphQL mutation, through the
``dagster-graphql`` CLI: no webserver needed); the daemon then runs it, one run per month
(the assets' backfill policy), within ``max_concurrent_runs``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taxi_assets.partitions import add_months, parse_month, service_partitions
from taxi_assets.services import SERVICES

LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionSetNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""


class BackfillError(Exception):
    """The backfill was not submitted; the message says why."""


@dataclass(frozen=True)
class ServiceRange:
    service: str
    first: str
    last: str


def service_ranges(
    first: str, last: str, first_month: str, services: list[str] | None = None
) -> tuple[list[ServiceRange], list[str]]:
    """For each service, the months of ``first..last`` that are its partitions; and why
    each other service, or the part of the range a service does not have, is left out."""
    parse_month(first)
    parse_month(last)
    if last < first:
        raise BackfillError(f"the range {first}..{last} is empty")
    partitions = service_partitions(first_month)
    ranges: list[ServiceRange] = []
    skipped: list[str] = []
    for service in services or list(SERVICES):
        keys = partitions[service]
        start = max(first, keys.get_first_partition_key() or first)
        end = min(last, keys.get_last_partition_key() or last)
        if start > end:
            skipped.append(
                f"{service}: no partition in {first}..{last} (its partitions run "
                f"{keys.get_first_partition_key()}..{keys.get_last_partition_key()})"
            )
        else:
            ranges.append(ServiceRange(service, start, end))
            own_first = SERVICES[service].first_published_month
            if start > first:
                why = "its first month" if start == own_first else "TAXI_FIRST_MONTH"
                skipped.append(
                    f"{service}: {first}..{add_months(start, -1)}, before {start} ({why})"
                )
            if end < last:
                skipped.append(
                    f"{service}: {add_months(end, 1)}..{last}, after {end} (the last complete month)"
                )
    return ranges, skipped


def backfill_params(ranges: list[ServiceRange], title: str) -> dict[str, Any]:
    """``LaunchBackfillParams`` selecting each service's three layers over its range."""
    return {
        "title": title,
        "partitionsByAssets": [
            {
                "assetKey": {"path": key.path},
                "partitions": {"range": {"start": r.first, "end": r.last}},
            }
            for r in ranges
            for key in SERVICES[r.service].keys()
        ],
    }


def submit_backfill(params: dict[str, Any], code_location: list[str]) -> str:
    """Launch the backfill through ``dagster-graphql`` (the instance is $DAGSTER_HOME's);
    ``code_location`` is ``["-w", "workspace.yaml"]`` or ``["-m", "taxi_assets"]``."""
    binary = Path(sys.executable).parent / "dagster-graphql"
    with tempfile.TemporaryDirectory(prefix="taxi-backfill-") as folder:
        response_path = Path(folder) / "response.json"
        command = [
            str(binary),
            *code_location,
            "-t",
            LAUNCH_BACKFILL,
            "-v",
            json.dumps({"params": params}),
            "-o",
            str(response_path),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not response_path.exists():
            raise BackfillError(
                f"dagster-graphql failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
            )
        response = json.loads(response_path.read_text())
    launched = (response.get("data") or {}).get("launchPartitionBackfill") or {}
    if launched.get("__typename") != "LaunchBackfillSuccess":
        detail = launched.get("message") or json.dumps(response)[:2000]
        raise BackfillError(f"the backfill was not launched: {detail}")
    return str(launched["backfillId"])
