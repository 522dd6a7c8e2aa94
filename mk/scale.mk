# The production-shape tests of issue 17 (tests/integration/scale/): replicas
# behind nginx, a replica's kill -9 under load, the health sweep across
# replicas, migrations at concurrent starts and a rolling restart, the previous
# release's binary beside this one while the newest migration applies (built
# from git history into build/previous/COMMIT: about 20 s the first time, then
# cached; it needs a clone with history), backup and restore into a fresh
# PostgreSQL. About 2 minutes: a target of their own, and part of `make test`.
# They need costmeshd (and nginx, scripts/deps.sh; git for the previous release).
.PHONY: scale
scale: $(BUILD)/costmeshd
	python3 tests/integration/run.py --build $(BUILD) --suite scale

TEST_EXTRA += scale
