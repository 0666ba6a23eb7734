#!/usr/bin/env bash
# Install, then run the whole test suite (unit, sandbox, and functional tests
# against a real local Swift cluster that the suite starts and stops itself).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ruff check zvm_core zerocloud tests bench
# Two workers (pytest-xdist): a test file runs on one of them, and all functional tests
# on one (they share the session's cluster, tests/conftest.py), while the other worker
# takes the unit and sandbox files; the slowest 25: where the suite time goes.
python3 -m pytest -q -n 2 --dist loadfile --durations=25 "$@"
