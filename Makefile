# sqld-py: every target sets up what it needs first (virtualenv, packages, stubs).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/services
PROTOS := $(wildcard proto/sqld/v1/*.proto proto/sqld/testing/v1/*.proto)
STUBS  := services/sqld/v1/.stamp
DATA   ?= data
ARGS   ?=

.PHONY: lint run test test-mvsqlite proto setup compose-check clean bench bench-short setup-bench

run: setup ## start every service locally (edge on 127.0.0.1:5432)
	$(PY) -m sqld.launcher --data-dir $(DATA) $(ARGS)

# The spine end-to-end suites again on the mvsqlite backend (FoundationDB test double, or the
# cluster named by FDB_CLUSTER_FILE).
SPINE := tests/e2e/test_psycopg.py tests/e2e/test_psql.py tests/e2e/test_concurrency.py \
	tests/e2e/test_durability.py tests/e2e/test_grpc_api.py tests/e2e/test_extended.py \
	$(addprefix tests/e2e/test_replication.py::test_,read_your_writes_through_the_replica_site \
	  pg_stat_replication_over_pg_wire synchronous_commit_waits_for_a_replica_to_apply \
	  readers_on_a_replica_never_see_a_torn_transaction replication_metrics_endpoint)

test: setup lint ## lint, the whole test suite, then the spine and replica-site suites on the mvsqlite backend
	$(PY) -m pytest $(ARGS)
	SQLD_TEST_BACKEND=mvsqlite $(PY) -m pytest $(SPINE)

test-mvsqlite: setup ## every test on the mvsqlite backend
	SQLD_TEST_BACKEND=mvsqlite $(PY) -m pytest $(ARGS)

bench: setup-bench ## ours vs a throwaway PostgreSQL 15 and buenavista over SQLite (~19 min): bench/results/<date>.md, .png, profile
	$(PY) -m bench --mode full $(ARGS)

bench-short: setup-bench ## the same, a few seconds per workload (CI); results in build/bench-short/
	$(PY) -m bench --mode short $(ARGS)

setup: $(VENV)/.installed $(STUBS)

lint: setup ## ruff and mypy over the services, the client, tests and benchmarks (configured in pyproject.toml)
	$(PY) -m ruff check services tests bench client
	$(PY) -m mypy services client/sqldclient

setup-bench: setup $(VENV)/.installed-bench

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

$(VENV)/.installed: pyproject.toml client/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps -e ./client
	touch $@

proto: $(STUBS)

$(STUBS): $(PROTOS) $(VENV)/.installed
	mkdir -p services/sqld/v1 services/sqld/testing/v1
	$(PY) -m grpc_tools.protoc -Iproto --python_out=services --pyi_out=services \
		--grpc_python_out=services $(PROTOS)
	touch services/sqld/v1/__init__.py services/sqld/testing/v1/__init__.py $@

compose-check: ## validate docker-compose.yml without a Docker engine
	docker-compose -f docker-compose.yml config --quiet

clean:
	rm -rf $(VENV) services/sqld/v1 services/sqld/testing/v1 $(DATA) build/bench-short
