# libfaas - plain make, no autotools.
#
#   make            the libraries: build/libfaas.a, build/libfaas.so.0
#   make test       every cmocka suite
#   make check      the suites under ASan+UBSan, TSan and valgrind memcheck
#   make examples   the example hosts;  make run: the reference gateway on its demo
#   make bench      benchmarks, each figure next to a floor from the same run
#   make install    PREFIX=/usr/local DESTDIR=  (and make uninstall)
#   make faas-bootstrap  build/faas-bootstrap, the Lambda runtime for native
#                   handlers (built by make too); BOOTSTRAP_STATIC=1 links
#                   libevent, jansson and libsodium into it as well
#   make cross-test ARCH=arm64|armhf   cross build into build/cross-ARCH, suites under qemu-user

# The version is written once, in include/faas.h (FAAS_VERSION_MAJOR,
# _MINOR, _PATCH).
faas_version = $(shell sed -n 's/^\#define FAAS_VERSION_$(1) \([0-9][0-9]*\)$$/\1/p' include/faas.h)
VERSION_MAJOR := $(call faas_version,MAJOR)
VERSION       := $(VERSION_MAJOR).$(call faas_version,MINOR).$(call faas_version,PATCH)

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
PCDIR   ?= $(LIBDIR)/pkgconfig
DESTDIR ?=

CC      ?= cc
B       ?= build
OPT     ?= -O2
SAN     ?=

# pkg-config runs when the Makefile is read. Targets that may install the
# dependencies (test, run, check, bench, fuzz) therefore install them first
# and then build in a fresh make, which reads the flags anew; the plain build
# targets never install anything and stop with a clear message instead.
# WITH_SQLITE=0 leaves the SQLite durable engine out (lib/durable_sqlite.c):
# nothing links libsqlite3, and a "sqlite:" URL fails at faas_runtime_new.
WITH_SQLITE ?= 1
PKGS        := libevent jansson libsodium
ifeq ($(WITH_SQLITE),1)
PKGS        += sqlite3
SQLITE_PC   := , sqlite3
else
WITH_SQLITE := 0
SQLITE_PC   :=
endif
# WITH_REDIS=0 leaves the Redis durable engine out (lib/durable_redis.c):
# nothing links libhiredis, and a "redis://" URL fails at faas_runtime_new.
WITH_REDIS  ?= 1
ifeq ($(WITH_REDIS),1)
PKGS        += hiredis
REDIS_PC    := , hiredis
else
WITH_REDIS  := 0
REDIS_PC    :=
endif
DEP_CFLAGS  := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
DEP_LIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)
DEPS_FOUND  := $(shell pkg-config --exists $(PKGS) 2>/dev/null && echo yes)

WARN    := -Wall -Wextra -Wshadow -Wconversion -Wsign-conversion -Wstrict-prototypes \
           -Wmissing-prototypes -Wpointer-arith -Wformat=2 -Wundef -Werror
CFLAGS  ?= $(OPT) -g
# _FILE_OFFSET_BITS=64: on 32-bit targets (armhf) stat and readdir would
# otherwise fail with EOVERFLOW on big files and on the 64-bit directory
# offsets of ext4 under a 64-bit kernel. No libevent call of the library
# takes an off_t, so its ABI is untouched; a no-op on 64-bit targets.
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -DFAAS_WITH_SQLITE=$(WITH_SQLITE) \
              -DFAAS_WITH_REDIS=$(WITH_REDIS) -pthread \
              $(WARN) $(CFLAGS) $(SAN) -Iinclude -Ilib $(DEP_CFLAGS)
LIB_CFLAGS := $(ALL_CFLAGS) -fPIC -fvisibility=hidden
LDLIBS_ALL := $(DEP_LIBS) -pthread -ldl
LDFLAGS ?=

LIB_SRCS  := $(wildcard lib/*.c)
LIB_OBJS  := $(LIB_SRCS:lib/%.c=$(B)/obj/%.o)
TEST_SRCS := $(wildcard tests/test_*.c)
TESTS     := $(TEST_SRCS:tests/%.c=$(B)/tests/%)
EXAMPLES  := $(patsubst examples/%/main.c,$(B)/examples/%,$(wildcard examples/*/main.c))
BENCHES   := $(patsubst tests/bench/%.c,$(B)/bench/%,$(wildcard tests/bench/bench_*.c))
# Functions in shared objects that the suites load (faas_register_library).
TEST_SOS  := $(patsubst tests/so/%.c,$(B)/tests/so/%.so,$(wildcard tests/so/*.c))

# Quiet by default; `make V=1` shows each command.
ifeq ($(V),1)
Q :=
else
Q := @
endif

STATIC := $(B)/libfaas.a
SHARED := $(B)/libfaas.so.$(VERSION)
SONAME := libfaas.so.$(VERSION_MAJOR)

.DEFAULT_GOAL := all

FORCE:

.PHONY: fuzz FORCE all deps depcheck lib test test-run check check-asan check-tsan \
        check-valgrind examples run run-gateway bench bench-run fuzz-run install uninstall \
        clean tests-build cross-test faas-bootstrap sdk-test

all: lib faas-bootstrap

deps:
	@sh tools/deps.sh

# Plain builds (make, make lib, make examples, make install) never call
# apt-get: packagers build as non-root without dpkg.
depcheck:
ifneq ($(DEPS_FOUND),yes)
	@echo "libfaas: pkg-config finds no $(PKGS)." >&2
	@echo "Install them (Debian: libevent-dev libjansson-dev libsodium-dev libsqlite3-dev libhiredis-dev pkg-config)," >&2
	@echo "or run 'make deps' (or 'make test', which installs what is missing)." >&2
	@exit 1
endif

lib: depcheck $(STATIC) $(SHARED) $(B)/libfaas.pc

$(B)/obj/%.o: lib/%.c $(wildcard lib/*.h) include/faas.h | depcheck
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(LIB_CFLAGS) -c $< -o $@

$(STATIC): $(LIB_OBJS)
	@rm -f $@
	@echo "  AR      $@"
	$(Q)$(AR) rcs $@ $^

$(SHARED): $(LIB_OBJS)
	@echo "  LD      $@"
	$(Q)$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined $(SAN) $(LDFLAGS) -o $@ $^ $(LDLIBS_ALL)
	$(Q)ln -sf libfaas.so.$(VERSION) $(B)/$(SONAME)
	$(Q)ln -sf $(SONAME) $(B)/libfaas.so

# The generated .pc follows PREFIX: a stamp of the variables forces a rebuild
# when `make install PREFIX=...` differs from the last build.
PC_VARS := $(PREFIX)|$(LIBDIR)|$(INCDIR)|$(VERSION)|$(WITH_SQLITE)|$(WITH_REDIS)
$(B)/pc.vars: FORCE
	@mkdir -p $(B)
	@echo '$(PC_VARS)' | cmp -s - $@ || echo '$(PC_VARS)' > $@

$(B)/libfaas.pc: pkgconfig/libfaas.pc.in Makefile $(B)/pc.vars
	@mkdir -p $(B)
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCDIR@|$(INCDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@SQLITE@|$(SQLITE_PC)|g' -e 's|@REDIS@|$(REDIS_PC)|g' $< > $@

# Tests link the static library so they can reach lib/ internals. They load
# the shared objects of their own tree (TEST_B): a cross build's are for
# its target.
$(B)/tests/%: tests/%.c tests/testutil.h tests/tu_http.h tests/tu_durable.h \
             tests/redis_util.h $(STATIC)
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	$(Q)$(CC) $(ALL_CFLAGS) -Itests -DTEST_B='"$(B)"' -rdynamic $(LDFLAGS) -o $@ $< $(STATIC) \
	    $(CMOCKA_LIBS) $(LDLIBS_ALL)

$(B)/examples/%: examples/%/main.c $(STATIC)
	@mkdir -p $(dir $@)
	@echo "  EXAMPLE $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(STATIC) $(LDLIBS_ALL)

# examples/faas-gateway, the reference host: several sources (this rule
# wins over the one-file rule above), and its demo's functions as shared
# objects in $(B)/examples/faas-gateway-functions/. The objects do not link
# libfaas: their faas_ctx_* calls resolve from the program that loads them,
# which exports the library's public symbols (-rdynamic; --whole-archive
# so that every one is there, called by the host or not).
GW_DIR  := examples/faas-gateway
GW_SRCS := $(wildcard $(GW_DIR)/*.c)
GW_HDRS := $(wildcard $(GW_DIR)/*.h)
GW_SOS  := $(patsubst $(GW_DIR)/functions/%.c,$(B)/examples/faas-gateway-functions/%.so,\
           $(wildcard $(GW_DIR)/functions/*.c))
GW_LINK := -rdynamic -Wl,--whole-archive $(STATIC) -Wl,--no-whole-archive

$(B)/examples/faas-gateway: $(GW_SRCS) $(GW_HDRS) $(STATIC) | $(GW_SOS)
	@mkdir -p $(dir $@)
	@echo "  EXAMPLE $@"
	$(Q)$(CC) $(ALL_CFLAGS) -I$(GW_DIR) $(LDFLAGS) -o $@ $(GW_SRCS) $(GW_LINK) $(LDLIBS_ALL)

$(B)/examples/faas-gateway-functions/%.so: $(GW_DIR)/functions/%.c include/faas.h
	@mkdir -p $(dir $@)
	@echo "  SO      $@"
	$(Q)$(CC) $(ALL_CFLAGS) -fPIC -shared $(LDFLAGS) -o $@ $< $(shell pkg-config --libs jansson 2>/dev/null)

# faas-bootstrap, the Lambda custom runtime for native handlers
# (bootstrap/). Handlers' shared objects resolve faas_ctx_* from it, as the
# gateway's do: libfaas is linked in whole, its public symbols exported, so
# the program runs as installed with no LD_LIBRARY_PATH. BOOTSTRAP_STATIC=1
# links the dependencies' archives too (jansson whole: handlers call it),
# leaving only libc for the machine to provide: the build for Lambda.
# In a sanitizer tree it is built without $(SAN), from the sources: the
# suites run it as a COMMAND function under a memory limit (RLIMIT_DATA)
# that leaves no room for the sanitizers' shadow memory.
BOOT      := $(B)/faas-bootstrap
BOOT_SRCS := $(wildcard bootstrap/*.c)
BOOT_HDRS := $(wildcard bootstrap/*.h)
ifeq ($(BOOTSTRAP_STATIC),1)
BOOT_DEPS := -Wl,-Bstatic -Wl,--whole-archive -ljansson -Wl,--no-whole-archive \
             $(shell pkg-config --static --libs libevent libsodium 2>/dev/null) \
             -Wl,-Bdynamic -pthread -ldl
else
BOOT_DEPS := $(LDLIBS_ALL)
endif
ifeq ($(SAN),)
BOOT_IN   := $(STATIC)
BOOT_LINK := $(GW_LINK)
BOOT_FLAGS := $(LIB_CFLAGS)
else
BOOT_IN   := $(LIB_SRCS) $(wildcard lib/*.h)
BOOT_LINK := -rdynamic $(LIB_SRCS)
BOOT_FLAGS := $(filter-out $(SAN),$(LIB_CFLAGS))
endif

faas-bootstrap: depcheck $(BOOT)

$(BOOT): $(BOOT_SRCS) $(BOOT_HDRS) include/faas.h $(BOOT_IN)
	@mkdir -p $(dir $@)
	@echo "  PROGRAM $@"
	$(Q)$(CC) $(BOOT_FLAGS) -Ibootstrap $(LDFLAGS) -o $@ $(BOOT_SRCS) $(BOOT_LINK) $(BOOT_DEPS)

# The handlers test_bootstrap runs under it: built without $(SAN) as well.
BOOT_FNS := $(B)/tests/runtimes/boot_fns.so
$(BOOT_FNS): tests/runtimes/boot_fns.c include/faas.h
	@mkdir -p $(dir $@)
	@echo "  SO      $@"
	$(Q)$(CC) $(filter-out $(SAN),$(ALL_CFLAGS)) -fPIC -shared $(LDFLAGS) -o $@ $< $(DEP_LIBS)

$(B)/tests/test_bootstrap $(B)/bench/bench_command: $(BOOT) $(BOOT_FNS)

# The gateway's config loader, tested with its own source and the demo's
# functions (found under $(B), from the top of the tree).
$(B)/tests/test_gateway_config: tests/test_gateway_config.c $(GW_DIR)/config.c $(GW_DIR)/config.h $(GW_DIR)/gw_text.c $(GW_DIR)/gw_text.h \
                                tests/testutil.h $(STATIC) | $(GW_SOS)
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	$(Q)$(CC) $(ALL_CFLAGS) -Itests -I$(GW_DIR) -DGW_FUNCTIONS_DIR='"$(B)/examples/faas-gateway-functions"' \
	    $(LDFLAGS) -o $@ $< $(GW_DIR)/config.c $(GW_LINK) $(CMOCKA_LIBS) $(LDLIBS_ALL)

$(B)/bench/%: tests/bench/%.c tests/bench/bench.h $(STATIC)
	@mkdir -p $(dir $@)
	@echo "  BENCH   $@"
	$(Q)$(CC) $(ALL_CFLAGS) -Itests/bench -rdynamic $(LDFLAGS) -o $@ $< $(STATIC) $(LDLIBS_ALL)

$(B)/tests/so/%.so: tests/so/%.c include/faas.h
	@mkdir -p $(dir $@)
	@echo "  SO      $@"
	$(Q)$(CC) $(ALL_CFLAGS) -fPIC -shared $(LDFLAGS) -o $@ $< $(DEP_LIBS)

tests-build: $(TESTS) $(TEST_SOS)

test:
	@sh tools/deps.sh
	@$(MAKE) --no-print-directory test-run

# Suites run a second time on the SQLite engine (tools/run-tests.sh), and
# a third time on a redis-server of their own. test_batch is not among them:
# it checks how records group into batches, which on an engine follows the
# commits (test_durable_map tests mappings on one).
ifeq ($(WITH_SQLITE),1)
DURABLE_SUITES ?= test_async test_drain test_invoke_api test_metrics test_idem
endif
ifeq ($(WITH_REDIS),1)
REDIS_SUITES ?= test_async test_drain test_invoke_api test_metrics test_idem
endif

test-run: lib tests-build
	@DURABLE_SUITES="$(DURABLE_SUITES)" REDIS_SUITES="$(REDIS_SUITES)" \
	    sh tools/run-tests.sh "$(RUNNER)" $(TESTS)

# Sanitizer builds live in their own trees so they never mix with build/.
check:
	@WITH_CHECK_TOOLS=1 sh tools/deps.sh
	$(MAKE) --no-print-directory check-asan
	$(MAKE) --no-print-directory check-tsan
	$(MAKE) --no-print-directory check-valgrind

check-asan:
	ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="print_stacktrace=1" \
	    $(MAKE) --no-print-directory B=build/asan OPT=-O1 \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	    test-run

check-tsan:
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	    $(MAKE) --no-print-directory B=build/tsan OPT=-O1 SAN="-fsanitize=thread" test-run

check-valgrind:
	$(MAKE) --no-print-directory B=build/valgrind OPT=-O0 \
	    RUNNER="valgrind -q --leak-check=full --show-leak-kinds=definite,indirect,possible \
	    --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99 \
	    --track-fds=no --child-silent-after-fork=yes" test-run

examples: lib $(EXAMPLES)

# The reference gateway on its demo config, in the foreground (Ctrl-C drains).
run:
	@sh tools/deps.sh
	@$(MAKE) --no-print-directory run-gateway

run-gateway: lib $(B)/examples/faas-gateway
	./$(B)/examples/faas-gateway $(GW_DIR)/demo.json

# Response streaming read by a real client: the AWS SDK for JavaScript v3
# (npm) against the gateway (tools/sdk-stream.sh; skipped without node).
sdk-test: lib $(B)/examples/faas-gateway
	@B=$(B) sh tools/sdk-stream.sh

# The C Lambda runtime of bench_command (and of test_command's keep-alive
# and trailer cases): a Runtime API client on one keep-alive connection.
CRT := $(B)/tests/runtimes/crt
# A cross build runs its suites under qemu-user, which cannot exec a target
# program: the runtime is then built for the host (tools/cross.sh).
CRT_CC ?= $(CC)

# Built without $(SAN): it is not what the sanitizers check, and the memory
# limit it runs under (RLIMIT_DATA) leaves no room for their shadow memory.
$(CRT): tests/runtimes/crt.c
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	$(Q)$(CRT_CC) -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(LDFLAGS) -o $@ $<

$(B)/tests/test_command $(B)/bench/bench_command: $(CRT)

bench:
	@sh tools/deps.sh
	@$(MAKE) --no-print-directory bench-run

bench-run: lib $(BENCHES) $(TEST_SOS) $(CRT) $(B)/examples/faas-gateway
	@for b in $(BENCHES); do echo "== $$b"; "$$b" || exit 1; done

# A cross build for an ARM board (Debian's cross compiler and multiarch
# libraries, installed like make deps does), its suites run under qemu-user
# with a time bound each: tools/cross.sh.
ARCH ?= arm64
cross-test:
	@WITH_CROSS=$(ARCH) sh tools/deps.sh
	@sh tools/cross.sh $(ARCH)

# libFuzzer targets (clang): each runs FUZZ_SECONDS from its seed corpus.
FUZZ_SECONDS ?= 30
FUZZ_CC      ?= clang
FUZZERS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))

build/fuzz/%: tests/fuzz/%.c $(LIB_SRCS) $(wildcard lib/*.h) include/faas.h
	@mkdir -p $(dir $@)
	@echo "  FUZZ    $@"
	$(Q)$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -DFAAS_WITH_SQLITE=$(WITH_SQLITE) \
	    -DFAAS_WITH_REDIS=$(WITH_REDIS) -g -O1 \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Iinclude -Ilib \
	    $(DEP_CFLAGS) -o $@ $< $(LIB_SRCS) \
	    $(LDLIBS_ALL)

fuzz:
	@WITH_FUZZ_TOOLS=1 sh tools/deps.sh
	@$(MAKE) --no-print-directory fuzz-run

fuzz-run: depcheck $(FUZZERS)
	@for f in $(FUZZERS); do \
	    n=$$(basename $$f); log=build/fuzz/$$n.log; mkdir -p build/fuzz/corpus-$$n; \
	    seeds=; [ -d tests/fuzz/corpus/$$n ] && seeds=tests/fuzz/corpus/$$n; \
	    echo "== $$n ($(FUZZ_SECONDS) s)"; \
	    if $$f -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=build/fuzz/$$n- \
	          build/fuzz/corpus-$$n $$seeds >$$log 2>&1; then \
	        grep -E "^Done|^#[0-9]+ *DONE" $$log | tail -n 1; \
	    else \
	        tail -n 40 $$log; echo "$$n: FAILED (input saved as build/fuzz/$$n-*)"; exit 1; \
	    fi; \
	done

install: lib faas-bootstrap
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PCDIR)
	install -m 755 $(BOOT) $(DESTDIR)$(BINDIR)/faas-bootstrap
	install -m 644 include/faas.h $(DESTDIR)$(INCDIR)/faas.h
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/libfaas.a
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/libfaas.so.$(VERSION)
	ln -sf libfaas.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libfaas.so
	install -m 644 $(B)/libfaas.pc $(DESTDIR)$(PCDIR)/libfaas.pc
	-[ -z "$(DESTDIR)" ] && command -v ldconfig >/dev/null && ldconfig || true

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/faas-bootstrap $(DESTDIR)$(INCDIR)/faas.h $(DESTDIR)$(LIBDIR)/libfaas.a \
	      $(DESTDIR)$(LIBDIR)/libfaas.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	      $(DESTDIR)$(LIBDIR)/libfaas.so $(DESTDIR)$(PCDIR)/libfaas.pc

clean:
	rm -rf build
