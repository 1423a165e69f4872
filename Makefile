# blackout — the two commands: `make run` (the demo) and `make test` (everything the tests need, then the tests).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Real programs the tests start as oracles and peers (Debian 12 packages).
APT_PACKAGES := bgpdump tshark nfdump softflowd pmacct exabgp gobgpd frr chromium fastnetmon tcpreplay iproute2
PYTEST_ARGS ?=

.PHONY: run test lint bench fuzz soak install install-test apt clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,fuzz]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## run: install into .venv and run the demo on the embedded store (ARGS=--no-serve to end on its own)
run: install
	$(BIN)/blackout demo $(ARGS)

## apt: install the Debian packages the tests run (as root; skipped when all are present). policy-rc.d keeps
## the daemons (FastNetMon, FRR, ExaBGP, GoBGP) from being started by their packages: tests start their own,
## and FastNetMon's packaged configuration would phone home.
apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "apt-get install$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		guard=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; guard=1; fi; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; status=$$?; \
		[ -n "$$guard" ] && rm -f /usr/sbin/policy-rc.d; exit $$status; \
	fi

lint: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

## test: lint, type-check and run every test against the real tools
test: install-test apt lint
	$(BIN)/pytest -q $(PYTEST_ARGS)

## bench: every benchmark in bench/, each printing its rival's timing and the ratio
bench: install-test apt
	$(BIN)/pip install --quiet -e '.[bench]'
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

## fuzz: every decoder and the config loader under atheris, 1M inputs each or FUZZ_SECONDS per target
FUZZ_SECONDS ?= 3600
fuzz: install-test
	$(BIN)/python fuzz/run.py --runs 1000000 --seconds $(FUZZ_SECONDS) --jobs 2

## soak: 10 minutes of collector ingest at half its measured maximum; fails on RSS or tick latency growth > 10 %
soak: install-test apt
	$(BIN)/python bench/soak.py --seconds 600

clean:
	rm -rf $(VENV) var build *.egg-info
