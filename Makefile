# sqld-py: every target sets up what it needs first (virtualenv, packages, stubs).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/services
PROTOS := $(wildcard proto/sqld/v1/*.proto proto/sqld/testing/v1/*.proto)
STUBS  := services/sqld/v1/.stamp
DATA   ?= data
ARGS   ?=

.PHONY: lint run test test-mvsqlite proto setup compose-check clean clean-data lock bench bench-short setup-bench

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

$(VENV)/.installed-bench: pyproject.toml requirements.lock $(VENV)/.installed
	@echo "setup: benchmark packages (requirements.lock)"
	$(PY) -m pip install --progress-bar off -c requirements.lock -e '.[dev,test,bench]'
	touch $@

# Every package comes at the version requirements.lock names (tests/unit/test_lock.py checks it);
# pip prints a line per package, so the first set-up (about a minute) is never silent.
$(VENV)/.installed: pyproject.toml client/pyproject.toml requirements.lock
	@echo "setup 1/3: virtualenv $(VENV)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "setup 2/3: packages pinned in requirements.lock (the first time takes about a minute)"
	$(PY) -m pip install --progress-bar off --upgrade pip
	$(PY) -m pip install --progress-bar off -c requirements.lock -e '.[dev,test]'
	$(PY) -m pip install --progress-bar off --no-deps -e ./client
	touch $@

# Writes requirements.lock anew from pyproject.toml (both distributions, every extra but fdb, whose
# binding needs FoundationDB's client library): a throwaway virtualenv, then pip freeze.
lock:
	rm -rf build/lock-venv
	$(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/pip install --progress-bar off --upgrade pip
	build/lock-venv/bin/pip install --progress-bar off -e '.[dev,test,bench]' -e './client[sqlalchemy]'
	{ echo "# Exact versions of every package sqld-py installs: make lock writes this file; make setup,"; \
	  echo "# the Dockerfile and CI install with pip -c requirements.lock. Do not edit by hand."; \
	  build/lock-venv/bin/pip freeze --exclude-editable | grep -v -E "^(sqld-py|sqldclient)=="; } > requirements.lock
	rm -rf build/lock-venv

proto: $(STUBS)

$(STUBS): $(PROTOS) $(VENV)/.installed
	@echo "setup 3/3: gRPC stubs from proto/ (make proto)"
	mkdir -p services/sqld/v1 services/sqld/testing/v1
	$(PY) -m grpc_tools.protoc -Iproto --python_out=services --pyi_out=services \
		--grpc_python_out=services $(PROTOS)
	touch services/sqld/v1/__init__.py services/sqld/testing/v1/__init__.py $@

compose-check: ## validate docker-compose.yml without a Docker engine
	docker-compose -f docker-compose.yml config --quiet

clean: ## remove what set-up and builds made (virtualenv, stubs, build/); never the data
	rm -rf $(VENV) services/sqld/v1 services/sqld/testing/v1 build

clean-data: ## DELETE the local deployment's data folder ($(DATA)): every database, log and key
	@echo "removing $(DATA) (every database of the local deployment)"
	rm -rf $(DATA)
