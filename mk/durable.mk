# The integration suite again with Redis as the durable point
# (COSTMESH_DURABLE=redis, docs/guarantees.md section 12): the harness hands
# its environment to scripts/services.sh (Redis with appendfsync always) and
# to costmeshd, so every test runs against that mode and checks its promises.
# Part of `make test`.
.PHONY: test-durable-redis
test-durable-redis: $(BUILD)/costmeshd $(INTEGRATION_DEPS)
	COSTMESH_DURABLE=redis python3 tests/integration/run.py --build $(BUILD)

TEST_EXTRA += test-durable-redis
