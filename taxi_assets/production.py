"""Production never falls back silently.

Without configuration, local development gets defaults: an embedded PostgreSQL under
``./data/warehouse`` and a lake under ``./data/lake``. In a container those live and die
with the pod, so a run that "succeeded" there lost its data. ``TAXI_PRODUCTION=1`` (set
by ``deploy/``: the Dockerfile, the Compose file and the Helm values) turns each such
fallback into an error when the run starts, naming the variable to set.
"""

from __future__ import annotations

import dagster as dg

from taxi_assets.settings import resolve_setting

PRODUCTION_ENV = "TAXI_PRODUCTION"
_TRUE = frozenset({"1", "true", "yes", "on"})
LOCAL_SCHEMES = ("", "file", "local")


class ProductionConfigurationError(Exception):
    """A production run would use a local default; the message names the variable."""


def is_production() -> bool:
    value = dg.EnvVar(PRODUCTION_ENV).get_value() or ""
    return value.strip().lower() in _TRUE


def require_setting(explicit: str | None, env_var: str, what: str) -> None:
    """In production, fail unless ``explicit`` or ``$env_var`` is set."""
    if is_production() and not resolve_setting(explicit, env_var, None):
        raise ProductionConfigurationError(
            f"{env_var} is not set, and {PRODUCTION_ENV} is: set {env_var} to {what}. "
            "(Without it a local default would be used, inside the run's container.)"
        )


def require_object_store_lake(explicit: str | None, env_var: str) -> None:
    """In production, fail unless the lake is set and is not a local path."""
    require_setting(explicit, env_var, "the lake's object store URL (gs://BUCKET/PREFIX)")
    if not is_production():
        return
    url = resolve_setting(explicit, env_var, None) or ""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in LOCAL_SCHEMES:
        raise ProductionConfigurationError(
            f"{env_var} is a local path and {PRODUCTION_ENV} is set: a local lake lives and "
            f"dies with the run's container. Set {env_var} to an object store URL "
            "(gs://BUCKET/PREFIX)."
        )
