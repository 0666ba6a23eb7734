#!/usr/bin/env bash
# Install what ZeroCloud needs on a fresh Debian machine: the C toolchain for
# guest programs (musl-gcc), Debian's static CPython library for the python3
# system image, the Python package with its C guard, and then build the
# python3, lua and sqlite system images (zvm-interpreters build: cached, so a
# second run takes a fraction of a second).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v musl-gcc >/dev/null || need+=(musl-tools)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v strip >/dev/null || need+=(binutils)
command -v curl >/dev/null || need+=(curl)         # the docs' commands use it
command -v g++ >/dev/null || need+=(g++)           # the user guide's C++ example
[ -f /usr/lib/python3.11/config-3.11-x86_64-linux-gnu/libpython3.11.a ] || need+=(libpython3.11-dev)
[ -f /usr/include/expat.h ] || need+=(libexpat1-dev)
[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)
# A venv's python3 is not Debian's: its pip comes from ensurepip, not apt's python3-pip
in_venv=$(python3 -c 'import sys; print(int(sys.prefix != sys.base_prefix))')
has_pip=1
python3 -m pip --version >/dev/null 2>&1 || has_pip=0
[ "$has_pip" = 1 ] || [ "$in_venv" = 1 ] ||
    need+=(python3-pip)                          # Debian's python3 comes without
if [ ${#need[@]} -gt 0 ]; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "$in_venv" = 1 ] && [ "$has_pip" = 0 ]; then
    # Debian moves ensurepip into python3.X-venv: a venv made without it has no pip
    if ! python3 -c 'import ensurepip' 2>/dev/null; then
        read -r version venv < <(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2], sys.prefix)')
        echo "setup.sh: the venv $venv has no pip and its Python no ensurepip to get it" \
             "(Debian ships it apart): install python$version-venv (sudo apt-get install" \
             "python$version-venv), then recreate the venv (python3 -m venv --clear $venv)" >&2
        exit 1
    fi
    python3 -m ensurepip -q
fi
# Debian's own python3 refuses pip installs (PEP 668, "externally-managed-environment"):
# this machine is being set up for ZeroCloud, so its package goes into that Python anyway.
# It says so: a system Python (Ubuntu 24.04's too) gets the package without asking.
managed=$(python3 -c 'import os, sys, sysconfig
if sys.prefix == sys.base_prefix and os.path.exists(   # a venv is never
        os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")):
    print(sys.executable, sys.version.split()[0])')
if [ -n "$managed" ]; then
    echo "setup.sh: installing into the system's externally-managed Python $managed" \
         "(PIP_BREAK_SYSTEM_PACKAGES=1; activate a venv first to keep it apart)" >&2
    export PIP_BREAK_SYSTEM_PACKAGES=1
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
python3 -m zvm_core.build.interpreters build
