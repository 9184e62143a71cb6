"""Run-time settings: an explicit resource field wins, then the environment, then the default.

Dagster fails a run when a field is bound to an ``EnvVar`` that is not set, so optional
settings are plain fields defaulting to ``None`` and resolved here when a run starts,
through ``dg.EnvVar(...).get_value()``. Nothing reads the environment at import time.
"""

from __future__ import annotations

import dagster as dg


def resolve_setting(explicit: str | None, env_var: str, default: str | None) -> str | None:
    """The effective value of one setting for the current run."""
    if explicit not in (None, ""):
        return explicit
    from_env = dg.EnvVar(env_var).get_value()
    if from_env not in (None, ""):
        return from_env
    return default
