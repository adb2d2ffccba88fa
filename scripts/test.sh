#!/usr/bin/env bash
# Run the whole test suite (sets everything up first). Extra arguments go to pytest;
# --fast runs the fast tier only (-m "not slow": no real SmolLM2 training, PostgreSQL, Chromium or Ray).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export STAYTUNED_CACHE=${STAYTUNED_CACHE:-$PWD/.staytuned-cache}
args=()
for a in "$@"; do
  if [ "$a" = --fast ]; then args+=(-m "not slow"); else args+=("$a"); fi
done
exec .venv/bin/python -m pytest ${args[@]+"${args[@]}"}
