"""The month's statistics as a markdown table for the UI."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def preview_markdown(preview: pd.DataFrame) -> str:
    """The month's rows as a markdown table; SQL nulls show as ``null``, never as 0."""
    import pandas as pd  # here, not at import: every run process loads this module

    if preview.empty:
        return "(no trips in this month)"
    formats = {
        "trips": "{:,.0f}",
        "passengers": "{:,.0f}",
        "revenue": "{:,.2f}",
        "avg_distance_mi": "{:.2f}",
        "avg_duration_min": "{:.1f}",
    }
    shown = preview.astype(object)
    for column, template in formats.items():
        shown[column] = [
            "null" if pd.isna(value) else template.format(float(value)) for value in preview[column]
        ]
    return shown.to_markdown(index=False, disable_numparse=True)
