#!/usr/bin/env bash
# One resumable stage of the SmolLM2 study. Re-running the same stage continues where it stopped
# (a killed trial is retried through the heartbeat); a finished stage is a quick no-op.
#   studies/smollm2/run_chunk.sh STAGE [SECONDS]      (stages: see the case below)
set -euo pipefail
cd "$(dirname "$0")/../.."
export STAYTUNED_DATASETS="${STAYTUNED_DATASETS:-$PWD/../shared/datasets}"
export STAYTUNED_CACHE="${STAYTUNED_CACHE:-$PWD/.staytuned-cache}"
STAGE="$1"; LIMIT="${2:-36000}"
CLS="sst2,trec,tweeteval_emotion,tweeteval_irony,tweeteval_hate,tweeteval_offensive"
GEN="scitldr,squad"
SEED1="sst2,trec,tweeteval_emotion,tweeteval_irony"
SP=studies/smollm2/spaces
NAME=smollm2; SEED=0
run() {  # run TASKS METHOD SIZE EVAL SPACE
  timeout --signal=TERM "$LIMIT" .venv/bin/staytuned grid --models smollm2-135m \
    --storage sqlite:///studies/smollm2/grid.db --name "$NAME" --seed "$SEED" --workers 2 \
    --heartbeat 20 --precision bf16 --tasks "$1" --methods "$2" --train-sizes "$3" --eval-size "$4" --space "$5"
}
# Classification is scored on 200 validation rows; summarization and QA, whose greedy generation
# dominates a trial, on 100. The eval size is a trial setting, not part of a config's id.
case "$STAGE" in
  full-100-cls) run "$CLS" full 100 200 $SP/full.yaml ;;
  lora-100-cls) run "$CLS" lora 100 200 $SP/lora.yaml ;;
  # Every config on summarization/QA too (rows ~3x the tokens of classification rows): CBS needs
  # the whole configs x datasets matrix, or configs missing on a dataset could never cover it.
  full-100-gen) run "$GEN" full 100 100 $SP/full.yaml ;;
  lora-100-gen) run "$GEN" lora 100 100 $SP/lora.yaml ;;
  # Defaults of common tools (TRL/PEFT, LLaMA-Factory), the baseline of the results section.
  defaults-100)
    run "$CLS" full 100 200 $SP/defaults-full.yaml
    run "$CLS" lora 100 200 $SP/defaults-lora.yaml
    run "$GEN" full 100 100 $SP/defaults-full.yaml
    run "$GEN" lora 100 100 $SP/defaults-lora.yaml ;;
  # A second seed (another training sample, order, init and validation sample) on a sample of
  # cells, in studies of their own name: a grid skips the configs its study already holds.
  seed1-100)
    NAME=smollm2-seed1; SEED=1
    run "$SEED1" full 100 200 $SP/seed1-full.yaml
    run "$SEED1" lora 100 200 $SP/seed1-lora.yaml ;;
  # Train size 1000, chosen once from the finished size-100 grid (analysis/grid.csv: seed 0, grid
  # configs only), ranked per task type: classification runs the CBS top 1 plus the median config
  # of the rest of its ranking; summarization and QA run their top 1. A 3-epoch 1000-row trial
  # costs ~16 CPU minutes on classification and ~50 on summarization/QA.
  pick-1000)
    if ! ls $SP/{lora,full}-1000{,-gen}.yaml >/dev/null 2>&1; then
      .venv/bin/python studies/smollm2/analyze.py
      G=studies/smollm2/analysis/grid.csv
      for m in lora full; do
        .venv/bin/python studies/smollm2/pick_configs.py cbs $SP/$m.yaml 1 $SP/$m-1000.yaml \
          --table $G --method $m --train-size 100 --top 1 --datasets "$CLS"
        .venv/bin/python studies/smollm2/pick_configs.py cbs $SP/$m.yaml 0 $SP/$m-1000-gen.yaml \
          --table $G --method $m --train-size 100 --top 1 --datasets "$GEN"
      done
    fi ;;
  full-1000) run "$CLS" full 1000 200 $SP/full-1000.yaml; run "$GEN" full 1000 100 $SP/full-1000-gen.yaml ;;
  lora-1000) run "$CLS" lora 1000 200 $SP/lora-1000.yaml; run "$GEN" lora 1000 100 $SP/lora-1000-gen.yaml ;;
  *) echo "unknown stage $STAGE" >&2; exit 2 ;;
esac
