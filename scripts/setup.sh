#!/usr/bin/env bash
# Install what ZeroCloud needs on a fresh Debian machine: the C toolchain for
# guest programs (musl-gcc) and the Python package with its C guard.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v musl-gcc >/dev/null || ! command -v gcc >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq musl-tools gcc libc6-dev >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
