#!/usr/bin/env bash
# Install, then run the whole test suite (unit, sandbox, and functional tests
# against a real local Swift cluster that the suite starts and stops itself).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ruff check zvm_core zerocloud tests bench
python3 -m pytest -q --durations=25 "$@"     # the slowest 25: where the suite time goes
