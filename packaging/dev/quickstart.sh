#!/usr/bin/env bash
# Set up, then run the quickstart: a collector on SQLite, sample stores made
# with openssl and keytool, an enrolled agent scanning them, and a report.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash packaging/dev/setup.sh
exec .venv/bin/python packaging/dev/quickstart.py "$@"
