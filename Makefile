# slotctl — see README.md. `make test` and `make demo` install what is missing first.
SWIFT ?= swift
EMBEDDED_FLAGS = -enable-experimental-feature Embedded -no-allocations -wmo -parse-as-library \
                 -target x86_64-unknown-linux-gnu
CORE_SOURCES = $(wildcard Sources/SlotCore/*.swift)
BUILD_DIR = .build/embedded

.PHONY: all deps build release test demo check-embedded clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

test: deps check-embedded
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

demo: build
	@bash scripts/demo.sh

# The pure core must compile in Embedded Swift with no heap allocations (BRIEF section 5).
check-embedded:
	@mkdir -p $(BUILD_DIR)
	swiftc $(EMBEDDED_FLAGS) -module-name SlotCore -c $(CORE_SOURCES) -o $(BUILD_DIR)/SlotCore.o
	@echo "check-embedded: SlotCore compiles in Embedded Swift with -no-allocations"

clean:
	rm -rf .build
