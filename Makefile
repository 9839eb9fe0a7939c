# The two entry points of the README: `make run` and `make test`.
.PHONY: run test test-long venv system-deps

# JT_DATA_DIR from the environment wins, so `JT_DATA_DIR=/srv/jt make run` keeps its database there.
JT_DATA_DIR ?= instance
export JT_DATA_DIR

venv:
	scripts/setup-venv

system-deps:
	scripts/install-system-deps

# Run the platform with embedded defaults: SQLite in ./instance, the paper broker, demo data, port 5000.
# The price feed and Tradovate daemons stay off until configured (JT_FEEDS_ENABLED=true, see docs/connections.md).
run: export JT_FEEDS_ENABLED ?= false
run: venv
	.venv/bin/justtrades seed platform/justtrades/demo/demo.yaml
	.venv/bin/justtrades serve --host $${HOST:-127.0.0.1} --port $${PORT:-5000}

# The whole test suite on SQLite and PostgreSQL, with promtool, amtool and Prometheus.
test: venv system-deps
	.venv/bin/pytest -m "not long"

# The long reliability scenarios (minutes each).
test-long: venv system-deps
	.venv/bin/pytest -m long
