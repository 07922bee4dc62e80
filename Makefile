# Carnet: `make demo` runs the demo clinic, `make test` runs the suite.
# Both start from a fresh clone: they create .venv and install the locked dependencies.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# requirements.lock is what production installs; requirements-test.lock adds the test tools (both with hashes).
LOCKS := requirements.lock requirements-test.lock
STAMP := $(VENV)/.installed-$(shell cat $(LOCKS) | cksum | cut -d' ' -f1)
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# The suite runs in two processes (pytest-xdist; each has its own test databases and free ports).
TEST_PROCESSES ?= 2

.PHONY: demo test lint install browser system-deps serve bench audit clean

$(STAMP): $(LOCKS)
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements-test.lock
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Browser tests drive Debian's Chromium (Playwright's own browser download is not used).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# WeasyPrint (receipts and statements as PDF) needs Debian's pango and harfbuzz, and a font.
system-deps:
	@(ldconfig -p | grep -q libpango-1.0 && ldconfig -p | grep -q libharfbuzz-subset && fc-list 2>/dev/null | grep -q .) \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fontconfig fonts-dejavu-core >/dev/null)

# The email worker runs in the background while runserver is up, and stops with it; demo mail
# (receipts, Pay Balance requests) lands as files in var/mail/.
# Carnet refuses to start without SECRET_KEY (DEBUG is off): the demo makes its own, kept in var/.
DEMO_ENV = SECRET_KEY="$${SECRET_KEY:-$$(cat var/secret_key)}"
demo: install system-deps
	mkdir -p var/mail
	test -s var/secret_key || (umask 077; $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))' > var/secret_key)
	$(DEMO_ENV) $(BIN)/python manage.py migrate --no-input -v 0
	$(DEMO_ENV) $(BIN)/python manage.py migrate --no-input -v 0 --database gateway
	$(DEMO_ENV) $(BIN)/python manage.py demo_load
	$(DEMO_ENV) $(BIN)/python manage.py passes_daily >/dev/null
	export $(DEMO_ENV); $(BIN)/python manage.py db_worker --no-reload -v 0 & worker=$$!; \
	  trap 'kill $$worker 2>/dev/null' EXIT; trap 'exit 130' INT TERM; \
	  $(BIN)/python manage.py runserver --noreload $(HOST):$(PORT)

# Cheap checks first: ruff (pinned in requirements-test.lock; its rules and the 100-character
# lines in pyproject.toml) and the import contracts of pyproject.toml (layers, habit 16).
LINT_PATHS := carnet benchmarks manage.py
lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/lint-imports

test: install lint browser system-deps
	mkdir -p var
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) $(PYTEST_ARGS)

# Benchmarks (issue 9; not part of CI): PostgreSQL only, DEBUG off, gunicorn for the API benchmark.
# DATABASE_URL (default the dedicated carnet_bench database, created if missing) is migrated first.
# BENCH_ARGS picks one benchmark or smaller sizes, e.g. BENCH_ARGS="redemption --quick"; see benchmarks/README.md.
BENCH_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/carnet_bench)
BENCH_ARGS ?=
bench: install
	@psql "$(BENCH_DATABASE_URL)" -tAc 'SELECT 1' >/dev/null 2>&1 \
	  || createdb -h 127.0.0.1 -U postgres $$(basename "$(BENCH_DATABASE_URL)")
	DATABASE_URL="$(BENCH_DATABASE_URL)" DEBUG=0 SECRET_KEY="$${SECRET_KEY:-carnet-bench-only}" \
	  $(BIN)/python manage.py migrate --no-input -v 0
	DATABASE_URL="$(BENCH_DATABASE_URL)" DEBUG=0 $(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# Known vulnerabilities in the locked dependencies (needs a route to PyPI's JSON API or OSV).
audit: install
	$(BIN)/pip-audit -r requirements.lock -r requirements-test.lock --require-hashes --no-deps --disable-pip --progress-spinner off

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
