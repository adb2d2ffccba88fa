"""Regenerate the bundled dataset subsets in src/staytuned/data from ../shared/datasets.

    .venv/bin/python scripts/make_bundled_data.py [--shared ../shared/datasets] [--out DIR]

Deterministic: the same source files give byte-identical output. For each dataset the split is
loaded with ``staytuned.finetune.tasks.load_task`` (seed 0) and subsampled with
``staytuned.finetune.tasks.subsample`` (seed 0; stratified by label for classification) to at
most 1000 train / 300 validation / 300 test rows. SQuAD has no train split in ../shared: a train
split is carved from its validation split, whole contexts (paragraphs) at a time
(``train_fraction=0.5``, seed 0), so no paragraph is in both. Writes
``<name>/{train,validation,test}.jsonl``, ``manifest.json`` and copies the source ``LICENSE``
file where there is one; ATTRIBUTION.md and the other per-folder LICENSE notes are hand-written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from staytuned.finetune.tasks import SPLITS, load_task, subsample  # noqa: E402

OUT = REPO / "src" / "staytuned" / "data"

#: bundled name -> (folder in ../shared/datasets, license, max rows per split)
BUNDLE: dict[str, tuple[str, str, dict[str, int]]] = {
    "sst2": ("sst2", "MIT (repo)", {"train": 1000, "validation": 300, "test": 300}),
    "trec": ("trec", "MIT (repo)", {"train": 1000, "validation": 300, "test": 300}),
    "banking77": ("banking77", "CC BY 4.0", {"train": 1000, "validation": 300, "test": 300}),
    "scitldr": ("scitldr", "Apache-2.0", {"train": 1000, "validation": 300, "test": 300}),
    "squad": ("squad_v1_1", "CC BY-SA 4.0", {"train": 1000, "validation": 300, "test": 300}),
}
SEED = 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "datasets")
    ap.add_argument("--out", type=Path, default=OUT, help="output folder (default: the package's data folder)")
    args = ap.parse_args()
    out = args.out
    manifest: dict[str, dict] = {}
    for name, (folder, license_, caps) in BUNDLE.items():
        task = load_task(args.shared / folder, name=name, seed=SEED)
        sizes = {}
        (out / name).mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            rows = subsample(task.split(split), caps[split], seed=SEED,
                             stratify_by="label" if task.type == "classification" else None)
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            (out / name / f"{split}.jsonl").write_text(text, encoding="utf-8")
            sizes[split] = len(rows)
        licence_file = args.shared / folder / "LICENSE"
        if licence_file.is_file():  # Apache-2.0 asks for a copy of the license with the data
            (out / name / "LICENSE").write_bytes(licence_file.read_bytes())
        labels = sorted({r["label"] for s in SPLITS for r in task.split(s)}) if task.type == "classification" else []
        manifest[name] = {
            "type": task.type,
            "metric": task.metric,
            "n_labels": len(labels) if labels else None,
            "splits": sizes,
            "source": f"../shared/datasets/{folder}",
            "license": license_,
        }
        print(f"{name:10s} {task.type:14s} {sizes}", file=sys.stderr)
    payload = {"version": 1, "seed": SEED, "generator": "scripts/make_bundled_data.py", "tasks": manifest}
    (out / "manifest.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
