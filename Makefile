# etl-platform: every target does its own set-up from the committed, pinned files.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
PY_DIRS := $(wildcard provider tests benchmarks dags plugins scripts etl_devstack)
STAMP := $(VENV)/.installed-$(shell cat requirements/dev.lock pyproject.toml | sha1sum | cut -c1-12)
# The Compose Specification's JSON schema (compose-spec's schema/compose-spec.json of 2025-07-20), as the npm
# package dclint ships it; tests/test_platform_config.py validates docker-compose.yaml against it.
COMPOSE_SCHEMA := $(VENV)/share/compose-spec/compose.schema.json
COMPOSE_SCHEMA_PKG := dclint@3.1.0
COMPOSE_SCHEMA_SHA256 := 46b7d35f19dd93a05f8fea530291bf84d881c1791ec167ecf0e6fb94e639d496

export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTHONPATH := $(CURDIR)

.PHONY: install system-deps lint test demo bench bench-deps clean
.PHONY: up down status e2e

install: $(STAMP) $(COMPOSE_SCHEMA)

$(COMPOSE_SCHEMA):
	mkdir -p $(@D)
	cd $(@D) && rm -f dclint-*.tgz && npm pack --silent $(COMPOSE_SCHEMA_PKG) >/dev/null \
	  && tar xzf dclint-*.tgz --strip-components=2 package/schemas/compose.schema.json && rm -f dclint-*.tgz
	echo "$(COMPOSE_SCHEMA_SHA256)  $@" | sha256sum --check --quiet || { rm -f $@; exit 1; }

$(STAMP): requirements/dev.lock pyproject.toml
	@# system packages first: mysqlclient (the [mysql] extra) compiles against libmariadb-dev
	$(MAKE) --no-print-directory system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync --python $(BIN)/python requirements/dev.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	@# setuptools leaves an egg-info beside the package; on sys.path it is a second copy of the distribution
	@# and Airflow would load the provider's plugin twice ("Plugin 'etl_platform' already registered").
	rm -rf provider/*.egg-info
	rm -f $(VENV)/.installed-* && touch $@

system-deps: ## Debian packages: libmariadb-dev (mysqlclient's build), mariadb-server (private mariadbd where none answers), pgbouncer (SHOW POOLS, config test), chromium + chromedriver (browser test), npm (the Compose schema)
	@missing=""; \
	pkg-config --exists libmariadb 2>/dev/null || missing="$$missing libmariadb-dev pkg-config"; \
	{ command -v mariadbd >/dev/null 2>&1 || test -x /usr/sbin/mariadbd; } || missing="$$missing mariadb-server"; \
	{ command -v pgbouncer >/dev/null 2>&1 || test -x /usr/sbin/pgbouncer; } || missing="$$missing pgbouncer"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "warning: could not install$$missing; the tests that need them will say so"; \
	  else echo "note: install the Debian packages$$missing for the PgBouncer and browser tests"; fi; \
	fi

lock: ## re-resolve the pinned dependency set after editing requirements/*.in
	$(BIN)/uv pip compile requirements/dev.in -o requirements/dev.lock --python-version 3.11

lint: install
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/ruff format --check $(PY_DIRS)
	$(BIN)/mypy

test: install lint
	$(BIN)/python -m pytest

demo: install
	$(BIN)/python scripts/demo.py

bench: install .venv-bench-dlt/.installed bench-deps ## transfer methods (BENCH_ARGS=--rows N ...), MariaDB and files (SOURCES_BENCH_ARGS), partition maintenance, health-check cost, dashboard API
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)
	$(BIN)/python -m benchmarks.write_modes $(WRITE_MODES_BENCH_ARGS)
	$(BIN)/python -m benchmarks.sources $(SOURCES_BENCH_ARGS)
	$(BIN)/python -m benchmarks.partitions
	$(BIN)/python -m benchmarks.health
	$(BIN)/python -m benchmarks.dashboard

bench-deps: ## Debian's postgresql-15-partman: pg_partman 4.7.2, the partition benchmark's comparison (not needed by tests)
	@test -f /usr/share/postgresql/15/extension/pg_partman.control || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15-partman >/dev/null) \
	      || echo "warning: could not install postgresql-15-partman; the partition benchmark skips pg_partman"; \
	  else echo "note: install the Debian package postgresql-15-partman for the pg_partman comparison"; fi; }

# dlt, the benchmark's comparison for MariaDB, pins libraries differently from Airflow: its own venv.
.venv-bench-dlt/.installed: requirements/bench-dlt.lock | install
	test -x .venv-bench-dlt/bin/python || $(PYTHON) -m venv .venv-bench-dlt
	$(BIN)/uv pip sync --python .venv-bench-dlt/bin/python requirements/bench-dlt.lock
	touch $@

clean:
	rm -rf $(VENV) .venv-bench-dlt .pytest_cache .mypy_cache .ruff_cache .run

up: install ## the docker-compose topology as local processes (ETL_PLATFORM_* settings, PROFILE=small for a laptop: scripts/platformctl.py); on a running platform restarts only the dead processes; exits 1 naming one that cannot start
	$(BIN)/python scripts/platformctl.py up

status: ## each process of `make up`: running/DEAD, pid, uptime; exits 1 when one is dead, 3 when nothing is up
	$(BIN)/python scripts/platformctl.py status

down: ## stop what `make up` started (logs stay in .run/platform/logs)
	$(BIN)/python scripts/platformctl.py down

e2e: install ## the platform end to end: real processes, a triggered DAG run, a killed worker
	$(BIN)/python -m pytest -m e2e tests/e2e $(E2E_ARGS)
