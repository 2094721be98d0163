#!/usr/bin/env bash
# The test suite: installs what is missing (scripts/setup.sh, and Debian's chromium for the report
# rendering test), then runs every test, the slow ones on the real embedded model included.
#   bash scripts/test.sh [pytest args, e.g. -m "not slow" or -k sandbox]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "[test] chromium not installed; its test will skip"
fi
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
exec "$(cd .venv && pwd -P)/bin/python" -m pytest "$@"
