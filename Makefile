# doppel — the two commands: `make demo` and `make test`. Plain `make` builds.
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps build test test-fast test-asan demo gan-demo bench install clean format fuzz fuzz-build fuzz-corpus valgrind valgrind-suite

all: build

deps:
	@scripts/install-deps.sh build

$(BUILD)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: deps $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

# The whole suite, then again under AddressSanitizer + UndefinedBehaviorSanitizer.
test:
	@scripts/install-deps.sh test
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) test-asan

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DDP_SANITIZE=ON $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		DP_TEST_QUICK=1 ctest --output-on-failure -j $(JOBS)

demo:
	@scripts/install-deps.sh demo
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)
	scripts/demo.sh $(BUILD)

# A few minutes of DCGAN-28 on Fashion-MNIST; writes a labelled sample grid (docs/gan.md).
GAN_DEMO_RUN ?= $(or $(TMPDIR),/tmp)/doppel-gan-demo
gan-demo:
	@scripts/install-deps.sh demo
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)
	rm -rf $(GAN_DEMO_RUN)
	$(BUILD)/doppel gan train --data fashion-mnist --arch dcgan28 --out $(GAN_DEMO_RUN) --steps 600 --batch 64 \
		--sample-every 200 --ckpt-every 200
	$(BUILD)/doppel gan sample --model $(GAN_DEMO_RUN) -n 64 --seed 2 --grid $(GAN_DEMO_RUN)/grid.png
	@echo "gan-demo: samples in $(GAN_DEMO_RUN)/samples/, grid $(GAN_DEMO_RUN)/grid.png, metrics $(GAN_DEMO_RUN)/metrics.csv"

# Speed against PyTorch and ONNX Runtime (docs/bench.md); installs the peers first. Not a test.
# BENCH_ARGS, e.g. BENCH_ARGS="--only meso_inf32,dcgan64 --reps 5" or "--json".
BENCH_ARGS ?=
bench: build
	-@scripts/install-peers.sh
	$(BUILD)/doppel bench $(BENCH_ARGS)

# libFuzzer targets (fuzz/, docs/security.md), built with clang + ASan + UBSan in $(FUZZ_BUILD), then each run for
# FUZZ_SECONDS from the seeds in fuzz/corpus/ (FUZZ_TARGETS="image idx" picks some). CI runs 30 s each.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz-build:
	@scripts/install-deps.sh test
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DDP_FUZZ=ON -DDP_BUILD_TESTS=OFF $(CMAKE_FLAGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_all

fuzz: fuzz-build
	scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Rewrites the committed seeds from doppel's own writers (fuzz/gen_corpus.c).
fuzz-corpus: fuzz-build
	$(FUZZ_BUILD)/fuzz/fuzz_gen fuzz/corpus .

# The main paths under valgrind memcheck (definite/indirect leaks and invalid accesses fail it).
VALGRIND_BUILD ?= build-valgrind
valgrind:
	@scripts/install-deps.sh test
	cmake -S . -B $(VALGRIND_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)
	cmake --build $(VALGRIND_BUILD) -j $(JOBS)
	scripts/valgrind.sh $(VALGRIND_BUILD)

# The whole test suite under valgrind memcheck (slow; VALGRIND_TESTS=REGEX picks tests; docs/security.md).
VALGRIND_TESTS ?=
valgrind-suite:
	@scripts/install-deps.sh test
	cmake -S . -B $(VALGRIND_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)
	cmake --build $(VALGRIND_BUILD) -j $(JOBS)
	scripts/valgrind.sh --suite $(VALGRIND_BUILD) '$(VALGRIND_TESTS)'

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')
