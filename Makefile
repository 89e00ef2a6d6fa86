# wshub developer entry points. `make help` lists them; README.md explains them.
#
# Everything runs in the project's own virtualenv, $(VENV), created on first use with
# `python3 -m venv` and (re)installed when pyproject.toml changes. The shared harnesses
# (Autobahn|Testsuite, the benchmark driver) live in $(SHARED), beside the repository.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV ?= .venv
# (beside the checkout; from a git worktree one level further down, e.g. /work/wt/<name>)
SHARED ?= $(firstword $(wildcard $(CURDIR)/../shared $(CURDIR)/../../shared) $(CURDIR)/../shared)
# coverage thresholds (branch coverage): the whole package, and the sans-I/O core
COV_FAIL_UNDER ?= 85
PROTOCOL_COV_FAIL_UNDER ?= 95
# the optional compiled speedup; when it imports, the protocol tests run a second time with it
# switched off by $(NO_EXTENSIONS_ENV)=1, so that the pure-Python path stays tested too
SPEEDUPS_MODULE ?= wshub.protocol._speedups
NO_EXTENSIONS_ENV ?= WSHUB_NO_EXTENSIONS
PROTOCOL_TESTS ?= tests/protocol
# the port of `make run` (make run PORT=9000; 0 picks a free one, printed at start)
PORT ?= 8765
# make hubbench: where the hubs are installed (shared by every checkout on the machine: setup.sh
# is idempotent and replaces only the wshub copy), the output folder, and extra run.py options,
# e.g. make hubbench HUBBENCH_ARGS='--servers wshub,centrifuge --scenarios idle10k'
HUBBENCH_WORK ?= /tmp/hubbench-work
HUBBENCH_OUT ?= benchmarks/out/hubbench
HUBBENCH_ARGS ?=
# extra arguments for pytest, e.g. make test PYTEST_ARGS='-x -k frames'
PYTEST_ARGS ?=
# what ruff lints and formats: the Python folders (not docs/, whose examples are written for
# reading, e.g. several short statements on one line)
LINT_PATHS ?= $(wildcard src tests compliance benchmarks scripts fuzzing chaos)
# fuzzing (scripts/fuzz.sh, fuzzing/README.md): seconds per target for make fuzz, and for the
# smoke run that CI does (6 targets x 8 s: about a minute in all)
FUZZ_SECONDS ?= 180
FUZZ_SMOKE_SECONDS ?= 8
# which targets (default: every fuzzing/fuzz_*.py), e.g. make fuzz FUZZ_TARGETS='frames utf8'
FUZZ_TARGETS ?=
# the chaos suite (chaos/, docs/deployment.md): CHAOS=full writes chaos/RESULTS.md, CHAOS=short
# is what CI runs; CHAOS_ARGS e.g. '--only a,c' for some scenarios
CHAOS ?= full
CHAOS_ARGS ?=

BIN := $(abspath $(VENV))/bin
PY := $(BIN)/python
# what an install depends on: reinstall when one of these changes
INSTALL_INPUTS := pyproject.toml $(wildcard setup.py src/wshub/protocol/*.c)
# this machine's pip configuration names a local index folder that does not exist for every
# package; pip says so once per package, which buries real messages
PIP_INSTALL := $(PY) -m pip install -q
PIP_QUIET := 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
export PY SHARED

.PHONY: help run install install-test test deps lint typecheck coverage \
	fuzz fuzz-smoke compliance compliance-quick bench bench-quick hubbench hubbench-quick \
	chaos chaos-short screenshots clean

help:
	@echo "make run [PORT=8765]   install into $(VENV) and start 'wshub serve' on http://127.0.0.1:PORT/"
	@echo "make test              lint (ruff), type-check (mypy --strict), tests under coverage"
	@echo "make fuzz              each atheris fuzz target for FUZZ_SECONDS (180 s); corpus in fuzzing/out/"
	@echo "make fuzz-smoke        each fuzz target for FUZZ_SMOKE_SECONDS (8 s): what CI runs"
	@echo "make compliance        Autobahn|Testsuite, all 517 cases, our server and our client"
	@echo "make compliance-quick  the same without 9.*, 12.*, 13.* (about a minute)"
	@echo "make chaos             the chaos suite: 3 nodes, Redis, haproxy, faults; chaos/RESULTS.md"
	@echo "make chaos-short       the same with fewer clients and publications (a few minutes; CI)"
	@echo "make bench             benchmark against the peers, write benchmarks/RESULTS.md (~30 min)"
	@echo "make bench-quick       1-run smoke test of the benchmark"
	@echo "make hubbench          the hub against other hubs, write benchmarks/HUB_RESULTS.md (~20 min)"
	@echo "make hubbench-quick    the same with smaller sizes and 1 run (~3 min): a smoke test"
	@echo "make screenshots       the demo pages' screenshots in docs/images/ (scripts/screenshots.py)"
	@echo "make clean             remove caches, coverage data and reports (keeps $(VENV))"
	@echo "variables: PORT=$(PORT) VENV=$(VENV) SHARED=$(SHARED) COV_FAIL_UNDER=$(COV_FAIL_UNDER)" \
		"PROTOCOL_COV_FAIL_UNDER=$(PROTOCOL_COV_FAIL_UNDER) PYTEST_ARGS=..."

# ---- virtualenv -------------------------------------------------------------------------------

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(INSTALL_INPUTS) | $(PY)
	$(PIP_INSTALL) -e . $(PIP_QUIET)
	touch $@

$(VENV)/.installed-test: $(INSTALL_INPUTS) | $(PY)
	$(PIP_INSTALL) -e '.[test]' $(PIP_QUIET)
	touch $@ $(VENV)/.installed

$(VENV)/.installed-fuzz: $(INSTALL_INPUTS) | $(PY)
	$(PIP_INSTALL) --only-binary atheris -e '.[fuzz]' $(PIP_QUIET)
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# ---- the main job -----------------------------------------------------------------------------

run: $(VENV)/.installed
	$(BIN)/wshub serve --port $(PORT)

# ---- tests ------------------------------------------------------------------------------------

test: $(VENV)/.installed-test
	@$(MAKE) deps
	@$(MAKE) lint
	@$(MAKE) typecheck
	@$(MAKE) coverage

# test dependencies that are not Python packages (chromium, redis-server, haproxy)
deps:
	scripts/ensure-test-deps.sh

lint: $(VENV)/.installed-test
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

# the package as configured in pyproject.toml, then the scripts (one folder per run: both folders
# have a server.py, which mypy would take for one duplicated module)
typecheck: $(VENV)/.installed-test
	$(BIN)/mypy
	$(BIN)/mypy --strict compliance
	$(BIN)/mypy --strict benchmarks
	$(BIN)/mypy --strict fuzzing
	$(BIN)/mypy --strict scripts
	$(BIN)/mypy --strict chaos

coverage: $(VENV)/.installed-test
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	@if $(PY) -c 'import $(SPEEDUPS_MODULE)' 2>/dev/null; then \
		echo "== pure-Python path: $(NO_EXTENSIONS_ENV)=1 pytest $(PROTOCOL_TESTS)"; \
		echo "$(NO_EXTENSIONS_ENV)=1 $(BIN)/coverage run -m pytest $(PROTOCOL_TESTS) $(PYTEST_ARGS)"; \
		$(NO_EXTENSIONS_ENV)=1 $(BIN)/coverage run -m pytest $(PROTOCOL_TESTS) $(PYTEST_ARGS); \
	else \
		echo "== no compiled $(SPEEDUPS_MODULE): the run above tested the pure-Python path"; \
	fi
	$(BIN)/coverage combine -q
	$(BIN)/coverage report --fail-under=$(COV_FAIL_UNDER)
	@echo "== sans-I/O core (src/wshub/protocol), must be >= $(PROTOCOL_COV_FAIL_UNDER)%"
	$(BIN)/coverage report --include='src/wshub/protocol/*' --fail-under=$(PROTOCOL_COV_FAIL_UNDER)

# ---- fuzzing (scripts/fuzz.sh; targets, corpora and how to run longer in fuzzing/README.md) ---

fuzz: $(VENV)/.installed-fuzz
	scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke: $(VENV)/.installed-fuzz
	scripts/fuzz.sh $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

# ---- Autobahn|Testsuite (scripts/compliance.sh; summary in compliance/SUMMARY.md) -------------

compliance: $(VENV)/.installed
	scripts/compliance.sh

compliance-quick: $(VENV)/.installed
	scripts/compliance.sh --quick

# ---- benchmarks (scripts/bench.sh; results in benchmarks/RESULTS.md) --------------------------

bench: $(VENV)/.installed
	scripts/bench.sh

bench-quick: $(VENV)/.installed
	scripts/bench.sh --quick

# ---- the chaos suite (chaos/run.py; what it does and checks: docs/deployment.md) -------------

chaos: $(VENV)/.installed-test
	@$(MAKE) deps
	$(PY) -m chaos $(if $(filter short,$(CHAOS)),--short,) $(CHAOS_ARGS)

chaos-short:
	@$(MAKE) chaos CHAOS=short

# ---- hub benchmark ($(SHARED)/hubbench; results in benchmarks/HUB_RESULTS.md) -----------------
# setup.sh copies this working tree (uncommitted changes included) into $(HUBBENCH_WORK) and
# installs it there; the peers it installs once and then only checks.

hubbench: $(VENV)/.installed
	BENCH_WORK=$(HUBBENCH_WORK) $(SHARED)/hubbench/setup.sh $(CURDIR)
	BENCH_WORK=$(HUBBENCH_WORK) python3 $(SHARED)/hubbench/run.py --out $(HUBBENCH_OUT) $(HUBBENCH_ARGS)
	$(PY) benchmarks/hub_report.py $(HUBBENCH_OUT)/results.json

hubbench-quick:
	@$(MAKE) hubbench HUBBENCH_ARGS='--quick $(HUBBENCH_ARGS)'

# ---- screenshots of the demo pages for README.md and docs/ (a real `wshub serve`, chromium) ----

screenshots: $(VENV)/.installed-test
	@$(MAKE) deps
	$(PY) scripts/screenshots.py

clean:
	rm -rf .coverage .coverage.* htmlcov .mypy_cache .ruff_cache .pytest_cache .hypothesis \
		compliance/reports benchmarks/out fuzzing/out build dist
