# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run env-file test lint check venv migrate seed browser clean migrations bench soak openapi alerts

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# A local .env for development, written once and never overwritten: DEBUG on and a generated
# SECRET_KEY, so `.venv/bin/python manage.py …` works in any shell after `make run`.
# AGENTPRESS_ENV_FILE names another file (settings read the same one); set empty, none is written.
ENV_FILE := $(if $(filter undefined,$(origin AGENTPRESS_ENV_FILE)),.env,$(AGENTPRESS_ENV_FILE))
env-file:
	@if [ -n "$(ENV_FILE)" ] && [ ! -e "$(ENV_FILE)" ]; then \
		$(PYTHON) -c 'import secrets; print("# Local development settings, written by make run (never committed).\nDEBUG=true\nSECRET_KEY=" + secrets.token_urlsafe(50))' > "$(ENV_FILE)" && \
		chmod 600 "$(ENV_FILE)" && echo "Wrote $(ENV_FILE) with a generated SECRET_KEY (DEBUG=true)."; \
	fi

# Embedded default: SQLite + Celery's filesystem broker under var/, DEBUG on.
# Web, worker and beat share one metrics directory, so /metrics shows the worker's counters too.
METRICS_DIR := $(or $(PROMETHEUS_MULTIPROC_DIR),$(or $(AGENTPRESS_VAR_DIR),$(CURDIR)/var)/prometheus)
run: export DEBUG ?= true
run: export PROMETHEUS_MULTIPROC_DIR := $(METRICS_DIR)
run: $(STAMP) env-file
	mkdir -p var
	rm -rf "$(METRICS_DIR)" && mkdir -p "$(METRICS_DIR)"
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
	$(MAKE) alerts
	$(BIN)/pytest -p no:cacheprovider -n 2 -m "not reliability" $(PYTEST_ARGS)
	$(BIN)/pytest -p no:cacheprovider -m reliability $(PYTEST_ARGS)
	DATABASE_URL=sqlite:///$(CURDIR)/var/test-sqlite.sqlite3 $(BIN)/pytest -p no:cacheprovider -n 2 -m sqlite $(PYTEST_ARGS)

# The alerting rules in docs/alerts/: valid, and each one's unit test passes (Debian: apt-get install prometheus).
# Without promtool this is skipped with a note, except under CI=true where it fails.
alerts:
	@if command -v promtool >/dev/null 2>&1; then \
		cd docs/alerts && promtool check rules *.rules.yml && promtool test rules *.rules.test.yml; \
	elif [ "$$CI" = "true" ]; then echo "promtool is missing (apt-get install prometheus)" >&2; exit 1; \
	else echo "promtool not installed: alert rules not checked (apt-get install prometheus)"; fi

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
