# Line coverage of server/ (gcov). `make coverage` builds with --coverage in
# its own build dir and prints the share of server/*.c lines reached by the
# unit tests, by the integration suite, and by both; the counters are reset
# between the first two. README.md quotes the figures.
COV_BUILD := build/coverage

.PHONY: coverage
coverage:
	$(MAKE) BUILD=$(COV_BUILD) SANITIZER= WERROR= CFLAGS="-O0 -g --coverage" LDFLAGS="--coverage" \
	    $(COV_BUILD)/costmeshd $(COV_BUILD)/unit_tests $(patsubst $(BUILD)/%,$(COV_BUILD)/%,$(INTEGRATION_DEPS))
	find $(COV_BUILD) -name '*.gcda' -delete
	$(COV_BUILD)/unit_tests
	sh scripts/coverage.sh $(COV_BUILD) unit > $(COV_BUILD)/coverage.txt
	find $(COV_BUILD) -name '*.gcda' -delete
	python3 tests/integration/run.py --build $(COV_BUILD)
	sh scripts/coverage.sh $(COV_BUILD) integration >> $(COV_BUILD)/coverage.txt
	$(COV_BUILD)/unit_tests
	sh scripts/coverage.sh $(COV_BUILD) "unit + integration" >> $(COV_BUILD)/coverage.txt
	@cat $(COV_BUILD)/coverage.txt
