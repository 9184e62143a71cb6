"""Analytics computed inside PostgreSQL from the warehouse: joins across the datasets.

``analytics/monthly_zone_stats`` sums up one file month (``partition_month``) of every
service per pickup borough (through ``warehouse.taxi_zones``). No trip row travels to
Python: in one transaction the month's trips are read once into a small temporary table
of sums per service, borough and pickup day, from which an ``INSERT ... SELECT`` replaces
the month's rows and a query takes the trips per day for the chart (which goes to the
lake and, inline, to the materialization's metadata).
"""

from taxi_assets.assets.analytics.monthly_zone_stats import build_analytics_assets
from taxi_assets.assets.analytics.stats_columns import STATS_KEY

__all__ = ["STATS_KEY", "build_analytics_assets"]
