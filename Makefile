# Two commands for a fresh machine: `make demo` and `make test`. Each does its own set-up.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STUMPCAST := $(VENV)/bin/stumpcast
PYTEST_ARGS ?=
SETUP_LOG := .cache/setup.log

# `$(call step,what,command)`: one line per set-up step with its time; the command's output goes
# to $(SETUP_LOG), shown (its last 60 lines) only when the step fails.
define step
	@mkdir -p $(dir $(SETUP_LOG)); started=$$(date +%s%3N); \
	echo "== $(1)" >> $(SETUP_LOG); \
	if ! ( $(2) ) >> $(SETUP_LOG) 2>&1; then \
	  echo "setup: $(1) failed; the end of $(SETUP_LOG):"; tail -n 60 $(SETUP_LOG); exit 1; \
	fi; \
	ms=$$(( $$(date +%s%3N) - started )); \
	printf 'setup: %-48s %4d.%d s\n' "$(1)" $$((ms / 1000)) $$((ms % 1000 / 100))
endef

.PHONY: setup system-deps venv web demo test test-unit lint stack-up stack-down clean

setup: system-deps venv web

# Debian packages the stack needs: Redis, ffmpeg, a JDK and Maven; chromium and npm for the live
# page and its browser tests; tmux for the terminal tests; Prometheus (with promtool) and
# Alertmanager for `stack up --observe` and the rule tests; nginx for the caching edges
# (`stack up --edge`). Installed only when missing.
APT_NEEDS := redis-server:redis-server ffmpeg:ffmpeg java:openjdk-17-jre-headless mvn:maven \
	chromium:chromium npm:npm tmux:tmux prometheus:prometheus \
	prometheus-alertmanager:prometheus-alertmanager nginx:nginx haproxy:haproxy
MISSING_APT = missing=""; for pair in $(APT_NEEDS); do \
	  command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair\#*:}"; done
system-deps:
	@$(MISSING_APT); if [ -n "$$missing" ]; then echo "setup: apt-get install$$missing"; fi
	$(call step,Debian packages,$(MISSING_APT); if [ -n "$$missing" ]; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; fi)

venv: $(VENV)/.installed

# setup.py and the C source too: pip builds the extension gateway._sendall at install time.
$(VENV)/.installed: pyproject.toml setup.py gateway/_sendall.c
	$(call step,Python virtualenv and packages ($(VENV)),test -x $(PY) || python3 -m venv $(VENV); \
	  $(PY) -m pip install --upgrade pip && $(PY) -m pip install -e '.[test]')
	@touch $@

# The browser dependencies from the npm registry: hls.js for the live page, uPlot for the /ops
# page; node_modules is not committed.
web: gateway/web/node_modules/.package-lock.json stumpcast/ops/web/node_modules/.package-lock.json

gateway/web/node_modules/.package-lock.json: gateway/web/package.json gateway/web/package-lock.json
	$(call step,npm packages of the live page,cd gateway/web && npm ci --no-audit --no-fund)

stumpcast/ops/web/node_modules/.package-lock.json: stumpcast/ops/web/package.json \
		stumpcast/ops/web/package-lock.json
	$(call step,npm packages of the /ops page,cd stumpcast/ops/web && npm ci --no-audit --no-fund)

# The main job: stack, workers, gateway, live video and a live IPL replay; Ctrl-C stops it all.
demo: setup
	@$(STUMPCAST) demo

# The suite runs on a stack of its own (run folder .run-test, ports 2xxxx), never on the one a
# user runs with `make demo` (.run, ports 1xxxx): tests never write into the topics, keys and
# tables the demo shows. Started here, stopped and removed after the run.
TEST_STACK := STUMPCAST_RUN_DIR=.run-test STUMPCAST_STACK_KAFKA_PORT=29092 \
	STUMPCAST_STACK_KAFKA_CONTROLLER_PORT=29093 STUMPCAST_STACK_CASSANDRA_PORT=29042 \
	STUMPCAST_STACK_CASSANDRA_STORAGE_PORT=27000 STUMPCAST_STACK_REDIS_PORT=26379 \
	STUMPCAST_STACK_PROMETHEUS_PORT=29090 STUMPCAST_STACK_ALERTMANAGER_PORT=29095 \
	STUMPCAST_OPS_PORT=28095 STUMPCAST_STACK_CDN_A_PORT=28101 STUMPCAST_STACK_CDN_B_PORT=28102 \
	STUMPCAST_GATEWAY_ADMIN_PORT=28082 STUMPCAST_INGEST_PORT=28096

# promtool: the alert and recording rules are valid and pass their unit tests (also run, with
# more checks, by tests/ops/test_rules.py).
test: setup
	$(VENV)/bin/lint-imports --no-logo
	promtool check rules compose/prometheus/rules.yml
	promtool test rules compose/prometheus/tests.yml
	@export $(TEST_STACK); \
	trap '$(STUMPCAST) stack down >/dev/null; rm -rf .run-test' EXIT; \
	$(STUMPCAST) stack up && $(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest -m "not stack and not media" $(PYTEST_ARGS)

# Imports only point down (CLI and benchmarks, services, runtime, contracts), services never
# import each other, no cycles: the contracts are in pyproject.toml ([tool.importlinter]).
PACKAGES := schemas runtime streams analytics notifier gateway media bench stumpcast

lint: venv
	$(VENV)/bin/lint-imports --no-logo
	$(VENV)/bin/ruff check $(PACKAGES) tests
	$(VENV)/bin/mypy $(PACKAGES)

stack-up: setup
	$(STUMPCAST) stack up

stack-down:
	$(STUMPCAST) stack down

clean:
	rm -rf $(VENV) .run .run-test build *.egg-info
