#!/usr/bin/env bash
# Everything the tests need on a fresh machine, then the whole test suite.
# Idempotent: a second run reuses the virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${EDGEOPT_VENV:-.venv}
PYTHON=${PYTHON:-python3}

# System packages (Debian): the aarch64 cross compiler for the Arm targets; OpenSSH's server,
# which the board contract tests start on a loopback port as a second, independent SSH peer;
# QEMU, mmdebstrap and arch-test for the emulated aarch64 board (docs/qemu.md); qemu-user (the
# dynamically linked emulator, which loads TCG plugins) for counting instructions.
SYSTEM_PACKAGES=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross openssh-server
                 qemu-user-static qemu-user qemu-system-arm mmdebstrap arch-test e2fsprogs)
missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test,sweep]'

# The emulated aarch64 board's image (tests/e2e, and the contract tests' qemu board): built once
# (~10-15 min), then cached in the user cache dir by recipe hash, so a rerun takes a second.
SECONDS=0
"$VENV/bin/python" -m edgeopt board qemu build
echo "qemu image ready in ${SECONDS} s" >&2
# The instruction-count plugin (docs/benchmarks.md): qemu-plugin.h from Debian's qemu source
# package (fetched once into the cache), built with gcc.
"$VENV/bin/python" -c "from edgeopt.toolkit.boards.qemu.count import plugin; plugin()"

# Under this script a test skipped for a missing capability is a failure (tests/conftest.py).
export EDGEOPT_STRICT_SKIPS=1
exec "$VENV/bin/python" -m pytest "$@"
