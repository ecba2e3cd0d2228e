# Entry points for people and CI. Every target installs what it needs first.
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?=
JOBS       ?= $(shell nproc)

.PHONY: all deps build test test-asan fuzz demo bench clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The same tests under AddressSanitizer + UndefinedBehaviorSanitizer (all but the slow demo run).
test-asan: deps
	@cmake -S . -B $(BUILD_ASAN) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDISTILL_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD_ASAN) -j $(JOBS)
	@cd $(BUILD_ASAN) && ctest --output-on-failure -j $(JOBS) -LE slow

# libFuzzer targets (clang, ASan + UBSan) from the committed seed corpora, FUZZ_SECONDS each
# (or FUZZ_RUNS executions each from a fixed seed: CI's deterministic smoke run). FUZZ_TARGETS
# names a subset (e.g. "gguf safetensors"); all by default.
fuzz:
	@bash scripts/install-deps.sh fuzz
	@CC=clang CXX=clang++ cmake -S . -B $(BUILD_FUZZ) -G Ninja -DCMAKE_BUILD_TYPE=Fuzz -DCMAKE_CXX_FLAGS_FUZZ="-O1 -gline-tables-only" -DDISTILL_FUZZ=ON \
		-DDISTILL_TESTS=OFF -DDISTILL_BENCH=OFF >/dev/null
	@cmake --build $(BUILD_FUZZ) -j $(JOBS) --target $(if $(FUZZ_TARGETS),$(addprefix fuzz_,$(FUZZ_TARGETS)),fuzz_all)
	@FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_TARGETS="$(FUZZ_TARGETS)" bash fuzz/run.sh $(BUILD_FUZZ) $(FUZZ_SECONDS)

demo: build
	@./$(BUILD)/distill demo

bench: build
	@./$(BUILD)/bench_forward

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
