# The two promised commands: `make run` (the whole system) and `make test` (the whole suite).
# Both work on a fresh Debian 12 machine with only Python 3.11: they create .venv, install the
# pinned requirements and the Debian packages they need (redis-server; chromium and postgresql
# for tests).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends

.PHONY: run test test-compose lint format screenshots bench bench-images bench-history bench-load check-system-run check-system-test clean

# `make run`: the Procfile through honcho: the production server (uvicorn, reloading on code
# changes), WORKERS workers, RQ's scheduler and a private Redis (data in REDIS_DIR, var/redis)
# unless REDIS_URL or REDIS_SENTINELS is set. PORT, HOST and REDIS_PORT choose the addresses;
# Ctrl-C stops them all.
# honcho reads the environment only, not .env (compose's file), as the settings do.
PORT ?= 8000
REDIS_PORT ?= 6379
WORKERS ?= 1
ifeq ($(REDIS_URL)$(REDIS_SENTINELS),)
RUN_ENV := REDIS_URL=redis://127.0.0.1:$(REDIS_PORT)/0
RUN_PROCESSES :=
else
RUN_PROCESSES := web worker scheduler
endif

run: $(VENV)/.runtime check-system-run
	$(PY) manage.py migrate --noinput
	PATH="$(abspath $(VENV))/bin:$$PATH" SITE_URL="$${SITE_URL:-http://127.0.0.1:$(PORT)/}" $(RUN_ENV) \
	  exec $(VENV)/bin/honcho start --env /dev/null --port $(PORT) --concurrency worker=$(WORKERS) $(RUN_PROCESSES)

test: $(VENV)/.dev check-system-test
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)
	# The history, admin and multi-worker tests again, on a private PostgreSQL cluster.
	$(PY) -m pytest --postgres -m database $(PYTEST_ARGS)

# The compose stack for real, with podman and podman-compose (docs/deployment.md); not part of `make test`.
test-compose: $(VENV)/.dev
	@command -v podman >/dev/null && command -v debootstrap >/dev/null || { \
	  $(SUDO) apt-get update -qq && $(APT_INSTALL) podman runc netavark aardvark-dns debootstrap; }
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest --compose tests/compose $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Retake docs/screenshots/*.png from a private stack with real jobs (needs chromium).
screenshots: $(VENV)/.dev check-system-test
	$(PY) docs/screenshots/take.py

# The site beside the Flask tutorial's views (bench/peer.py) under stock servers, written to
# bench/RESULTS.md (needs wrk).
bench: $(VENV)/.dev check-system-test
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && $(APT_INSTALL) wrk; }
	$(PY) bench/run.py

# The admin's history pages with 1,000,000 rows on SQLite and PostgreSQL, written to bench/RESULTS.md.
bench-history: $(VENV)/.dev check-system-test
	$(PY) bench/history_scale.py --rows 1000000

# Hostile images, eight at once, against the production server: RSS and /healthz, into bench/RESULTS.md.
bench-images: $(VENV)/.dev check-system-test
	$(PY) bench/image_bombs.py

# 10,000 jobs from 32 clients through 4 workers, reconciled: none lost, none run twice.
bench-load: $(VENV)/.dev check-system-test
	$(PY) bench/load.py --jobs 10000 --clients 32 --workers 4

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

# Redis comes from Debian unless REDIS_URL or REDIS_SENTINELS points at servers of your own.
check-system-run:
	@if [ -z "$$REDIS_URL$$REDIS_SENTINELS" ] && ! command -v redis-server >/dev/null; then \
	  echo "Installing Debian's redis-server"; \
	  $(SUDO) apt-get update -qq && $(APT_INSTALL) redis-server; \
	fi

check-system-test:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-sentinel >/dev/null || missing="$$missing redis-sentinel"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium fonts-liberation"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(APT_INSTALL) $$missing; \
	fi

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
