#!/usr/bin/env bash
# One resumable chunk of the SmolLM2 study: re-running the same command continues the grid where
# it stopped (killed trials are retried through the heartbeat). Usage: run_chunk.sh STAGE [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
export STAYTUNED_DATASETS="${STAYTUNED_DATASETS:-$PWD/../shared/datasets}"
export STAYTUNED_CACHE="${STAYTUNED_CACHE:-$PWD/.staytuned-cache}"
STAGE="$1"; LIMIT="${2:-36000}"
ST=".venv/bin/staytuned"
STORE="sqlite:///studies/smollm2/grid.db"
CLS="sst2,trec,tweeteval_emotion,tweeteval_irony,tweeteval_hate,tweeteval_offensive"
common=(--models smollm2-135m --storage "$STORE" --name smollm2 --workers 2 --seed 0 --heartbeat 20)
case "$STAGE" in
  full-100-cls) args=(--tasks "$CLS" --methods full --train-sizes 100 --eval-size 200 --space studies/smollm2/spaces/full.yaml) ;;
  lora-100-cls) args=(--tasks "$CLS" --methods lora --train-sizes 100 --eval-size 200 --space studies/smollm2/spaces/lora.yaml) ;;
  *) echo "unknown stage $STAGE" >&2; exit 2 ;;
esac
exec timeout --signal=TERM "$LIMIT" "$ST" grid "${common[@]}" "${args[@]}"
