# Model runners (issue 6): llama.cpp libraries for plugins/runner-llama, the tiny test
# model, and the tokens-per-second benchmark.

LLAMA_NPM_PKG := @node-llama-cpp/linux-x64@3.21.1
LLAMA_CACHE   := .cache/llama
LLAMA_LIBDIR  := $(LLAMA_CACHE)/package/bins/linux-x64
TESTMODEL     := build/testdata/tiny-llama.gguf

.PHONY: llama-deps testmodel bench-llm

# llama.cpp (CPU build, llama.cpp "v0.4.0" as node-llama-cpp names it) as prebuilt shared
# libraries from the npm registry, unpacked into the ignored .cache/llama, plus the
# unversioned libllama.so and libggml.so names that github.com/hybridgroup/yzma opens.
# yzma also needs libffi.so.8 (Debian package libffi8).
llama-deps: $(LLAMA_LIBDIR)/libllama.so $(LLAMA_LIBDIR)/libggml.so
	@test -e /usr/lib/x86_64-linux-gnu/libffi.so.8 || test -e /usr/lib/libffi.so.8 || \
		echo "warning: libffi.so.8 not found; runner-llama needs it (apt-get install libffi8)" >&2

$(LLAMA_LIBDIR)/libllama.v0.4.0.so:
	@command -v npm >/dev/null || { echo "npm not found: it fetches $(LLAMA_NPM_PKG) (apt-get install npm)"; exit 1; }
	@mkdir -p $(LLAMA_CACHE)
	cd $(LLAMA_CACHE) && rm -rf package node-llama-cpp-linux-x64-*.tgz && \
		npm pack --silent $(LLAMA_NPM_PKG) >/dev/null && \
		tar xzf node-llama-cpp-linux-x64-3.21.1.tgz && rm node-llama-cpp-linux-x64-3.21.1.tgz
	@touch $@

$(LLAMA_LIBDIR)/libllama.so: | $(LLAMA_LIBDIR)/libllama.v0.4.0.so
	ln -sfn libllama.v0.4.0.so $@

$(LLAMA_LIBDIR)/libggml.so: | $(LLAMA_LIBDIR)/libllama.v0.4.0.so
	ln -sfn libggml.v0.4.0.so $@

# The tiny random-weight llama the tests generate for themselves, as a file for trying
# the runner by hand (limitd config: model = "<repo>/build/testdata/tiny-llama.gguf").
testmodel:
	$(GO) run ./internal/cmd/testmodel -o $(TESTMODEL)

# Tokens per second of the tiny model through the runner-llama plugin binary
# (BenchmarkTokensPerSecond) and through the API of a real limitd
# (BenchmarkAPITokensPerSecond: POST /v1/sessions/{id}/executions, plain and streamed,
# plus the time to first token event, p50 and p99), each against the same model driven
# in-process by yzma in the same run; prints the ratios.
bench-llm: llama-deps
	$(GO) test -run '^$$' -bench 'TokensPerSecond' -benchtime 30x -count 1 ./plugins/runner-llama

# `make build` (and so `make run`) fetches the llama.cpp libraries the llama runner loads.
.PHONY: deps
deps: llama-deps
build: llama-deps
