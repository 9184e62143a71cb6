"""The inline trips-per-day sparkline: short enough for the UI, a valid SVG, true to the data."""

from __future__ import annotations

import re
import urllib.parse
import xml.etree.ElementTree as ET
from datetime import date, timedelta

from taxi_assets.assets.analytics.charts import (
    SPARK_BAND,
    SPARK_BAND_SHORT,
    SPARK_DAY_WIDTH,
    SPARK_GAP,
    UI_INLINE_MARKDOWN_LIMIT,
    trips_per_day_sparkline,
)

SVG = "{http://www.w3.org/2000/svg}"


def svg_of(markdown: str) -> ET.Element:
    match = re.search(r"\(data:image/svg\+xml,([^)\s]+)\)", markdown)
    assert match, markdown
    return ET.fromstring(urllib.parse.unquote(match.group(1)))


def path_points(d: str) -> list[tuple[int, int]]:
    """Absolute points of 'M x,y l dx dy ...' with comma or minus-sign separators."""
    numbers = [int(n) for n in re.findall(r"-?\d+", d)]
    x, y = numbers[0], numbers[1]
    points = [(x, y)]
    for dx, dy in zip(numbers[2::2], numbers[3::2], strict=True):
        x, y = x + dx, y + dy
        points.append((x, y))
    return points


def month_of(values: list[int], month: date = date(2021, 1, 1)) -> dict[date, int]:
    return {month + timedelta(days=i): v for i, v in enumerate(values)}


def test_sparkline_is_inline_sized_and_true_to_the_counts() -> None:
    yellow = [40_000 + 997 * (i % 7) for i in range(31)]
    green = [900 + 37 * i for i in range(31)]
    fhv = [5_000 - 120 * i for i in range(31)]
    daily = {
        "yellow": {**month_of(yellow), date(2020, 12, 31): 10**9},  # outside: ignored
        "green": month_of(green),
        "fhv": month_of(fhv),
    }
    markdown = trips_per_day_sparkline(date(2021, 1, 1), daily)
    assert len(markdown) < UI_INLINE_MARKDOWN_LIMIT
    assert f"yellow (gold, peak {max(yellow):,})" in markdown
    paths = svg_of(markdown).findall(f"{SVG}path")
    assert len(paths) == 3
    for band, (path, values) in enumerate(zip(paths, (yellow, green, fhv), strict=True)):
        points = path_points(path.attrib["d"])
        assert [x for x, _ in points] == [SPARK_DAY_WIDTH * i for i in range(31)]
        top = band * (SPARK_BAND + SPARK_GAP)
        peak = max(values)
        expected = [top + SPARK_BAND - round(SPARK_BAND * v / peak) for v in values]
        assert [y for _, y in points] == expected


def test_missing_days_are_zero_and_short_months_are_short() -> None:
    markdown = trips_per_day_sparkline(date(2021, 2, 1), {"fhv": {date(2021, 2, 10): 5}})
    (path,) = svg_of(markdown).findall(f"{SVG}path")
    points = path_points(path.attrib["d"])
    assert len(points) == 28
    assert [y for _, y in points].count(0) == 1  # the one day with trips is the peak
    assert "peak 5" in markdown


def test_no_trips_draws_flat_lines_without_dividing_by_zero() -> None:
    markdown = trips_per_day_sparkline(date(2021, 1, 1), {"green": {}})
    (path,) = svg_of(markdown).findall(f"{SVG}path")
    assert {y for _, y in path_points(path.attrib["d"])} == {SPARK_BAND}


def test_four_services_with_jagged_months_stay_inline_in_shorter_bands() -> None:
    """Day-to-day swings (a weekday/weekend month) at the full band take two digits a
    step: four such services went over the UI's inline budget, leaving only the caption.
    The bands are then drawn lower, and stay true to the counts."""
    jagged = [1_999_999 if day % 2 else 199_999 for day in range(31)]
    daily = {service: month_of(jagged) for service in ("yellow", "green", "fhv", "fhvhv")}
    markdown = trips_per_day_sparkline(date(2021, 1, 1), daily)
    assert len(markdown) < UI_INLINE_MARKDOWN_LIMIT
    paths = svg_of(markdown).findall(f"{SVG}path")
    assert len(paths) == 4
    for band, path in enumerate(paths):
        top = band * (SPARK_BAND_SHORT + SPARK_GAP)
        expected = [
            top + SPARK_BAND_SHORT - round(SPARK_BAND_SHORT * v / max(jagged)) for v in jagged
        ]
        assert [y for _, y in path_points(path.attrib["d"])] == expected


def test_no_service_with_trips_in_the_month_says_so() -> None:
    assert trips_per_day_sparkline(date(2021, 1, 1), {}) == (
        "No trips with a pickup day in 2021-01."
    )
