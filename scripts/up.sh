#!/usr/bin/env bash
# Try infrawatch now: a collector on the embedded store plus a local agent with the default
# system checks, serving its API on http://127.0.0.1:9310. Arguments go to `infrawatch up`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv || { echo "scripts/up.sh: python3 -m venv failed; on Debian/Ubuntu: apt-get install python3-venv" >&2; exit 2; }
fi
.venv/bin/python -m pip install -q -e . 
exec .venv/bin/infrawatch up "$@"
