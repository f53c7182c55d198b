# wasp: the two commands a newcomer needs are `make run` and `make test`.
# Both install what they need first (`make setup`), and build plugins once.

SHELL := /bin/bash
CARGO ?= cargo
# Build outputs live outside the clone, so a fresh clone of the same machine reuses them (CI).
export CARGO_TARGET_DIR ?= $(HOME)/.cache/wasp/target
WASM_TOOLS_VERSION := 1.263.0
NISSHI_VERSION := 0.8.1
COMPONENTIZE_PY_VERSION := 0.25.1
COMPONENTIZE_JS_VERSION := 0.23.0
NPM_PREFIX := $(HOME)/.cache/wasp/npm
# C and C++ plugins: Debian's clang and lld, wasi-libc, and the wasm32 builtins and libc++.
C_PACKAGES := clang lld wasi-libc libclang-rt-14-dev-wasm32 libc++-14-dev-wasm32 libc++abi-14-dev-wasm32
RUST_PLUGINS := click-parse bot-filter page-is product-interest test-kit trap bench-filter bench-map bench-identity bench-naive split-words word-key trade-stats session-summary fraud-detect start-trap loop-forever memory-bomb stack-overflow panics kit-v2 fold-trace join-kit enrich-click order-payment order-customer purchase-stages sum-sub sum-add
BUILD := plugins/build
WASM_OUT := $(CARGO_TARGET_DIR)/wasm32-unknown-unknown/release
PY_PLUGIN_SRC := $(wildcard plugins/python/*/*.py) guest-sdk/python/wasp.py

.PHONY: run test setup plugins bench clean-plugins plugin new-plugin

## The main job: word count in local mode: Wasm plugins, a repartition, a RocksDB store.
run: setup plugins
	$(CARGO) run --release --quiet --bin wasp -- run pipelines/wordcount/pipeline.toml --reset

## Every test: formatting, lints, unit, golden, plugin and the real-broker integration tests.
test: setup plugins
	$(CARGO) fmt --all -- --check
	cd plugins && $(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	cd plugins && $(CARGO) clippy --release -- -D warnings
	python3 -m unittest guest-sdk/python/test_wasp.py
	@mkdir -p target
	set -o pipefail; WASP_NISSHI=$$(command -v nisshi) $(CARGO) test --release --workspace --all-targets 2>&1 \
	  | tee target/test-output.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' \
	  target/test-output.log

## What the commands need: wasm targets, wasm-tools, componentize-py, componentize-js (npm, into
## ~/.cache/wasp/npm), clang for wasm32-wasi (C and C++ plugins), libclang (bindgen's
## libclang.so, not libclang-cpp, which some images ship alone), the test broker.
setup: .setup-done
.setup-done: Makefile
	@command -v rustup >/dev/null || { echo "rustup is required"; exit 1; }
	rustup target add wasm32-unknown-unknown wasm32-wasip2
	@if ! ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/*/libclang-[0-9]*.so* >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq libclang-dev; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq libclang-dev; fi; fi
	@if [ "$$(wasm-tools --version 2>/dev/null | cut -d' ' -f2)" != "$(WASM_TOOLS_VERSION)" ]; then \
	  $(CARGO) install wasm-tools --version $(WASM_TOOLS_VERSION) --locked; fi
	@if ! command -v componentize-py >/dev/null || [ "$$(componentize-py --version | cut -d' ' -f2)" != "$(COMPONENTIZE_PY_VERSION)" ]; then \
	  python3 -m pip install --quiet componentize-py==$(COMPONENTIZE_PY_VERSION); fi
	@if ! command -v clang++ >/dev/null || ! command -v wasm-ld >/dev/null || [ ! -e /usr/lib/wasm32-wasi/libc++.a ] \
	    || ! ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $(C_PACKAGES); \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq $(C_PACKAGES); fi; fi
	@if ! command -v npm >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq nodejs npm; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq nodejs npm; fi; fi
	@if ! grep -qs '"version": "$(COMPONENTIZE_JS_VERSION)"' \
	    $(NPM_PREFIX)/node_modules/@bytecodealliance/componentize-js/package.json; then \
	  mkdir -p $(NPM_PREFIX) && npm install --prefix $(NPM_PREFIX) --no-audit --no-fund --silent \
	    @bytecodealliance/componentize-js@$(COMPONENTIZE_JS_VERSION); fi
	@if [ "$$(nisshi --version 2>/dev/null | awk '{print $$2}')" != "$(NISSHI_VERSION)" ]; then \
	  echo "building the test broker nisshi $(NISSHI_VERSION) once (about 9 minutes; cached in ~/.cargo/bin)"; \
	  $(CARGO) install nisshi --version $(NISSHI_VERSION) --locked --ignore-rust-version; fi
	touch .setup-done

## Every example and test plugin, as components in plugins/build/.
plugins: setup $(BUILD)/.rust-done $(BUILD)/enrich.wasm

$(BUILD)/.rust-done: $(shell find plugins/rust guest-sdk wit -type f 2>/dev/null) plugins/Cargo.toml
	cd plugins && $(CARGO) build --release
	mkdir -p $(BUILD)
	for p in $(RUST_PLUGINS); do \
	  wasm-tools component new $(WASM_OUT)/$${p//-/_}.wasm -o $(BUILD)/$$p.wasm || exit 1; \
	done
	cd plugins && $(CARGO) build --release -p sandbox-probe --target wasm32-wasip2
	cp $(CARGO_TARGET_DIR)/wasm32-wasip2/release/sandbox_probe.wasm $(BUILD)/sandbox-probe.wasm
	touch $@

$(BUILD)/enrich.wasm: $(PY_PLUGIN_SRC) wit/plugin.wit
	mkdir -p $(BUILD)
	componentize-py -d wit -w value-mapper-plugin componentize app \
	  -p plugins/python/enrich -p guest-sdk/python -o $@

## Thin wrappers of `wasp new` and `wasp build`: make new-plugin NAME=my-filter [KIND=map-values]
## starts a plugin in plugins/new/NAME; make plugin DIR=path/to/crate builds one into DIR/NAME.wasm.
new-plugin:
	@test -n "$(NAME)" || { echo "usage: make new-plugin NAME=my-filter [KIND=filter|map-values]"; exit 1; }
	$(CARGO) run --quiet --release --bin wasp -- new rust $(NAME) --kind $(or $(KIND),filter) --dir plugins/new

plugin:
	@test -n "$(DIR)" || { echo "usage: make plugin DIR=path/to/crate"; exit 1; }
	$(CARGO) run --quiet --release --bin wasp -- build $(DIR)

## Benchmarks: figures printed as ratios against a native baseline measured in the same run.
bench: setup plugins
	$(CARGO) run --release --bin wasp-bench

## The peer benchmark: word count on nisshi against Quix Streams (a venv in ~/.cache/wasp) and a
## native rdkafka service, and the JSON filter + map against fluvio-smartengine, whose bench is a
## cargo project of its own (host/benches/peers/fluvio: it pulls its own wasmtime).
.PHONY: bench-peers
bench-peers: setup plugins
	cd host/benches/peers/fluvio && CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)/peers-fluvio $(CARGO) build --release --bin wasp-peers-fluvio
	cd host/benches/peers/fluvio && CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)/peers-fluvio $(CARGO) build --profile smartmodule \
	  --target wasm32-unknown-unknown -p wasp-peers-sm-filter -p wasp-peers-sm-map
	WASP_PEERS_FLUVIO=$(CARGO_TARGET_DIR)/peers-fluvio/release/wasp-peers-fluvio \
	  WASP_PEERS_SMARTMODULES=$(CARGO_TARGET_DIR)/peers-fluvio/wasm32-unknown-unknown/smartmodule \
	  $(CARGO) run --release --bin wasp-peers

clean-plugins:
	rm -rf $(BUILD) plugins/target
