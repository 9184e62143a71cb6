"""Header-name normalisation and mapping of a file's columns onto a contract.

TLC changed header spelling many times (`RateCodeID`/`RatecodeID`, `Airport_fee`,
`Trip_type ` with a trailing space, 2014 headers with a space after each comma), so
names are compared after normalisation, against each column's name and aliases.
"""

from __future__ import annotations

from .schema import Contract, ContractError, MissingColumnsError, UnknownColumnsError


def normalise_header(name: str) -> str:
    """Case- and whitespace-insensitive key for a header name (BOM stripped too)."""
    return name.replace("\ufeff", "").strip().lower()


def alias_index(contract: Contract) -> dict[str, str]:
    """Normalised header spelling -> contract column name. Rejects ambiguous aliases."""
    index: dict[str, str] = {}
    for col in contract.columns:
        for spelling in (col.name, *col.aliases):
            key = normalise_header(spelling)
            if index.setdefault(key, col.name) != col.name:
                # A contract bug, not a data problem: fail loudly at first use.
                raise ContractError(
                    f"contract {contract.name!r}: header {spelling!r} maps to both "
                    f"{index[key]!r} and {col.name!r}"
                )
    return index


def header_targets(header: list[str], contract: Contract) -> tuple[list[str | None], set[str]]:
    """The contract column each header position means (None: unknown), and the contract
    columns the file's layout lets two header positions share."""
    index = alias_index(contract)
    keys = [normalise_header(h) for h in header]
    present = set(keys)
    mergeable: set[str] = set()
    for layout in contract.layouts:
        # Layout-specific meanings (e.g. text `vendor_id` in 2009-2014 yellow files).
        if present.intersection(layout.markers):
            index.update(dict(layout.renames))
            mergeable.update(layout.merged)
    return [index.get(k) for k in keys], mergeable


def map_header(header: list[str], contract: Contract, file_name: str) -> list[str]:
    """Contract column name for every header position, in file order.

    Raises UnknownColumnsError naming the file, the unknown columns and the expected
    ones when any header column is not in the contract (drift is never silent),
    MissingColumnsError naming the file, the missing required columns and the header
    when a column of `contract.required` is absent, and ContractError when two header
    columns land on the same contract column (unless the file's layout declares that
    column merged: then both positions map onto it).
    """
    found, mergeable = header_targets(header, contract)
    unknown = [h for h, target in zip(header, found, strict=True) if target is None]
    if unknown or not header:
        raise UnknownColumnsError(file_name, unknown, contract.column_names)

    targets = [target for target in found if target is not None]
    seen: dict[str, str] = {}
    for raw, target in zip(header, targets, strict=True):
        if target in seen and target not in mergeable:
            raise ContractError(
                f"{file_name}: columns {seen[target]!r} and {raw!r} both map to contract "
                f"column {target!r} of {contract.name!r}"
            )
        seen[target] = raw
    missing = [name for name in contract.required if name not in seen]
    if missing:
        accepted = [s for name in missing for s in (name, *contract.column(name).aliases)]
        raise MissingColumnsError(file_name, missing, header, accepted)
    return targets
