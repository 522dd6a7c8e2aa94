# costmesh - `make` builds, `make run` runs locally, `make test` runs every test.
# CFLAGS/LDFLAGS from the environment are kept; ours are appended.

PREFIX ?= /usr/local
DESTDIR ?=
BUILD ?= build
SANITIZER ?=
PKGS := libmicrohttpd hiredis libuv json-c libpq libcrypto libcurl

CC ?= cc
CFLAGS ?= -O2 -g
WARN := -std=c11 -Wall -Wextra -Wstrict-prototypes -Wwrite-strings -Wpointer-arith -Wshadow -Wno-format-truncation
ifneq ($(findstring clang,$(shell $(CC) --version 2>/dev/null)),)
WARN += -Wno-unknown-warning-option
endif
ifeq ($(WERROR),1)
WARN += -Werror
endif
ifneq ($(SANITIZER),)
SANFLAGS := -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS = $(WARN) -D_GNU_SOURCE -Iserver -I$(BUILD)/gen $(PKG_CFLAGS) $(SANFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(SANFLAGS) $(LDFLAGS)

# Modules with no library dependency: unit-tested without servers.
PURE_SRC := server/error.c server/money.c server/pricing.c server/timeutil.c server/address.c server/backoff.c
SERVER_SRC := $(wildcard server/*.c)
# The Lua scripts of hot.c, embedded like the schema.
LUA_SRC := $(sort $(wildcard server/lua/*.lua))
SERVER_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(SERVER_SRC)) $(BUILD)/obj/gen/schema_sql.o $(BUILD)/obj/gen/lua.o
LIB_OBJ := $(filter-out $(BUILD)/obj/server/main.o,$(SERVER_OBJ))
UNIT_SRC := $(wildcard tests/unit/*.c)
UNIT_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(UNIT_SRC))

.PHONY: all clean test unit integration run deps services-start services-stop

# Parts of the project add their own targets in mk/*.mk; a part whose tests
# belong to `make test` appends the target to TEST_EXTRA.
.DEFAULT_GOAL := all
TEST_EXTRA :=
INTEGRATION_DEPS :=
-include $(sort $(wildcard mk/*.mk))
all: $(BUILD)/costmeshd

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/gen/schema_sql.c: $(sort $(wildcard schema/*.sql)) scripts/embed_schema.sh scripts/c_literal.sh
	@mkdir -p $(dir $@)
	sh scripts/embed_schema.sh $(sort $(wildcard schema/*.sql)) > $@

$(BUILD)/gen/lua.c: $(LUA_SRC) scripts/embed_lua.sh scripts/c_literal.sh
	@mkdir -p $(dir $@)
	sh scripts/embed_lua.sh $(LUA_SRC) > $@

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/costmeshd: $(SERVER_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) -lpthread

$(BUILD)/unit_tests: $(UNIT_OBJ) $(LIB_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) -lpthread

deps:
	sh scripts/deps.sh

unit: $(BUILD)/unit_tests
	$(BUILD)/unit_tests

integration: $(BUILD)/costmeshd $(INTEGRATION_DEPS)
	python3 tests/integration/run.py --build $(BUILD)

# The whole suite: installs what is missing, builds with sanitizers and
# warnings as errors, runs unit tests, then integration tests against a
# throwaway Redis and PostgreSQL.
test: deps
	$(MAKE) BUILD=build/test SANITIZER=address,undefined WERROR=1 CFLAGS="-O1 -g" unit integration $(TEST_EXTRA)

run: deps all
	sh scripts/run.sh $(BUILD)

services-start:
	sh scripts/services.sh start
services-stop:
	sh scripts/services.sh stop

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
