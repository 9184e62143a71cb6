"""taxi_assets: NYC TLC trip records as Dagster software-defined assets.

``defs`` (the code location's ``Definitions``, from :mod:`taxi_assets.definitions`) loads
on first access, so that importing a submodule (the contracts, the CLI, the embedded
PostgreSQL helpers) does not build every definition. Dagster's ``-m taxi_assets`` finds
it: module attribute discovery lists ``defs`` through ``__dir__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
