#!/usr/bin/env bash
# Run the whole infrawatch test suite on a fresh Debian 12 machine:
# installs every Debian package the tests need (.ci/packages.d/*.txt), creates .venv with the
# test extras, then runs pytest. Extra arguments go to pytest. Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "scripts/test.sh: needs root (or sudo) to install Debian packages" >&2; exit 2; fi
fi

# 1. Debian packages, only those missing.
pkgs=$(cat .ci/packages.d/*.txt | sed 's/#.*//' | tr -s ' \t' '\n' | sed '/^$/d' | sort -u)
missing=()
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  # Servers are started by the tests themselves on random loopback ports: keep the packages'
  # own init scripts from starting system-wide daemons during installation.
  added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  [ "$added_policy" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d
fi

# 2. Python environment.
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
echo "==> installing infrawatch with test extras"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

# 3. Tests.
echo "==> running tests"
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pytest "$@"
