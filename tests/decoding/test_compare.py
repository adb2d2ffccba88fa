"""compare: several models (base, LoRA adapter folder, full folder) x configs, written 3 ways."""

from __future__ import annotations

import csv
import json

import pytest

torch = pytest.importorskip("torch")

from staytuned.decoding.compare import read_prompts, run_compare, to_markdown, write_compare  # noqa: E402
from staytuned.decoding.factory import BackendOptions, load_named_configs, parse_inline_config  # noqa: E402
from staytuned.errors import InputError  # noqa: E402
from staytuned.hparams.decode import DecodingConfig  # noqa: E402


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory):
    """A LoRA adapter on tiny-llama saved the way run_trial(save_dir=...) saves one."""
    from peft import LoraConfig, get_peft_model

    from staytuned.models import load_model

    model, tok = load_model("tiny-llama", device="cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        # init_lora_weights=False: non-zero B, so the adapter really changes the outputs
        peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                init_lora_weights=False))
    folder = tmp_path_factory.mktemp("adapter")
    peft.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "staytuned-trial.json").write_text(json.dumps({"model": "tiny-llama", "method": "lora"}))
    return folder, peft


@pytest.fixture(scope="module")
def full_dir(tmp_path_factory):
    from staytuned.models import load_model

    model, tok = load_model("tiny-mistral", device="cpu")
    folder = tmp_path_factory.mktemp("full") / "tiny-mistral-ft"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_adapter_folder_loads_on_its_base_and_matches_the_peft_model(adapter_dir, tiny_backend):
    from staytuned.decoding.hf_backend import HFBackend, is_adapter_folder

    folder, peft = adapter_dir
    assert is_adapter_folder(str(folder))
    backend = HFBackend.load(str(folder), device="cpu", chat=False)
    cfg = DecodingConfig(temperature=0, max_new_tokens=8)
    got = backend.generate(["Hello there"], cfg)[0].text
    ids = backend.tokenizer("Hello there", return_tensors="pt")
    with torch.no_grad():
        ref = peft.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
    expected = backend.tokenizer.decode(ref[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert got == expected
    assert got != tiny_backend.generate(["Hello there"], cfg)[0].text  # not just the base


def test_compare_models_and_configs_side_by_side(tmp_path, adapter_dir, full_dir):
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("Hello\n\nThe sky is\n", encoding="utf-8")
    prompts = read_prompts(prompts_file)
    assert prompts == ["Hello", "The sky is"]
    configs = load_named_configs("greedy;hot:temperature=1.5,seed=3", {"max_new_tokens": 5})
    assert [n for n, _ in configs] == ["greedy", "hot"]
    models = ["tiny-llama", str(adapter_dir[0]), str(full_dir)]
    result = run_compare(models, configs, prompts=prompts, options=BackendOptions(device="cpu", chat=False))
    assert len(result.rows) == 2 * 3 * 2
    assert result.columns[0] == "tiny-llama | greedy"
    assert result.columns[-1] == "tiny-mistral-ft | hot"
    for path in ("out.md", "out.csv", "out.jsonl"):
        write_compare(result, tmp_path / path)
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(lines) == 12 and {x["config"] for x in lines} == {"greedy", "hot"}
    with (tmp_path / "out.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["output"] for r in rows] == [x["output"] for x in lines]
    md = (tmp_path / "out.md").read_text()
    assert md.splitlines()[0].startswith("| # | prompt | tiny-llama \\| greedy |")
    assert len(md.splitlines()) == 2 + 2  # header, rule, one line per prompt
    greedy_llama = [r.output for r in result.rows if r.column == "tiny-llama | greedy"]
    from staytuned.decoding.hf_backend import HFBackend

    local = HFBackend.load("tiny-llama", device="cpu", chat=False)
    assert greedy_llama == [g.text for g in local.generate(prompts, DecodingConfig(temperature=0, max_new_tokens=5))]


def test_compare_on_a_task_scores_each_column(tiny_backend):
    from staytuned.tasks import load_task

    task = load_task("sst2")
    rows = task.eval_rows("validation", size=3, seed=0)
    result = run_compare(["tiny-llama"], [("greedy", DecodingConfig(temperature=0, max_new_tokens=3))],
                         task=task, rows=rows, options=BackendOptions(device="cpu"))
    assert set(result.scores) == {"tiny-llama | greedy"}
    assert 0.0 <= result.scores["tiny-llama | greedy"] <= 1.0
    assert all(r.reference in task.labels for r in result.rows)
    assert "| tiny-llama \\| greedy | " in to_markdown(result)


def test_inline_and_file_configs(tmp_path):
    assert parse_inline_config("warm:temperature=0.7,top_p=0.9") == ("warm", {"temperature": 0.7, "top_p": 0.9})
    assert parse_inline_config("stop=\\n,stop=###")[1] == {"stop": ["\n", "###"]}
    assert parse_inline_config("greedy") == ("greedy", {"temperature": 0.0})
    f = tmp_path / "c.yaml"
    f.write_text("cold: {temperature: 0.2}\nwarm: {temperature: 0.9, top_k: 40}\n")
    assert [(n, c.temperature) for n, c in load_named_configs(str(f))] == [("cold", 0.2), ("warm", 0.9)]
    f.write_text("bad: {top_p: 0}\n")
    with pytest.raises(InputError, match="top_p"):
        load_named_configs(str(f))
    with pytest.raises(InputError, match="share a name"):
        load_named_configs("a:temperature=0.1;a:temperature=0.2")
    with pytest.raises(InputError, match="NAME=VALUE"):
        load_named_configs("temperature")


def test_prompt_files_and_output_formats_are_checked(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"prompt": "a"}\n{"text": "b"}\n')
    with pytest.raises(InputError) as info:
        read_prompts(tmp_path / "p.jsonl")
    assert info.value.row == 2 and info.value.column == "prompt"
    (tmp_path / "p.json").write_text('["x", {"prompt": "y"}]')
    assert read_prompts(tmp_path / "p.json") == ["x", "y"]
    with pytest.raises(InputError, match="output format"):
        write_compare(_empty(), tmp_path / "out.xlsx")


def _empty():
    from staytuned.decoding.compare import CompareResult

    return CompareResult(rows=[], columns=[], scores={})
