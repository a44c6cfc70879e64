# Coffre — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= ./data

.PHONY: run test test-distributed test-browser screenshots lint typecheck unit install lock bench clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## Start the server with the embedded profile (SQLite + encrypted files in $(DATA)).
run: $(STAMP)
	COFFRE_DATA_DIR=$(DATA) $(BIN)/coffre serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

## Lint, type-check, check migrations, then the test suite on both profiles,
## side by side (both mostly wait on servers, mail and browsers): embedded,
## and distributed (test-distributed), whose output follows the embedded one's.
test: $(STAMP) lint typecheck
	$(BIN)/python -m coffre.db.check
	@log=$$(mktemp /tmp/coffre-distributed.XXXXXX); start=$$(date +%s); \
	( $(MAKE) --no-print-directory test-distributed >$$log 2>&1; echo $$? >$$log.rc; \
	  echo "distributed pass: $$(( $$(date +%s) - start )) s" >>$$log ) & \
	$(BIN)/pytest -q -m "not slow"; embedded=$$?; \
	echo "embedded pass: $$(( $$(date +%s) - start )) s"; \
	wait; echo "-- distributed pass (PostgreSQL + SeaweedFS):"; cat $$log; \
	distributed=$$(cat $$log.rc); rm -f $$log $$log.rc; \
	[ $$embedded = 0 ] && [ $$distributed = 0 ]

## The suite again on the distributed profile: a throwaway PostgreSQL cluster
## and a SeaweedFS (S3) started by the tests, browser tests included (unit
## tests do not depend on the profile).
test-distributed: $(STAMP)
	COFFRE_TEST_PROFILE=distributed $(BIN)/pytest -q -m "not slow" tests/integration tests/e2e tests/contract

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

## Browser tests only (Debian's chromium); the screenshots in docs/screenshots.
test-browser: $(STAMP)
	$(BIN)/pytest -q -m browser

screenshots: $(STAMP)
	COFFRE_SCREENSHOTS=1 $(BIN)/pytest -q -m browser

bench: $(STAMP)
	$(BIN)/python -m bench.transfer
	$(BIN)/python -m bench.audit
	$(BIN)/python -m bench.s3_transfer
	$(BIN)/python -m bench.backup

## Regenerate the lock file from pyproject.toml's ranges.
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install --quiet --upgrade pip
	.lockvenv/bin/pip install --quiet -e '.[dev]'
	.lockvenv/bin/pip freeze --exclude-editable | grep -v '^coffre' > requirements.lock
	rm -rf .lockvenv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
