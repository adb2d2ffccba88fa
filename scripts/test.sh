#!/usr/bin/env bash
# Run the whole test suite (sets everything up first). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export STAYTUNED_CACHE=${STAYTUNED_CACHE:-$PWD/.staytuned-cache}
exec .venv/bin/python -m pytest "$@"
