"""What users see, checked as a person would: `dg dev` driven by headless Chromium.

One month (2021-01) of every service, the zones and the analytics asset are loaded in
process into a temporary ``DAGSTER_HOME``; then ``dg dev`` starts on 127.0.0.1 over
the same instance, mirror, lake and PostgreSQL. The test launches a one-month asset
backfill of every service (2021-02; each service has its own partitions, so it is the
asset backfill ``python -m taxi_assets.cli months backfill`` submits) through the GraphQL
API, opens the asset graph, asset
pages, partitions and materialization metadata in Chromium (Playwright driving Debian's
``chromium``), asserts what the DOM shows, saves screenshots under
``test-artifacts/ui/``, and waits for the backfill to succeed.

``TAXI_UPDATE_SCREENSHOTS=1`` also copies the asset graph to ``docs/img/asset_graph.png``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import pytest
import requests

from taxi_assets.automation.month_backfill import LAUNCH_BACKFILL
from taxi_assets.contracts.trip_columns import PICKUP_DATETIME
from taxi_assets_tests.emulators import free_port
from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.pipeline import (
    ASSETS,
    dagster_home,
    pipeline_resources,
    project_env,
    run,
    warehouse_counts,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "ui"
DOCS_SCREENSHOT = REPO / "docs" / "img" / "asset_graph.png"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
LOADED_MONTH = "2021-01"
BACKFILL_MONTH = "2021-02"
SERVICES = ("yellow", "green", "fhv", "fhvhv")
ZONE_KEYS = ["raw/taxi_zone_lookup", "lake/taxi_zones", "warehouse/taxi_zones"]
STATS_KEY = "analytics/monthly_zone_stats"
GROUPS = ("raw", "lake", "warehouse", "analytics")
STARTUP_TIMEOUT_S = 90
BACKFILL_TIMEOUT_S = 150
SHUTDOWN_TIMEOUT_S = 15

# Metadata labels each layer's materialization shows (see docs/ui.md).
EXPECTED_LABELS = {
    "raw/yellow_tripdata": [
        "dagster/partition_row_count", "bytes", "duration_s", "rows_per_s", "url", "sha256", "etag",
        "path", "dagster/column_schema", "previous_sha256", "revisions", "pinned_sha256",
        "download_attempts", "bytes_received",
    ],
    "lake/yellow_tripdata": [
        "dagster/partition_row_count", "bytes", "duration_s", "rows_per_s",
        "min_pickup_datetime", "max_pickup_datetime", "rows_outside_partition", "preview",
        "path", "source_sha256", "previous_source_sha256",
    ],
    "warehouse/yellow_tripdata": [
        "dagster/partition_row_count", "duration_s", "rows_per_s", "table",
        "table_bytes", "min_pickup_datetime", "max_pickup_datetime",
        "rows_outside_partition", "preview",
    ],
    STATS_KEY: [
        "dagster/partition_row_count", "trips", "table_bytes", "duration_s", "rows_per_s",
        "min_pickup_datetime", "max_pickup_datetime",
        "rows_outside_partition", "preview", "trips_per_day", "chart", "chart_path", "table",
    ],
}  # fmt: skip


def chromium_executable() -> str:
    """Debian's Chromium; a missing browser fails the test (`make test` installs it)."""
    for candidate in (os.environ.get("TAXI_CHROMIUM"), "chromium", "chromium-browser"):
        found = candidate and shutil.which(candidate)
        if found:
            return found
    pytest.fail(
        "Chromium is not installed: the browser test needs Debian's `chromium` package "
        "(`apt-get install chromium`; `make test` run as root installs it), or "
        "TAXI_CHROMIUM=/path/to/chromium"
    )


class Dagit:
    """The webserver's GraphQL API."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.http.trust_env = False  # 127.0.0.1 only: never through a proxy from the environment

    def graphql(self, query: str, **variables: object) -> dict:
        response = self.http.post(
            f"{self.base}/graphql", json={"query": query, "variables": variables}, timeout=30
        )
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]


@contextmanager
def dagster_dev(env: dict[str, str], log_path: Path) -> Iterator[Dagit]:
    """The README's `make dev` (so its command is what is tested), on a free port of
    127.0.0.1 and the test's DAGSTER_HOME; stopped like Ctrl-C stops it.

    It starts with SIGINT ignored, as a script's `make dev &` would start it: the Makefile
    gives `dg dev` SIGINT's default back, and the test checks that Ctrl-C stops it."""
    port = free_port()
    command = [
        "sh", "-c", 'trap "" INT; exec "$@"', "sh",  # SIGINT ignored, kept across exec
        "make", "-o", "install", "dev",  # the suite's own environment is installed already
        f"VENV={sys.prefix}", f"DAGSTER_HOME={env['DAGSTER_HOME']}", f"DAGSTER_PORT={port}",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            yield wait_until_loaded(Dagit(f"http://127.0.0.1:{port}"), process, log_path)
        finally:
            stop_process_group(process)


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGINT to the whole group, as Ctrl-C in a terminal sends it: `dg dev` stops its
    webserver, daemon and code servers; whatever is left after the grace period is killed."""
    started = time.monotonic()
    group = process.pid
    _signal_group(group, signal.SIGINT)
    deadline = started + SHUTDOWN_TIMEOUT_S
    while time.monotonic() < deadline and _signal_group(group, 0):
        process.poll()  # reap make as soon as it exits so the group can empty
        time.sleep(0.2)
    stragglers = _group_processes(group)
    _signal_group(group, signal.SIGKILL)
    process.wait(timeout=10)
    report = f"dg dev stopped in {time.monotonic() - started:.1f} s"
    if stragglers:
        report += ", these killed after the grace period:\n" + stragglers
    print(report)
    (ARTIFACTS / "dg-dev-stop.txt").write_text(report + "\n")


def _group_processes(group: int) -> str:
    """The processes left in the group (group, pid, parent, age in s, command), for the
    report: which of `dg dev`'s processes outlived Ctrl-C is what to look at when one does."""
    listing = subprocess.run(
        ["ps", "-e", "-o", "pgid=,pid=,ppid=,etimes=,args="],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "\n".join(
        line.strip()[:200] for line in listing.splitlines() if line.split()[:1] == [str(group)]
    )


def _signal_group(group: int, signum: int) -> bool:
    """Send ``signum`` to the process group; False when no process is left in it."""
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        return False
    return True


def log_tail(log_path: Path, chars: int = 4000) -> str:
    return log_path.read_text(errors="replace")[-chars:] if log_path.exists() else ""


def wait_until_loaded(dagit: Dagit, process: subprocess.Popen, log_path: Path) -> Dagit:
    """Until /server_info answers and the code location has loaded (or failed to)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dg dev exited with {process.returncode}:\n{log_tail(log_path)}")
        try:
            if dagit.http.get(f"{dagit.base}/server_info", timeout=5).ok:
                entries = dagit.graphql(WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    for entry in entries:
                        loaded = entry["locationOrLoadError"]
                        if loaded["__typename"] != "RepositoryLocation":
                            pytest.fail(f"code location failed to load: {loaded}")
                    return dagit
        except requests.RequestException:
            pass
        time.sleep(0.5)
    pytest.fail(f"dg dev not ready after {STARTUP_TIMEOUT_S} s:\n{log_tail(log_path)}")


WORKSPACE_QUERY = """
query { workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
BACKFILL_STATUS = """
query ($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status error { message } runs { runId status } }
    ... on PythonError { message }
  }
}
"""
RUN_FAILURES = """
query ($id: ID!) {
  runOrError(runId: $id) { ... on Run { eventConnection { events { __typename
    ... on ExecutionStepFailureEvent { stepKey error { message } } } } } }
}
"""


def launch_month_backfill(dagit: Dagit, month: str) -> str:
    """An asset backfill of every service's three layers for ``month``: what
    ``months backfill`` submits, and the UI's "Materialize -> Launch backfill" too."""
    from taxi_assets.automation.month_backfill import backfill_params, service_ranges

    dagit.graphql("mutation { setNuxSeen }")  # the community dialog would cover the pages
    ranges, skipped = service_ranges(month, month, "2019-01")
    assert [r.service for r in ranges] == list(SERVICES) and not skipped
    launched = dagit.graphql(
        LAUNCH_BACKFILL, params=backfill_params(ranges, f"browser test: {month}")
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def wait_for_backfill(dagit: Dagit, backfill_id: str, log_path: Path) -> list[dict]:
    deadline = time.monotonic() + BACKFILL_TIMEOUT_S
    while True:
        backfill = dagit.graphql(BACKFILL_STATUS, id=backfill_id)["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        if backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING"):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"backfill {backfill_id} still {backfill['status']}:\n{log_tail(log_path)}")
        time.sleep(1)
    runs = backfill["runs"]
    failures = [
        event
        for r in runs
        if r["status"] != "SUCCESS"
        for event in dagit.graphql(RUN_FAILURES, id=r["runId"])["runOrError"]["eventConnection"][
            "events"
        ]
        if event.get("stepKey")
    ]
    assert backfill["status"] == "COMPLETED_SUCCESS", (backfill, failures)
    assert runs and all(r["status"] == "SUCCESS" for r in runs), (runs, failures)
    return runs


def asset_url(key: str, **query: str) -> str:
    return f"/assets/{key}" + (
        "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    )


@pytest.fixture
def loaded_home(
    mirror: FaultyMirror, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """A DAGSTER_HOME with LOADED_MONTH materialized; the environment `dg dev` gets."""
    home = dagster_home(tmp_path)
    lake = tmp_path / "lake"
    # The default source, `auto`: the course's files, and TLC's (with fares) for FHVHV.
    env = {
        "DAGSTER_HOME": str(home),
        **project_env(mirror.url, lake, pg_url),
        "TAXI_SOURCE": "auto",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    resources = pipeline_resources(mirror.url, lake, pg_url, source="auto")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert run(ZONE_KEYS, resources, instance).success
        for service in SERVICES:  # one run per service: each has its own partitions
            keys = [f"{layer}/{service}_tripdata" for layer in ("raw", "lake", "warehouse")]
            assert run(keys, resources, instance, LOADED_MONTH).success
        assert run(STATS_KEY, resources, instance, LOADED_MONTH).success
    return {**os.environ, **env}


def test_the_ui_shows_assets_metadata_and_a_backfill(
    loaded_home: dict[str, str], mirror: FaultyMirror, pg_url: str
) -> None:
    from playwright.sync_api import sync_playwright

    executable = chromium_executable()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "dg-dev.log"
    with dagster_dev(loaded_home, log_path) as dagit:
        backfill_id = launch_month_backfill(dagit, BACKFILL_MONTH)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.set_default_timeout(30_000)
                check_asset_pages(page, dagit.base)
                wait_for_backfill(dagit, backfill_id, log_path)
                check_backfilled_month(page, dagit.base)
                shoot_asset_graph(browser, dagit.base)
            finally:
                browser.close()
    # Stopped by its Ctrl-C, not by the SIGKILL after the grace period (which leaves its
    # code server's named semaphores in /dev/shm), although started with SIGINT ignored:
    # see the Makefile's dev target.
    assert "KeyboardInterrupt received" in log_path.read_text(errors="replace"), (
        ARTIFACTS / "dg-dev-stop.txt"
    ).read_text()
    for service in SERVICES:
        assert BACKFILL_MONTH in warehouse_counts(pg_url, f"{service}_tripdata")
    if os.environ.get("TAXI_UPDATE_SCREENSHOTS"):
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACTS / "asset_graph.png", DOCS_SCREENSHOT)


def visible_text(page, wait_for: str) -> str:  # noqa: ANN001 - a Playwright page
    page.get_by_text(wait_for, exact=True).first.wait_for()
    return page.inner_text("body")


def metadata_row(page, label: str):  # noqa: ANN001, ANN201 - Playwright page and locator
    return page.locator("tr").filter(has=page.get_by_text(label, exact=True)).first


def check_metadata(page, base: str, key: str, month: str) -> str:  # noqa: ANN001
    """A partition's latest materialization: every expected metadata label is shown."""
    page.goto(base + asset_url(key, view="partitions", partition=month))
    text = visible_text(page, "rows_per_s")
    missing = [label for label in EXPECTED_LABELS[key] if label not in text.split()]
    assert not missing, f"{key} {month}: metadata labels not shown: {missing}"
    assert month in text and "Materialized" in text
    return text


def check_asset_pages(page, base: str) -> None:  # noqa: ANN001 - a Playwright page
    # An asset's overview: description, group, owners, kinds, tags, code version, and the
    # file of the function that computes it.
    page.goto(base + asset_url(STATS_KEY, view="overview"))
    text = visible_text(page, "Description")
    page.get_by_text("Trips, passengers, revenue", exact=False).first.wait_for()
    text = page.inner_text("body")
    expected_on_overview = ("analytics", "data-engineering", "Postgres", "SQL", "layer: analytics")
    for expected in (*expected_on_overview, "monthly_zone_stats.py"):
        assert expected in text, f"overview of {STATS_KEY} lacks {expected!r}"
    page.get_by_text("Compute details", exact=True).click()
    page.get_by_text("Code version", exact=True).wait_for()
    code_version = page.inner_text("body").split("Code version", 1)[1].split()[0]
    assert code_version == "1", f"code version shown: {code_version!r}"
    page.screenshot(path=ARTIFACTS / "analytics_overview.png", full_page=True)

    # The analytics asset's partitions, and the metadata of one materialization.
    text = check_metadata(page, base, STATS_KEY, LOADED_MONTH)
    assert re.search(r"Materialized \(\d+\)", text), "partition status counts not shown"
    assert "analytics.monthly_zone_stats" in text
    page.screenshot(path=ARTIFACTS / "analytics_partition.png", full_page=True)

    # The sparkline chart is drawn inline, without a click: an SVG the browser decoded.
    sparkline = metadata_row(page, "trips_per_day").locator('img[src^="data:image/svg+xml,"]')
    sparkline.wait_for()
    width, height = sparkline.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert width > 300 and height > 50, (width, height)
    assert "peak" in metadata_row(page, "trips_per_day").inner_text()
    # The full chart: an inline PNG in a markdown entry, decoded by the browser.
    metadata_row(page, "chart").get_by_text("[Show Markdown]").click()
    chart = page.get_by_role("dialog").locator('img[src^="data:image/png;base64,"]')
    chart.wait_for()
    width, height = chart.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert width > 300 and height > 100, (width, height)
    page.screenshot(path=ARTIFACTS / "analytics_chart.png")
    page.keyboard.press("Escape")
    chart.wait_for(state="detached")

    # The per-borough preview: FHV has no fares or passengers (null, not 0); FHVHV has fares
    # (revenue) but no passenger count.
    metadata_row(page, "preview").get_by_text("[Show Markdown]").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Manhattan").first.wait_for()
    preview = dialog.inner_text()
    assert "avg_duration_min" in preview and re.search(r"fhv\s+Manhattan\s+[\d,]+\s+null", preview)
    assert re.search(r"fhvhv\s+Manhattan\s+[\d,]+\s+null\s+[\d,]+\.\d\d", preview), preview
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")

    # Lake: time range, preview, path per partition; the contract's columns with their
    # descriptions once, on the asset's overview (static definition metadata).
    check_metadata(page, base, "lake/yellow_tripdata", LOADED_MONTH)
    page.screenshot(path=ARTIFACTS / "lake_partition.png", full_page=True)
    page.goto(base + asset_url("lake/yellow_tripdata", view="overview"))
    page.get_by_text(PICKUP_DATETIME.description).first.wait_for()

    # Raw: where the file came from and its checksum; warehouse: the table.
    text = check_metadata(page, base, "raw/yellow_tripdata", LOADED_MONTH)
    assert re.search(r"\b[0-9a-f]{64}\b", text), "raw sha256 not shown"
    # The published file's own columns, each with the contract column it feeds.
    metadata_row(page, "dagster/column_schema").get_by_text("[Show Table Schema]").click()
    page.get_by_role("dialog").get_by_text("tpep_pickup_datetime", exact=True).wait_for()
    page.get_by_role("dialog").get_by_text("-> pickup_datetime", exact=False).first.wait_for()
    page.keyboard.press("Escape")
    page.get_by_role("dialog").wait_for(state="detached")
    page.screenshot(path=ARTIFACTS / "raw_partition.png", full_page=True)
    text = check_metadata(page, base, "warehouse/yellow_tripdata", LOADED_MONTH)
    assert "warehouse.yellow_tripdata" in text


def check_backfilled_month(page, base: str) -> None:  # noqa: ANN001 - a Playwright page
    check_metadata(page, base, "warehouse/yellow_tripdata", BACKFILL_MONTH)
    page.screenshot(path=ARTIFACTS / "backfilled_partition.png", full_page=True)


def shoot_asset_graph(browser, base: str) -> None:  # noqa: ANN001 - a Playwright browser
    """The global asset graph, every group expanded, as the README shows it."""
    page = browser.new_page(viewport={"width": 2000, "height": 1150})
    expanded = ",".join(f"global@global:{group}" for group in GROUPS)
    page.goto(f"{base}/asset-groups?expanded={quote(expanded)}")
    names = {dg.AssetKey.from_user_string(k).path[-1] for a in ASSETS for k in _keys(a)}
    for name in sorted(names):
        page.get_by_text(name, exact=True).first.wait_for()
    # Statuses arrive node by node after the graph: wait for all of them before the picture.
    page.get_by_text("Materialized", exact=True).first.wait_for()
    page.wait_for_function(
        "() => !/Loading|fetching statuses/i.test(document.body.innerText)", timeout=30_000
    )
    page.wait_for_load_state("networkidle")
    text = page.inner_text("body")
    for expected in (*GROUPS, "Parquet", "Postgres"):
        assert expected in text, f"asset graph lacks {expected!r}"
    page.screenshot(path=ARTIFACTS / "asset_graph.png")
    page.close()


def _keys(assets_def: dg.AssetsDefinition) -> list[str]:
    return [key.to_user_string() for key in assets_def.keys]
