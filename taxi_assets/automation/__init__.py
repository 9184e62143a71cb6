"""Schedules, sensors and automation that keep the months current.

- ``taxi_<service>_schedule`` runs ``taxi_<service>_job`` each month for the month that
  should just have been published (TLC publishes about two months late): one per service,
  since each service has its own partitions.
- ``taxi_new_month_sensor`` HEADs the source for each service's next unloaded month (and
  re-checks the newest loaded one for a republished file) and runs exactly that
  service's job for that month.
- ``month_backfill`` submits every service for a month (or a range) as one asset
  backfill (``python -m taxi_assets.cli months backfill``).
- ``taxi_automation_sensor`` (running by default) lets lake and warehouse partitions follow
  their raw file however it was materialized.
"""
