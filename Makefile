# slotctl — see README.md. `make test` and `make demo` install what is missing first.
SWIFT ?= swift
SHELL := /bin/bash
EMBEDDED_FLAGS = -enable-experimental-feature Embedded -no-allocations -wmo -parse-as-library \
                 -target x86_64-unknown-linux-gnu
CORE_SOURCES = $(wildcard Sources/SlotCore/*.swift)
BUILD_DIR = .build/embedded

.PHONY: all deps deps-qemu deps-rauc build release static test test-unit test-packaging test-qemu test-faults test-lock-mutation test-rauc test-install test-deb deb install check-model check-model-deep check-model-conformance test-asan demo bench fuzz check-embedded embedded test-embedded clean

all: build

deps:
	@bash scripts/install-deps.sh

deps-qemu:
	@bash scripts/install-deps.sh qemu

deps-rauc:
	@bash scripts/install-deps.sh rauc

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# A statically linked slotctl with the full Swift runtime: .build/static/release/slotctl.
# What an initramfs carries is the Embedded build (make embedded, below); this one stays
# for comparison (make bench) and for a toolchain without the Embedded stdlib.
static: deps
	$(SWIFT) build -c release --static-swift-stdlib -Xswiftc -static-executable --build-path .build/static

# slotctl in Embedded Swift, from the same sources (spec/embedded.md), static and dynamic:
# .build/embedded/static/slotctl and .build/embedded/dynamic/slotctl.
embedded: deps
	@bash scripts/build-embedded.sh

# The interop and CLI suites (real sgdisk, cgpt, swtpm, veritysetup, openssl) against
# both Embedded binaries: the same tests, given the binary's path.
test-embedded: deps embedded
	$(SWIFT) build --build-tests
	SLOTCTL_BIN=$(CURDIR)/.build/embedded/static/slotctl $(SWIFT) test --skip-build --filter InteropTests
	SLOTCTL_BIN=$(CURDIR)/.build/embedded/dynamic/slotctl $(SWIFT) test --skip-build --filter InteropTests

# Every test: the Swift suites (core, flows, interop with the real tools, CLI), the
# static checks of packaging/, the QEMU boot test, the device-mapper fault test and the
# RAUC backend test.
test: test-unit test-embedded test-packaging test-qemu test-faults test-lock-mutation test-rauc test-install test-deb check-model check-model-conformance

test-unit: deps check-embedded
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# Shell syntax (busybox ash), systemd ordering, config reading of packaging/.
test-packaging: deps-qemu
	bash Tests/packaging/check.sh

# Boots Debian's kernel under QEMU (TCG) through the update story, once for each
# initramfs packaging/ supports: mkinitramfs with the initramfs-tools hook (ten boots),
# dracut with the 90slotctl module in its systemd mode and in its shell mode (seven boots
# each), and the kexec boot (spec/kexec.md: the initramfs-tools one as stage-0, each
# slot's own kernel started from its verified root; seven boots). Tests/qemu/boot-test.sh;
# about 11 minutes here. Console logs stay in .build/qemu-test/<initramfs>/logs.
QEMU_INITRAMFS = initramfs-tools dracut dracut-shell kexec
test-qemu: deps deps-qemu embedded
	@failed=""; for i in $(QEMU_INITRAMFS); do bash Tests/qemu/boot-test.sh $$i || failed="$$failed $$i"; done; \
	  if [ -n "$$failed" ]; then echo "test-qemu failed:$$failed"; exit 1; fi

# Real device-mapper fault targets (error, flakey, delay) under slotctl, inside Debian's
# kernel under QEMU (the host kernel may have no device-mapper): Tests/qemu/fault-test.sh,
# about 30 s. A table that cannot be created fails the test.
test-faults: deps deps-qemu embedded
	bash Tests/qemu/fault-test.sh

# slotctl as RAUC's custom bootloader backend (packaging/rauc, spec/rauc.md), with Debian's
# rauc 1.8: the handler alone, then rauc bundle/service/install/status on a loop device
# (Tests/rauc/rauc-test.sh, about 20 s, as root).
test-rauc: deps deps-rauc build
	SLOTCTL_BIN=$(CURDIR)/.build/debug/slotctl bash Tests/rauc/rauc-test.sh

# ConcurrencyTests must fail against a slotctl built without its disk lock
# (Tests/mutation/lock-removed.sh; about a minute): the proof that they can.
test-lock-mutation: deps
	bash Tests/mutation/lock-removed.sh

# The A/B policy model-checked with SPIN (spec/model/README.md): exhaustive for 2 and 3
# slots with power cuts between any two writes, about 25 s.
check-model: deps
	bash Tests/model/check-model.sh

# Random model traces replayed on the real slotctl with power cuts at the same writes,
# compared after every step (cgpt show, status --json, counters; about 40 s).
check-model-conformance: deps build
	SLOTCTL_BIN=$(CURDIR)/.build/debug/slotctl bash Tests/model/conformance.sh

# Larger bounds (about 6 minutes) and a thousand replayed traces (about 20 minutes).
check-model-deep: deps build
	bash Tests/model/check-model.sh --deep
	MODEL_TRACES=1000 SLOTCTL_BIN=$(CURDIR)/.build/debug/slotctl bash Tests/model/conformance.sh

# What a device needs, in the places the README names: the static binary (stripped),
# packaging/ (hook, dracut module, units, boot.sh, confirm, sysvinit, RAUC backend), the
# man page and a bash completion made from the command grammar. scripts/install.sh.
PREFIX ?= /usr
DESTDIR ?=
install: embedded
	@bash scripts/install.sh "$(DESTDIR)" "$(PREFIX)" .build/embedded/static/slotctl

# make install into a scratch root, its file list against the README, the man page
# through groff's lint and the completion through bash (Tests/packaging/install-test.sh).
test-install: embedded
	bash Tests/packaging/install-test.sh

# A Debian package of the static binary (scripts/make-deb.sh, debian/): .build/deb/.
deb: embedded
	@bash scripts/make-deb.sh .build/embedded/static/slotctl .build/deb

# The package through lintian and man, then installed, rebuilt into the initramfs and
# removed on this host for real (Tests/packaging/deb-test.sh; needs root).
test-deb: deps deps-qemu deb
	bash Tests/packaging/deb-test.sh

demo: build
	@bash scripts/demo.sh

# Benchmarks against cgpt, openssl, sha256sum and veritysetup (a few minutes; not a
# test: it asserts nothing). BENCH_QUICK=1 for a small smoke run.
bench: embedded static
	@command -v hyperfine >/dev/null || true
	@dpkg-query -W gcc cpio zstd cryptsetup-bin >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq gcc cpio zstd cryptsetup-bin >/dev/null)
	python3 bench/bench.py

# The pure core must compile in Embedded Swift with no heap allocations (spec/architecture.md).
check-embedded:
	@mkdir -p $(BUILD_DIR)
	swiftc $(EMBEDDED_FLAGS) -module-name SlotCore -c $(CORE_SOURCES) -o $(BUILD_DIR)/SlotCore.o
	@echo "check-embedded: SlotCore compiles in Embedded Swift with -no-allocations"

clean:
	rm -rf .build

# libFuzzer targets for the parsers of untrusted bytes (GPT header and entries, signed
# descriptor/footer/stream header, TPM responses, the config file), each run FUZZ_SECONDS, seeded from
# Fixtures/make-fuzz-corpus.sh. A crash stops with its input in .build/fuzz/.
FUZZ_SECONDS ?= 20
# The config file's parser (Sources/slotctl/Config.swift) is compiled into its target
# beside the core.
FUZZ_TARGETS = GPT Image TPM Config
FUZZ_EXTRA_Config = Sources/slotctl/Config.swift
fuzz: deps build
	@mkdir -p .build/fuzz
	@rm -rf .build/fuzz/corpus && bash Fixtures/make-fuzz-corpus.sh .build/fuzz/corpus .build/debug/slotctl
	@for t in $(FUZZ_TARGETS); do \
	  extra=""; [ $$t = Config ] && extra="$(FUZZ_EXTRA_Config)"; \
	  swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name SlotCore $(CORE_SOURCES) $$extra Fuzz/Fuzz$$t.swift \
	    -o .build/fuzz/fuzz-$$t 2> >(grep -v "Cannot export local symbol\|ignoring import" >&2) || exit 1; \
	done
	@for t in $(FUZZ_TARGETS); do \
	  c=$$(echo $$t | tr A-Z a-z); mkdir -p .build/fuzz/work-$$c; \
	  echo "fuzz-$$t: $(FUZZ_SECONDS) s"; \
	  SWIFT_BACKTRACE=enable=no .build/fuzz/fuzz-$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=.build/fuzz/crash-$$c- .build/fuzz/work-$$c .build/fuzz/corpus/$$c 2>&1 \
	    | grep -E "stat::number_of_executed_units|ERROR|SUMMARY|Done" ; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

# The whole suite under AddressSanitizer (and LeakSanitizer), slotctl itself included.
test-asan: deps
	$(SWIFT) build --build-tests --sanitize=address --build-path .build/asan 2> >(grep -v "Cannot export local symbol" >&2)
	SLOTCTL_BIN=$(CURDIR)/.build/asan/debug/slotctl SWIFT_BACKTRACE=enable=no \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/Fixtures/lsan.supp \
	  $(SWIFT) test --skip-build --sanitize=address --build-path .build/asan
