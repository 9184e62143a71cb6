"""Where each monthly file is published: the course mirror (dtc) and TLC's own files (tlc)."""

from __future__ import annotations

from dataclasses import dataclass

from taxi_assets.partitions import parse_month

DEFAULT_DTC_URL = "https://github.com/DataTalksClub/nyc-tlc-data/releases/download"
DEFAULT_TLC_URL = "https://d37ci6vzurychx.cloudfront.net/trip-data"
DEFAULT_ZONES_URL = (
    "https://github.com/DataTalksClub/nyc-tlc-data/releases/download/misc/taxi_zone_lookup.csv"
)
SOURCE_CHOICES = ("auto", "dtc", "tlc")
# The course mirror holds exactly these months; `auto` uses TLC's files outside them.
DTC_FIRST_MONTH = "2019-01"
DTC_LAST_MONTH = "2021-07"
# Datasets `auto` always reads from TLC: the course's FHVHV files lack fares, trip times
# and miles (7 columns), which TLC's files have for every month.
TLC_ONLY_IN_AUTO = frozenset({"fhvhv_tripdata"})


@dataclass(frozen=True)
class SourceLayout:
    """The resolved source settings of one run."""

    source: str
    dtc_url: str
    tlc_url: str
    zones_url: str

    def __post_init__(self) -> None:
        if self.source not in SOURCE_CHOICES:
            raise ValueError(
                f"TAXI_SOURCE={self.source!r} is not one of {', '.join(SOURCE_CHOICES)}"
            )

    def source_for(self, month: str, dataset: str | None = None) -> str:
        """``dtc`` or ``tlc``: which source serves ``dataset``'s ``month``."""
        parse_month(month)
        if self.source != "auto":
            return self.source
        if dataset in TLC_ONLY_IN_AUTO:
            return "tlc"
        return "dtc" if DTC_FIRST_MONTH <= month <= DTC_LAST_MONTH else "tlc"

    def trip_file(self, dataset: str, month: str) -> tuple[str, str]:
        """(URL, published file name) of ``dataset`` (e.g. ``yellow_tripdata``) for ``month``."""
        parse_month(month)
        if self.source_for(month, dataset) == "dtc":
            service = dataset.removesuffix("_tripdata")
            name = f"{dataset}_{month}.csv.gz"
            return f"{self.dtc_url.rstrip('/')}/{service}/{name}", name
        return self.tlc_trip_file(dataset, month)

    def tlc_trip_file(self, dataset: str, month: str) -> tuple[str, str]:
        """(URL, file name) of the month at TLC, whichever source serves it in this layout."""
        parse_month(month)
        name = f"{dataset}_{month}.parquet"
        return f"{self.tlc_url.rstrip('/')}/{name}", name

    def zones_file(self) -> tuple[str, str]:
        """(URL, file name) of the zone lookup."""
        return self.zones_url, self.zones_url.rstrip("/").rsplit("/", 1)[-1]
