# Every target sets itself up on a fresh machine: a .venv with the package and its extras.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup system-deps demo test lint bench clean

# Debian packages whose binaries the Prometheus/Alertmanager tests run.
SYSTEM_PACKAGES := prometheus prometheus-alertmanager
SYSTEM_BINARIES := promtool prometheus prometheus-alertmanager

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

# Installs the Debian packages when a binary is missing and we are root; otherwise says
# so and goes on (the tests that need them skip), except under CI=true, where it fails.
system-deps:
	@missing=""; for b in $(SYSTEM_BINARIES); do \
	    command -v $$b >/dev/null 2>&1 || missing="$$missing $$b"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "system-deps: installing $(SYSTEM_PACKAGES) (missing:$$missing)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && \
	      apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; } || exit 1; \
	    for b in $$missing; do command -v $$b >/dev/null 2>&1 || \
	        { echo "system-deps: $$b still missing" >&2; exit 1; }; done; \
	elif [ "$${CI:-}" = true ]; then \
	    echo "system-deps: missing$$missing; run as root to install $(SYSTEM_PACKAGES)" >&2; \
	    exit 1; \
	else \
	    echo "system-deps: missing$$missing and not root: their tests will skip" >&2; \
	fi

test: $(STAMP) system-deps
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check dionysus_observability tests examples bench
	$(VENV)/bin/mypy --strict dionysus_observability

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
