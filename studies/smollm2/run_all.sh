#!/usr/bin/env bash
# Run (or resume) every stage of the study in order; a finished stage is a quick no-op.
# Usage: studies/smollm2/run_all.sh [STAGE...]   (default: every stage)
set -uo pipefail
here="$(dirname "$0")"
# The cheap baselines (tool defaults, seed 1) run before the summarization/QA grid, whose trials
# cost ~3x a classification trial, so the results section has them first.
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(full-100-cls lora-100-cls defaults-100 seed1-100 full-100-gen lora-100-gen pick-1000 lora-1000 full-1000)
for st in "${stages[@]}"; do
  echo "== $(date -Is) stage $st"
  "$here/run_chunk.sh" "$st" || { echo "stage $st stopped (exit $?)"; exit 1; }
done
echo "== $(date -Is) all stages done"
