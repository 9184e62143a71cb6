"""Schema contracts: one fixed, versioned Arrow schema per TLC service.

Plain functions over Arrow data (no Dagster). `open_contract_reader` maps any published
header variant of a CSV, CSV.gz or Parquet trip file onto its contract, keeping every row
and raising a ContractError (a ValueError) that names the file when the data breaks it.
"""

from __future__ import annotations

from .fhv import FHV
from .fhvhv import FHVHV
from .green import GREEN
from .headers import map_header, normalise_header
from .parquet_reader import STRING_DICTIONARY, with_dictionary_text
from .readers import open_contract_reader
from .schema import (
    Contract,
    ContractColumn,
    ContractError,
    HeaderLayout,
    IncompatibleTypeError,
    InvalidValueError,
    MalformedRowError,
    MissingColumnsError,
    NonIntegralValueError,
    UnknownColumnsError,
)
from .yellow import YELLOW
from .zones import ZONES

CONTRACTS: dict[str, Contract] = {c.name: c for c in (YELLOW, GREEN, FHV, FHVHV, ZONES)}

__all__ = [
    "CONTRACTS",
    "FHV",
    "FHVHV",
    "GREEN",
    "YELLOW",
    "ZONES",
    "Contract",
    "ContractColumn",
    "ContractError",
    "HeaderLayout",
    "IncompatibleTypeError",
    "InvalidValueError",
    "MalformedRowError",
    "MissingColumnsError",
    "NonIntegralValueError",
    "STRING_DICTIONARY",
    "UnknownColumnsError",
    "map_header",
    "normalise_header",
    "with_dictionary_text",
    "open_contract_reader",
]
