"""Schedules, sensors and automation conditions that keep the months current."""

import dagster as dg


def build_schedules(partitions_def: dg.PartitionsDefinition) -> list[dg.ScheduleDefinition]:
    return []


def build_sensors(partitions_def: dg.PartitionsDefinition) -> list[dg.SensorDefinition]:
    return []
