#!/usr/bin/env bash
# Set up (packaging/dev/setup.sh) and run the whole test suite.
# PostgreSQL tests use $CERTFLEET_TEST_PG_URL (default 127.0.0.1:5432/test);
# with CERTFLEET_REQUIRE_POSTGRES=1 an unreachable server fails them instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash packaging/dev/setup.sh
exec .venv/bin/python -m pytest -q -ra "$@"
