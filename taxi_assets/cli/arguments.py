"""Argument types shared by the commands."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def parse_months(spec: str) -> list[str]:
    """'2021-01,2021-03' and '2021-01..2021-03' (and mixes of both)."""
    from taxi_assets.devdata.layouts import month_range, parse_month

    months: list[str] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if ".." in part:
            first, last = part.split("..", 1)
            months += month_range(first.strip(), last.strip())
        else:
            parse_month(part)
            months.append(part)
    return list(dict.fromkeys(months))  # de-duplicate, keep order


def month_list(spec: str) -> list[str]:
    """:func:`parse_months` as an argument type: a range given backwards, which holds no
    month, is refused (it wrote nothing and said it had)."""
    try:
        months = parse_months(spec)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not months:
        raise argparse.ArgumentTypeError(f"{spec!r} holds no month (a range is FIRST..LAST)")
    return months


def positive_int(text: str) -> int:
    """A whole number of at least 1 (rows, months): 0 or fewer would do nothing, or loop."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def csv_list(spec: str, allowed: Sequence[str]) -> list[str]:
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        # An empty shell variable ("--services $SERVICES") meant every service.
        raise argparse.ArgumentTypeError(f"none given; choose from {','.join(allowed)}")
    bad = [s for s in items if s not in allowed]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {','.join(allowed)}")
    return list(dict.fromkeys(items))  # once each, in the order given
