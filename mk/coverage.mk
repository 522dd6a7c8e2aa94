# mk/coverage.mk - how much of server/*.c the tests run (not part of `make test`).
#
#   make coverage   builds costmeshd, the unit tests and what the integration
#                   suite runs with gcc --coverage in build/cov (no
#                   sanitizer; -O0, so that each line keeps its own code),
#                   runs the unit tests and prints their line coverage of
#                   server/*.c, then runs the integration suite against that
#                   costmeshd and prints the coverage of both, per file and
#                   in total (scripts/coverage.py, over gcov, part of gcc).
#
# The counters are zeroed before the unit tests. Each process adds its counts
# when it exits normally: a costmeshd the suite stops with SIGTERM counts, one
# it kills with -9 does not. A failing test fails the target, after the report.

COV_BUILD := build/cov
COV_MAKE = $(MAKE) BUILD=$(COV_BUILD) SANITIZER= WERROR= CFLAGS="-O0 -g --coverage" LDFLAGS=--coverage
COV_REPORT = python3 scripts/coverage.py

.PHONY: coverage
coverage:
	$(COV_MAKE) $(COV_BUILD)/costmeshd $(COV_BUILD)/unit_tests
	find $(COV_BUILD) -name '*.gcda' -delete
	$(COV_BUILD)/unit_tests
	@$(COV_REPORT) "unit tests alone" $(COV_BUILD)/obj/server $(SERVER_SRC)
	@rc=0; $(COV_MAKE) integration || rc=$$?; \
	$(COV_REPORT) --files "unit tests and integration suite" $(COV_BUILD)/obj/server $(SERVER_SRC); \
	exit $$rc
