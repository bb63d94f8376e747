# The two commands: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint unit bench clean systemd-deps browser-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: install, then one full cycle on the defaults: the sample dumps and subscribers, mail to a Maildir
run: $(STAMP)
	mkdir -p var/inbox
	cp examples/dumps/*.txt var/inbox/
	$(BIN)/digest --config config.example.toml run --once
	$(BIN)/digest --config config.example.toml status

# The tests start many Python processes (xdist workers, the CLI, the daemon): let them
# cache compiled bytecode (in __pycache__/, ignored by git) even where the environment
# says not to, or each process compiles every module again.
TEST_ENV := PYTHONDONTWRITEBYTECODE=

## test: install with the test extras, then lint, type-check and run every test
test: lint systemd-deps browser-deps
	$(TEST_ENV) $(BIN)/pytest -q -n 2 --dist worksteal

## systemd-deps: systemd-analyze for tests/test_deploy.py (Debian's systemd package, when missing)
systemd-deps:
	command -v systemd-analyze >/dev/null || (apt-get update && apt-get install -y --no-install-recommends systemd) \
		|| echo "warning: systemd could not be installed: tests/test_deploy.py will skip"

## browser-deps: Debian's chromium for tests/test_browser.py (Playwright drives it; no browser download)
browser-deps:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium) \
		|| echo "warning: chromium could not be installed: tests/test_browser.py will skip"

## lint: ruff (lint and format check) and mypy --strict
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## unit: the fast inner loop (stops at the first failure, skips the slow end-to-end tests, a third of each property test's examples)
unit: $(STAMP)
	$(TEST_ENV) DIGEST_FUZZ_SCALE=0.3 $(BIN)/pytest -x -q -n 2 --dist worksteal -m 'not slow'

## bench: throughput and memory of each stage on generated data (BENCH_SCALE=small: the quick run)
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis
