#!/usr/bin/env bash
# Install, then run the demo: start a local Swift cluster with ZeroCloud,
# upload data and a program, run a job next to the data, print the result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m zerocloud.demo "$@"
