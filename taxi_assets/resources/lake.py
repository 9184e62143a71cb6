"""The data lake: where raw files, Parquet and charts live, resolved when a run starts."""

import dagster as dg
from upath import UPath

from taxi_assets.production import require_object_store_lake
from taxi_assets.storage.roots import lake_root, resolve_root


class LakeResource(dg.ConfigurableResource):
    """The lake's root: ``url``, else ``$TAXI_LAKE_URL``, else ``./data/lake``.

    A local path, a ``file://`` URL, ``gs://bucket/prefix``, ``s3://bucket/prefix`` or
    ``az://container/prefix`` (credentials from each provider's environment, see
    :mod:`taxi_assets.storage.roots`). Every layer that reads or writes the lake depends on
    this one resource, so a test or a deployment sets the lake in one place.
    """

    url: str | None = None

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        require_object_store_lake(self.url, "TAXI_LAKE_URL")

    def root(self) -> UPath:
        return lake_root(self.url)

    def resolve(self, path: str) -> UPath:
        """A path recorded in metadata (absolute, or a ``gs://``, ``s3://``, ``az://`` URL),
        with the lake's storage options, so it is read with the same credentials."""
        return resolve_root(path)
