# module-ingest — one top-level Makefile, out-of-tree build.
#
#   make            build everything into build/
#   make test       deps, build, unit tests (plain + ASan/UBSan), fuzz smoke, integration
#   make verify-units  check run/systemd/ (systemd-analyze verify where it exists)
#   make run        deps, build, run the supervised pipeline on run/ingest.ini
#   make bench      deps, build, start the pipeline and load it (bench/run)
#   make deps       install missing Debian packages (root) or print the apt-get line
#   make clean
#
# V=1 for verbose output, SAN=1 to build with AddressSanitizer + UBSan into
# build-asan/, CC=clang to build with clang.

.DELETE_ON_ERROR:
.SUFFIXES:

CC      ?= cc
SAN     ?= 0
ifeq ($(SAN),1)
BUILD   ?= build-asan
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD   ?= build
SANFLAGS :=
endif

WARN     := -Wall -Wextra -Werror -Wstrict-prototypes -Wmissing-prototypes -Wshadow -Wno-unused-parameter
# error messages are cut to their buffers on purpose; clang 14 lacks the flag
ifeq ($(findstring clang,$(shell $(CC) --version 2>/dev/null | head -1)),)
WARN     += -Wno-format-truncation
endif
CFLAGS   ?= -O2 -g
CFLAGS   += $(WARN) -std=gnu11 -pthread $(SANFLAGS)
CPPFLAGS += -D_GNU_SOURCE -I. -I/usr/include/iniparser -MMD -MP
LDFLAGS  += -pthread $(SANFLAGS)
LDLIBS   := -liniparser -lsodium -ljansson -lsqlite3 -lcurl -lcrypto -lnats -lz

ifeq ($(V),1)
Q :=
else
Q := @
endif

# Debian packages the build, the tests and `make run` need.
DEB_PKGS := build-essential clang llvm libbpf-dev zlib1g-dev libsodium-dev \
	libiniparser-dev libcmocka-dev libjansson-dev libsqlite3-dev sqlite3 libcurl4-openssl-dev libssl-dev \
	libnats-dev nats-server \
	pkg-config python3 \
	python3-pytest python3-cryptography libclang-rt-14-dev bpftool jq procps util-linux

LIB_SRC := $(sort $(wildcard common/*.c shm/*.c client/mi_client.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIB     := $(BUILD)/libmi.a

# binary name -> sources (besides libmi.a)
BINS := ingestd flusherd sinkd ingest-stats mi-send mi-load mi-fsync-probe mi-udp-flood mi-keys mi-query
SRC_ingestd      := $(sort $(wildcard ingestd/*.c))
SRC_flusherd     := $(sort $(wildcard flusherd/*.c))
# sinkd --backfill reads data/meta's checkpoint when no pipeline runs
SRC_sinkd        := $(sort $(wildcard sinkd/*.c)) flusherd/ckpt.c
SRC_ingest-stats := run/ingest-stats.c
SRC_mi-send      := client/mi_send.c
SRC_mi-load      := bench/mi_load.c
SRC_mi-fsync-probe := bench/fsync_probe.c
SRC_mi-udp-flood := bench/udp_flood.c
SRC_mi-keys      := run/mi_keys.c
# payloads come from the log through sinkd's reader
SRC_mi-query     := run/mi_query.c run/query_out.c sinkd/reader.c

# the daemons' modules (not their main) are unit-tested too
TESTLIB_SRC := $(filter-out %/main.c,$(sort $(wildcard flusherd/*.c sinkd/*.c)))
TESTLIB_OBJ := $(TESTLIB_SRC:%.c=$(BUILD)/obj/%.o)

UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

all: $(BINS:%=$(BUILD)/bin/%) $(UNIT_BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

define bin_rule
$(BUILD)/bin/$(1): $$(SRC_$(1):%.c=$$(BUILD)/obj/%.o) $$(LIB)
	@mkdir -p $$(@D)
	@$$(if $$(Q),echo "  LD      $$@")
	$$(Q)$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach b,$(BINS),$(eval $(call bin_rule,$(b))))

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(TESTLIB_OBJ) $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

# ---- fuzzing (clang libFuzzer + ASan/UBSan), always its own build dir ----
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build-fuzz/%)
FUZZ_CFLAGS := -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -std=gnu11 -D_GNU_SOURCE \
	-I. -I/usr/include/iniparser $(filter-out -Wno-format-truncation,$(WARN))
FUZZ_TIME ?= 20
comma := ,
# objects are built once for every target (libFuzzer's main only at link)
FUZZ_OBJ_CFLAGS = $(subst -fsanitize=fuzzer$(comma),-fsanitize=fuzzer-no-link$(comma),$(FUZZ_CFLAGS)) -MMD -MP
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=build-fuzz/obj/%.o)
# targets that drive the server link ingestd's modules but main.c (and
# worker.c, which fuzz_handshake.c includes for its static functions)
FUZZ_INGESTD_OBJ := $(patsubst %.c,build-fuzz/obj/%.o,$(filter-out ingestd/main.c ingestd/worker.c,$(SRC_ingestd)))

build-fuzz/obj/%.o: %.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  FUZZCC  $<")
	$(Q)clang $(FUZZ_OBJ_CFLAGS) -c -o $@ $<

$(FUZZ_BIN): build-fuzz/%: build-fuzz/obj/tests/fuzz/%.o $(FUZZ_LIB_OBJ)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)clang $(FUZZ_CFLAGS) -o $@ $^ $(LDLIBS) -pthread

build-fuzz/fuzz_handshake: $(FUZZ_INGESTD_OBJ)

fuzz: $(FUZZ_BIN)
	$(Q)for f in $(FUZZ_BIN); do n=$$(basename $$f); \
		mkdir -p tests/fuzz/corpus-run/$$n; \
		echo "  RUN     $$n ($(FUZZ_TIME)s)"; \
		$$f -max_total_time=$(FUZZ_TIME) -timeout=5 -print_final_stats=0 \
		    tests/fuzz/corpus-run/$$n tests/fuzz/corpus/$$n >build-fuzz/$$n.log 2>&1 \
		  || { tail -40 build-fuzz/$$n.log; exit 1; }; \
		grep -E '^(#[0-9]+ *DONE|Done)' build-fuzz/$$n.log | tail -1; \
	done

# ---- bpf ----
# bpf/filter.bpf.c -> <build>/bpf/filter.bpf.o (clang -target bpf, BTF kept)
# -> <build>/bpf/filter.skel.h (bpftool gen skeleton) -> bpf/loader.c in
# libmi.a.  The fuzz build compiles $(LIB_SRC) into its own objects, so
# it gets its own skeleton in build-fuzz/bpf.  Appended here, after the
# rules that expand LIB_OBJ and the fuzz prerequisites, so those get
# bpf/loader.o explicitly.
BPF_CLANG  ?= clang
BPFTOOL    ?= $(or $(shell command -v bpftool 2>/dev/null),/usr/sbin/bpftool)
BPF_CFLAGS := -target bpf -mcpu=v3 -O2 -g -Wall -Wextra -Werror \
	-I/usr/include/$(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
BPF_DIRS   := $(sort $(BUILD) build-fuzz)

$(BPF_DIRS:%=%/bpf/filter.bpf.o): %/bpf/filter.bpf.o: bpf/filter.bpf.c bpf/filter.h bpf/crc_table.h
	@mkdir -p $(@D)
	@$(if $(Q),echo "  BPF     $@")
	$(Q)$(BPF_CLANG) $(BPF_CFLAGS) -c -o $@ $<

$(BPF_DIRS:%=%/bpf/filter.skel.h): %/bpf/filter.skel.h: %/bpf/filter.bpf.o
	@$(if $(Q),echo "  SKEL    $@")
	$(Q)$(BPFTOOL) gen skeleton $< name filter_bpf > $@

LIB_SRC += bpf/loader.c
LIB_OBJ += $(BUILD)/obj/bpf/loader.o
$(LIB): $(BUILD)/obj/bpf/loader.o
$(BUILD)/obj/bpf/loader.o: $(BUILD)/bpf/filter.skel.h
$(BUILD)/obj/bpf/loader.o: CPPFLAGS += -I$(BUILD)/bpf
$(FUZZ_BIN): build-fuzz/obj/bpf/loader.o
build-fuzz/obj/bpf/loader.o: build-fuzz/bpf/filter.skel.h
FUZZ_CFLAGS += -Ibuild-fuzz/bpf
LDLIBS   += -lbpf -lelf
DEB_PKGS += libelf-dev
# ---- end bpf ----

# ---- entry points ----
deps:
	$(Q)missing=$$(for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "  DEPS    installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "missing Debian packages; run as root:"; \
		echo "  apt-get install -y" $$missing; exit 1; \
	fi

# test-only servers from npm (tests/servers/package.json, its lock file):
# the S3-compatible store the cloud sink's tests upload to
SERVERS_STAMP := tests/servers/node_modules/.package-lock.json
servers: $(SERVERS_STAMP)
$(SERVERS_STAMP): tests/servers/package.json tests/servers/package-lock.json
	$(Q)command -v npm >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then echo "  DEPS    installing: nodejs npm"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
		else echo "npm is missing; run as root: apt-get install -y nodejs npm"; exit 1; fi; }
	@echo "  NPM     tests/servers"
	$(Q)npm ci --prefix tests/servers --no-audit --no-fund --loglevel=error >/dev/null
	$(Q)touch $@

unit: $(UNIT_BIN)
	$(Q)fail=0; for t in $(UNIT_BIN); do \
		echo "  UNIT    $$t"; $$t || fail=1; done; exit $$fail

unit-asan:
	$(Q)$(MAKE) --no-print-directory SAN=1 unit

integration: all servers
	$(Q)MI_BUILD=$(abspath $(BUILD)) /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration

# the real binaries under ASan + UBSan; a sanitizer report in any stage's
# output fails the test (see tests/integration/conftest.py)
integration-asan: servers
	$(Q)$(MAKE) --no-print-directory SAN=1 all
	$(Q)MI_BUILD=$(abspath build-asan) /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration

clang:
	$(Q)$(MAKE) --no-print-directory CC=clang BUILD=build-clang all

# the systemd units: systemd-analyze verify on copies whose ExecStart= points
# at $(BUILD)/bin (verify wants the binaries to exist; skipped, saying so,
# without systemd-analyze), and the order and names verify does not check
verify-units: $(BUILD)/bin/ingestd $(BUILD)/bin/flusherd $(BUILD)/bin/sinkd
	$(Q)run/systemd/verify $(abspath $(BUILD)/bin) $(abspath $(BUILD)/systemd)

test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory verify-units
	$(Q)$(MAKE) --no-print-directory unit
	$(Q)$(MAKE) --no-print-directory clang
	$(Q)$(MAKE) --no-print-directory unit-asan
	$(Q)$(MAKE) --no-print-directory fuzz
	$(Q)$(MAKE) --no-print-directory integration
	$(Q)$(MAKE) --no-print-directory integration-asan

run: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)exec run/supervise -c run/ingest.ini

bench: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)bench/run

clean:
	rm -rf build build-asan build-clang build-fuzz tests/fuzz/corpus-run

.PHONY: servers all deps unit unit-asan integration integration-asan clang test run bench clean fuzz verify-units

-include $(shell find $(BUILD) build-fuzz/obj -name '*.d' 2>/dev/null)
