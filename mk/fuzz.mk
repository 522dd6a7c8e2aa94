# mk/fuzz.mk - libFuzzer targets for the parsers, and the ThreadSanitizer run.
#
#   make fuzz       builds tests/fuzz/fuzz_*.c with clang -fsanitize=fuzzer,
#                   address,undefined into $(BUILD)/fuzz/, replays every input
#                   under tests/fuzz/regressions/<target>/, then fuzzes each
#                   target for FUZZ_SECONDS (default 20) on a copy of its seed
#                   corpus (tests/fuzz/corpus/<target>/ is never written).
#   make test-tsan  builds costmeshd with gcc -fsanitize=thread in build/tsan
#                   and runs the integration suite against it; fails on any
#                   "WARNING: ThreadSanitizer" in a server log.
#
# Both choose their own compiler and sanitizer: the outer CC, SANITIZER and
# CFLAGS (`make test` passes gcc ASan flags) do not reach them.
# A crash found by `make fuzz` is kept in $(BUILD)/fuzz/artifacts/<target>/;
# copy it to tests/fuzz/regressions/<target>/ to make it a regression test.

FUZZ_SECONDS ?= 20
FUZZ_CC := clang
FUZZ_TARGETS := heartbeats money address policy price hbrow
FUZZ_DIR = $(BUILD)/fuzz
# The pure modules: no Redis, PostgreSQL or HTTP library needed.
FUZZ_LIB_SRC := server/error.c server/money.c server/timeutil.c server/address.c \
                server/routes.c server/buf.c server/policy.c server/codec.c server/hot_layout.c \
                server/pricing.c server/billing.c
FUZZ_CFLAGS := -std=c11 -g -O1 -Wall -Wextra -Wstrict-prototypes -Wwrite-strings -Wpointer-arith \
               -D_GNU_SOURCE -Iserver -Itests/fuzz \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_FLAGS := -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
FUZZ_BINS = $(patsubst %,$(FUZZ_DIR)/fuzz_%,$(FUZZ_TARGETS))

TEST_EXTRA += fuzz test-tsan

.PHONY: fuzz fuzz-build fuzz-deps test-tsan

# clang and its sanitizer/fuzzer runtime (Debian 12: clang, libclang-rt-14-dev).
fuzz-deps:
	@if command -v $(FUZZ_CC) >/dev/null 2>&1 && \
	    echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n){(void)d;(void)n;return 0;}' | \
	    $(FUZZ_CC) -x c -fsanitize=fuzzer -o /dev/null - >/dev/null 2>&1; then :; else \
	    echo "fuzz: installing clang and its fuzzer runtime"; \
	    SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	    $$SUDO apt-get update -q && $$SUDO apt-get install -y -q clang libclang-rt-14-dev; fi

fuzz-build: fuzz-deps $(FUZZ_BINS)

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_LIB_SRC) $(wildcard server/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(shell pkg-config --cflags json-c $(FUZZ_MORE_PKGS)) -o $@ $< $(FUZZ_LIB_SRC) \
	    $(FUZZ_MORE_SRC) $(shell pkg-config --libs json-c $(FUZZ_MORE_PKGS)) -lm

# The queue entry codec: hbrow.c hashes dedupe keys with auth.c, which needs
# OpenSSL's libcrypto (the other targets link without it).
FUZZ_HBROW_SRC := server/hbrow.c server/auth.c
$(FUZZ_DIR)/fuzz_hbrow: $(FUZZ_HBROW_SRC)
$(FUZZ_DIR)/fuzz_hbrow: FUZZ_MORE_SRC := $(FUZZ_HBROW_SRC)
$(FUZZ_DIR)/fuzz_hbrow: FUZZ_MORE_PKGS := libcrypto

# Each target: regressions first (libFuzzer runs the files it is given), then
# a bounded run on a scratch copy of the seed corpus.
fuzz: fuzz-build
	@failed=; for t in $(FUZZ_TARGETS); do \
	    bin=$(FUZZ_DIR)/fuzz_$$t; work=$(FUZZ_DIR)/work/$$t; art=$(FUZZ_DIR)/artifacts/$$t/; \
	    rm -rf $$work; mkdir -p $$work $$art; \
	    cp tests/fuzz/corpus/$$t/* $$work/; \
	    regs=$$(find tests/fuzz/regressions/$$t -type f ! -name '.*' 2>/dev/null | sort); \
	    if [ -n "$$regs" ]; then \
	        echo "fuzz: $$t: replaying $$(echo "$$regs" | wc -l) regression input(s)"; \
	        if ! $$bin -artifact_prefix=$$art $$regs > $(FUZZ_DIR)/$$t-regressions.log 2>&1; then \
	            grep -E 'Running: |invariant failed|ERROR: |runtime error:|SUMMARY' $(FUZZ_DIR)/$$t-regressions.log | tail -n 8; \
	            echo "fuzz: $$t: FAIL: a regression input crashes (log: $(FUZZ_DIR)/$$t-regressions.log)"; \
	            failed="$$failed $$t"; continue; \
	        fi; \
	    fi; \
	    echo "fuzz: $$t: $(FUZZ_SECONDS)s"; \
	    if ! $$bin $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$$art $$work \
	        > $(FUZZ_DIR)/$$t.log 2>&1; then \
	        tail -n 40 $(FUZZ_DIR)/$$t.log; \
	        echo "fuzz: $$t: FAIL: crash; input kept in $$art (copy it to tests/fuzz/regressions/$$t/)"; \
	        failed="$$failed $$t"; continue; \
	    fi; \
	    grep -E '^stat::number_of_executed_units' $(FUZZ_DIR)/$$t.log | tail -n 1; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: FAILED:$$failed"; exit 1; fi; \
	echo "fuzz: all $(words $(FUZZ_TARGETS)) targets clean ($(FUZZ_SECONDS)s each, regressions replayed)"

# ThreadSanitizer: its own build dir, so the objects never mix with ASan's.
# The harness counts ASan/UBSan/LSan lines but not TSan's, so the server
# logs are kept (CM_KEEP_DATA=1 in a private TMPDIR) and grepped here.
TSAN_BUILD := build/tsan
test-tsan:
	$(MAKE) BUILD=$(TSAN_BUILD) SANITIZER=thread WERROR= CFLAGS="-O1 -g" $(TSAN_BUILD)/costmeshd \
	    $(patsubst $(BUILD)/%,$(TSAN_BUILD)/%,$(INTEGRATION_DEPS))
	@tmp=$$(mktemp -d /tmp/cm-tsan.XXXXXX); rc=0; \
	TMPDIR=$$tmp CM_KEEP_DATA=1 TSAN_OPTIONS="halt_on_error=0:exitcode=66:second_deadlock_stack=1" \
	    python3 tests/integration/run.py --build $(TSAN_BUILD) || rc=$$?; \
	logs=$$(ls $$tmp/cmit-*/costmeshd-*.log 2>/dev/null); \
	n=$$(cat $$logs /dev/null | grep -c 'WARNING: ThreadSanitizer' || true); \
	if [ "$$n" -gt 0 ]; then \
	    echo "test-tsan: $$n ThreadSanitizer report(s):"; \
	    for f in $$logs; do grep -A 30 'WARNING: ThreadSanitizer' $$f | head -n 200; done; \
	    [ -d "$(TSAN_BUILD)/tsan-logs" ] && rm -rf $(TSAN_BUILD)/tsan-logs; mkdir -p $(TSAN_BUILD)/tsan-logs; \
	    cp $$logs $(TSAN_BUILD)/tsan-logs/ 2>/dev/null || true; \
	    echo "test-tsan: logs copied to $(TSAN_BUILD)/tsan-logs"; rc=1; \
	fi; \
	for d in $$tmp/cmit-*; do \
	    pg=$$d/pg; if [ -L $$pg ]; then t=$$(readlink $$pg); case $$t in /var/tmp/costmesh-pg-*) rm -rf $$t;; esac; fi; \
	done; rm -rf $$tmp; exit $$rc
