"""taxi_assets: NYC TLC trip records as Dagster software-defined assets.

``defs`` (the code location's ``Definitions``, from :mod:`taxi_assets.definitions`) loads
on first access, so that importing a submodule (the contracts, the CLI, the embedded
PostgreSQL helpers) does not build every definition. Dagster's ``-m taxi_assets`` finds
it: module attribute discovery lists ``defs`` through ``__dir__``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# pyarrow allocates from jemalloc in every process that moves trip data, and in the
# processes they start (run workers inherit it from the code server): measured on a 20M-row
# one-row-group FHVHV month, peak RSS 425-430 MB against 471-489 MB with pyarrow's default
# mimalloc (docs/performance.md). Arrow reads this variable once, when pyarrow is imported,
# so it is set here, before any module of this package imports pyarrow; a value already
# set (ARROW_DEFAULT_MEMORY_POOL=mimalloc or system) decides instead.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")

if TYPE_CHECKING:
    from taxi_assets.definitions import defs

__all__ = ["defs"]


def __getattr__(name: str) -> Any:
    if name == "defs":
        from taxi_assets.definitions import defs

        return defs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "defs"])
