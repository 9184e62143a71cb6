"""deploy/ and docs/deployment.md are valid and agree with each other (no Docker needed).

YAML files parse and pass Dagster's own config schemas; every Dagster command line in the
Dockerfile and the Compose file parses with Dagster's CLI; the Dockerfile's instructions,
copied files and ignore rules hold together; secrets only come from the environment.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
DOCS = REPO / "docs" / "deployment.md"
DOCKERFILE_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip
DAGSTER_SERVICES = ("taxi-assets-code", "webserver", "daemon")


def compose(name: str = "docker-compose.yaml") -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword, arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def parse_dagster_command(argv: list[str]) -> dict:
    """Parse a Dagster command line with Dagster's click CLI (raises on unknown options)."""
    from dagster._cli import cli as dagster_cli
    from dagster._daemon.cli import cli as daemon_cli
    from dagster_webserver.cli import cli as webserver_cli

    program, *args = argv
    command: click.Command = {
        "dagster": dagster_cli,
        "dagster-daemon": daemon_cli,
        "dagster-webserver": webserver_cli,
    }[program]
    while isinstance(command, click.Group):
        name, *args = args
        sub = command.get_command(click.Context(command), name)
        assert sub is not None, f"{argv}: unknown command {name!r}"
        command = sub
    return command.make_context(program, list(args)).params


def test_instance_config_passes_dagsters_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster._core.instance.config import dagster_instance_config

    raw = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    # Storage and compute logs are environment-driven; nothing secret is written here.
    assert raw["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_POSTGRES_URL"}
    assert raw["compute_logs"]["class"] == "LocalComputeLogManager"
    assert raw["compute_logs"]["config"]["base_dir"] == {"env": "DAGSTER_COMPUTE_LOGS_DIR"}
    text = (DEPLOY / "dagster.yaml").read_text()
    assert not re.search(r"(?i)^\s*password\s*:", text, re.M)

    monkeypatch.setenv("DAGSTER_POSTGRES_URL", "postgresql+psycopg2://u:p@db:5432/dagster")
    monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_DIR", "/opt/dagster/compute-logs")
    config, _ = dagster_instance_config(str(DEPLOY), "dagster.yaml")
    assert config["run_retries"]["enabled"] is True
    assert config["concurrency"]["runs"]["max_concurrent_runs"] > 0
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"


def test_workspace_points_at_the_code_location() -> None:
    from dagster._config import validate_config
    from dagster._core.workspace.config_schema import WORKSPACE_CONFIG_SCHEMA

    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    assert validate_config(WORKSPACE_CONFIG_SCHEMA, workspace).success
    server = workspace["load_from"][0]["grpc_server"]
    code = compose()["services"][server["host"]]
    params = parse_dagster_command(code["command"])
    assert (params["port"], params["module_name"]) == (server["port"], "taxi_assets")


def test_compose_services_and_commands() -> None:
    services = compose()["services"]
    assert {"taxi-assets-code", "webserver", "daemon", "dagster-postgres", "warehouse"} <= set(
        services
    )
    for name in DAGSTER_SERVICES:
        service = services[name]
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
        parse_dagster_command(service["command"])
        env = service["environment"]
        assert env["DAGSTER_POSTGRES_URL"].startswith("postgresql+psycopg2://")
        # No cloud account is needed to start: GCP keys come from docker-compose.gcp.yaml.
        assert "secrets" not in service and "GOOGLE_APPLICATION_CREDENTIALS" not in env
    for name in ("webserver", "daemon"):
        assert "workspace.yaml" in services[name]["command"]
    healthcheck = services["taxi-assets-code"]["healthcheck"]["test"]
    assert healthcheck[0] == "CMD"
    parse_dagster_command(healthcheck[1:])
    assert services["taxi-assets-code"]["environment"]["TAXI_LAKE_URL"].startswith("${")


def test_compose_takes_every_secret_from_the_environment() -> None:
    text = "\n".join(
        (DEPLOY / name).read_text() for name in ("docker-compose.yaml", "docker-compose.gcp.yaml")
    )
    # Every password-bearing value is an interpolation, never a literal.
    values = re.findall(r"^\s*\w*PASSWORD:[ \t]*(\S*)", text, re.M) + re.findall(
        r"://[^:/\s]+:([^@\n]*)@", text
    )
    assert len(values) >= 4
    for value in values:
        assert value.startswith("${"), value
    variables = set(re.findall(r"\$\{([A-Z_]+)", text))
    example = dict(
        line.split("=", 1)
        for line in (DEPLOY / "env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert variables <= set(example), variables - set(example)
    assert not example["DAGSTER_PG_PASSWORD"] and not example["WAREHOUSE_PASSWORD"]


def test_compose_passes_object_store_credentials_through_unset_by_default() -> None:
    """A lake on S3 or Azure works from the same file: the code location (where runs
    execute) takes the stores' variables from the environment, with no value in the file."""
    env = compose()["services"]["taxi-assets-code"]["environment"]
    for name in ("AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3"):
        assert name in env and env[name] is None, name
    for name in ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_CONNECTION_STRING"):
        assert name in env and env[name] is None, name
    deployment = DOCS.read_text()
    for name in env:
        if env[name] is None:
            assert f"`{name}`" in deployment, f"{name} is not documented in docs/deployment.md"


def test_compose_gives_the_code_location_every_setting_the_code_reads() -> None:
    """Every TAXI_* variable the package reads reaches the container where sensors run and
    runs execute (set there, or passed through when set), but the CLI's own and the
    image's."""
    import re

    read = {
        name
        for path in (REPO / "taxi_assets").rglob("*.py")
        for name in re.findall(r'"(TAXI_[A-Z_]+)"', path.read_text())
    }
    env = compose()["services"]["taxi-assets-code"]["environment"]
    # The CLI's; the image's; the embedded server's, which production never starts
    # (TAXI_PRODUCTION requires TAXI_WAREHOUSE_URL); a raw month's folder lock's, which
    # only a local lake takes (TAXI_PRODUCTION refuses a local lake path).
    not_for_the_container = {
        "TAXI_ANALYST_PASSWORD",
        "TAXI_PRODUCTION",
        "TAXI_EMBEDDED_LOCK_WAIT_S",
        "TAXI_RAW_LOCK_WAIT_S",
    }
    assert read - not_for_the_container - set(env) == set()
    assert "TAXI_PRODUCTION=1" in (DEPLOY / "Dockerfile").read_text()


def test_step_logs_are_one_volume_the_runs_write_and_the_webserver_reads() -> None:
    """deploy/dagster.yaml keeps step logs under DAGSTER_COMPUTE_LOGS_DIR; the image sets
    it and creates the folder; Compose mounts one volume there in the code location (its
    subprocesses run the runs) and the webserver (it shows the logs)."""
    folder = dockerfile_env()["DAGSTER_COMPUTE_LOGS_DIR"]
    assert any(
        keyword == "RUN"
        and "mkdir -p ${DAGSTER_COMPUTE_LOGS_DIR}" in arguments
        and "${DAGSTER_COMPUTE_LOGS_DIR}" in arguments.split("chown", 1)[-1]
        for keyword, arguments in dockerfile_instructions()
    )
    files = compose()
    mounts = {
        name: [v for v in files["services"][name].get("volumes", []) if v.endswith(":" + folder)]
        for name in DAGSTER_SERVICES
    }
    assert mounts["taxi-assets-code"] == mounts["webserver"] == [f"compute-logs:{folder}"]
    assert "compute-logs" in files["volumes"]


def test_the_gcp_file_only_adds_a_key_to_the_code_location() -> None:
    """docker-compose.gcp.yaml, merged after docker-compose.yaml, gives the code location
    (where the runs execute) a service-account key; nothing else changes."""
    base, gcp = compose(), compose("docker-compose.gcp.yaml")
    assert set(gcp) == {"services", "secrets"} and set(gcp["services"]) == {"taxi-assets-code"}
    code = gcp["services"]["taxi-assets-code"]
    assert set(code) == {"environment", "secrets"}
    assert code["environment"] == {"GOOGLE_APPLICATION_CREDENTIALS": "/run/secrets/gcp-key"}
    assert code["secrets"] == ["gcp-key"] and set(gcp["secrets"]) == {"gcp-key"}
    assert gcp["secrets"]["gcp-key"]["file"].startswith("${GCP_KEY_FILE")
    assert not set(code["environment"]) & set(base["services"]["taxi-assets-code"]["environment"])
    assert "secrets" not in base
    deployment = DOCS.read_text()
    assert "-f deploy/docker-compose.yaml -f deploy/docker-compose.gcp.yaml" in deployment


def test_dockerfile_is_well_formed() -> None:
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    assert set(keywords) <= DOCKERFILE_INSTRUCTIONS, set(keywords) - DOCKERFILE_INSTRUCTIONS
    assert [k for k in keywords if k != "ARG"][0] == "FROM"
    assert keywords.count("CMD") == 1 and "USER" in keywords
    env = dockerfile_env()
    assert env["DAGSTER_HOME"] == "/opt/dagster/dagster_home"
    assert env["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] == "false"

    cmd = json.loads(dict(instructions)["CMD"])
    code = compose()["services"]["taxi-assets-code"]
    assert cmd == code["command"]
    parse_dagster_command(cmd)
    exposed = {int(port) for k, a in instructions if k == "EXPOSE" for port in a.split()}
    assert parse_dagster_command(cmd)["port"] in exposed


def test_dockerfile_copies_exist_and_are_not_ignored() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    included = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copies = [a for k, a in dockerfile_instructions() if k == "COPY"]
    assert copies
    sources = []
    for arguments in copies:
        parts = [p for p in arguments.split() if not p.startswith("--")]
        sources += parts[:-1]
    for source in sources:
        assert (REPO / source).exists(), source
        assert source.rstrip("/") in included, f"{source} is excluded by Dockerfile.dockerignore"
    assert "deploy/dagster.yaml" in sources and "deploy/workspace.yaml" in sources


def test_docs_cover_layout_bigquery_and_settings() -> None:
    text = DOCS.read_text()
    sql = "\n".join(re.findall(r"```sql\n(.*?)```", text, re.S))
    for service in ("yellow", "green"):
        assert f"gs://taxi-lake/nyc/lake/{service}_tripdata/*" in sql
    prefix = re.search(r"hive_partition_uri_prefix = '([^']+)'", sql)
    uris = re.search(r"uris = \['([^']+)/\*'\]", sql)
    assert prefix and uris and prefix.group(1) == uris.group(1)
    assert "WITH PARTITION COLUMNS" in sql and "format = 'PARQUET'" in sql
    # The documented layout is the one the tests check on the emulator.
    assert "yellow_tripdata/year=2021/month=01/yellow_tripdata_2021-01.parquet" in text
    assert "raw/\n" in text or "raw/ " in text
    for variable in (
        "TAXI_LAKE_URL",
        "TAXI_GCP_PROJECT",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "STORAGE_EMULATOR_HOST",
        "BIGQUERY_EMULATOR_HOST",
        "TAXI_PRODUCTION",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT",
        "TAXI_WAREHOUSE_URL",
        "DAGSTER_POSTGRES_URL",
        "DAGSTER_COMPUTE_LOGS_DIR",
    ):
        assert f"| `{variable}` |" in text, variable
    for topic in ("dagster instance migrate", "K8sRunLauncher", "celery", "postgresql+psycopg2"):
        assert topic in text, topic
    # Both warehouse engines: when to choose which, and how to move between them.
    for topic in (
        "### When to choose BigQuery",
        "### Moving a warehouse from one engine to the other",
        "`deploy/helm/values.yaml`",
        "DATETIME",
    ):
        assert topic in text, topic


# deploy/helm/values.yaml against Dagster's Helm chart. Key paths as the chart's
# values.schema.json documents them (helm/dagster/values.schema.json in
# dagster-io/dagster, read at commit 2bdb239558bfe98dc2a89e2e0c2f3f849367fdd4; the chart
# is published with Dagster's version, 1.13.27). Objects the schema marks
# "additionalProperties": false reject any other key, so for those every key set here
# must be one of these; the chart's own values.yaml supplies the required keys not set.
HELM_CHART_VERSION = "1.13.27"
HELM_STRICT_OBJECTS: dict[str, set[str]] = {
    "runLauncher": {"type", "config"},
    "runLauncher.config.k8sRunLauncher": {
        "image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
        "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
        "failPodOnRunFailure", "resources", "schedulerName", "securityContext", "runK8sConfig",
    },
    "dagsterDaemon.runCoordinator": {"enabled", "type", "config"},
    "dagsterDaemon.runCoordinator.config.queuedRunCoordinator": {
        "maxConcurrentRuns", "tagConcurrencyLimits", "dequeueIntervalSeconds",
        "dequeueNumWorkers", "dequeueUseThreads", "blockOpConcurrencyLimitedRuns",
    },
    "dagsterDaemon.runRetries": {"enabled", "maxRetries", "retryOnAssetOrOpFailure"},
    "concurrency": {"enabled", "pools", "runs"},
    "concurrency.pools": {"defaultLimit", "granularity", "opGranularityRunBuffer"},
    "concurrency.runs": {"maxConcurrentRuns", "tagConcurrencyLimits"},
    "computeLogManager": {"type", "config"},
    "computeLogManager.config.gcsComputeLogManager": {
        "bucket", "localDir", "prefix", "jsonCredentialsEnvvar", "uploadInterval", "showUrlOnly",
    },
    "retention": {"enabled", "sensor", "schedule", "autoMaterialize"},
    "telemetry": {"enabled"},
}  # fmt: skip
# Keys of objects that accept others too, limited to those documented (a typo would be
# ignored by the chart, silently).
HELM_KNOWN_KEYS: dict[str, set[str]] = {
    "": {
        "dagsterWebserver", "dagster-user-deployments", "postgresql",
        "generatePostgresqlPasswordSecret", "generateCeleryConfigSecret", "rabbitmq", "redis",
        "flower", "ingress", "imagePullSecrets", "computeLogManager", "scheduler",
        "runLauncher", "pythonLogs", "dagsterDaemon", "busybox", "migrate", "telemetry", "ui",
        "serviceAccount", "global", "retention", "concurrency", "additionalInstanceConfig",
    },
    "global": {
        "postgresqlSecretName", "dagsterHome", "serviceAccountName", "celeryConfigSecretName",
        "dagsterInstanceConfigMap",
    },
    "dagster-user-deployments": {"enabled", "enableSubchart", "imagePullSecrets", "deployments"},
    "dagsterDaemon": {
        "enabled", "image", "runCoordinator", "heartbeatTolerance", "env", "envConfigMaps",
        "envSecrets", "deploymentLabels", "labels", "nodeSelector", "affinity", "tolerations",
        "podSecurityContext", "securityContext", "resources", "checkDbReadyInitContainer",
        "livenessProbe", "readinessProbe", "startupProbe", "annotations", "runMonitoring",
        "runRetries", "sensors", "schedules", "backfills", "schedulerName", "logFormat",
        "volumeMounts", "volumes", "initContainerResources", "extraContainers",
        "extraPrependedInitContainers",
    },
    "postgresql": {
        "image", "enabled", "postgresqlHost", "postgresqlUsername", "postgresqlPassword",
        "postgresqlDatabase", "postgresqlParams", "postgresqlScheme", "service",
    },
}  # fmt: skip
USER_DEPLOYMENT_KEYS = {
    "name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns",
    "deploymentNamespace", "port", "replicaCount", "env", "envConfigMaps", "envSecrets",
    "annotations", "nodeSelector", "affinity", "tolerations", "podSecurityContext",
    "securityContext", "resources", "livenessProbe", "readinessProbe", "startupProbe",
    "labels", "volumeMounts", "volumes", "schedulerName", "initContainers",
    "sidecarContainers", "deploymentStrategy",
}  # fmt: skip
K8S_RUN_LAUNCHER_REQUIRED = {
    "imagePullPolicy", "loadInclusterConfig", "envConfigMaps", "envSecrets", "envVars",
    "volumeMounts", "volumes",
}  # fmt: skip
PULL_POLICIES = {"Always", "IfNotPresent", "Never"}


def helm_values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def at(values: dict, path: str) -> object:
    node: object = values
    for part in filter(None, path.split(".")):
        assert isinstance(node, dict) and part in node, f"{path}: no {part!r}"
        node = node[part]
    return node


def test_helm_values_use_only_the_charts_documented_keys() -> None:
    values = helm_values()
    text = (DEPLOY / "helm" / "values.yaml").read_text()
    assert f"chart version {HELM_CHART_VERSION}" in text
    assert f"--version {HELM_CHART_VERSION}" in text
    setup = (REPO / "setup.py").read_text()
    assert f'DAGSTER = "{HELM_CHART_VERSION}"' in setup  # the chart follows Dagster's version
    for path, allowed in {**HELM_STRICT_OBJECTS, **HELM_KNOWN_KEYS}.items():
        try:
            node = at(values, path)
        except AssertionError:
            continue  # not set here: the chart's defaults apply
        assert isinstance(node, dict), path
        assert set(node) <= allowed, f"{path}: unknown keys {set(node) - allowed}"


def test_helm_values_run_the_image_with_k8s_run_launcher_queue_and_pools() -> None:
    values = helm_values()
    user = at(values, "dagster-user-deployments")
    assert isinstance(user, dict) and user["enabled"] is True
    (deployment,) = user["deployments"]
    assert set(deployment) <= USER_DEPLOYMENT_KEYS
    assert {"name", "image", "port"} <= set(deployment)
    assert deployment["image"]["pullPolicy"] in PULL_POLICIES and deployment["image"]["repository"]
    # The code server the image runs (deploy/Dockerfile's CMD) on the same port.
    args = parse_dagster_command(["dagster", "api", "grpc", *deployment["dagsterApiGrpcArgs"]])
    assert args["module_name"] == "taxi_assets"
    cmd = json.loads(dict(dockerfile_instructions())["CMD"])
    assert parse_dagster_command(cmd)["port"] == deployment["port"]
    assert deployment["env"]["TAXI_PRODUCTION"] == "1"
    secret = {"name": "taxi-assets-env"}
    assert deployment["envSecrets"] == [secret]  # a list of {name}, not of strings
    # Off: the chart copies the deployment's `resources` into each run's container context,
    # over the launcher's run sizing; the runs get the deployment's `env` from the launcher.
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": False}

    assert at(values, "runLauncher.type") == "K8sRunLauncher"
    launcher = at(values, "runLauncher.config.k8sRunLauncher")
    assert isinstance(launcher, dict) and K8S_RUN_LAUNCHER_REQUIRED <= set(launcher)
    assert launcher["imagePullPolicy"] in PULL_POLICIES
    assert launcher["envSecrets"] == [secret]
    assert {f"{name}={value}" for name, value in deployment["env"].items()} <= set(
        launcher["envVars"]
    )
    # Workload identity: the service account the pods run as names the Google account.
    annotations = at(values, "serviceAccount.annotations")
    assert isinstance(annotations, dict) and annotations["iam.gke.io/gcp-service-account"]
    # A run stages a month's whole file on the pod's disk (an FHVHV month ~0.6 GB).
    requested = at(values, "runLauncher.config.k8sRunLauncher.runK8sConfig.containerConfig")
    assert isinstance(requested, dict)
    assert requested["resources"]["requests"]["ephemeral-storage"] == "2Gi"
    assert "ephemeral-storage" not in requested["resources"]["limits"]

    coordinator = at(values, "dagsterDaemon.runCoordinator")
    assert coordinator == {
        "enabled": True,
        "type": "QueuedRunCoordinator",
        "config": {"queuedRunCoordinator": {"dequeueIntervalSeconds": 1}},
    }
    assert at(values, "concurrency.enabled") is True
    assert isinstance(at(values, "concurrency.runs.maxConcurrentRuns"), int)
    assert isinstance(at(values, "concurrency.pools.defaultLimit"), int)
    # The chart refuses a run limit set both here and in the queued run coordinator.
    assert "maxConcurrentRuns" not in coordinator["config"]["queuedRunCoordinator"]
    assert at(values, "postgresql.postgresqlScheme") == "postgresql+psycopg2"
    assert at(values, "computeLogManager.type") == "GCSComputeLogManager"


def test_production_is_declared_wherever_runs_start() -> None:
    assert dockerfile_env()["TAXI_PRODUCTION"] == "1"
    code = compose()["services"]["taxi-assets-code"]["environment"]
    assert code["TAXI_PRODUCTION"] == "1"


def test_docs_query_the_lake_on_s3_and_azure() -> None:
    """The Athena table has the yellow contract's columns with matching types, and every
    example reads the documented layout; the S3 and Azure settings are listed."""
    import pyarrow as pa

    from taxi_assets.contracts import CONTRACTS

    text = DOCS.read_text()
    sql = "\n".join(re.findall(r"```sql\n(.*?)```", text, re.S))
    athena = re.search(
        r"CREATE EXTERNAL TABLE nyc_taxi\.yellow_tripdata \((.*?)\)\nPARTITIONED", sql, re.S
    )
    assert athena is not None
    columns = [c.split() for c in athena.group(1).replace("\n", " ").split(",")]
    types = {pa.int32(): "int", pa.float64(): "double", pa.string(): "string"}
    expected = [
        [f.name, "timestamp" if pa.types.is_timestamp(f.type) else types[f.type]]
        for f in CONTRACTS["yellow"].schema
    ]
    assert columns == expected
    assert "LOCATION 's3://taxi-lake/nyc/lake/yellow_tripdata/'" in sql
    assert "/taxi-lake/nyc/lake/yellow_tripdata/year=*/month=*/*.parquet" in sql  # Synapse
    for scheme in ("s3", "az", "gs"):
        assert f"'{scheme}://taxi-lake/nyc/lake/yellow_tripdata/*/*/*.parquet'" in sql  # DuckDB
    for variable in (
        "AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL",
        "AZURE_STORAGE_CONNECTION_STRING",
        "AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN",
    ):
        assert f"| `{variable}` |" in text, variable
    assert '"AbortIncompleteMultipartUpload"' in text
