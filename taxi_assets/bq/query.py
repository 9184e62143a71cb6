"""Queries as jobs, waited for until they end, raising when any statement failed."""

from __future__ import annotations

from collections.abc import Sequence

from google.cloud import bigquery
from google.cloud.bigquery.table import RowIterator


def run_query(
    client: bigquery.Client,
    sql: str,
    parameters: Sequence[bigquery.ScalarQueryParameter] = (),
) -> RowIterator:
    """Run ``sql`` (one statement, or a script) as a query job and wait for its result.

    Not ``client.query_and_wait``: against the emulator its short-query path answers a
    failing statement (a cast error inside a transaction, even a failing INSERT) with an
    empty result instead of an error. ``query(...).result()`` raises in both places.
    """
    job = client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=list(parameters)))
    return job.result()
