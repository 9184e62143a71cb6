"""Charts rendered to PNG with matplotlib's Agg backend (no display, safe in run workers)."""

from __future__ import annotations

import base64
import calendar
import io
from collections.abc import Mapping
from datetime import date

import dagster as dg

# Colours close to the services' own: yellow cabs, green boro cabs, FHV in grey-blue, the
# high-volume (app) trips in purple.
SERVICE_COLOURS = {"yellow": "#d4a300", "green": "#2e8b57", "fhv": "#4a6d8c", "fhvhv": "#8e44ad"}
_COLOUR_NAMES = {"yellow": "gold", "green": "green", "fhv": "blue-grey", "fhvhv": "purple"}
# The Dagster UI renders a markdown entry inline only below 1000 characters (longer ones
# hide behind "[Show Markdown]"), so the inline sparkline chart must stay under it.
UI_INLINE_MARKDOWN_LIMIT = 1000
SPARK_DAY_WIDTH = 9  # SVG units per day
SPARK_BAND = 16  # SVG units of height per service
# A lower band when the first is over the budget: each day's step is then one digit, not
# two (four services with a real month's ups and downs came to 1,017 characters).
SPARK_BAND_SHORT = 8
SPARK_GAP = 5


def _per_day(month: date, counts: Mapping[date, int]) -> list[int]:
    """Trips on each day of ``month``, in order: days outside it ignored, missing days 0."""
    days_in_month = calendar.monthrange(month.year, month.month)[1]
    by_day = {d.day: n for d, n in counts.items() if (d.year, d.month) == (month.year, month.month)}
    return [by_day.get(day, 0) for day in range(1, days_in_month + 1)]


def trips_per_day_sparkline(month: date, daily: Mapping[str, Mapping[date, int]]) -> str:
    """The trips-per-day chart as markdown short enough for the UI to show inline: a tiny
    SVG with one sparkline per service, each in its own band on its own scale (yellow
    would flatten the others on a shared one), and a caption with colours and peaks.
    The full chart, on one scale with axes, is the PNG (``trips_per_day_png``)."""
    if not daily:
        return f"No trips with a pickup day in {month:%Y-%m}."
    series = {service: _per_day(month, counts) for service, counts in daily.items()}
    caption = f"Trips per pickup day, {month:%Y-%m}, top to bottom: " + "; ".join(
        f"{service} ({_COLOUR_NAMES.get(service, 'grey')}, peak {max(values, default=0):,})"
        for service, values in series.items()
    )
    for band in (SPARK_BAND, SPARK_BAND_SHORT):
        svg = _sparkline_svg(month, series, band)
        markdown = f"![trips per day](data:image/svg+xml,{svg})\n\n{caption}."
        if len(markdown) < UI_INLINE_MARKDOWN_LIMIT:
            return markdown
    # Over the inline budget even so: the caption alone, never a hidden chart.
    return f"{caption} (the chart is in `chart`)."


def _sparkline_svg(month: date, series: Mapping[str, list[int]], band_height: int) -> str:
    """A percent-encoded SVG: one sparkline per service in bands ``band_height`` high."""
    width = SPARK_DAY_WIDTH * (calendar.monthrange(month.year, month.month)[1] - 1)
    paths = []
    for band, (service, values) in enumerate(series.items()):
        peak = max(values, default=0)
        top = band * (band_height + SPARK_GAP)
        ys = [top + band_height - (round(band_height * v / peak) if peak else 0) for v in values]
        # Relative line-tos ("9-3": 9 right, 3 up); a minus sign separates numbers by itself.
        steps = ",".join(
            f"{SPARK_DAY_WIDTH}{'' if dy < 0 else ','}{dy}"
            for dy in (after - before for before, after in zip(ys, ys[1:], strict=False))
        )
        colour = SERVICE_COLOURS.get(service, "#888888").replace("#", "%23")
        paths.append(f"%3Cpath%20d='M0,{ys[0]}l{steps}'%20stroke='{colour}'/%3E")
    height = len(series) * (band_height + SPARK_GAP)
    return (
        f"%3Csvg%20xmlns='http://www.w3.org/2000/svg'%20viewBox='-2%20-2%20{width + 4}%20"
        f"{height}'%20width='{2 * (width + 4)}'%20height='{2 * height}'%20fill='none'%3E"
        + "".join(paths)
        + "%3C/svg%3E"
    )


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
        axes.plot(
            days,
            _per_day(month, counts),
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
