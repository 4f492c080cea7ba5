# One entry point for people and CI. Every target installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := $(shell sed -n '/^name = "uv"$$/{n;s/version = "\(.*\)"/\1/p}' uv.lock)
PYTEST_ARGS ?=
BENCH_ARGS ?=
CONFORMANCE_ARGS ?=
GCS_EMULATOR ?= wrapper

.PHONY: help venv venv-infra system-deps test test-all test-chords test-bench test-unit lint demo bench conformance image-deps image-test clean

help:
	@echo "make demo       run the whole stack locally with a sample workload"
	@echo "make test       the test suite (emulators, broker and real workers)"
	@echo "make test-all   the test suite including slow tests"
	@echo "make test-chords the chord kill matrix under every pool, a 20,000-part chord and a small fault soak (about 11 minutes)"
	@echo "make test-soak  chords in a row under a mixed fault rate (about 10 minutes; SOAK_CHORDS, SOAK_SIZE, SOAK_STALL_MAX, SOAK_EXPIRES, SOAK_ENDS_WITHIN, SOAK_CLIENT_EXPIRES)"
	@echo "make test-bench the benchmark harness: its tests and a run on tiny sizes (about 3 minutes)"
	@echo "make bench      benchmarks against the built-in gs:// and Redis backends"
	@echo "make bench-chords  chord scaling: time and requests per part, 100 to 20,000 parts"
	@echo "make bench-requests client CPU of one GCS PUT, one GET and one Firestore commit, profiled"
	@echo "make conformance Celery's own integration suite against gcs:// (about 11 minutes; GCS_EMULATOR=stock)"
	@echo "make image-test build the worker image with podman and test it (root)"
	@echo "make venv-infra only what deploying needs (pulumi up): the runtime and the infra extra"

# The virtualenv follows uv.lock exactly: every extra and the dev group, re-synced
# whenever the lock changes. The demo needs only the cli and local extras, so
# `make demo` on a fresh machine installs just those (--inexact: it removes nothing
# a full sync put there). --compile-bytecode: the tests start many short Python
# processes (tests/infra one per Pulumi program run), and where PYTHONDONTWRITEBYTECODE
# is set none of them would keep what it compiled; compiled once here, each starts in
# half the time. The policy pack's SDK (infra/policy/sdk.txt) goes in beside the lock:
# its declared protobuf pin would pull the runtime's Google clients back (see that file).
$(BIN)/uv:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "uv==$(UV_VERSION)"

$(BIN)/.synced: uv.lock pyproject.toml infra/policy/sdk.txt | $(BIN)/uv
	$(BIN)/uv sync --frozen --all-extras --compile-bytecode --quiet
	$(BIN)/uv pip install --python $(BIN)/python --no-deps --require-hashes --compile-bytecode --quiet -r infra/policy/sdk.txt
	touch $@ $(BIN)/.synced-demo

$(BIN)/.synced-demo: uv.lock pyproject.toml | $(BIN)/uv
	$(BIN)/uv sync --frozen --extra cli --extra local --no-default-groups --inexact --quiet
	touch $@

venv: $(BIN)/.synced

# Deploying only (`pulumi up` runs the program in .venv): the runtime and the infra extra,
# Pulumi and its providers, about 250 MB, instead of every extra and dev tool (about 730 MB).
# --inexact keeps the uv this target runs (it is not in the infra extra).
venv-infra: | $(BIN)/uv
	UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --frozen --extra infra --no-default-groups --inexact --compile-bytecode --quiet

# Debian packages the tests start for real: Redis (the broker), Java (the Firestore emulator).
system-deps:
	@command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
	@command -v java >/dev/null || { apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }
	@command -v gcloud >/dev/null || { echo "gcloud (with the cloud-firestore-emulator component) is required: https://cloud.google.com/sdk/docs/install" >&2; exit 1; }

# tests/image runs whole in make image-test and tests/bench in make test-bench (both steps of
# .ci/run): here they would run twice in CI and take make test past 10 minutes (13 here).
test: venv system-deps
	$(BIN)/pytest --ignore=tests/image --ignore=tests/bench $(PYTEST_ARGS)

test-all: venv system-deps
	$(BIN)/pytest -m '' $(PYTEST_ARGS)

# The chord kill matrix, a 20,000-part chord, and the fault soak (docs/chords.md) in its CI size:
# one chord of 100 per pool (more until every kind of fault was met), stalls of 1-12 s: about 70 s
# at load 10, up to 3 minutes on a machine loaded by other work.
test-chords: venv system-deps
	SOAK_CHORDS=1 SOAK_SIZE=100 SOAK_STALL_MAX=12 \
	  $(BIN)/pytest -m 'matrix or slow or soak' tests/e2e/test_chords.py tests/faults/test_chord_soak.py \
	  tests/faults/test_chord_holder_outages.py $(PYTEST_ARGS)

# The fault soak at full size (docs/chords.md): 3 chords of 100 per pool under prefork, threads
# and gevent, stalls of 1-30 s. The issue's, 50 chords of 1,000 (docs/chords.md):
#   SOAK_CHORDS=50 SOAK_SIZE=1000 SOAK_EXPIRES=90 SOAK_ENDS_WITHIN=420 make test-soak PYTEST_ARGS='-k prefork'
.PHONY: test-soak
test-soak: venv system-deps
	$(BIN)/pytest -m soak tests/faults/test_chord_soak.py $(PYTEST_ARGS)

# The README's install and demo paths end to end: wheels in fresh virtualenvs, make venv-infra,
# the demo run and its Ctrl-C (tests/package, tests/cli/test_demo.py; about 5 minutes). Out of
# make test to keep it near 10 minutes; .ci/run runs it.
.PHONY: test-package
test-package: venv system-deps
	$(BIN)/pytest -m package tests/package tests/cli/test_demo.py $(PYTEST_ARGS)

# The benchmark harness: its tests, and end to end on tiny sizes (every pass and backend; about 3 minutes).
test-bench: venv system-deps
	$(BIN)/pytest -m '' tests/bench $(PYTEST_ARGS)

# ruff, and the architecture contract in pyproject.toml ([tool.importlinter]).
lint: venv
	$(BIN)/ruff check backend infra tests bench
	$(BIN)/lint-imports

demo: $(BIN)/.synced-demo system-deps
	$(BIN)/celery-gcs demo

# BENCH_ARGS=--quick for a smoke run, --full for every 10,000-part chord to the end.
bench: venv system-deps
	$(BIN)/python -m bench $(BENCH_ARGS)

# Chord scaling (bench/chord_scaling.py): time per part of 500- and 5,000-part chords,
# interleaved, and requests per part from 100 to 20,000 parts; about 20 minutes here.
# Writes bench/results/chord-scaling.{json,md}. BENCH_ARGS=--quick for a smoke run.
.PHONY: bench-chords
bench-chords: venv system-deps
	$(BIN)/python -m bench --chords $(BENCH_ARGS)

# Client CPU per request (bench/request_profile.py): 3 rounds of 2,000 sequential GCS PUTs,
# GETs and Firestore commits per variant against the emulators, then one profiled round
# summarised by layer; about 10 minutes here. Writes bench/results/request-profile.{json,md}.
# BENCH_ARGS=--quick for a smoke run.
.PHONY: bench-requests
bench-requests: venv system-deps
	$(BIN)/python -m bench.request_profile $(BENCH_ARGS)

# What the image tests build and run containers with: podman on runc (crun fails on
# this kernel), debootstrap for the locally made base image (no registry is reachable).
IMAGE_DEPS := podman runc catatonit debootstrap
image-deps:
	@for p in $(IMAGE_DEPS); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    -o DPkg::Lock::Timeout=300 $(IMAGE_DEPS) >/dev/null; \
	fi

image-test: venv system-deps image-deps
	$(BIN)/pytest -m '' tests/image $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .devstack .import_linter_cache

# Celery's own integration suite (t/integration of the locked celery's sdist) against
# gcs:// on the local stack (docs/conformance.md); GCS_EMULATOR=stock for the stock
# gcp-storage-emulator instead of the project's wrapper.
conformance: venv system-deps
	$(BIN)/python -m tests.conformance --gcs-emulator $(GCS_EMULATOR) $(CONFORMANCE_ARGS)
