VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install postgres demo test check-dist lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

demo: install
	$(VENV)/bin/ample-batch validate sample_data/leads.csv --simulate --state-dir .demo-state -o sample_data/leads.validated.csv

# The suite starts its own PostgreSQL server (tests/postgres_server.py) from these binaries;
# a clean machine gets them from Debian's archive.
postgres:
	@if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq postgresql >/dev/null; \
	fi

# Four workers on two cores: most end-to-end tests spend their time waiting out quota windows.
# worksteal, not the default `load`: `load` hands each worker its share up front, so one worker
# was left with a tail of slow tests (2026-12-04, 2 cores: load -n 3 203 s; worksteal -n 3
# 154 s, -n 4 129 s).
test: install postgres
	$(PY) -m pytest -q -n 4 --dist worksteal

# The wheel in a brand-new venv without extras, as `pip install ample-batch` gives it.
check-dist: install
	$(PY) .ci/check_dist.py

lint: install
	$(VENV)/bin/ruff check ample_batch tests bench
	$(VENV)/bin/ruff format --check ample_batch tests bench
	$(VENV)/bin/mypy ample_batch

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) .demo-state .pytest_cache .mypy_cache .ruff_cache
