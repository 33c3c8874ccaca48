# One command per task; CI runs the same ones.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench chaos clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## a worker processing a demo workload on the embedded Postgres
	$(VENV)/bin/goodjob demo

test: $(STAMP)  ## the whole suite against a real Postgres the suite starts itself
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff check, ruff format --check, mypy --strict and the import layers, as CI runs them
	$(VENV)/bin/ruff check src tests examples
	$(VENV)/bin/ruff format --check src tests examples
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

chaos: $(STAMP)  ## the chaos suite at full size and default liveness settings; prints its table
	GOODJOB_CHAOS=full $(PY) -m pytest --timeout 900 tests/acceptance/test_chaos.py

bench: $(STAMP)  ## throughput, latency and recovery figures
	$(VENV)/bin/goodjob bench

clean:  ## remove the virtualenv, the embedded Postgres data and pytest's cache
	@# Stop the servers first (the demo's and the suite's): deleting a running server's data
	@# folder leaves the server running without it. Without a venv there is nothing to stop.
	if [ -x $(VENV)/bin/goodjob ]; then \
	  $(VENV)/bin/goodjob db stop; \
	  GOODJOB_EMBEDDED_DATA_DIR=.goodjob/test-postgres $(VENV)/bin/goodjob db stop; \
	fi
	rm -rf $(VENV) .goodjob .pytest_cache
