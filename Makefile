# cce-exporter: every workflow starts here. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help demo test lint typecheck fmt bench bench-quick soak prometheus chromium clean docs mutate

help:
	@echo "make demo    run the exporter against the built-in simulator"
	@echo "make test    install what the tests need and run them all (lint and types included)"
	@echo "make bench   the benchmark (prints a table, writes bench/results.json)"
	@echo "make soak    a bounded fault soak (SOAK_SECONDS, default 180)"
	@echo "make docs    regenerate docs/metrics.md, the alert rules, dashboards and deploy files"
	@echo "make mutate  mutation testing of the safety-critical modules (report: mutants/report.md)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Debian's prometheus package brings both promtool and the prometheus server used by the tests.
prometheus:
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's prometheus package (promtool, prometheus)"; \
	    (apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null)); \
	  else \
	    echo "promtool/prometheus missing: install Debian's 'prometheus' package (tests needing it will be skipped)"; \
	  fi; \
	fi

# Debian's chromium package: the status console's browser test renders the page headless.
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium package (headless browser test)"; \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null)); \
	  else \
	    echo "chromium missing: install Debian's 'chromium' package (the browser test will be skipped)"; \
	  fi; \
	fi

demo: $(STAMP)
	$(BIN)/cce-exporter demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict exporter

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(STAMP) prometheus chromium lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider

# Every generated file: metric docs, alert rules (+ PrometheusRule, alert table), dashboards, and
# the deploy copies of rules and dashboards. Tests fail when any of them drifts from its source.
docs: $(STAMP)
	$(BIN)/python -m exporter.metrics.docs > docs/metrics.md
	$(BIN)/python -m alerts.generate
	$(BIN)/python -m dashboards.generate
	$(BIN)/python -m deploy.generate

bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

SOAK_SECONDS ?= 180
soak: $(STAMP)
	$(BIN)/python -m bench.soak --seconds $(SOAK_SECONDS)

# Mutation testing of the safety-critical modules with mutmut (docs/testing.md); MUTATE_CHILDREN
# mutants run at once; MUTATE_MODULES="signing hooks" runs some modules only (names as in the
# report). The report is printed and kept in mutants/report.md.
MUTATE_CHILDREN ?= 3
MUTATE_MODULES ?=
MUTATE_ARGS ?=
mutate: $(STAMP)
	$(BIN)/python -m mutation run --max-children $(MUTATE_CHILDREN) $(MUTATE_ARGS) $(MUTATE_MODULES)

clean:
	rm -rf mutants $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis dist build
