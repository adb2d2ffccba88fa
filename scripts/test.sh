#!/usr/bin/env bash
# Run the whole test suite (sets everything up first). Extra arguments go to pytest;
# --fast runs the fast tier only (-m "not slow": no real SmolLM2 training, PostgreSQL, Chromium or Ray),
# spread over one pytest-xdist process per CPU (its tests are small and independent; the whole
# suite runs in one process, since its real trainings and timing ratios must not share the cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export STAYTUNED_CACHE=${STAYTUNED_CACHE:-$PWD/.staytuned-cache}
args=()
for a in "$@"; do
  if [ "$a" = --fast ]; then args+=(-m "not slow" -n auto); else args+=("$a"); fi
done
exec .venv/bin/python -m pytest ${args[@]+"${args[@]}"}
