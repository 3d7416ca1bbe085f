#!/usr/bin/env bash
# The whole test suite with all set-up included: virtualenv, install, services, then pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/contract --backends rq).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[all,test]"
bash scripts/services.sh
exec .venv/bin/python -m pytest "$@"
