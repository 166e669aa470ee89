# Two commands for a fresh machine: `make demo` and `make test`. Each does its own set-up.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STUMPCAST := $(VENV)/bin/stumpcast
PYTEST_ARGS ?=

.PHONY: setup system-deps venv web demo test test-unit lint stack-up stack-down clean

setup: system-deps venv web

# Debian packages the stack needs: Redis, ffmpeg, a JDK and Maven; chromium and npm for the live
# page and its browser tests. Installed only when missing.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v ffmpeg >/dev/null || missing="$$missing ffmpeg"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# The live page's browser dependencies (hls.js) from the npm registry; node_modules is not committed.
web: gateway/web/node_modules/.package-lock.json

gateway/web/node_modules/.package-lock.json: gateway/web/package.json gateway/web/package-lock.json
	cd gateway/web && npm ci --no-audit --no-fund

# The main job: stack, workers, gateway, live video and a live IPL replay; Ctrl-C stops it all.
demo: setup
	$(STUMPCAST) demo

# Installs everything, starts the stack, runs the whole suite, stops what it started.
test: setup
	@started=0; \
	if ! $(STUMPCAST) stack status --quiet; then started=1; fi; \
	trap 'if [ $$started = 1 ]; then $(STUMPCAST) stack down; fi' EXIT; \
	$(STUMPCAST) stack up && $(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest -m "not stack and not media" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check schemas streams gateway media stumpcast tests
	$(VENV)/bin/mypy schemas streams gateway media stumpcast

stack-up: setup
	$(STUMPCAST) stack up

stack-down:
	$(STUMPCAST) stack down

clean:
	rm -rf $(VENV) .run build *.egg-info
