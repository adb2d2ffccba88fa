"""Regenerate the bundled dataset subsets in src/staytuned/data from ../shared/datasets.

    .venv/bin/python scripts/make_bundled_data.py [--shared ../shared/datasets] [--out DIR]

Deterministic: the same source files give byte-identical output. For each dataset the split is
loaded with ``staytuned.tasks.load_task`` (seed 0) and subsampled with
``staytuned.tasks.subsample`` (seed 0; stratified by label for classification) to at
most 1000 train / 300 validation / 300 test rows. SQuAD has no train split in ../shared: a train
split is carved from its validation split, whole articles at a time (``train_fraction=0.5``,
seed 0), so no article is in both. The source rows carry no article title, but they are ordered
by article (its README lists the titles in that order), so :func:`squad_titles` recovers each
row's article from the first paragraph that names the next title, and checks the result. Writes
``<name>/{train,validation,test}.jsonl``, ``manifest.json`` and copies the source ``LICENSE``
file where there is one; ATTRIBUTION.md and the other per-folder LICENSE notes are hand-written.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from staytuned.tasks import SPLITS, load_task, subsample  # noqa: E402

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


def squad_titles(rows: list[dict], titles: list[str]) -> list[str]:
    """The article title of every row of ../shared's SQuAD validation split.

    Rows are ordered by article (``titles`` in that order), then paragraph. An article starts at
    the first paragraph after the previous article's start that names it (``Fresno,_California``
    -> "fresno"; ``Ctenophora`` -> "ctenophor"). Raises if an article cannot be placed.
    """
    paragraphs: list[int] = []  # row index where each paragraph starts
    for i, r in enumerate(rows):
        if i == 0 or r["context"] != rows[i - 1]["context"]:
            paragraphs.append(i)
    starts: list[int] = []
    k = 0
    for title in titles:
        key = re.sub(r"[,(].*", "", title).replace("_", " ").strip().lower()
        key = {"ctenophora": "ctenophor"}.get(key, key)
        while k < len(paragraphs) and key not in rows[paragraphs[k]]["context"].lower():
            k += 1
        if k == len(paragraphs):
            raise SystemExit(f"squad: no paragraph names article {title!r} after row {starts[-1] if starts else 0}")
        starts.append(paragraphs[k])
        k += 1
    if starts[0] != 0:
        raise SystemExit(f"squad: the first article starts at row {starts[0]}, not 0")
    out: list[str] = []
    for j, title in enumerate(titles):
        end = starts[j + 1] if j + 1 < len(titles) else len(rows)
        out += [title] * (end - starts[j])
    return out


def squad_with_titles(shared: Path, workdir: Path) -> Path:
    """A copy of ../shared's SQuAD folder whose validation rows carry their article ``title``."""
    src = shared / "squad_v1_1"
    readme = (src / "README.md").read_text(encoding="utf-8")
    found = re.search(r"validation articles \((\d+)\): (.*)", readme)
    if not found:
        raise SystemExit(f"{src / 'README.md'}: no 'validation articles (N): ...' line")
    titles = re.findall(r"`([^`]+)`", found.group(2))
    if len(titles) != int(found.group(1)):
        raise SystemExit(f"{src / 'README.md'}: {len(titles)} titles listed, {found.group(1)} announced")
    rows = [json.loads(line) for line in (src / "validation.jsonl").read_text(encoding="utf-8").splitlines()]
    dst = workdir / "squad_v1_1"
    dst.mkdir()
    with (dst / "validation.jsonl").open("w", encoding="utf-8") as f:
        for r, title in zip(rows, squad_titles(rows, titles), strict=True):
            f.write(json.dumps({"title": title, **r}, ensure_ascii=False) + "\n")
    (dst / "test.jsonl").write_bytes((src / "test.jsonl").read_bytes())
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "datasets")
    ap.add_argument("--out", type=Path, default=OUT, help="output folder (default: the package's data folder)")
    args = ap.parse_args()
    out = args.out
    manifest: dict[str, dict] = {}
    workdir = Path(tempfile.mkdtemp(prefix="staytuned-bundle-"))
    for name, (folder, license_, caps) in BUNDLE.items():
        source = squad_with_titles(args.shared, workdir) if name == "squad" else args.shared / folder
        task = load_task(source, name=name, seed=SEED)
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
