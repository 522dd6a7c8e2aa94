# The production-shape tests of issue 17 (tests/integration/scale/): replicas
# behind nginx, a replica's kill -9 under load, the health sweep across
# replicas, migrations at concurrent starts and a rolling restart, backup and
# restore into a fresh PostgreSQL. About 1.5 minutes: a target of their own,
# and part of `make test`. They need costmeshd only (and nginx, scripts/deps.sh).
.PHONY: scale
scale: $(BUILD)/costmeshd
	python3 tests/integration/run.py --build $(BUILD) --suite scale

TEST_EXTRA += scale
