"""Charts rendered to PNG with matplotlib's Agg backend (no display, safe in run workers)."""

from __future__ import annotations

import base64
import calendar
import io
from collections.abc import Mapping
from datetime import date

import dagster as dg

# Colours close to the services' own: yellow cabs, green boro cabs, FHV in grey-blue.
SERVICE_COLOURS = {"yellow": "#d4a300", "green": "#2e8b57", "fhv": "#4a6d8c"}


def trips_per_day_png(month: date, daily: Mapping[str, Mapping[date, int]]) -> bytes:
    """A line per service: trips per pickup day over the days of ``month``.

    ``daily`` maps a service to ``{day: trips}``; days outside the month are ignored and
    missing days are drawn as zero.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    days_in_month = calendar.monthrange(month.year, month.month)[1]
    days = list(range(1, days_in_month + 1))
    figure = Figure(figsize=(8, 3.2), dpi=90, layout="constrained")
    axes = figure.subplots()
    for service, counts in daily.items():
        by_day = {
            d.day: n for d, n in counts.items() if (d.year, d.month) == (month.year, month.month)
        }
        axes.plot(
            days,
            [by_day.get(day, 0) for day in days],
            marker="o",
            markersize=3,
            linewidth=1.5,
            label=service,
            color=SERVICE_COLOURS.get(service),
        )
    axes.set_title(f"Trips per day by service, {month:%B %Y} (pickup date)")
    axes.set_xlabel("day of month")
    axes.set_ylabel("trips")
    axes.set_xlim(1, days_in_month)
    axes.set_ylim(bottom=0)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, alpha=0.3)
    if daily:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def png_markdown(png: bytes, alt: str = "chart") -> dg.MetadataValue:
    """A markdown metadata value that shows ``png`` inline in the Dagster UI."""
    encoded = base64.b64encode(png).decode("ascii")
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{encoded})")
