"""Fine-tune with TRL's SFTTrainer as staytuned's ``command`` trainer (the TRL recipe of docs/trainers.md).

    staytuned tune --task sst2 --model tiny-llama --trainer command --command-format trl \
        --command "python trl_sft.py {config} {train_file} {eval_file} {metric_file}"

{config} is staytuned's TRL export of the trial (``sft_config`` and ``lora_config`` as JSON, the
base model's folder as ``model_name_or_path``); the rows are JSONL prompt/completion pairs, the
evaluation rows with their ``reference``. Classification only: after every epoch the script scores
each evaluation row by label log-likelihood, prints ``{"staytuned": {"epoch": E, "score": ACC}}``
(staytuned prunes on it), and at the end writes ``{"score": ACC, "metrics": {...}}`` to the
metric file. Runs on CPU in seconds with the tiny test models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def read_jsonl(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def main(config_file: str, train_file: str, eval_file: str, metric_file: str) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    config = json.loads(Path(config_file).read_text(encoding="utf-8"))
    train_rows, eval_rows = read_jsonl(train_file), read_jsonl(eval_file)
    labels = sorted({r["completion"] for r in train_rows} | {str(r["reference"]) for r in eval_rows})
    tokenizer = AutoTokenizer.from_pretrained(config["model_name_or_path"])
    model = AutoModelForCausalLM.from_pretrained(config["model_name_or_path"], dtype=torch.float32)

    def accuracy(net) -> float:
        """Label log-likelihood after the prompt, the way the training text joins them."""
        net.eval()
        hits = 0
        with torch.no_grad():
            for row in eval_rows:
                prompt_ids = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
                scores = []
                for label in labels:
                    label_ids = tokenizer(label, add_special_tokens=False)["input_ids"]
                    ids = torch.tensor([prompt_ids + label_ids])
                    logp = net(input_ids=ids).logits[0, :-1].log_softmax(-1)
                    picked = logp[len(prompt_ids) - 1:].gather(1, ids[0, len(prompt_ids):, None])
                    scores.append(float(picked.sum()))
                hits += labels[scores.index(max(scores))] == str(row["reference"])
        net.train()
        return hits / max(1, len(eval_rows))

    class EpochScore(TrainerCallback):
        def __init__(self) -> None:
            self.scores: list[float] = []

        def on_epoch_end(self, args, state, control, model=None, **kwargs):
            self.scores.append(accuracy(model))
            print(json.dumps({"staytuned": {"epoch": round(state.epoch or 0), "score": self.scores[-1]}}),
                  flush=True)

    sft = SFTConfig(**{**config["sft_config"], "save_strategy": "no", "disable_tqdm": True, "logging_steps": 1})
    lora = LoraConfig(**config["lora_config"]) if config.get("lora_config") else None
    epochs = EpochScore()
    trainer = SFTTrainer(model=model, args=sft, processing_class=tokenizer, peft_config=lora,
                         train_dataset=Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]}
                                                          for r in train_rows]),
                         callbacks=[epochs])
    out = trainer.train()
    trainer.save_model()  # the adapter (lora) or the model (full) into output_dir
    score = epochs.scores[-1] if epochs.scores else accuracy(trainer.model)
    Path(metric_file).write_text(json.dumps({
        "score": score, "metrics": {"accuracy": score, "train_loss": out.training_loss},
        "epoch_scores": epochs.scores}) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:5])
