"""One run of the project's assets for one month, in a process of its own, on the instance
of ``$DAGSTER_HOME`` (the tests that overlap runs; threads of one process can deadlock):

    python -m taxi_assets_tests.run_process MIRROR_URL LAKE WAREHOUSE_URL|none KEYS MONTH RUN_ID TAGS

``KEYS``: comma-separated asset keys; ``TAGS``: the run's tags as JSON. The run names its
assets, as :func:`taxi_assets_tests.pipeline.run_naming_its_assets` does; ``none`` for the
warehouse URL means nothing listens there. Prints ``ok`` or ``failed``.
"""

from __future__ import annotations

import json
import sys

import dagster as dg

from taxi_assets_tests.pipeline import ASSETS, pipeline_resources


def main(argv: list[str]) -> int:
    mirror_url, lake, warehouse_url, keys, month, run_id, tags = argv
    selection = [dg.AssetKey.from_user_string(key) for key in keys.split(",")]
    resources = pipeline_resources(
        mirror_url, lake, None if warehouse_url == "none" else warehouse_url
    )
    definitions = dg.Definitions(
        assets=ASSETS, resources=resources, jobs=[dg.define_asset_job("named", selection)]
    )
    with dg.DagsterInstance.get() as instance:
        result = definitions.resolve_job_def("named").execute_in_process(
            asset_selection=selection,
            partition_key=month,
            tags=json.loads(tags),
            instance=instance,
            raise_on_error=False,
            run_id=run_id,
        )
    print("ok" if result.success else "failed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
