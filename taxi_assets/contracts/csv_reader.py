"""Streaming CSV / CSV.gz reader onto a contract (see csv_plan for the read plan).

Every row is kept. Rows whose field count differs from the planned layout are either
the other accepted layout (header width, or header width + two empty trailing fields)
and are re-parsed and emitted right after their batch, or a MalformedRowError.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from .casting import conform
from .csv_plan import CsvPlan, Opener, plan_csv
from .schema import (
    Contract,
    ContractError,
    InvalidValueError,
    MalformedRowError,
    NonIntegralValueError,
)

_CONVERSION = re.compile(
    r"In CSV column #(\d+): CSV conversion error to (.+?): invalid value '(.*)'$", re.S
)


def open_csv_reader(source: Any, *, file_name: str, contract: Contract, gzipped: bool,
                    warn: Callable[[str], None]) -> pa.RecordBatchReader:
    """Peek and map the header eagerly (so header errors raise here), stream lazily."""
    opener = Opener(source, gzipped=gzipped)
    try:
        head, complete = opener.peek()
    except (pa.ArrowInvalid, OSError) as exc:
        raise ContractError(f"{file_name}: cannot read ({exc})") from exc
    plan = plan_csv(head, complete, file_name=file_name, contract=contract)
    if plan is None:
        warn(f"{file_name}: file is empty ({len(head)} bytes, no header); 0 rows")
        return pa.RecordBatchReader.from_batches(contract.schema, iter(()))
    return pa.RecordBatchReader.from_batches(contract.schema, _stream(plan, opener, warn))


@dataclass
class _Progress:
    """Rows already handed to the consumer, so a Latin-1 restart does not repeat them."""

    main: int = 0  # rows from Arrow's batches
    fixed: int = 0  # rows re-parsed after the invalid-row handler set them aside


class _NotUtf8(Exception):
    pass


def _stream(plan: CsvPlan, opener: Opener, warn: Callable[[str], None]) -> Iterator[pa.RecordBatch]:
    done = _Progress()
    try:
        yield from _read_pass(plan, opener, "utf8", done)
    except _NotUtf8:
        warn(f"{plan.file_name}: not valid UTF-8; decoding as Latin-1")
        yield from _read_pass(plan, opener, "latin-1", done)
    if done.main + done.fixed == 0:
        warn(f"{plan.file_name}: header only, no data rows; 0 rows")


def _read_pass(plan: CsvPlan, opener: Opener, encoding: str,
               done: _Progress) -> Iterator[pa.RecordBatch]:
    skip_main, skip_fixed = done.main, done.fixed
    seen_main = seen_fixed = 0
    set_aside: list[str] = []
    errors: list[ContractError] = []
    width = len(plan.header)

    def on_invalid_row(row: pv.InvalidRow) -> str:
        # Called by Arrow; exceptions raised here are swallowed, so record them.
        text = row.text or ""
        if plan.trailing_extra and row.actual_columns == width:
            set_aside.append(text + ",,")
            return "skip"
        if not plan.trailing_extra and row.actual_columns == width + 2 and text.endswith(",,"):
            set_aside.append(text[:-2])
            return "skip"
        errors.append(MalformedRowError(plan.file_name, row.number, width, row.actual_columns,
                                        _layout_hint(plan)))
        return "error"

    stream = opener.open()
    try:
        reader = pv.open_csv(
            stream, read_options=plan.read_options(encoding),
            parse_options=pv.ParseOptions(invalid_row_handler=on_invalid_row),
            convert_options=plan.convert_options(),
        )
        for batch in reader:
            start = max(0, skip_main - seen_main)
            seen_main += batch.num_rows
            if start < batch.num_rows:
                yield _conform(plan, batch.slice(start), done.main + done.fixed + 1)
                done.main += batch.num_rows - start
            if set_aside:
                fixed = _parse_set_aside(plan, set_aside)
                set_aside.clear()
                start = max(0, skip_fixed - seen_fixed)
                seen_fixed += fixed.num_rows
                if start < fixed.num_rows:
                    yield _conform(plan, fixed.slice(start), done.main + done.fixed + 1)
                    done.fixed += fixed.num_rows - start
    except (pa.ArrowInvalid, OSError) as exc:
        if errors:
            raise errors[0] from exc
        message = str(exc)
        if "invalid UTF8" in message and encoding == "utf8":
            raise _NotUtf8() from exc
        match = _CONVERSION.search(message)
        if match:
            raise _value_error(plan, opener, encoding, match) from exc
        raise ContractError(f"{plan.file_name}: cannot read CSV ({message})") from exc
    finally:
        stream.close()


def _layout_hint(plan: CsvPlan) -> str:
    return (f"the header has {len(plan.header)} fields; rows may also carry exactly two "
            "extra empty trailing fields")


def _conform(plan: CsvPlan, batch: pa.RecordBatch, first_row: int) -> pa.RecordBatch:
    """Arrow batch (positional columns) -> contract batch; checks the extra fields."""
    if plan.trailing_extra:
        for name in plan.names[len(plan.header):]:
            extra = batch.column(name)
            if extra.null_count != len(extra):
                idx = pc.index(pc.is_valid(extra), True).as_py()
                raise MalformedRowError(
                    plan.file_name, first_row + idx, len(plan.header), len(plan.names),
                    f"trailing field beyond the header holds {extra[idx].as_py()!r}; "
                    "only empty extra fields are accepted", data_row=True)
    arrays = []
    for col in plan.contract.columns:
        name = plan.source_column(col.name)
        if name is None:
            arrays.append(pa.nulls(batch.num_rows, col.type))
        else:
            arrays.append(conform(batch.column(name), col, file_name=plan.file_name,
                                  first_row=first_row))
    return pa.RecordBatch.from_arrays(arrays, schema=plan.contract.schema)


def _parse_set_aside(plan: CsvPlan, lines: list[str]) -> pa.RecordBatch:
    """Parse rows of the other accepted layout, already rewritten to the planned one."""
    data = ("\n".join(lines) + "\n").encode("utf-8")
    options = plan.read_options()
    options.skip_rows = 0
    table = pv.read_csv(io.BytesIO(data), read_options=options,
                        convert_options=plan.convert_options())
    return table.combine_chunks().to_batches()[0]  # never empty: `lines` is not


def _value_error(plan: CsvPlan, opener: Opener, encoding: str,
                 match: re.Match[str]) -> ContractError:
    """Turn Arrow's conversion error into one naming the contract column and data row.

    Arrow does not say which row failed, so re-read that one column as text (error path
    only) and find the first row holding the bad text.
    """
    position, type_name, value = int(match.group(1)), match.group(2), match.group(3)
    if position >= len(plan.targets):
        return ContractError(f"{plan.file_name}: {match.group(0)}")
    column = plan.contract.column(plan.targets[position])
    row = _find_text(plan, opener, encoding, plan.names[position], value)
    kind = NonIntegralValueError if pa.types.is_integer(column.type) else InvalidValueError
    return kind(plan.file_name, row, column.name, value, f"cannot parse as {type_name}")


def _find_text(plan: CsvPlan, opener: Opener, encoding: str, name: str, value: str) -> int | None:
    stream = opener.open()
    try:
        options = plan.convert_options(all_text=True)
        options.include_columns = [name]
        reader = pv.open_csv(
            stream, read_options=plan.read_options(encoding), convert_options=options,
            parse_options=pv.ParseOptions(invalid_row_handler=lambda row: "skip"),
        )
        seen = 0
        for batch in reader:
            idx = pc.index(batch.column(0), value).as_py()
            if idx >= 0:
                return seen + idx + 1
            seen += batch.num_rows
    except (pa.ArrowInvalid, OSError):
        pass
    finally:
        stream.close()
    return None
