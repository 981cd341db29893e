# claimcheck — every target installs what it needs under ~/.cache/claimcheck.
SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/claimcheck
export CARGO_TARGET_DIR ?= $(CACHE)/target
BIN := $(CARGO_TARGET_DIR)/release/claimcheck
CARGO := cargo
VENV = $(shell tests/env/python-venv.sh | tail -n 1)

.PHONY: build test unit lint e2e demo bench fmt

build:
	$(CARGO) build --release --locked

## The whole suite: formatting, lints, Rust unit and property tests, end-to-end tests
## against a real Temporal dev server and the real Python SDK.
test: lint unit e2e

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings

## Integration tests start a real Temporal dev server from the test venv.
unit:
	@venv="$(VENV)"; TEMPORAL_CLI="$$venv/bin/temporal" $(CARGO) test --release --locked

e2e: build
	@venv="$(VENV)"; CLAIMCHECK_BIN=$(BIN) "$$venv/bin/python" -m pytest -q tests/e2e

## A Temporal dev server, the proxy on a filesystem store, a worker passing 10 MiB.
demo: build
	@venv="$(VENV)"; CLAIMCHECK_BIN=$(BIN) "$$venv/bin/python" tests/e2e/demo.py

## Each figure next to its baseline, in one run (design §8 targets).
bench: build
	@venv="$(VENV)"; TEMPORAL_CLI="$$venv/bin/temporal" CLAIMCHECK_BIN=$(BIN) $(CARGO) bench --locked

fmt:
	$(CARGO) fmt
