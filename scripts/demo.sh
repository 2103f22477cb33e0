#!/usr/bin/env bash
# Set up a virtual environment (first run only) and run the main demo:
# the ancestor's counter aggregator, rewritten for eventbus.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv .venv "${PYTHON:-python3}" ""
exec .venv/bin/python examples/demo_counters.py "$@"
