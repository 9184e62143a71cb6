"""Write generated months to a mirror folder, in each upstream's exact layout: the
course's CSV.gz files (``dtc``) and TLC's Parquet files (``tlc``), both from the same rows
(``trips.py``), so cross-source tests can compare values. A file is replaced only when
its bytes change (and atomically), so regenerating a mirror keeps its files' ETags.
"""

from __future__ import annotations

import filecmp
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from taxi_assets.devdata import fhvhv
from taxi_assets.devdata.csv_gz import ParallelGzip, csv_chunk_bytes
from taxi_assets.devdata.layouts import (
    SERVICES,
    SOURCES,
    check_known,
    default_crlf,
    default_float_codes,
    dtc_has_month,
    dtc_header,
    parse_month,
    relpath,
    tlc_schema,
)
from taxi_assets.devdata.one_row_group import write_one_row_group
from taxi_assets.devdata.tlc_writer import TLC_PARQUET_WRITER_OPTIONS
from taxi_assets.devdata.trips import CHUNK_ROWS, iter_trip_chunks
from taxi_assets.devdata.zones import write_zones

DEFAULT_ROWS = 5000


def _tmp_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{os.getpid()}.tmp")


def _commit(tmp: Path, dest: Path) -> Path:
    """Atomically publish tmp as dest, unless dest already has identical bytes:
    then the old file (and its mtime, hence the mirror's ETag) is kept."""
    if (
        dest.exists()
        and dest.stat().st_size == tmp.stat().st_size
        and filecmp.cmp(tmp, dest, shallow=False)
    ):
        tmp.unlink()
    else:
        os.replace(tmp, dest)
    return dest


def write_if_changed(dest: Path, data: bytes) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(dest)
    tmp.write_bytes(data)
    return _commit(tmp, dest)


def _write_csv_gz(
    dest: Path, chunks: Iterable[pa.Table], header: list[str], *, float_codes: bool, crlf: bool
) -> None:
    eol = "\r\n" if crlf else "\n"
    tmp = _tmp_path(dest)
    try:
        with open(tmp, "wb") as raw:
            # mtime 0 and a fixed inner name make the gzip bytes reproducible.
            gz = ParallelGzip(raw, inner_name=dest.name.removesuffix(".gz"))
            gz.write((",".join(header) + eol).encode())
            for table in chunks:
                gz.write(csv_chunk_bytes(table, header, float_codes=float_codes, eol=eol))
            gz.close()
        _commit(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _write_parquet(
    dest: Path, chunks: Iterable[pa.Table], schema: pa.Schema, *, single_row_group: bool = False
) -> None:
    tmp = _tmp_path(dest)
    try:
        if single_row_group:
            write_one_row_group(tmp, chunks, schema)
        else:
            with pq.ParquetWriter(tmp, schema, **TLC_PARQUET_WRITER_OPTIONS) as writer:
                for table in chunks:
                    writer.write_table(table.cast(schema), row_group_size=CHUNK_ROWS)
        _commit(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_month(
    root: Path,
    *,
    source: str,
    service: str,
    month: str,
    rows: int,
    seed: int = 42,
    float_codes: bool | None = None,
    crlf: bool | None = None,
    single_row_group: bool = False,
) -> Path:
    """Write one month file in the source's layout under root; returns its path.

    float_codes / crlf default to the per-month conventions
    (default_float_codes / default_crlf). Unlike generate_mirror this writes
    dtc months outside 2019-01..2021-07 too, if asked explicitly.
    ``single_row_group`` writes a tlc Parquet file as ONE row group, TLC's real layout
    (otherwise one row group per 500,000-row chunk), in bounded memory (one_row_group.py).
    """
    check_known(source=source, service=service)
    dest = Path(root) / relpath(source, service, month)
    dest.parent.mkdir(parents=True, exist_ok=True)
    floats = default_float_codes(month) if float_codes is None else float_codes
    chunks = iter_trip_chunks(service, month, rows, seed)
    if source == "dtc":
        eol_crlf = default_crlf(source, service, month) if crlf is None else crlf
        if service == "fhvhv":
            chunks = (fhvhv.dtc_table(month, table) for table in chunks)
        header = dtc_header(service, month)
        _write_csv_gz(dest, chunks, header, float_codes=floats, crlf=eol_crlf)
    else:
        codes_as_floats = floats and service in ("yellow", "green")
        _write_parquet(
            dest,
            chunks,
            tlc_schema(service, month, float_codes=codes_as_floats),
            single_row_group=single_row_group,
        )
    return dest


def generate_mirror(
    root: Path,
    *,
    months: list[str],
    services: Sequence[str] = SERVICES,
    sources: Sequence[str] = SOURCES,
    rows: int | Mapping[str, int] = DEFAULT_ROWS,
    seed: int = 42,
) -> list[Path]:
    """Write every (source, service, month) file plus the zone lookup.

    dtc files are only written for months the course mirror has
    (2019-01..2021-07), like the real upstream. rows may be a per-service dict
    (missing services get DEFAULT_ROWS). Re-running is byte-identical and
    leaves unchanged files (and their mtimes) untouched.
    """
    for source in sources:
        check_known(source=source)
    for service in services:
        check_known(service=service)
    for month in months:
        parse_month(month)
    root = Path(root)
    written = [write_zones(root)]
    for source in sources:
        for service in services:
            n = rows if isinstance(rows, int) else int(rows.get(service, DEFAULT_ROWS))
            for month in months:
                if source == "dtc" and not dtc_has_month(month, service):
                    continue
                written.append(
                    write_month(
                        root, source=source, service=service, month=month, rows=n, seed=seed
                    )
                )
    return written
