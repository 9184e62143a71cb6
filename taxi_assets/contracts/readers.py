"""Entry point: open any published TLC trip file as a stream of contract batches."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import IO, Union

import pyarrow as pa

from .csv_reader import open_csv_reader
from .parquet_reader import open_parquet_reader
from .schema import Contract, ContractError
from .unique_key import check_unique

Source = Union[str, "os.PathLike[str]", IO[bytes]]

_log = logging.getLogger(__name__)


def open_contract_reader(
    source: Source,
    *,
    file_name: str,
    contract: Contract,
    warn: Callable[[str], None] | None = None,
    dictionary_strings: bool = False,
) -> pa.RecordBatchReader:
    """Stream `source` as record batches whose schema is exactly `contract.schema`.

    `dictionary_strings`: Parquet text columns stay dictionary-encoded (see
    `open_parquet_reader`); the schema then differs from `contract.schema` in those
    columns' types only.

    `source` is a path or a seekable binary file object (left open for the caller).
    `file_name` is the published name: its suffix picks the format (.csv, .csv.gz,
    .parquet) and it names the file in every error and warning. Header and footer
    problems raise here; row-level problems raise while iterating. Every row is kept.
    Memory stays flat: CSV is read in 1 MiB blocks, Parquet in 65,536-row batches.
    """
    reader = _open(source, file_name, contract, warn or _log.warning, dictionary_strings)
    return check_unique(reader, contract, file_name)


def _open(
    source: Source,
    file_name: str,
    contract: Contract,
    warn: Callable[[str], None],
    dictionary_strings: bool,
) -> pa.RecordBatchReader:
    lowered = file_name.lower()
    if lowered.endswith(".parquet"):
        return open_parquet_reader(
            source,
            file_name=file_name,
            contract=contract,
            warn=warn,
            dictionary_strings=dictionary_strings,
        )
    if lowered.endswith((".csv.gz", ".csv.gzip")):
        return open_csv_reader(
            source, file_name=file_name, contract=contract, gzipped=True, warn=warn
        )
    if lowered.endswith(".csv"):
        return open_csv_reader(
            source, file_name=file_name, contract=contract, gzipped=False, warn=warn
        )
    raise ContractError(f"{file_name}: unsupported file type (expected .csv, .csv.gz or .parquet)")
