# wasp: the two commands a newcomer needs are `make run` and `make test`.
# Both install what they need first (`make setup-run`, `make setup`), and build plugins once.
# `make run` needs only the host and the Rust plugins; the test toolchains and broker are for
# `make test`.

SHELL := /bin/bash
CARGO ?= cargo
# Build outputs live outside the clone, so a fresh clone of the same machine reuses them (CI).
export CARGO_TARGET_DIR ?= $(HOME)/.cache/wasp/target
# The host links Debian's RocksDB (librocksdb-dev) instead of building the bundled one from
# C++ source, 10–40 minutes once (host/build.rs). `make BUNDLED_ROCKSDB=1 …` builds the bundled.
ifndef BUNDLED_ROCKSDB
export ROCKSDB_LIB_DIR ?= /usr/lib/$(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
endif
NISSHI_VERSION := 0.8.1
# The schema-registry tests run against rivven-schema, a Confluent-compatible registry server.
SCHEMA_REGISTRY_VERSION := 0.0.22
COMPONENTIZE_PY_VERSION := 0.25.1
COMPONENTIZE_JS_VERSION := 0.23.0
NPM_PREFIX := $(HOME)/.cache/wasp/npm
# What the host's build needs: libclang (bindgen's libclang.so, not libclang-cpp, which some
# images ship alone) and Debian's RocksDB.
HOST_PACKAGES := libclang-dev librocksdb-dev
# C and C++ plugins: Debian's clang and lld, wasi-libc, and the wasm32 builtins and libc++.
C_PACKAGES := clang lld wasi-libc libclang-rt-14-dev-wasm32 libc++-14-dev-wasm32 libc++abi-14-dev-wasm32
# The broker-restart test keeps nisshi's data in PostgreSQL (a throwaway server the test starts).
PG_PACKAGES := postgresql
# The dashboard's browser test drives Debian's headless Chromium through its chromedriver.
BROWSER_PACKAGES := chromium chromium-driver fonts-dejavu-core
APT_INSTALL := if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq
SUDO_APT_INSTALL := else sudo apt-get update -qq && sudo apt-get install -y -qq
RUST_PLUGINS := cap-probe click-parse bot-filter page-is product-interest test-kit trap bench-filter bench-map bench-identity bench-naive split-words word-key trade-stats session-summary fraud-detect start-trap loop-forever memory-bomb stack-overflow panics kit-v2 fold-trace join-kit enrich-click order-payment order-customer purchase-stages sum-sub sum-add stats-v1 stats-v2 stats-v3
BUILD := plugins/build
WASM_OUT := $(CARGO_TARGET_DIR)/wasm32-unknown-unknown/release
WASP := $(CARGO_TARGET_DIR)/release/wasp
PY_PLUGIN_SRC := $(wildcard plugins/python/*/*.py) guest-sdk/python/wasp.py

.PHONY: run test setup setup-run host plugins bench clean-plugins plugin new-plugin

## The main job: word count in local mode: Wasm plugins, a repartition, a RocksDB store.
run: setup-run host $(BUILD)/.rust-done
	$(WASP) run pipelines/wordcount/pipeline.toml --reset

## Every test: formatting, lints, unit, golden, plugin and the real-broker integration tests.
test: setup plugins
	$(CARGO) fmt --all -- --check
	cd plugins && $(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	cd plugins && $(CARGO) clippy --release -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --release -p wasp --no-deps
	python3 -m unittest guest-sdk/python/test_wasp.py
	@mkdir -p target
	set -o pipefail; WASP_NISSHI=$$(command -v nisshi) WASP_SCHEMA_REGISTRY=$$(command -v rivven-schema) \
	  WASP_CHROMEDRIVER=$$(command -v chromedriver) \
	  $(CARGO) test --release --workspace --all-targets 2>&1 \
	  | tee target/test-output.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' \
	  target/test-output.log

## What the main job needs: the wasm target of the Rust plugins, and the host's packages.
setup-run: .setup-run-done
.setup-run-done: Makefile
	@command -v rustup >/dev/null || { echo "rustup is required"; exit 1; }
	rustup target add wasm32-unknown-unknown
	@if ! ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/*/libclang-[0-9]*.so* >/dev/null 2>&1 \
	    || { [ -z "$(BUNDLED_ROCKSDB)" ] && [ ! -e $(ROCKSDB_LIB_DIR)/librocksdb.so ]; }; then \
	  $(APT_INSTALL) $(HOST_PACKAGES); $(SUDO_APT_INSTALL) $(HOST_PACKAGES); fi; fi
	touch .setup-run-done

## What the tests need besides: the wasip2 target, componentize-py, componentize-js (npm, into
## ~/.cache/wasp/npm), clang for wasm32-wasi (C and C++ plugins), PostgreSQL, Chromium and its
## chromedriver (the dashboard's browser test), the test broker, the schema registry server.
setup: setup-run .setup-done
.setup-done: Makefile
	rustup target add wasm32-wasip2
	@if ! command -v componentize-py >/dev/null || [ "$$(componentize-py --version | cut -d' ' -f2)" != "$(COMPONENTIZE_PY_VERSION)" ]; then \
	  python3 -m pip install --quiet componentize-py==$(COMPONENTIZE_PY_VERSION); fi
	@if ! command -v clang++ >/dev/null || ! command -v wasm-ld >/dev/null || [ ! -e /usr/lib/wasm32-wasi/libc++.a ] \
	    || ! ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1; then \
	  $(APT_INSTALL) $(C_PACKAGES); $(SUDO_APT_INSTALL) $(C_PACKAGES); fi; fi
	@if ! command -v npm >/dev/null; then $(APT_INSTALL) nodejs npm; $(SUDO_APT_INSTALL) nodejs npm; fi; fi
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  $(APT_INSTALL) --no-install-recommends $(PG_PACKAGES); $(SUDO_APT_INSTALL) --no-install-recommends $(PG_PACKAGES); fi; fi
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || [ ! -d /usr/share/fonts/truetype/dejavu ]; then \
	  $(APT_INSTALL) --no-install-recommends $(BROWSER_PACKAGES); $(SUDO_APT_INSTALL) --no-install-recommends $(BROWSER_PACKAGES); fi; fi
	@if ! grep -qs '"version": "$(COMPONENTIZE_JS_VERSION)"' \
	    $(NPM_PREFIX)/node_modules/@bytecodealliance/componentize-js/package.json; then \
	  mkdir -p $(NPM_PREFIX) && npm install --prefix $(NPM_PREFIX) --no-audit --no-fund --silent \
	    @bytecodealliance/componentize-js@$(COMPONENTIZE_JS_VERSION); fi
	@if [ "$$(nisshi --version 2>/dev/null | awk '{print $$2}')" != "$(NISSHI_VERSION)" ]; then \
	  echo "building the test broker nisshi $(NISSHI_VERSION) once (about 9 minutes; cached in ~/.cargo/bin)"; \
	  $(CARGO) install nisshi --version $(NISSHI_VERSION) --locked --ignore-rust-version; fi
	@if [ "$$(rivven-schema --version 2>/dev/null | awk '{print $$2}')" != "$(SCHEMA_REGISTRY_VERSION)" ]; then \
	  echo "building the schema registry rivven-schema $(SCHEMA_REGISTRY_VERSION) once (about 3 minutes; cached in ~/.cargo/bin)"; \
	  $(CARGO) install rivven-schema --version $(SCHEMA_REGISTRY_VERSION) --locked; fi
	touch .setup-done

## The host (cargo knows when it is fresh).
host: setup-run
	$(CARGO) build --release --bin wasp

## Every example and test plugin, as components in plugins/build/.
plugins: setup $(BUILD)/.rust-done $(BUILD)/sandbox-probe.wasm $(BUILD)/enrich.wasm $(BUILD)/categorize.wasm

# The Rust plugins: one cargo build of their workspace, each module made a component by
# `wasp build` (in-process, no wasm-tools).
$(BUILD)/.rust-done: $(shell find plugins/rust guest-sdk/src guest-sdk/macros wit -type f 2>/dev/null) plugins/Cargo.toml | host
	cd plugins && $(CARGO) build --release
	mkdir -p $(BUILD)
	for p in $(RUST_PLUGINS); do \
	  $(WASP) build $(WASM_OUT)/$${p//-/_}.wasm -o $(BUILD)/$$p.wasm >/dev/null || exit 1; \
	done
	touch $@

$(BUILD)/sandbox-probe.wasm: $(shell find plugins/rust/sandbox-probe -type f 2>/dev/null) | setup
	cd plugins && $(CARGO) build --release -p sandbox-probe --target wasm32-wasip2
	mkdir -p $(BUILD)
	cp $(CARGO_TARGET_DIR)/wasm32-wasip2/release/sandbox_probe.wasm $@

$(BUILD)/enrich.wasm: $(PY_PLUGIN_SRC) wit/plugin.wit
	mkdir -p $(BUILD)
	componentize-py -d wit -w value-mapper-plugin componentize app \
	  -p plugins/python/enrich -p guest-sdk/python -o $@

# The user-events example's Python function (an Avro topic seen as JSON).
$(BUILD)/categorize.wasm: $(PY_PLUGIN_SRC) wit/plugin.wit
	mkdir -p $(BUILD)
	componentize-py -d wit -w flat-mapper-plugin componentize app \
	  -p plugins/python/categorize -p guest-sdk/python -o $@

## Thin wrappers of `wasp new` and `wasp build`: make new-plugin NAME=my-filter [KIND=map-values]
## starts a plugin in plugins/new/NAME; make plugin DIR=path/to/crate builds one into DIR/NAME.wasm.
new-plugin:
	@test -n "$(NAME)" || { echo "usage: make new-plugin NAME=my-filter [KIND=filter|map-values]"; exit 1; }
	$(CARGO) run --quiet --release --bin wasp -- new rust $(NAME) --kind $(or $(KIND),filter) --dir plugins/new

plugin:
	@test -n "$(DIR)" || { echo "usage: make plugin DIR=path/to/crate"; exit 1; }
	$(CARGO) run --quiet --release --bin wasp -- build $(DIR)

## The long chaos soak: 20 kill -9s of three word-count instances on the real broker, under
## exactly_once (nothing lost or repeated) and at_least_once (nothing lost; repeats counted).
## `make test` runs a short one with 5 kills. Also the rebalance pauses, measured: a third
## instance joins two, eager and cooperative-sticky.
soak: setup plugins
	WASP_NISSHI=$$(command -v nisshi) $(CARGO) test --release --test all soak -- --ignored --nocapture --test-threads 1

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
