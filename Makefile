# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint check venv migrate seed browser clean migrations bench soak openapi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Embedded default: SQLite + Celery's filesystem broker under var/, DEBUG on.
run: export DEBUG ?= true
run: $(STAMP)
	mkdir -p var
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py setup_periodic_tasks
	$(BIN)/python manage.py seed_demo
	@echo ""
	@echo "  AgentPress is starting at http://127.0.0.1:$${PORT:-8000}/  (Ctrl-C stops web, worker and beat)"
	@echo ""
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start --port $${PORT:-8000}

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Browser tests drive Debian's Chromium; .ci/run installs it, elsewhere install it yourself.
test: $(STAMP)
	$(MAKE) lint
	$(BIN)/pytest -p no:cacheprovider -n 2 -m "not reliability" $(PYTEST_ARGS)
	$(BIN)/pytest -p no:cacheprovider -m reliability $(PYTEST_ARGS)
	DATABASE_URL=sqlite:///$(CURDIR)/var/test-sqlite.sqlite3 $(BIN)/pytest -p no:cacheprovider -n 2 -m sqlite $(PYTEST_ARGS)

check: $(STAMP)
	$(BIN)/python manage.py check

migrations: $(STAMP)
	DEBUG=true $(BIN)/python manage.py makemigrations orgs agents automation

# The committed API contract; tests/api/test_openapi.py fails when it differs from the served schema.
openapi: $(STAMP)
	DEBUG=true $(BIN)/python manage.py spectacular --validate --fail-on-warn --file docs/openapi.yaml

bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks.run

soak: $(STAMP)
	SOAK_SECONDS=$${SOAK_SECONDS:-600} $(BIN)/pytest -p no:cacheprovider tests/reliability/test_soak.py -s

clean:
	rm -rf var/broker var/*.sqlite3
