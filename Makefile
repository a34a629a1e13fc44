# grpo-plug developer commands. `make run` and `make test` do all set-up themselves.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# uv from PATH, else the pinned uv that tools/bootstrap_uv.py fetches from PyPI with the
# standard library alone (works where `pip install` is refused: PEP 668 Pythons).
ifndef UV
UV := $(or $(shell command -v uv 2>/dev/null),$(shell python3 tools/bootstrap_uv.py))
endif
ifeq ($(strip $(UV)),)
$(error no uv: tools/bootstrap_uv.py could not fetch it (see its message above))
endif
# maturin --uv finds uv on PATH.
export PATH := $(abspath $(BIN)):$(abspath $(dir $(UV))):$(HOME)/.cargo/bin:$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))
DEPS_STAMP := $(VENV)/.grpo-deps
BUILD_STAMP := $(VENV)/.grpo-build
# The SGLang server's own environment: sglang pins torch/transformers that differ from ours.
SGLANG_VENV ?= .venv-sglang
SGLANG_PY := $(SGLANG_VENV)/bin/python
SGLANG_STAMP := $(SGLANG_VENV)/.grpo-deps
RUST_SRC := Cargo.toml Cargo.lock $(shell find rust -name '*.rs' -o -name Cargo.toml)
PLUGIN_PKGS := $(wildcard plugins/*/pyproject.toml)
FUZZ_SECS ?= 10

.PHONY: setup sglang-env lock build run test test-fast lint typecheck rust-check pytest pytest-fast \
	fuzz bench clean

setup: $(BUILD_STAMP)

LOCKS := requirements/dev.lock requirements/embedded.lock
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet $(if $(UPGRADE),--upgrade)

$(PY):
	$(UV) venv --quiet --python 3.11 $(VENV)

# Third-party packages: exactly the locked versions, hash-checked (uv links from its cache).
# Reinstalled only when a lock file or a plugin package changes.
$(DEPS_STAMP): $(LOCKS) $(PLUGIN_PKGS) | $(PY)
	$(UV) pip sync --python $(PY) --require-hashes $(LOCKS)
	for p in $(dir $(PLUGIN_PKGS)); do $(UV) pip install --python $(PY) --no-deps -e $$p; done
	touch $@

# Refresh the lock files after editing dependencies in pyproject.toml (keeps other pins);
# `make lock UPGRADE=1` moves every package to its newest allowed version.
lock:
	$(UV) pip compile pyproject.toml --extra dev $(LOCK_FLAGS) -o requirements/dev.lock
	$(UV) pip compile requirements/embedded.in --no-deps $(LOCK_FLAGS) -o requirements/embedded.lock
	$(UV) pip compile requirements/sglang.in $(LOCK_FLAGS) -o requirements/sglang.lock

$(SGLANG_PY):
	$(UV) venv --quiet --python 3.11 $(SGLANG_VENV)

# Only targets that start SGLang servers need it (~10 GB, linked from uv's cache).
$(SGLANG_STAMP): requirements/sglang.lock | $(SGLANG_PY)
	$(UV) pip sync --python $(SGLANG_PY) --require-hashes requirements/sglang.lock
	touch $@

sglang-env: $(SGLANG_STAMP)

# The Rust extension: incremental cargo build, installed editable by maturin.
$(BUILD_STAMP): $(DEPS_STAMP) $(RUST_SRC) pyproject.toml
	maturin develop --release --uv --quiet
	touch $@

build: $(BUILD_STAMP)

run: setup
	$(BIN)/grpo-plug train --preset cpu

lint: setup
	ruff check python tests bench plugins tools
	ruff format --check python tests bench plugins tools

typecheck: setup
	mypy
	python -m mypy.stubtest grpo_plug._core

rust-check:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --release -- -D warnings
	cargo test -p grpo-core --release

fuzz: rust-check
	FUZZ_SECS=$(FUZZ_SECS) cargo run -p grpo-core --release --example fuzz_extract

# The SGLang tests use the server environment built above (they never skip).
pytest: setup sglang-env
	GRPO_PLUG_SGLANG_PYTHON=$(abspath $(SGLANG_PY)) python -m pytest -q

# Every test that is neither slow nor needs SGLang; no SGLang environment is built. A
# test that needs one after all fails here (no interpreter), it never skips.
pytest-fast: setup
	GRPO_PLUG_SGLANG_PYTHON=$(CURDIR)/.no-sglang-in-test-fast python -m pytest -q \
		-m "not slow and not sglang"

# The whole gate, what CI runs (.ci/run).
test: lint typecheck rust-check fuzz pytest

# The edit-test loop: lint, types and the fast tests (a few minutes on 2 cores).
test-fast: lint typecheck pytest-fast

bench: setup
	python bench/bench_grading.py
	python bench/bench_data.py

clean:
	rm -rf $(VENV) $(SGLANG_VENV) target
