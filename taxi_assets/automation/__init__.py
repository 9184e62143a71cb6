"""Schedules, sensors and automation that keep the months current.

- ``taxi_monthly_schedule`` runs ``taxi_monthly_job`` each month for the month that should
  just have been published (TLC publishes about two months late).
- ``taxi_new_month_sensor`` HEADs the source for each service's next unloaded month (and
  re-checks the newest loaded one for a republished file) and requests exactly that
  service's assets for that month.
- ``taxi_automation_sensor`` (running by default) lets lake and warehouse partitions follow
  their raw file however it was materialized.
"""
