# costmeshctl, the command-line client (ctl/*.c). It links libcurl and json-c
# only, not the server's libraries, so it runs on machines without them.

CTL_SRC := $(wildcard ctl/*.c)
CTL_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(CTL_SRC))
CTL_LIBS = $(shell pkg-config --libs libcurl json-c 2>/dev/null)

all: $(BUILD)/costmeshctl
INTEGRATION_DEPS += $(BUILD)/costmeshctl

# Objects come from the top-level $(BUILD)/obj/%.o rule: same warnings,
# -Werror with WERROR=1, sanitizers and the user's CFLAGS.
$(BUILD)/costmeshctl: $(CTL_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(CTL_LIBS)
