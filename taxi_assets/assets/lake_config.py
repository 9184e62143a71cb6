"""Run config of a lake asset."""

from __future__ import annotations

import dagster as dg
from pydantic import Field


class LakeConfig(dg.Config):
    """What a lake materialization may do that it refuses by default."""

    accept_empty: bool = Field(
        default=False,
        description=(
            "Replace a month that holds rows with a published file that holds none. "
            "Refused by default: an empty file over a loaded month is far likelier an "
            "upstream accident than TLC emptying the month."
        ),
    )
    accept_missing_columns: bool = Field(
        default=False,
        description=(
            "Replace a month with a published file that leaves empty, in every row, a "
            "column the month has values in (a column missing from a republished file). "
            "Refused by default: the month's values would become nulls without a word."
        ),
    )
