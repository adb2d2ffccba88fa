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
    --heartbeat 20 --tasks "$1" --methods "$2" --train-sizes "$3" --eval-size "$4" --space "$5"
}
# Classification is scored on 200 validation rows; summarization and QA, whose greedy generation
# dominates a trial, on 100. The eval size is a trial setting, not part of a config's id.
case "$STAGE" in
  full-100-cls) run "$CLS" full 100 200 $SP/full.yaml ;;
  lora-100-cls) run "$CLS" lora 100 200 $SP/lora.yaml ;;
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
  # Train size 1000, chosen once from the finished size-100 grid: classification runs the CBS
  # top 2 plus one config spread over the rest of the ranking; summarization and QA, whose
  # 1000-row trials cost about 3x more, run the top 1.
  pick-1000)
    if [ ! -f $SP/lora-1000.yaml ] || [ ! -f $SP/full-1000.yaml ]; then
      .venv/bin/staytuned results export sqlite:///studies/smollm2/grid.db -o studies/smollm2/results.csv -q
      for m in lora full; do
        .venv/bin/python studies/smollm2/pick_configs.py cbs $SP/$m.yaml 1 $SP/$m-1000.yaml \
          --table studies/smollm2/results.csv --method $m --train-size 100 --top 2
        .venv/bin/python studies/smollm2/pick_configs.py cbs $SP/$m.yaml 0 $SP/$m-1000-gen.yaml \
          --table studies/smollm2/results.csv --method $m --train-size 100 --top 1
      done
    fi ;;
  full-1000) run "$CLS" full 1000 200 $SP/full-1000.yaml; run "$GEN" full 1000 100 $SP/full-1000-gen.yaml ;;
  lora-1000) run "$CLS" lora 1000 200 $SP/lora-1000.yaml; run "$GEN" lora 1000 100 $SP/lora-1000-gen.yaml ;;
  *) echo "unknown stage $STAGE" >&2; exit 2 ;;
esac
