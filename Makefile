# taxi_assets: `make demo` (everything offline) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME := $(CURDIR)/data/dagster_home
# gcsfs 2026.x stalls against GCS emulators without this (harmless against real GCS).
export GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT ?= false

.PHONY: install demo demo-serve test browser azurite dev stop lint clean dagster-home lock

# uv installs the locked set in ~22 s where pip takes ~70 s (measured on this project's
# 2-core machine); pip installs uv itself, at the version constraints.txt pins. uv does not
# read pip.conf: behind a private index set UV_INDEX_URL (or UV_DEFAULT_INDEX), or install
# with pip alone: make install INSTALLER=pip.
# --compile-bytecode, as pip does by default: where PYTHONDONTWRITEBYTECODE is set (it is on
# this project's machines) Python never caches what it compiles, so without it every
# process (the suite starts a few hundred) compiled Dagster's sources again: `import
# dagster` took 2.7 s instead of 1.0 s, the definitions 5.5 s instead of 1.6 s.
INSTALLER ?= uv

define INSTALL_WITH_uv
$(PY) -m pip install --quiet -c constraints.txt uv
$(VENV)/bin/uv pip install --quiet --reinstall --compile-bytecode --python $(PY) \
  -c constraints.txt -e '.[dev]'
endef

define INSTALL_WITH_pip
$(PY) -m pip install --quiet --upgrade "pip>=24"
$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
endef

# The stamp is named after the install commands' text (a checksum), so a venv made by other
# commands (an older Makefile, or the other INSTALLER) is installed again: the lock and
# setup.py alone are not all an install depends on.
INSTALL_KEY := $(firstword $(shell printf '%s' '$(subst ','"'"',$(value INSTALL_WITH_$(INSTALLER)))' | cksum))
INSTALLED := $(VENV)/.installed-$(INSTALLER)-$(INSTALL_KEY)

install: $(INSTALLED)

$(INSTALLED): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(INSTALL_WITH_$(INSTALLER))
	rm -f $(VENV)/.installed-*
	touch $@

# Dagster reads dagster.yaml only from $$DAGSTER_HOME: the repository's dagster.yaml is the
# template copied there. `dg dev` notes that the dagster.yaml beside it is not the one in
# use; that is expected (the README says so).
dagster-home:
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: install dagster-home
	$(PY) -m taxi_assets.demo

# The tests that mostly wait on subprocesses (the daemon's ticks and runs, the browser, the
# benchmarks' smoke runs) go in a second pytest process beside the rest, which cuts the
# suite's wall time on 2 cores (a third process did not: measured, it filled idle time but
# slowed the main process, whose in-process tests are the critical path). The fault-tolerance tests moved back to the
# main process when the temporary files went to tmpfs: the main process then finished
# 150 s before this one (docs/performance.md). Both exit statuses count (5, "no tests
# collected", fails too). PYTEST_ARGS goes to both; by default each lists its 25 slowest
# tests, which is what to balance the two by.
# The embedded server's and the warehouse connection's bounds are tests that wait for
# stopped processes to time out (~60 s, nearly no CPU), or for a killed client's
# statement to end (~20 s): beside, too.
TESTS_BESIDE := taxi_assets_tests/test_daemon.py taxi_assets_tests/test_ui_browser.py \
	taxi_assets_tests/test_benchmarks_smoke.py taxi_assets_tests/test_embedded_server.py \
	taxi_assets_tests/test_warehouse_connect_timeout.py taxi_assets_tests/test_warehouse_keepalives.py \
	taxi_assets_tests/test_lost_client.py
TEST_LOG_BESIDE := test-artifacts/pytest-beside.log
PYTEST_ARGS ?= --durations=25
# The tests' temporary files (pytest's tmp_path, the throwaway PostgreSQL, the emulators'
# folders; ~1 GB at most) go to a folder on a RAM-backed tmpfs when /dev/shm has 4 GB
# free: they are small, but much of a test's time went to the disk's commits and deletions
# (the main process alone: 651 s on this machine's ext4, 378 s on /dev/shm;
# docs/performance.md). TEST_TMPDIR=<folder> chooses another parent; TEST_TMPDIR= (empty)
# keeps the system's. The folder is removed when both processes pass, kept when not.
ifeq ($(origin TEST_TMPDIR),undefined)
TEST_TMPDIR := $(shell df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 && $$4 >= 4194304 {print "/dev/shm"}')
endif

test: install browser azurite
	@mkdir -p test-artifacts
	@if [ -n "$(TEST_TMPDIR)" ]; then \
	  TMPDIR=$$(mktemp -d "$(TEST_TMPDIR)/taxi-tests.XXXXXX") || exit 1; \
	  chmod 1777 "$$TMPDIR"; export TMPDIR; \
	fi; \
	echo "temporary files under $${TMPDIR:-the system temporary folder}"; \
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS) $(TESTS_BESIDE) > $(TEST_LOG_BESIDE) 2>&1 & \
	beside=$$!; \
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS) $(addprefix --ignore=,$(TESTS_BESIDE)); \
	rest=$$?; \
	wait $$beside; beside_status=$$?; \
	echo "----- $(TESTS_BESIDE), run beside the rest ($(TEST_LOG_BESIDE)):"; \
	cat $(TEST_LOG_BESIDE); \
	echo "pytest exit statuses: the rest $$rest, beside $$beside_status"; \
	if [ $$rest -eq 0 ] && [ $$beside_status -eq 0 ]; then \
	  if [ -n "$(TEST_TMPDIR)" ]; then rm -rf "$$TMPDIR"; fi; \
	else \
	  echo "the tests' temporary files are kept in $${TMPDIR:-the system temporary folder}"; \
	  exit 1; \
	fi

# Azurite, the Azure Blob Storage emulator of the tests (npm; 3.36+ need Node >= 22), into
# a git-ignored folder, once per version. taxi_assets_tests/azurite.py runs it from there.
AZURITE_VERSION := 3.35.0
AZURITE_PREFIX := .cache/node
AZURITE_STAMP := $(AZURITE_PREFIX)/.azurite-$(AZURITE_VERSION)

azurite: $(AZURITE_STAMP)

$(AZURITE_STAMP):
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { \
	  echo "The Azure lake tests run Azurite (npm package azurite@$(AZURITE_VERSION)), which needs"; \
	  echo "Node.js (18 or later) and npm. Install them, then run make test again:"; \
	  echo "  sudo apt-get install -y nodejs npm     (or https://nodejs.org)"; \
	  exit 1; }
	npm install --prefix $(AZURITE_PREFIX) --no-save --no-audit --no-fund --loglevel=error \
	  azurite@$(AZURITE_VERSION)
	touch $@

# The browser test drives Debian's Chromium (Playwright never downloads a browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "The browser test needs Chromium. Install it as root, then run make test again:"; \
	    echo "  sudo apt-get install -y chromium"; \
	    exit 1; \
	  fi; }

# dg dev: web UI, daemon and code server, with the instance in $$DAGSTER_HOME. The venv is
# named as the active one, so dg runs the code location with this project's Python.
# dg dev runs with SIGINT's default restored: a background command of a non-interactive
# shell (`make dev &` in a script) starts with SIGINT ignored, and Dagster gives SIGTERM
# SIGINT's handler, so it would ignore `kill` too and only SIGKILL would stop it, leaving
# its code server's processes and semaphores behind.
dev: install dagster-home
	VIRTUAL_ENV=$(abspath $(VENV)) PATH="$(abspath $(VENV))/bin:$$PATH" \
	  $(PY) -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); \
	    os.execv(sys.argv[1], sys.argv[1:])' \
	  $(VENV)/bin/dg dev -h 127.0.0.1 -p $${DAGSTER_PORT:-3000}

# The demo's generated files, served on 127.0.0.1 for runs started from the UI or the CLI
# after `make demo` (which stops its own server when it ends): prints the URL, then the
# exports that point runs at it. MIRROR_PORT=0 picks a free port.
MIRROR_DIR ?= data/mirror
MIRROR_PORT ?= 8765

demo-serve: install
	$(PY) -m taxi_assets.cli devdata serve --root $(MIRROR_DIR) --port $(MIRROR_PORT)

# The embedded PostgreSQL's data folder: the warehouse resource's default (./data/warehouse).
WAREHOUSE_DIR ?= data/warehouse

stop: install
	$(PY) -m taxi_assets.cli warehouse stop $(WAREHOUSE_DIR)

# Lint, format and types (ruff, mypy), and the definitions load (dg check defs).
lint: install dagster-home
	$(VENV)/bin/ruff check taxi_assets taxi_assets_tests benchmarks
	$(VENV)/bin/ruff format --check taxi_assets taxi_assets_tests benchmarks
	$(VENV)/bin/mypy
	VIRTUAL_ENV=$(abspath $(VENV)) PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/dg check defs

# Rewrite the full lock after changing setup.py.
lock: install
	$(PY) -m pip freeze --exclude-editable | grep -v '^taxi[-_]assets' > constraints.txt

clean: stop
	rm -rf data

.PHONY: bench bench-quick bench-backfill bench-tlc bench-history bench-month-replace
# Benchmarks (docs/performance.md): 1.37M- and 7.8M-row months, median of 3 runs per case,
# the TLC-layout months (one row group each: FHVHV 1M and 20M rows, yellow 1M and 7.8M),
# then a 12-month yellow backfill through dagster-daemon (12 x 1.37M rows); ~25-30 min on
# 2 cores; prints the tables and writes benchmarks/results/latest.json.
bench: install
	$(PY) -m benchmarks $(BENCH_ARGS)

# CI-sized data, one run per case, a 3 x 20,000-row backfill, no timing targets; writes
# data/bench/quick.json.
bench-quick: install
	$(PY) -m benchmarks --quick $(BENCH_ARGS)

# Only the ingest core: the course's yellow CSV months (the reference) and the TLC-layout
# months (FHVHV 1M and 20M rows, yellow 1M and 7.8M, one row group each), 3 runs each;
# ~15 min on 2 cores the first time (generating the months), writes
# benchmarks/results/tlc_layout.json.
bench-tlc: install
	$(PY) -m benchmarks --cases core --no-overhead --no-backfill --out benchmarks/results/tlc_layout.json $(BENCH_ARGS)

# Only the daemon backfill (12 x 1.37M yellow rows, ~2 min); writes
# benchmarks/results/backfill.json. BENCH_ARGS="--max-concurrent-runs 2,1" compares limits.
bench-backfill: install
	$(PY) -m benchmarks.backfill $(BENCH_ARGS)

# The whole history at scale (not in CI): 12 yellow 2019 months at their real sizes
# (84,399,019 rows) + 3 more months, generated (cached with --keep), served on 127.0.0.1,
# loaded by dagster-daemon into the embedded PostgreSQL; then benchmarks.month_replace.
# Needs ~40 GB free; ~15-25 min on 2 cores (recorded runs: 14-17 min plus ~3 min generating months); writes benchmarks/results/history.json.
# BENCH_ARGS="--keep" keeps the months for the next run; "--fhvhv" loads 3 FHVHV-sized
# months (TLC Parquet) instead of 3 yellow stand-ins.
bench-history: install
	$(PY) -m benchmarks.history $(BENCH_ARGS)

# A month's replace at 1 and at 36 loaded months of 500,000 rows (~3-5 min); writes
# benchmarks/results/month_replace.json.
bench-month-replace: install
	$(PY) -m benchmarks.month_replace $(BENCH_ARGS)
