"""Tasks: bundled names, file formats, column mapping, carving, subsampling and bad input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from staytuned.errors import InputError
from staytuned.tasks import (
    CANONICAL_KEYS,
    Task,
    bundled_dir,
    bundled_manifest,
    bundled_names,
    load_task,
    split_off,
    subsample,
)
from staytuned.tasks.task import OPTIONAL_KEYS

BUNDLED = {"sst2", "trec", "banking77", "scitldr", "squad"}


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _cls_rows(n: int, labels=("neg", "pos"), prefix: str = "t") -> list[dict]:
    return [{"text": f"{prefix}{i}", "label": labels[i % len(labels)]} for i in range(n)]


# ------------------------------------------------------------------------------ bundled


def test_bundled_names_are_the_documented_ones() -> None:
    assert set(bundled_names()) == BUNDLED


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_every_bundled_task_loads_with_canonical_rows(name: str) -> None:
    task = load_task(name)
    manifest = bundled_manifest()[name]
    assert task.name == name and task.source == f"bundled:{name}"
    assert task.type == manifest["type"] and task.metric == manifest["metric"] and task.direction == "max"
    assert task.sizes() == manifest["splits"]
    keys = set(CANONICAL_KEYS[task.type])
    for split in ("train", "validation", "test"):
        rows = task.split(split)
        optional = set(OPTIONAL_KEYS.get(task.type, ()))
        assert rows and all(keys <= set(r) <= keys | optional for r in rows)
    if task.type == "classification":
        assert len(task.labels) == manifest["n_labels"]
        # every label is present in every bundled split (stratified with >= 1 row per label)
        for split in ("train", "validation", "test"):
            assert {r["label"] for r in task.split(split)} == set(task.labels)
    else:
        assert task.labels == []


def test_bundled_primary_metrics() -> None:
    assert {n: load_task(n).metric for n in BUNDLED} == {
        "sst2": "accuracy", "trec": "accuracy", "banking77": "accuracy", "scitldr": "rougeL", "squad": "f1",
    }


def test_bundled_squad_train_and_validation_share_no_article() -> None:
    task = load_task("squad")
    train_articles = {r["title"] for r in task.split("train")}
    assert len(train_articles) == 14 and not train_articles & {r["title"] for r in task.split("validation")}
    train = {r["context"] for r in task.split("train")}
    val = {r["context"] for r in task.split("validation")}
    test = {r["context"] for r in task.split("test")}
    assert not train & val and not train & test and not val & test
    for r in task.split("train"):
        assert all(a in r["context"] for a in r["answers"])


def test_bundle_is_small_and_attributed() -> None:
    folder = bundled_dir()
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert total < 5 * 1024 * 1024
    attribution = (folder / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for needle in ("CC BY 4.0", "CC BY-SA 4.0", "Apache", "MIT", "Changes", "make_bundled_data.py"):
        assert needle in attribution
    for name in BUNDLED:
        assert (folder / name / "LICENSE").is_file()
    assert "BY-SA" in (folder / "squad" / "LICENSE").read_text(encoding="utf-8")
    assert not (folder / "xsum_sample").exists()


@pytest.mark.shared
def test_bundle_regenerates_byte_identical(shared_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "scripts" / "make_bundled_data.py"
    subprocess.run(
        [sys.executable, str(script), "--shared", str(shared_dir / "datasets"), "--out", str(tmp_path)],
        check=True, capture_output=True,
    )
    for p in tmp_path.rglob("*"):
        if p.is_file():
            assert p.read_bytes() == (bundled_dir() / p.relative_to(tmp_path)).read_bytes(), p


# ------------------------------------------------------------------------------ shared datasets


@pytest.mark.shared
@pytest.mark.parametrize(
    "name,kind,n_labels",
    [
        ("sst2", "classification", 2),
        ("trec", "classification", 6),
        ("banking77", "classification", 77),
        ("tweeteval_emotion", "classification", 4),
        ("tweeteval_irony", "classification", 2),
        ("tweeteval_hate", "classification", 2),
        ("tweeteval_offensive", "classification", 2),
        ("scitldr", "summarization", 0),
    ],
)
def test_shared_folders_load_with_their_splits(shared_dir: Path, name: str, kind: str, n_labels: int) -> None:
    folder = shared_dir / "datasets" / name
    task = load_task(folder)
    assert task.name == name and task.type == kind and len(task.labels) == n_labels
    for split in ("train", "validation", "test"):
        n_lines = sum(1 for line in (folder / f"{split}.jsonl").open(encoding="utf-8") if line.strip())
        assert len(task.split(split)) == n_lines
    assert task.notes == []  # nothing carved: the folder has all three splits


@pytest.mark.shared
def test_shared_squad_gets_a_train_split_carved_by_context(shared_dir: Path) -> None:
    task = load_task(shared_dir / "datasets" / "squad_v1_1")
    assert task.type == "qa" and task.metric == "f1"
    train, val = task.split("train"), task.split("validation")
    assert len(train) + len(val) == 5307 and len(task.split("test")) == 5263
    assert abs(len(train) - len(val)) < 200  # train_fraction=0.5 of the questions
    assert not {r["context"] for r in train} & {r["context"] for r in val}
    assert "train carved from validation" in task.notes[0]
    again = load_task(shared_dir / "datasets" / "squad_v1_1")
    assert again.split("train") == train  # fixed seed


def test_qa_rows_with_titles_are_carved_by_article(tmp_path: Path) -> None:
    rows = [{"title": f"a{i % 5}", "context": f"paragraph {i}", "question": "q?", "answers": ["p"]}
            for i in range(40)]
    (tmp_path / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "test.jsonl").write_text(json.dumps({k: v for k, v in rows[0].items() if k != "title"}) + "\n")
    task = load_task(tmp_path, seed=3)
    train, val = task.split("train"), task.split("validation")
    assert train and val and not {r["title"] for r in train} & {r["title"] for r in val}
    assert "grouped by article (title)" in task.notes[0]


@pytest.mark.shared
def test_shared_xsum_sample_has_only_test(shared_dir: Path) -> None:
    task = load_task(shared_dir / "datasets" / "xsum_sample")
    assert task.type == "summarization" and task.sizes() == {"train": 0, "validation": 0, "test": 10}
    with pytest.raises(InputError, match="has no train split"):
        task.train_rows(10)


@pytest.mark.shared
def test_short_name_of_unbundled_dataset_via_env(shared_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="not bundled: Twitter"):
        load_task("tweeteval_irony")
    monkeypatch.setenv("STAYTUNED_DATASETS", str(shared_dir / "datasets"))
    task = load_task("tweeteval_irony")
    assert task.name == "tweeteval_irony" and task.labels == ["irony", "non_irony"]


# ------------------------------------------------------------------------------ formats


def test_folder_of_jsonl_with_dev_file_and_no_test(tmp_path: Path) -> None:
    _write_jsonl(tmp_path / "d" / "train.jsonl", _cls_rows(20))
    _write_jsonl(tmp_path / "d" / "dev.jsonl", _cls_rows(6, prefix="v"))
    task = load_task(tmp_path / "d")
    assert task.name == "d" and task.sizes() == {"train": 20, "validation": 6, "test": 0}
    assert task.labels == ["neg", "pos"] and task.notes == []


def test_csv_and_tsv_files(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "train.csv").write_text(
        'sentence,label\n"good, really",pos\nbad,neg\nfine,pos\nawful,neg\n', encoding="utf-8"
    )
    (tmp_path / "c" / "test.tsv").write_text("sentence\tlabel\ngreat\tpos\nmeh\tneg\n", encoding="utf-8")
    task = load_task(tmp_path / "c", validation_fraction=0.5)
    assert task.type == "classification"  # "sentence" is a recognised alias of "text"
    assert sorted(r["text"] for r in task.split("train") + task.split("validation")) == [
        "awful", "bad", "fine", "good, really",
    ]
    assert task.split("test") == [{"text": "great", "label": "pos"}, {"text": "meh", "label": "neg"}]
    # stratified carve: one row of each label went to validation
    assert sorted(r["label"] for r in task.split("validation")) == ["neg", "pos"]


def test_csv_qa_answers_as_json_list_or_plain_string(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    path.write_text(
        'context,question,answers\n'
        '"Paris is in France.",Where is Paris?,"[""France"", ""in France""]"\n'
        '"Rome is in Italy.",Where is Rome?,Italy\n',
        encoding="utf-8",
    )
    task = load_task(path, validation_fraction=0)
    assert task.type == "qa" and task.metric == "f1"
    assert [r["answers"] for r in task.split("train")] == [["France", "in France"], ["Italy"]]


def test_single_jsonl_file_carves_a_stratified_validation(tmp_path: Path) -> None:
    rows = _cls_rows(90, labels=("a", "b", "c"))
    path = _write_jsonl(tmp_path / "all.jsonl", rows)
    task = load_task(path, seed=3)
    val = task.split("validation")
    assert task.name == "all" and len(val) == 9
    assert Counter(r["label"] for r in val) == {"a": 3, "b": 3, "c": 3}
    assert len(task.split("train")) == 81 and "validation carved from train" in task.notes[0]
    assert load_task(path, seed=3).split("validation") == val
    assert load_task(path, seed=4).split("validation") != val


def test_json_array_and_parquet(tmp_path: Path) -> None:
    rows = [{"document": f"doc {i} text", "summary": f"sum {i}"} for i in range(10)]
    (tmp_path / "a.json").write_text(json.dumps(rows), encoding="utf-8")
    t = load_task(tmp_path / "a.json")
    assert t.type == "summarization" and t.metric == "rougeL"
    assert t.sizes() == {"train": 9, "validation": 1, "test": 0}
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "b.parquet")
    assert load_task(tmp_path / "b.parquet").splits == t.splits


def test_column_mapping(tmp_path: Path) -> None:
    rows = [{"review": f"r{i}", "stars": "5" if i % 2 else "1", "id": i} for i in range(10)]
    path = _write_jsonl(tmp_path / "reviews.jsonl", rows)
    with pytest.raises(InputError, match="cannot infer the task type"):
        load_task(path)
    task = load_task(path, columns={"review": "text", "stars": "label"}, validation_fraction=0)
    assert task.split("train")[0] == {"text": "r0", "label": "1"} and task.labels == ["1", "5"]
    with pytest.raises(InputError, match=r"unknown key.*review -> txt"):
        load_task(path, columns={"review": "txt", "stars": "label"})
    with pytest.raises(InputError, match=r"column 'rating'.*not found"):
        load_task(path, columns={"rating": "label", "review": "text"})


def test_explicit_type_and_labels_fix_the_order(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "x.jsonl", _cls_rows(10, labels=("negative", "positive")))
    assert load_task(path).labels == ["negative", "positive"]  # sorted by default
    task = load_task(path, type="classification", labels=["positive", "negative"], validation_fraction=0)
    assert task.labels == ["positive", "negative"] and task.sizes()["train"] == 10


def test_integer_labels_with_names_are_mapped(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "x.jsonl", [{"text": f"t{i}", "label": i % 2} for i in range(4)])
    task = load_task(path, labels=["negative", "positive"], validation_fraction=0)
    assert [r["label"] for r in task.split("train")] == ["negative", "positive", "negative", "positive"]
    plain = load_task(path, validation_fraction=0)
    assert plain.labels == ["0", "1"]


def test_save_to_disk_dataset_dict_with_classlabel(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    train = datasets.Dataset.from_dict(
        {"sentence": [f"s{i}" for i in range(12)], "label": [i % 2 for i in range(12)]}, features=features
    )
    val = datasets.Dataset.from_dict({"sentence": ["v0", "v1"], "label": [1, 0]}, features=features)
    test = datasets.Dataset.from_dict({"sentence": ["u0", "u1"], "label": [-1, -1]}, features=features)
    datasets.DatasetDict({"train": train, "validation": val, "test": test}).save_to_disk(str(tmp_path / "hf"))
    task = load_task(tmp_path / "hf")
    assert task.type == "classification" and task.labels == ["neg", "pos"]
    assert task.split("validation") == [{"text": "v0", "label": "pos"}, {"text": "v1", "label": "neg"}]
    assert task.sizes() == {"train": 12, "validation": 2, "test": 0}
    assert "test split dropped: unlabeled" in task.notes[0]


def test_save_to_disk_mapped_classlabel_column(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"question": datasets.Value("string"), "coarse": datasets.ClassLabel(names=["LOC", "NUM", "HUM"])}
    )
    ds = datasets.Dataset.from_dict(
        {"question": [f"q{i}" for i in range(30)], "coarse": [i % 3 for i in range(30)]}, features=features
    )
    ds.save_to_disk(str(tmp_path / "trec_like"))
    task = load_task(tmp_path / "trec_like", columns={"question": "text", "coarse": "label"})
    assert task.labels == ["LOC", "NUM", "HUM"]  # ClassLabel order, names not indices
    by_text = {r["text"]: r["label"] for r in task.split("train") + task.split("validation")}
    assert [by_text[f"q{i}"] for i in range(4)] == ["LOC", "NUM", "HUM", "LOC"]
    assert Counter(r["label"] for r in task.split("validation")) == {"LOC": 1, "NUM": 1, "HUM": 1}


def test_save_to_disk_single_dataset_qa_with_squad_answers(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict(
        {
            "context": [f"ctx {i // 2}" for i in range(20)],
            "question": [f"q{i}" for i in range(20)],
            "answers": [{"text": [f"a{i}"], "answer_start": [0]} for i in range(20)],
        }
    )
    ds.save_to_disk(str(tmp_path / "one"))
    task = load_task(tmp_path / "one", seed=1)
    assert task.type == "qa" and task.split("train")[0]["answers"][0].startswith("a")
    assert len(task.split("validation")) == 2  # one whole context of two questions
    assert not {r["context"] for r in task.split("train")} & {r["context"] for r in task.split("validation")}


def test_hub_code_path_uses_load_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(name, config=None):
        calls.append((name, config))
        d = datasets.Dataset.from_dict({"document": ["a b c", "d e f"], "summary": ["a", "d"]})
        return datasets.DatasetDict({"train": d, "validation": d})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    task = load_task("hf:someone/summaries:small")
    assert calls == [("someone/summaries", "small")]
    assert task.name == "someone/summaries" and task.type == "summarization" and task.sizes()["validation"] == 2
    # owner/name without the hf: prefix goes to the hub only when not offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="no such file or folder"):
        load_task("someone/other")
    assert len(calls) == 1
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    load_task("someone/other")
    assert calls[-1] == ("someone/other", None)

    def failing(name, config=None):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", failing)
    with pytest.raises(InputError, match=r"cannot load hub dataset 'nobody/x'.*offline"):
        load_task("nobody/x")


# ------------------------------------------------------------------------------ carving and sampling


def test_split_off_stratified_is_deterministic_and_proportional() -> None:
    rows = _cls_rows(100, labels=("a", "b", "b", "b"))  # a: 25, b: 75
    kept, carved = split_off(rows, 0.2, seed=0, stratify_by="label")
    assert Counter(r["label"] for r in carved) == {"a": 5, "b": 15}
    assert len(kept) == 80 and not {r["text"] for r in kept} & {r["text"] for r in carved}
    assert split_off(rows, 0.2, seed=0, stratify_by="label") == (kept, carved)
    assert split_off(rows, 0.2, seed=1, stratify_by="label")[1] != carved
    # source order kept on both sides
    assert [int(r["text"][1:]) for r in carved] == sorted(int(r["text"][1:]) for r in carved)


def test_split_off_grouped_never_splits_a_group() -> None:
    rows = [{"context": f"c{i // 3}", "question": f"q{i}", "answers": ["x"]} for i in range(30)]
    kept, carved = split_off(rows, 0.3, seed=0, group_by="context")
    assert len(carved) == 9 and not {r["context"] for r in kept} & {r["context"] for r in carved}


def test_split_off_edge_cases() -> None:
    assert split_off([{"text": "a", "label": "x"}], 0.5) == ([{"text": "a", "label": "x"}], [])
    kept, carved = split_off(_cls_rows(3), 0.01, stratify_by="label")
    assert len(carved) == 1 and len(kept) == 2  # at least one row carved
    with pytest.raises(InputError, match="fraction"):
        split_off(_cls_rows(3), 1.0)


def test_subsample_stratified_counts_and_determinism() -> None:
    rows = _cls_rows(1000, labels=("a",) * 7 + ("b",) * 2 + ("c",))  # a 700, b 200, c 100
    s = subsample(rows, 100, seed=0)
    assert len(s) == 100 and Counter(r["label"] for r in s) == {"a": 70, "b": 20, "c": 10}
    assert subsample(rows, 100, seed=0) == s and subsample(rows, 100, seed=1) != s
    idx = [int(r["text"][1:]) for r in s]
    assert idx == sorted(idx)  # source order
    # a rare label keeps one row even in a tiny sample
    s3 = subsample(rows, 3, seed=0)
    assert Counter(r["label"] for r in s3) == {"a": 1, "b": 1, "c": 1}
    # quotas 7/2/1 (largest remainder) for n=10
    assert Counter(r["label"] for r in subsample(rows, 10, seed=5)) == {"a": 7, "b": 2, "c": 1}


def test_subsample_nested_across_sizes_and_all() -> None:
    rows = _cls_rows(500, labels=("x", "y"))
    small, big = subsample(rows, 100, seed=2), subsample(rows, 300, seed=2)
    assert {r["text"] for r in small} <= {r["text"] for r in big}
    assert subsample(rows, None) == rows and subsample(rows, 10_000) == rows
    assert subsample([{"document": str(i), "summary": "s"} for i in range(50)], 5, seed=0, stratify_by=None)[0]
    with pytest.raises(InputError, match="positive integer"):
        subsample(rows, 0)


def test_task_train_and_eval_rows() -> None:
    task = load_task("trec")
    r100 = task.train_rows(100, seed=0)
    assert len(r100) == 100 and len({r["label"] for r in r100}) == 6
    assert task.train_rows(100, seed=0) == r100 and task.train_rows(None) == task.split("train")
    ev = task.eval_rows("validation", 200, seed=0)
    assert len(ev) == 200 and task.eval_rows("test") == task.split("test")
    assert task.references(ev) == [r["label"] for r in ev]
    with pytest.raises(InputError, match="unknown split"):
        task.eval_rows("dev")


def test_task_dataclass_validates_type() -> None:
    with pytest.raises(InputError, match="unknown task type"):
        Task(name="x", type="regression", splits={})
    assert Task(name="x", type="qa", splits={}).metric == "f1"


# ------------------------------------------------------------------------------ bad input


def test_missing_file_and_unknown_name() -> None:
    with pytest.raises(InputError, match="no such file or folder") as e:
        load_task("/nonexistent/data.jsonl")
    assert "/nonexistent/data.jsonl" in str(e.value)
    with pytest.raises(InputError, match="unknown task 'sst3'") as e:
        load_task("sst3")
    for name in BUNDLED:
        assert name in str(e.value)
    with pytest.raises(InputError, match="no such file or folder"):
        load_task(Path("sst3"))  # a Path is always a path


def test_csv_row_numbers_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text,label\na,x\nb,y\nc\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"t\.csv, row 4, column 'label': label missing"):
        load_task(path)


def test_missing_column_names_file_row_column_and_keys(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "d" / "train.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}])
    with pytest.raises(InputError) as e:
        load_task(tmp_path / "d")
    msg = str(e.value)
    assert str(path) in msg and "row 2" in msg and "column 'label'" in msg and "['text', 'label']" in msg


def test_empty_split_file(tmp_path: Path) -> None:
    _write_jsonl(tmp_path / "d" / "train.jsonl", _cls_rows(4))
    (tmp_path / "d" / "test.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"test\.jsonl: empty split"):
        load_task(tmp_path / "d")


@pytest.mark.parametrize("bad", [None, "", "  "])
def test_label_missing(tmp_path: Path, bad) -> None:
    _write_jsonl(tmp_path / "t.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": "y"},
                                        {"text": "c", "label": bad}])
    with pytest.raises(InputError, match=r"t\.jsonl, row 3, column 'label': label missing"):
        load_task(tmp_path / "t.jsonl")


def test_malformed_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": \n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.jsonl, row 3: malformed JSON line"):
        load_task(path)
    path.write_text('{"text": "a", "label": "x"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(InputError, match="row 2: line is a JSON list"):
        load_task(path)


def test_other_bad_inputs(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(InputError, match="unsupported file type"):
        load_task(tmp_path / "x.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no split files found"):
        load_task(tmp_path / "empty")
    path = _write_jsonl(tmp_path / "one.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}])
    with pytest.raises(InputError, match="at least two labels"):
        load_task(path)
    with pytest.raises(InputError, match="unknown task type"):
        load_task(path, type="regression")
    with pytest.raises(InputError, match="labels found in the data but not in labels="):
        load_task(path, labels=["y", "z"])
    qa = _write_jsonl(tmp_path / "qa.jsonl", [{"context": "c", "question": "q", "answers": []}])
    with pytest.raises(InputError, match="column 'answers': no non-empty answer"):
        load_task(qa)
    empty_text = _write_jsonl(tmp_path / "e.jsonl", [{"text": " ", "label": "x"}])
    with pytest.raises(InputError, match="row 1, column 'text': empty value"):
        load_task(empty_text)
