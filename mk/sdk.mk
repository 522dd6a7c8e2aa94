# mk/sdk.mk - the agent SDK (agent-sdk/): a C library agents link to report
# their AI cost to costmeshd. See docs/sdk.md.
#
#   make sdk        $(BUILD)/libcostmesh.a, $(BUILD)/libcostmesh.so (soname
#                   libcostmesh.so.$(SDK_MAJOR)), $(BUILD)/costmesh-uninstalled.pc
#                   and the example agent $(BUILD)/sdk_example_agent
#   make sdk-test   unit tests without a server (tests/sdk/unit.c), a check
#                   that the shared library exports exactly the API, and
#                   programs built through pkg-config against the build tree
#                   and against an install (tests/sdk/pkgconfig.sh)
#   make bench-sdk  cm_report ns/op (1 and 4 threads) and allocations per
#                   report, built with -O2 and no sanitizer in build/bench-sdk
#   make sdk-install  headers, libraries and a costmesh.pc for $(PREFIX)
#                   under $(DESTDIR)$(PREFIX)
#
# The integration tests (tests/integration/test_f_sdk.py) run
# $(BUILD)/sdk_driver: it is appended to INTEGRATION_DEPS.
# The SDK always builds with -Werror and -fvisibility=hidden; the user's
# CFLAGS and the SANITIZER flags are appended as for the server.

SDK_MAJOR := $(shell sed -n 's/^\#define CM_VERSION_MAJOR \([0-9]*\).*/\1/p' agent-sdk/include/costmesh.h)
SDK_VERSION := $(shell sed -n 's/^\#define CM_VERSION_STRING "\(.*\)".*/\1/p' agent-sdk/include/costmesh.h)
SDK_PKGS := libcurl json-c
SDK_SRC := $(sort $(wildcard agent-sdk/src/*.c))
SDK_OBJ = $(patsubst agent-sdk/src/%.c,$(BUILD)/sdk/obj/%.o,$(SDK_SRC))
SDK_CFLAGS = $(filter-out -Werror,$(WARN)) -Werror -fvisibility=hidden -fPIC -D_GNU_SOURCE \
	-Iagent-sdk/include -Iagent-sdk/src $(shell pkg-config --cflags $(SDK_PKGS) 2>/dev/null) $(SANFLAGS) $(CFLAGS)
SDK_LIBS = $(shell pkg-config --libs $(SDK_PKGS) 2>/dev/null) -lpthread -lm
# Programs using the SDK see only the public header.
SDK_PROG_CFLAGS = $(filter-out -Werror,$(WARN)) -Werror -D_GNU_SOURCE -Iagent-sdk/include $(SANFLAGS) $(CFLAGS)
SDK_LIBS_OUT = $(BUILD)/libcostmesh.a $(BUILD)/libcostmesh.so $(BUILD)/costmesh-uninstalled.pc
BENCH_SDK_BUILD := build/bench-sdk

INTEGRATION_DEPS += $(BUILD)/sdk_driver $(BUILD)/sdk_example_agent
TEST_EXTRA += sdk-test

.PHONY: sdk sdk-test bench-sdk sdk-install

sdk: $(SDK_LIBS_OUT) $(BUILD)/sdk_example_agent

$(BUILD)/sdk/obj/%.o: agent-sdk/src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(SDK_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libcostmesh.a: $(SDK_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/libcostmesh.so: $(SDK_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libcostmesh.so.$(SDK_MAJOR) $(ALL_LDFLAGS) -o $@ $^ $(SDK_LIBS)
	ln -sf libcostmesh.so $(BUILD)/libcostmesh.so.$(SDK_MAJOR)

# sdk_pc PREFIX,INCLUDEDIR,LIBDIR,LIBS: a costmesh.pc on stdout.
comma := ,
sdk_pc = printf '%s\n' 'prefix=$(1)' 'includedir=$(2)' 'libdir=$(3)' '' \
	'Name: costmesh' 'Description: costmesh agent SDK: report AI cost to costmeshd' \
	'Version: $(SDK_VERSION)' 'Requires.private: $(SDK_PKGS)' \
	'Cflags: -I$${includedir}' 'Libs: $(4)' 'Libs.private: -lpthread -lm'

# The build tree's own .pc: pkg-config prefers NAME-uninstalled.pc when
# PKG_CONFIG_PATH points here, so programs compile against this checkout
# before (or without) an install. Its rpath lets them run from here too.
$(BUILD)/costmesh-uninstalled.pc: agent-sdk/include/costmesh.h mk/sdk.mk
	@mkdir -p $(dir $@)
	$(call sdk_pc,$(abspath $(BUILD)),$(abspath agent-sdk/include),$${prefix},-L$${libdir} -Wl$(comma)-rpath$(comma)$${libdir} -lcostmesh) > $@

# The example links the shared library (found next to it at run time).
$(BUILD)/sdk_example_agent: agent-sdk/examples/example_agent.c agent-sdk/include/costmesh.h $(BUILD)/libcostmesh.so
	$(CC) $(SDK_PROG_CFLAGS) -o $@ $< $(ALL_LDFLAGS) -L$(BUILD) -lcostmesh -Wl,-rpath,'$$ORIGIN' -lpthread

# Tests and the driver link the static library (the unit tests also reach
# the internal modules, hidden from the shared object).
$(BUILD)/sdk_driver: tests/sdk/driver.c agent-sdk/include/costmesh.h $(BUILD)/libcostmesh.a
	$(CC) $(SDK_PROG_CFLAGS) -o $@ $< $(ALL_LDFLAGS) $(BUILD)/libcostmesh.a $(SDK_LIBS)

$(BUILD)/sdk_unit_tests: tests/sdk/unit.c agent-sdk/src/internal.h agent-sdk/include/costmesh.h $(BUILD)/libcostmesh.a
	$(CC) $(SDK_PROG_CFLAGS) -Iagent-sdk/src -o $@ $< $(ALL_LDFLAGS) $(BUILD)/libcostmesh.a $(SDK_LIBS)

$(BUILD)/sdk_bench: tests/sdk/bench.c agent-sdk/include/costmesh.h $(BUILD)/libcostmesh.a
	$(CC) $(SDK_PROG_CFLAGS) -o $@ $< $(ALL_LDFLAGS) $(BUILD)/libcostmesh.a $(SDK_LIBS)

sdk-test: $(BUILD)/sdk_unit_tests $(SDK_LIBS_OUT) $(BUILD)/sdk_example_agent $(BUILD)/sdk_driver
	$(BUILD)/sdk_unit_tests
	@want=$$(sed -n 's/^CM_API [^(]*[ *]\(cm_[a-z_]*\)(.*/\1/p' agent-sdk/include/costmesh.h | sort); \
	got=$$(nm -D --defined-only $(BUILD)/libcostmesh.so | awk '$$2 == "T" {print $$3}' | sort); \
	if [ "$$want" != "$$got" ]; then echo "sdk-test: exported symbols differ from costmesh.h"; \
	    echo "header: $$want" | tr '\n' ' '; echo; echo "library: $$got" | tr '\n' ' '; echo; exit 1; fi; \
	echo "sdk-test: libcostmesh.so exports exactly the $$(echo "$$want" | wc -l) functions of costmesh.h"
	@prefix=$$(mktemp -d /tmp/cm-sdk-prefix.XXXXXX); \
	$(MAKE) --no-print-directory -s sdk-install DESTDIR= PREFIX=$$prefix && \
	CC="$(CC)" PROG_FLAGS="$(ALL_LDFLAGS)" sh tests/sdk/pkgconfig.sh $(BUILD) $$prefix; \
	rc=$$?; rm -rf $$prefix; exit $$rc

bench-sdk:
	$(MAKE) BUILD=$(BENCH_SDK_BUILD) SANITIZER= CFLAGS="-O2 -g" $(BENCH_SDK_BUILD)/sdk_bench
	$(BENCH_SDK_BUILD)/sdk_bench

# The .pc is written here, not at build time, so that it names the PREFIX
# of this install whatever PREFIX the libraries were built under.
sdk-install: $(SDK_LIBS_OUT)
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 agent-sdk/include/costmesh.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(BUILD)/libcostmesh.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libcostmesh.so $(DESTDIR)$(PREFIX)/lib/libcostmesh.so.$(SDK_VERSION)
	ln -sf libcostmesh.so.$(SDK_VERSION) $(DESTDIR)$(PREFIX)/lib/libcostmesh.so.$(SDK_MAJOR)
	ln -sf libcostmesh.so.$(SDK_MAJOR) $(DESTDIR)$(PREFIX)/lib/libcostmesh.so
	$(call sdk_pc,$(PREFIX),$${prefix}/include,$${prefix}/lib,-L$${libdir} -lcostmesh) > $(DESTDIR)$(PREFIX)/lib/pkgconfig/costmesh.pc

-include $(wildcard $(BUILD)/sdk/obj/*.d)
