# slotctl — see README.md. `make test` and `make demo` install what is missing first.
SWIFT ?= swift
EMBEDDED_FLAGS = -enable-experimental-feature Embedded -no-allocations -wmo -parse-as-library \
                 -target x86_64-unknown-linux-gnu
CORE_SOURCES = $(wildcard Sources/SlotCore/*.swift)
BUILD_DIR = .build/embedded

.PHONY: all deps build release static test demo bench check-embedded clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# A statically linked slotctl (Swift runtime, libcrypto and libuuid included), as an
# initramfs wants it: .build/static/release/slotctl.
static: deps
	$(SWIFT) build -c release --static-swift-stdlib -Xswiftc -static-executable --build-path .build/static

test: deps check-embedded
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

demo: build
	@bash scripts/demo.sh

# Benchmarks against cgpt, openssl, sha256sum and veritysetup (a few minutes; not a
# test: it asserts nothing). BENCH_QUICK=1 for a small smoke run.
bench: static release
	@command -v hyperfine >/dev/null || true
	@dpkg-query -W valgrind cryptsetup-bin >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq valgrind cryptsetup-bin >/dev/null)
	python3 bench/bench.py

# The pure core must compile in Embedded Swift with no heap allocations (BRIEF section 5).
check-embedded:
	@mkdir -p $(BUILD_DIR)
	swiftc $(EMBEDDED_FLAGS) -module-name SlotCore -c $(CORE_SOURCES) -o $(BUILD_DIR)/SlotCore.o
	@echo "check-embedded: SlotCore compiles in Embedded Swift with -no-allocations"

clean:
	rm -rf .build
