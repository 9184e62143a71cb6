"""Contract data model and the errors raised when a file breaks its contract.

A contract is the one fixed, versioned Arrow schema that every published variant
of a service's trip file is mapped onto. It is plain data (no I/O) so that it can
be rendered in docs, compared in tests and attached to Parquet files as metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import pyarrow as pa


class ContractError(ValueError):
    """A source file cannot be mapped onto its contract. Messages always name the file."""


class UnknownColumnsError(ContractError):
    """The header holds columns the contract does not know (schema drift is never silent)."""

    def __init__(self, file_name: str, unknown: list[str], expected: list[str]) -> None:
        self.file_name = file_name
        self.unknown = unknown
        self.expected = expected
        super().__init__(
            f"{file_name}: unknown column(s) {unknown!r}; the contract expects columns "
            f"(or their aliases) {expected!r}"
        )


class MissingColumnsError(ContractError):
    """The header lacks a column every published layout of the service carries.

    Without this check such a file would load with that column all null (a yellow file
    without its pickup time: every trip undated). `missing` are contract column names,
    `accepted` every header spelling that would have satisfied them, `found` the header.
    """

    def __init__(
        self, file_name: str, missing: list[str], found: list[str], accepted: list[str]
    ) -> None:
        self.file_name = file_name
        self.missing = missing
        self.found = found
        self.accepted = accepted
        super().__init__(
            f"{file_name}: missing required column(s) {missing!r} (accepted header names: "
            f"{accepted!r}); the file's columns are {found!r}"
        )


class MalformedRowError(ContractError):
    """A CSV row has a number of fields the reader cannot accept.

    `row` is the 1-based data row: the header, the lines before it and blank lines are
    not counted, as in every other error naming a row.
    """

    def __init__(
        self,
        file_name: str,
        row: int | None,
        expected: int,
        actual: int,
        detail: str = "",
    ) -> None:
        self.file_name = file_name
        self.row = row
        self.expected = expected
        self.actual = actual
        self.detail = detail
        where = "an unknown data row" if row is None else f"data row {row}"
        super().__init__(
            f"{file_name}: malformed {where}: expected {expected} fields, got {actual}"
            + (f"; {detail}" if detail else "")
        )


class InvalidValueError(ContractError):
    """A value cannot be converted to its contract column's type."""

    def __init__(
        self, file_name: str, row: int | None, column: str, value: object, detail: str = ""
    ) -> None:
        self.file_name = file_name
        self.row = row
        self.column = column
        self.value = value
        self.detail = detail
        where = "an unknown data row" if row is None else f"data row {row}"
        super().__init__(
            f"{file_name}: {where}, column {column!r}: invalid value {value!r}"
            + (f" ({detail})" if detail else "")
        )


class IncompatibleTypeError(ContractError):
    """A Parquet column's physical type cannot stand for its contract column's type.

    Arrow would cast it anyway, silently and wrongly: int64 or date32 to a timestamp
    (1970 dates, or midnight), bool to a fare (0/1), a timestamp to a number (its epoch
    count). `header` is the file's column name when known.
    """

    def __init__(
        self, file_name: str, column: str, found: str, expected: str, header: str | None = None
    ) -> None:
        self.file_name = file_name
        self.column = column
        self.found = found
        self.expected = expected
        self.header = header
        named = (
            f"column {header!r} (contract column {column!r})" if header else f"column {column!r}"
        )
        super().__init__(
            f"{file_name}: {named} has type {found}, which is not accepted for the "
            f"contract's {expected}"
        )


class NonIntegralValueError(InvalidValueError):
    """An integer column holds a fraction, an out-of-range number or text."""


@dataclass(frozen=True)
class ContractColumn:
    """One output column.

    `aliases` are header spellings seen in published files; they are matched after
    normalisation (see headers.normalise_header), so list each spelling once in any case.
    `codes` lets an int32 column accept text codes (FHV SR_Flag: "Y"/"N"); values are
    matched after trimming and upper-casing, and any other text is an error.
    """

    name: str
    type: pa.DataType
    description: str
    aliases: tuple[str, ...] = ()
    codes: tuple[tuple[str, int], ...] = ()

    @property
    def field(self) -> pa.Field:
        metadata = {"description": self.description}
        return pa.field(self.name, self.type, nullable=True, metadata=metadata)


@dataclass(frozen=True)
class HeaderLayout:
    """A historical header layout in which some header names mean something else.

    Yellow 2009-2014 files call a text vendor code (`VTS`) `vendor_id` and hold text
    payment types (`CSH`) under `payment_type`; those must not be cast to the modern
    int32 columns of the same name. The layout applies when any marker is in the header.

    `merged` names contract columns that this layout may carry in two header columns
    (FHV 2018: `Dispatching_base_number` and `Dispatching_base_num`). Their values must
    agree where both are set; one fills the other's empty fields (see casting.merge).
    """

    name: str
    markers: tuple[str, ...]
    renames: tuple[tuple[str, str], ...] = ()
    merged: tuple[str, ...] = ()


@dataclass(frozen=True)
class Contract:
    """`required` names the contract columns a file must carry (under any alias): those
    every published layout of the service has, so that a file lacking one is refused
    (MissingColumnsError) instead of loading with that column all null. Every other
    column is optional, because some historical layout lacks it."""

    name: str
    version: str
    time_column: str | None
    columns: tuple[ContractColumn, ...]
    layouts: tuple[HeaderLayout, ...] = ()
    description: str = ""
    required: tuple[str, ...] = ()
    # Columns whose values together identify a row: each key at most once per file
    # (contracts.unique_key; kept in memory, so only for small reference tables).
    unique: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [name for name in (*self.required, *self.unique) if name not in self.column_names]
        if unknown:
            # A contract bug, not a data problem: fail at import.
            raise ContractError(
                f"contract {self.name!r}: required or unique {unknown!r} are no columns"
            )

    @cached_property
    def schema(self) -> pa.Schema:
        return pa.schema(
            [c.field for c in self.columns],
            metadata={"contract": self.name, "contract_version": self.version},
        )

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ContractColumn:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"contract {self.name!r} has no column {name!r}")
