"""BigQuery names: projects, datasets and tables validated, then quoted with backticks.

Names reach SQL only through :meth:`TableName.sql` and :func:`column_sql` (after
validation), values only as query parameters or, inside multi-statement scripts (which
take no parameters on every server), as literals built by :func:`sql_literal` from
Python values: text escaped to ASCII by GoogleSQL's lexical rules (any text, whatever its
quotes, backslashes, newlines or script), dates from ``date`` objects, NaN and infinity
as casts (GoogleSQL has no literal for them).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

# Project IDs: 6-30 lowercase letters, digits and hyphens (emulators accept shorter ones,
# such as "test"); legacy domain-scoped IDs carry "example.com:" in front.
_PROJECT = re.compile(r"^(?:[a-z0-9][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{0,61}[a-z0-9]$")
# Datasets and tables: letters, digits and underscores (what this project creates).
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$")


class BigQueryNameError(ValueError):
    """A project, dataset or table name BigQuery (or this project) does not accept."""


def check_project(project: str) -> str:
    if not _PROJECT.match(project):
        raise BigQueryNameError(f"{project!r} is not a Google Cloud project ID")
    return project


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise BigQueryNameError(
            f"{name!r} is not a dataset or table name (letters, digits, underscores)"
        )
    return name


@dataclass(frozen=True)
class TableName:
    """``project.dataset.table``, each part validated."""

    project: str
    dataset: str
    table: str

    def __post_init__(self) -> None:
        check_project(self.project)
        check_name(self.dataset)
        check_name(self.table)

    @property
    def table_id(self) -> str:
        """The API's form, ``project.dataset.table``."""
        return f"{self.project}.{self.dataset}.{self.table}"

    @property
    def short(self) -> str:
        """``dataset.table``: how metadata and messages name it (no project)."""
        return f"{self.dataset}.{self.table}"

    def sql(self) -> str:
        """The table in SQL: one backtick-quoted path."""
        return f"`{self.table_id}`"

    def sibling(self, table: str) -> TableName:
        return TableName(self.project, self.dataset, table)


def column_sql(name: str) -> str:
    if not _NAME.match(name):
        raise BigQueryNameError(f"{name!r} is not a column name (letters, digits, underscores)")
    return f"`{name}`"


def date_literal(value: date) -> str:
    """``DATE 'YYYY-MM-DD'`` from a date object (never from text)."""
    if not isinstance(value, date):
        raise TypeError(f"expected a date, not {type(value).__name__}")
    return f"DATE '{value:%Y-%m-%d}'"


# Lone UTF-16 surrogates: a Python str can hold them (file names decoded with
# surrogateescape), no UTF-8 text can, and BigQuery refuses their escapes.
_SURROGATE = re.compile("[\ud800-\udfff]")


def string_literal(value: str) -> str:
    """A string literal for a script, in ASCII: quote, backslash and every control or
    non-ASCII character escaped (``\\'``, ``\\\\``, ``\\n``, ``\\xhh``, ``\\uhhhh``,
    ``\\Uhhhhhhhh``, each of which GoogleSQL decodes to that code point), so no value can
    end the literal, the statement or the script."""
    surrogate = _SURROGATE.search(value)
    if surrogate is not None:
        raise ValueError(
            f"text {value!r} is not valid Unicode (a lone surrogate at position "
            f"{surrogate.start()}): BigQuery stores UTF-8 text only"
        )
    escaped = value.encode("unicode_escape").decode("ascii").replace("'", "\\'")
    return f"'{escaped}'"


def float_literal(value: float) -> str:
    """A FLOAT64 value: GoogleSQL has no literal for NaN or infinity, only casts from text."""
    if math.isnan(value):
        return "CAST('nan' AS FLOAT64)"
    if math.isinf(value):
        return f"CAST('{'-' if value < 0 else '+'}inf' AS FLOAT64)"
    # float's own repr: a subclass (numpy.float64) spells itself np.float64(...).
    return float.__repr__(float(value))


def sql_literal(value: Any) -> str:
    """A literal for a script from a Python value: None, date, bool, number or text."""
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        raise TypeError("datetime literals are not supported")
    if isinstance(value, date):
        return date_literal(value)
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return float_literal(value)
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"{value} does not fit BigQuery's INT64")
        return int.__repr__(int(value))
    if isinstance(value, str):
        return string_literal(value)
    raise TypeError(f"no BigQuery literal for {type(value).__name__}")
