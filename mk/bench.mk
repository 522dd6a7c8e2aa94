# `make bench`: the benchmark (bench/run.sh). Not part of `make test`: it
# asserts nothing about timing and only reports. Builds costmeshd with -O2
# into build/bench, plus two ceiling tools and an open-loop load generator,
# then runs every load on loopback, bounded in time (~11 min; BENCH_SHORT=1 for ~5 min),
# in both durable modes (COSTMESH_DURABLE=postgres, then redis).

BENCH_BUILD := build/bench
# The project's pure modules the HTTP-only ceiling links (codec and what it uses).
BENCH_CODEC_SRC := server/codec.c server/money.c server/timeutil.c server/address.c \
	server/error.c server/buf.c server/policy.c server/pricing.c server/billing.c

.PHONY: bench bench-deps

bench: bench-deps
	$(MAKE) BUILD=$(BENCH_BUILD) CFLAGS="-O2 -g" $(BENCH_BUILD)/costmeshd \
		$(BENCH_BUILD)/bench/http_ceiling $(BENCH_BUILD)/bench/pg_ceiling $(BENCH_BUILD)/bench/openloop \
		$(BENCH_BUILD)/bench/fsync_floor
	BENCH_BUILD=$(BENCH_BUILD) bash bench/run.sh

bench-deps: deps
	sh bench/deps.sh

$(BUILD)/bench/http_ceiling: $(BUILD)/obj/bench/http_ceiling.o $(patsubst %.c,$(BUILD)/obj/%.o,$(BENCH_CODEC_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(shell pkg-config --libs libmicrohttpd json-c 2>/dev/null) -lpthread -lm

# The PostgreSQL ceiling runs the server's own statements and column arrays
# (hbrow.c, and the key hash and JSON decoding it uses).
$(BUILD)/bench/pg_ceiling: $(BUILD)/obj/bench/pg_ceiling.o $(BUILD)/obj/server/hbrow.o $(BUILD)/obj/server/auth.o \
		$(patsubst %.c,$(BUILD)/obj/%.o,$(BENCH_CODEC_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(shell pkg-config --libs libpq libcrypto json-c 2>/dev/null) -lm

$(BUILD)/bench/openloop: $(BUILD)/obj/bench/openloop.o
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^

$(BUILD)/bench/fsync_floor: $(BUILD)/obj/bench/fsync_floor.o
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^
