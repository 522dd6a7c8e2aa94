# The web dashboard (web/): its npm packages (chart.js, served by costmeshd at
# /ui/chart.umd.js, and playwright-core for tests/ui) are installed with
# `npm ci` from web/package-lock.json, again whenever the lock file changes.
# The stamp is the hidden lock file npm ci writes into node_modules.

WEB_STAMP := web/node_modules/.package-lock.json

.PHONY: web
web: $(WEB_STAMP)

$(WEB_STAMP): web/package.json web/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "web: npm is missing: install nodejs with its npm (make deps; on stock Debian also the npm package)" >&2; exit 1; }
	cd web && npm ci --no-audit --no-fund
	@touch $@

all: $(WEB_STAMP)

# costmeshd reads the dashboard's files once at start: they must exist before
# the integration tests start it (tests/integration/test_i_ui.py).
INTEGRATION_DEPS += $(WEB_STAMP)
