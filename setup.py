from setuptools import find_packages, setup

# Dagster core and its libraries ship as one release train (core 1.N.x with libraries
# 0.(N+16).x): pin them together. constraints.txt locks everything else.
DAGSTER = "1.13.27"
DAGSTER_LIBRARIES = "0.29.27"

setup(
    name="taxi_assets",
    version="0.1.0",
    description="NYC TLC trip records as Dagster assets: raw files, a Parquet lake, a PostgreSQL warehouse",
    packages=find_packages(exclude=["taxi_assets_tests", "taxi_assets_tests.*"]),
    python_requires=">=3.11,<3.13",
    install_requires=[
        f"dagster=={DAGSTER}",
        f"dagster-webserver=={DAGSTER}",
        f"dagster-graphql=={DAGSTER}",
        f"dagster-pipes=={DAGSTER}",
        f"dagster-shared=={DAGSTER}",
        f"dagster-gcp=={DAGSTER_LIBRARIES}",
        f"dagster-postgres=={DAGSTER_LIBRARIES}",
        # deploy/helm runs each run as a Kubernetes Job (K8sRunLauncher): the code location's
        # image, which the run pods use too, must hold the launcher's library (Dagster's Helm
        # guide: dagster, dagster-postgres and dagster-k8s in the user code image).
        f"dagster-k8s=={DAGSTER_LIBRARIES}",
        # Dagster's current CLI (`dg dev`, `dg check defs`, `dg launch`), same release train.
        f"dagster-dg-cli=={DAGSTER}",
        "pyarrow>=26,<27",
        "pandas>=2.2,<3",
        "tabulate>=0.9",
        "requests>=2.32,<3",
        "urllib3>=2.2,<3",
        "universal-pathlib>=0.3,<0.4",
        "gcsfs==2026.10.1",
        # S3 and Azure Blob lakes (s3:// and az:// URLs); s3fs moves in lockstep with fsspec.
        "s3fs==2026.9.0",
        "adlfs==2026.8.0",
        "sqlalchemy>=2.0,<2.2",
        "psycopg[binary]>=3.2,<4",
        "psycopg2-binary>=2.9.9",
        "pgserver==0.1.4",
        # `runs slots`: whether a run's process still runs (and is the same process).
        "psutil>=5.9",
        "matplotlib>=3.9,<4",
    ],
    extras_require={
        "dev": [
            "pytest>=9,<10",
            "pytest-timeout>=2.3",
            "ruff>=0.15",
            "mypy>=1.15",  # make lint; stubs for the typed libraries below
            "pandas-stubs>=2.3,<2.4",
            "types-requests",
            "types-PyYAML",
            "types-tabulate",
            "py-spy>=0.4,<0.5",  # profiling: docs/performance.md
            "playwright>=1.45,<2",  # drives Debian's chromium; never `playwright install`
            "gcp-storage-emulator==2026.7.19",
            # A local BigQuery (REST API over DuckDB) for the BigQuery warehouse tests. 1.1.1:
            # later releases need grpcio-health-checking<1.81, which Dagster's grpcio excludes.
            # It caps neither DuckDB nor sqlglot, whose new majors change its SQL: pinned.
            "bqemulator==1.1.1",
            "duckdb==2.0.1",
            "sqlglot==30.30.0",
            # moto_server (the S3 emulator of the tests): only its S3 backend and Flask.
            "moto[s3]==5.2.5",
            "flask>=3.1,<4",
            "flask-cors>=6,<7",
        ],
    },
)
