#!/usr/bin/env bash
# The untuned model on every dataset of the study, scored like the trials (same rows, bf16).
set -euo pipefail
cd "$(dirname "$0")/../.."
export STAYTUNED_DATASETS="${STAYTUNED_DATASETS:-$PWD/../shared/datasets}"
export STAYTUNED_CACHE="${STAYTUNED_CACHE:-$PWD/.staytuned-cache}"
mkdir -p studies/smollm2/analysis/untuned
for t in sst2 trec tweeteval_emotion tweeteval_irony tweeteval_hate tweeteval_offensive scitldr squad; do
  case $t in scitldr|squad) n=100 ;; *) n=200 ;; esac
  .venv/bin/staytuned train --task "$t" --model smollm2-135m --eval-only --eval-size $n \
    --precision bf16 --max-seq-length 512 --threads 1 -q --json "studies/smollm2/analysis/untuned/$t.json"
done
